-- Behavioural rules (queries over stored events) read the app an event is about:
-- `target[type=AppInstance]`'s id and sign-on mode (`detailEntry.signOnModeType`), set at
-- ingestion (NULL for events without an app, and for events stored before this version:
-- the SWA rule looks at minutes, not at history).
ALTER TABLE events ADD COLUMN app_id TEXT;
ALTER TABLE events ADD COLUMN app_sign_on_mode TEXT;

-- Their org-wide scans (one event type and outcome over a time range) and their per-user
-- reads (a user's events of a type over a time range, e.g. 30 days of sign-ins).
CREATE INDEX IF NOT EXISTS events_type_outcome_idx ON events (event_type, outcome_result, published);
CREATE INDEX IF NOT EXISTS events_actor_type_idx ON events (actor_alternate_id, event_type, outcome_result, published);

-- Whether an event already raised an alert of a rule (a rerun of a behavioural rule must
-- not raise it again, even after the alert was resolved).
CREATE INDEX IF NOT EXISTS alert_events_uuid ON alert_events (event_uuid);
