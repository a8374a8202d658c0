-- Storage for the walls: the audit trail of every incident change. The wall views
-- (sensor_readings_1m, sensor_readings_1h, incidents_1h) are created by migrate.py after this
-- file, as continuous aggregates with TimescaleDB and as plain views without it.

-- Every state change of an incident: one row when it is raised, one more whenever its status or
-- severity changes. Written by a trigger, so every writer (the agents' upserts, the hotline's
-- direct updates) leaves its trace in the same transaction; a replayed upsert that changes
-- nothing writes nothing.
CREATE TABLE IF NOT EXISTS incident_events (
    incident_id     text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    change          text NOT NULL,          -- opened | status | severity | status+severity
    status          text NOT NULL,
    severity        text NOT NULL,
    prev_status     text,
    prev_severity   text,
    source          text NOT NULL,
    kind            text NOT NULL,
    district        text,
    title           text NOT NULL,
    reports         integer NOT NULL DEFAULT 1,
    PRIMARY KEY (incident_id, at)
);
CREATE INDEX IF NOT EXISTS incident_events_at ON incident_events (at DESC);

CREATE OR REPLACE FUNCTION ioc_incident_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    what text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        what := 'opened';
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NEW.severity IS DISTINCT FROM OLD.severity THEN
        what := 'status+severity';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        what := 'status';
    ELSIF NEW.severity IS DISTINCT FROM OLD.severity THEN
        what := 'severity';
    ELSE
        RETURN NULL;  -- a replay or a refresh of the same state: nothing to audit
    END IF;
    INSERT INTO incident_events (incident_id, at, change, status, severity, prev_status,
                                 prev_severity, source, kind, district, title, reports)
    VALUES (NEW.id, clock_timestamp(), what, NEW.status, NEW.severity,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.severity END,
            NEW.source, NEW.kind, NEW.district, NEW.title, NEW.reports)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS incidents_audit ON incidents;
CREATE TRIGGER incidents_audit AFTER INSERT OR UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION ioc_incident_audit();

-- Incidents raised before this migration get their opening event, at the time they opened.
INSERT INTO incident_events (incident_id, at, change, status, severity, source, kind, district,
                             title, reports)
SELECT id, opened_at, 'opened', status, severity, source, kind, district, title, reports
FROM incidents
ON CONFLICT DO NOTHING;
