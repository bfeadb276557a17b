-- When detection ran on each event (NULL: not yet). The worker that stores a page detects it
-- and marks it; a sweep detects what a crash left unmarked. Events stored before detection
-- existed count as done.
ALTER TABLE events ADD COLUMN detected_at BIGINT;
UPDATE events SET detected_at = ingested_at;
CREATE INDEX IF NOT EXISTS events_undetected ON events (id) WHERE detected_at IS NULL;

-- Security events posted through the API go through the detection rules too.
ALTER TABLE security_events ADD COLUMN detected_at BIGINT;
CREATE INDEX IF NOT EXISTS security_events_undetected ON security_events (id) WHERE detected_at IS NULL;
