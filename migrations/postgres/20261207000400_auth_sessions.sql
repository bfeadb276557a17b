-- Sign-in sessions: one row per token family (a sign-in and every refresh after it), and
-- one row per refresh token issued in it. A refresh retires the presented token and issues
-- the next; presenting a retired token revokes the whole family. Rows are pruned once
-- their tokens could no longer be accepted anyway (expired).
CREATE TABLE IF NOT EXISTS auth_sessions (
    id             TEXT   PRIMARY KEY,
    username       TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL,
    -- expiry of the newest refresh token of the family
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS auth_sessions_username ON auth_sessions (username);
CREATE INDEX IF NOT EXISTS auth_sessions_expires_at ON auth_sessions (expires_at);

CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
    -- the token's `jti` claim
    jti        TEXT   PRIMARY KEY,
    session_id TEXT   NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- set when the token was exchanged; presenting it again is reuse
    used_at    BIGINT
);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_session ON auth_refresh_tokens (session_id);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_expires_at ON auth_refresh_tokens (expires_at);
