-- Triage learning from staff: the model that triaged each ticket, how sure it was of the
-- urgency, and every correction staff made, with who and why (the audit trail, kept forever;
-- `ioc triage train` learns from the latest correction of each ticket).

ALTER TABLE tickets
    ADD COLUMN IF NOT EXISTS triage_model       text,   -- the model's version (content digest)
    ADD COLUMN IF NOT EXISTS urgency_confidence real;   -- 0..1 that `urgent` is right

CREATE TABLE IF NOT EXISTS triage_corrections (
    id                 bigserial PRIMARY KEY,
    service_request_id text NOT NULL,
    at                 timestamptz NOT NULL DEFAULT now(),
    corrected_by       text NOT NULL,                   -- the staff member
    reason             text NOT NULL,
    from_category      text NOT NULL,
    from_priority      smallint NOT NULL,
    from_urgent        boolean NOT NULL,
    to_category        text NOT NULL,
    to_priority        smallint NOT NULL CHECK (to_priority BETWEEN 1 AND 4),
    to_urgent          boolean NOT NULL,
    triage_model       text                             -- the model whose verdict was corrected
);

CREATE INDEX IF NOT EXISTS triage_corrections_ticket
    ON triage_corrections (service_request_id, at DESC);
CREATE INDEX IF NOT EXISTS triage_corrections_at ON triage_corrections (at);

-- The walls may read the new ticket columns and the corrections, but not who corrected a ticket
-- or the reason given (free text that may quote the caller).
DO $$
BEGIN
    IF coalesce(obj_description(current_schema()::regnamespace, 'pg_namespace')
                LIKE 'ioc replay sandbox%', false) THEN
        RETURN;
    END IF;
    EXECUTE 'GRANT SELECT (triage_model, urgency_confidence) ON tickets TO ioc_grafana';
    EXECUTE 'REVOKE SELECT ON triage_corrections FROM ioc_grafana';
    EXECUTE 'GRANT SELECT (id, service_request_id, at, from_category, from_priority, from_urgent,'
            ' to_category, to_priority, to_urgent, triage_model) ON triage_corrections'
            ' TO ioc_grafana';
END;
$$;
