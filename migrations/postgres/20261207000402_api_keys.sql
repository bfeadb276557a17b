-- API keys of service accounts (scripts, OpenAPI clients). The secret is shown once at
-- creation and stored only as its SHA-256 (a key is 256 random bits, so a fast hash is
-- enough); `id` is the public part of the key and names it in logs and audit records.
CREATE TABLE IF NOT EXISTS api_keys (
    id              TEXT   PRIMARY KEY,
    name            TEXT   NOT NULL UNIQUE,
    role            TEXT   NOT NULL CHECK (role IN ('admin', 'analyst')),
    -- JSON array of the queues it may act on; NULL = every queue
    queues          TEXT,
    secret_sha256   TEXT   NOT NULL,
    -- its own requests-per-minute budget; NULL = rate_limit.authenticated_per_minute
    rate_per_minute BIGINT,
    created_by      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used_at    BIGINT,
    revoked_at      BIGINT
);
