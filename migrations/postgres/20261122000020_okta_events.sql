-- Okta System Log events, stored once by uuid: indexed columns for the API filters plus the
-- raw event exactly as Okta sent it. `published` and `ingested_at` are epoch milliseconds.
CREATE TABLE IF NOT EXISTS events (
    id                 BIGSERIAL PRIMARY KEY,
    uuid               TEXT   NOT NULL UNIQUE,
    published          BIGINT NOT NULL,
    event_type         TEXT   NOT NULL,
    severity           TEXT,
    actor_id           TEXT,
    actor_alternate_id TEXT,
    actor_display_name TEXT,
    client_ip          TEXT,
    country            TEXT,
    outcome_result     TEXT,
    outcome_reason     TEXT,
    display_message    TEXT,
    transaction_id     TEXT,
    raw                TEXT   NOT NULL,
    ingested_at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_published_idx ON events (published DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_type_idx ON events (event_type, published DESC);
CREATE INDEX IF NOT EXISTS events_actor_alt_idx ON events (actor_alternate_id, published DESC);
CREATE INDEX IF NOT EXISTS events_actor_id_idx ON events (actor_id, published DESC);
CREATE INDEX IF NOT EXISTS events_ip_idx ON events (client_ip, published DESC);
CREATE INDEX IF NOT EXISTS events_outcome_idx ON events (outcome_result, published DESC);

-- Events that could not be read (not an object, no uuid, bad published): kept for a human,
-- skipped by ingestion so one bad event never blocks the stream.
CREATE TABLE IF NOT EXISTS okta_malformed_events (
    id          BIGSERIAL PRIMARY KEY,
    uuid        TEXT,
    reason      TEXT   NOT NULL,
    raw         TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);

-- Where polling resumes: the `next` link of the last committed page, saved in the same
-- transaction as that page's events. One row per source (`default`).
CREATE TABLE IF NOT EXISTS okta_cursor (
    source         TEXT   PRIMARY KEY,
    next_url       TEXT   NOT NULL,
    last_published BIGINT,
    updated_at     BIGINT NOT NULL
);
