-- The tamper-evident audit trail. `seq` is assigned by the single writer under a
-- transaction-scoped advisory lock (never a sequence: sequences leave gaps on rollback), so the
-- chain is one gap-free run 1, 2, 3, ... Each row's `hash` is SHA-256 over its canonical
-- encoding and `prev_hash` (see vigil_store::audit). Rows are never updated or deleted.
CREATE TABLE IF NOT EXISTS audit_log (
    seq         BIGINT PRIMARY KEY,
    event_id    TEXT   NOT NULL UNIQUE,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    target_type TEXT   NOT NULL,
    target_id   TEXT   NOT NULL,
    details     TEXT   NOT NULL,
    request_id  TEXT,
    job_id      TEXT,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_occurred ON audit_log (occurred_at);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, seq);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target_type, target_id, seq);

-- Append-only: UPDATE, DELETE and TRUNCATE are rejected for every role that does not drop
-- the trigger first (the table owner can; run vigil as a role that does not own the schema).
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
