-- Many Okta orgs: every event and alert names the org it came from (`[[okta.orgs]] name`).
-- Rows stored before are from the single `[okta]` org, whose name is `default`. An alert
-- raised by a reported security event (not an Okta event) has no org (NULL).
ALTER TABLE events ADD COLUMN org TEXT NOT NULL DEFAULT 'default';
CREATE INDEX events_org_published ON events (org, published);
ALTER TABLE alerts ADD COLUMN org TEXT;
UPDATE alerts SET org = 'default'
 WHERE EXISTS (SELECT 1 FROM alert_events ae JOIN events e ON e.uuid = ae.event_uuid
                WHERE ae.alert_id = alerts.id);
