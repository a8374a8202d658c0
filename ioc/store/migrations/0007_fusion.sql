-- Fused incidents: the incidents staff act on. Candidates (the `incidents` table: one source's
-- view) that match in kind, place and time share one fused incident, named after the earliest of
-- them. Every change (fusion, timers, staff) bumps `version` and leaves an event with who and why.

ALTER TABLE incidents ADD COLUMN IF NOT EXISTS fused_id text;
CREATE INDEX IF NOT EXISTS incidents_fused ON incidents (fused_id);
-- Fusion's candidate search: fused candidates of some kinds near a time.
CREATE INDEX IF NOT EXISTS incidents_fusion_search ON incidents (kind, event_time)
    WHERE fused_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS fused_incidents (
    id               text PRIMARY KEY,       -- the id of its earliest candidate
    version          integer NOT NULL,
    change           text NOT NULL,
    kind             text NOT NULL,
    severity         text NOT NULL,
    status           text NOT NULL,          -- open | acknowledged | resolved | merged
    episode          integer NOT NULL DEFAULT 1,
    title            text NOT NULL,
    district         text,
    lat              double precision,
    lon              double precision,
    event_time       timestamptz NOT NULL,
    opened_at        timestamptz NOT NULL,
    status_since     timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ingested_at_ms   bigint NOT NULL,
    sources          integer NOT NULL,
    reports          integer NOT NULL DEFAULT 0,
    scope            text NOT NULL DEFAULT 'local',
    members          jsonb NOT NULL,
    evidence         jsonb NOT NULL DEFAULT '{}',
    actor            text NOT NULL DEFAULT 'ioc',
    reason           text,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    escalated_at     timestamptz,
    merged_into      text
);
CREATE INDEX IF NOT EXISTS fused_incidents_active ON fused_incidents (status, severity)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS fused_incidents_event_time ON fused_incidents (event_time DESC);

-- Every version of every fused incident: who changed what, when and why.
CREATE TABLE IF NOT EXISTS fused_incident_events (
    incident_id   text NOT NULL,
    version       integer NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    change        text NOT NULL,
    status        text NOT NULL,
    severity      text NOT NULL,
    sources       integer NOT NULL,
    actor         text NOT NULL,
    reason        text,
    PRIMARY KEY (incident_id, version)
);
CREATE INDEX IF NOT EXISTS fused_incident_events_at ON fused_incident_events (at DESC);

-- Deliveries: which notification (firing, escalated, resolved) of which episode went where;
-- Alertmanager's own state for an incident (the labels last posted, the silence of its
-- acknowledgement) so a changed label set or an expired acknowledgement is cleaned up there.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS notification text NOT NULL DEFAULT 'firing';

CREATE TABLE IF NOT EXISTS alertmanager_state (
    incident_id   text PRIMARY KEY,
    version       integer NOT NULL,
    labels        jsonb,                  -- the label sets posted and not yet resolved
    silence_id    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
