-- Email deliveries: one row per message to send, keyed by `dedup_key`
-- (`key:<idempotency key>` or `job:<job id>`) so a re-delivered job never sends twice.
CREATE TABLE IF NOT EXISTS emails (
    id              BIGSERIAL PRIMARY KEY,
    dedup_key       TEXT   NOT NULL UNIQUE,
    job_id          TEXT   NOT NULL,
    idempotency_key TEXT,
    message_id      TEXT   NOT NULL,
    recipients      TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    template        TEXT,
    status          TEXT   NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    smtp_reply      TEXT,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX IF NOT EXISTS emails_status_created ON emails (status, created_at);
CREATE INDEX IF NOT EXISTS emails_created ON emails (created_at);
