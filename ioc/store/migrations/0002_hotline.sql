-- 1022 hotline: triage, lifecycle, SLA, duplicates, reporter privacy.
-- Internal status: new, triaged, assigned, in_progress, resolved, duplicate (rejected as duplicate).
-- Open311 shows open (new .. in_progress) or closed (resolved, duplicate).

ALTER TABLE tickets
    ADD COLUMN IF NOT EXISTS service_code      text,              -- as sent by the reporter, if any
    ADD COLUMN IF NOT EXISTS category          text,
    ADD COLUMN IF NOT EXISTS priority          smallint,          -- 1 (most urgent) .. 4
    ADD COLUMN IF NOT EXISTS triage_confidence real,
    ADD COLUMN IF NOT EXISTS sla_due           timestamptz,
    ADD COLUMN IF NOT EXISTS sla_breached_at   timestamptz,
    ADD COLUMN IF NOT EXISTS status            text NOT NULL DEFAULT 'new',
    ADD COLUMN IF NOT EXISTS status_notes      text,
    ADD COLUMN IF NOT EXISTS media_url         text,
    ADD COLUMN IF NOT EXISTS reporter_masked   text,              -- e.g. 09******18: all staff see
    ADD COLUMN IF NOT EXISTS incident_id       text,              -- the incident this report is part of
    ADD COLUMN IF NOT EXISTS updated_at        timestamptz NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS tickets_status_sla ON tickets (status, sla_due);
CREATE INDEX IF NOT EXISTS tickets_category_time ON tickets (category, requested_at DESC);
CREATE INDEX IF NOT EXISTS tickets_incident ON tickets (incident_id);

-- How many citizens reported an incident (hotline incidents group duplicate tickets).
ALTER TABLE incidents
    ADD COLUMN IF NOT EXISTS reports  integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS category text;

-- Duplicate search: open hotline incidents of a category, narrowed by a lat/lon bounding box.
CREATE INDEX IF NOT EXISTS incidents_hotline_open ON incidents (category, lat, lon)
    WHERE source = 'hotline' AND status = 'open';

-- Every status change of a ticket, for audit and for SLA reporting.
CREATE TABLE IF NOT EXISTS ticket_events (
    service_request_id text NOT NULL,
    at                 timestamptz NOT NULL DEFAULT now(),
    status             text NOT NULL,
    note               text,
    PRIMARY KEY (service_request_id, at, status)
);
