-- The tamper-evident audit trail. `seq` is assigned by the single writer inside a
-- `BEGIN IMMEDIATE` transaction (SQLite's one-writer lock), so the chain is one gap-free run
-- 1, 2, 3, ... Each row's `hash` is SHA-256 over its canonical encoding and `prev_hash` (see
-- vigil_store::audit). Rows are never updated or deleted.
CREATE TABLE IF NOT EXISTS audit_log (
    seq         INTEGER PRIMARY KEY,
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

-- Append-only: UPDATE and DELETE abort.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update
    BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE rejected');
END;

CREATE TRIGGER IF NOT EXISTS audit_log_no_delete
    BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE rejected');
END;
