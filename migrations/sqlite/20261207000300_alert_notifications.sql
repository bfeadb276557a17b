-- Delivery truth for escalation: one row per notification (email address, webhook URL,
-- Slack/Teams/PagerDuty channel) of a level, with its outcome; escalation rounds (a reopened
-- alert escalates again from its first level, with its own timeline).
ALTER TABLE alerts ADD COLUMN escalation_round BIGINT NOT NULL DEFAULT 1;
-- When the current round started (NULL: when the alert opened).
ALTER TABLE alerts ADD COLUMN escalation_started_at BIGINT;

-- SQLite cannot drop the old UNIQUE (alert_id, level): the table is rebuilt with rounds.
-- queued_at: notifications recorded and queued; notified_at: every one of them sent;
-- suppressed_at: the alert was answered before they were queued; failed_at: all dead.
CREATE TABLE alert_escalations_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id     BIGINT NOT NULL REFERENCES alerts (id),
    round        BIGINT NOT NULL DEFAULT 1,
    level        BIGINT NOT NULL,
    policy       TEXT   NOT NULL,
    targets      TEXT   NOT NULL,
    escalated_at BIGINT NOT NULL,
    queued_at    BIGINT,
    notified_at  BIGINT,
    suppressed_at BIGINT,
    failed_at    BIGINT
);
-- Until now notified_at meant "queued".
INSERT INTO alert_escalations_new (id, alert_id, round, level, policy, targets, escalated_at, queued_at)
    SELECT id, alert_id, 1, level, policy, targets, escalated_at, notified_at FROM alert_escalations;
DROP TABLE alert_escalations;
ALTER TABLE alert_escalations_new RENAME TO alert_escalations;
CREATE UNIQUE INDEX IF NOT EXISTS alert_escalations_round_level
    ON alert_escalations (alert_id, round, level);
CREATE INDEX IF NOT EXISTS alert_escalations_unqueued ON alert_escalations (queued_at);

CREATE TABLE IF NOT EXISTS alert_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    escalation_id   BIGINT NOT NULL REFERENCES alert_escalations (id),
    round           BIGINT NOT NULL,
    level           BIGINT NOT NULL,
    channel         TEXT   NOT NULL CHECK (channel IN ('email', 'webhook', 'slack', 'teams', 'pagerduty')),
    -- trigger: the level's notification; acknowledge/resolve: PagerDuty follow-ups.
    event           TEXT   NOT NULL DEFAULT 'trigger' CHECK (event IN ('trigger', 'acknowledge', 'resolve')),
    -- What delivery uses (address, URL, channel name) and what people see (URLs redacted).
    target          TEXT   NOT NULL,
    target_shown    TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('queued', 'sent', 'retrying', 'dead', 'suppressed')),
    job_id          TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    response_status TEXT,
    response_id     TEXT,
    last_error      TEXT,
    errors          TEXT   NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    UNIQUE (escalation_id, channel, event, target)
);
CREATE INDEX IF NOT EXISTS alert_notifications_alert ON alert_notifications (alert_id, id);
CREATE INDEX IF NOT EXISTS alert_notifications_status ON alert_notifications (status, updated_at);
