-- Alerts raised by detection rules and by security events. Times are epoch milliseconds.
-- A repeat of the same rule and grouping key within the rule's window updates the active
-- alert (count, last_seen, linked events) instead of opening another.
CREATE TABLE IF NOT EXISTS alerts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id             TEXT   NOT NULL,
    title               TEXT   NOT NULL,
    description         TEXT   NOT NULL DEFAULT '',
    severity            TEXT   NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status              TEXT   NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    group_key           TEXT   NOT NULL,
    event_count         BIGINT NOT NULL DEFAULT 0,
    first_seen          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL,
    dedup_until         BIGINT NOT NULL,
    details             TEXT   NOT NULL DEFAULT '{}',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    acknowledged_by     TEXT,
    acknowledged_at     BIGINT,
    resolved_by         TEXT,
    resolved_at         BIGINT,
    escalation_policy   TEXT,
    escalation_level    BIGINT NOT NULL DEFAULT 0,
    next_escalation_at  BIGINT
);
CREATE INDEX IF NOT EXISTS alerts_rule_key ON alerts (rule_id, group_key, status);
CREATE INDEX IF NOT EXISTS alerts_status_id ON alerts (status, id);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (next_escalation_at);

-- The events behind an alert (Okta event uuids, or security event uuids).
CREATE TABLE IF NOT EXISTS alert_events (
    alert_id   BIGINT NOT NULL REFERENCES alerts (id),
    event_uuid TEXT   NOT NULL,
    linked_at  BIGINT NOT NULL,
    PRIMARY KEY (alert_id, event_uuid)
);

-- One row per escalation level reached: who was to be told, and when the notifications
-- were queued (NULL until they are: a crash in between is finished by the next run).
CREATE TABLE IF NOT EXISTS alert_escalations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    level       BIGINT NOT NULL,
    policy      TEXT   NOT NULL,
    targets     TEXT   NOT NULL,
    escalated_at BIGINT NOT NULL,
    notified_at BIGINT,
    UNIQUE (alert_id, level)
);
CREATE INDEX IF NOT EXISTS alert_escalations_pending ON alert_escalations (notified_at);

-- Every change of status, with who made it and their comment.
CREATE TABLE IF NOT EXISTS alert_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   BIGINT NOT NULL REFERENCES alerts (id),
    action     TEXT   NOT NULL,
    from_status TEXT  NOT NULL,
    to_status  TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    comment    TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_transitions_alert ON alert_transitions (alert_id, id);

-- Security events posted to POST /api/v1/events/security.
CREATE TABLE IF NOT EXISTS security_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid        TEXT   NOT NULL UNIQUE,
    source      TEXT   NOT NULL,
    event_type  TEXT   NOT NULL,
    severity    BIGINT NOT NULL CHECK (severity BETWEEN 1 AND 4),
    description TEXT   NOT NULL,
    details     TEXT   NOT NULL DEFAULT '{}',
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    alert_id    BIGINT
);
CREATE INDEX IF NOT EXISTS security_events_created ON security_events (created_at);

-- Escalation webhooks answered with 2xx, by delivery id (alert, level, URL hash), so a
-- re-delivered webhook job does not call the receiver again.
CREATE TABLE IF NOT EXISTS alert_webhook_deliveries (
    delivery_id  TEXT   PRIMARY KEY,
    alert_id     BIGINT NOT NULL,
    level        BIGINT NOT NULL,
    status_code  BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL
);
