-- Failed sign-ins per account name (existing or not, so a lock does not reveal which names
-- exist) and the lock they led to. One row per name; deleted on a successful sign-in, by an
-- admin's unlock, and pruned once stale.
CREATE TABLE IF NOT EXISTS login_lockouts (
    username          TEXT   PRIMARY KEY,
    -- failures in the current window
    failures          BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL,
    -- locks so far (each lasts twice the one before, up to the maximum)
    locks             BIGINT NOT NULL DEFAULT 0,
    locked_until      BIGINT,
    last_failure_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_lockouts_last_failure ON login_lockouts (last_failure_at);
