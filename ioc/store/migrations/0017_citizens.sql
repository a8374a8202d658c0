-- The citizen loop (`ioc.citizens`): a reporter's contact, sealed (AES-256-GCM; the key is not in
-- the database) and kept only while the loop needs it, and what each reporter was told. The
-- notices hold ids and outcomes, never the contact. Neither table is for the walls.

CREATE TABLE IF NOT EXISTS reporter_contacts (
    service_request_id text PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('phone', 'email')),
    sealed             bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS citizen_notices (
    service_request_id text NOT NULL,
    notice             text NOT NULL,      -- received | assigned:<episode>:<unit> | resolved:<episode>
    channel            text NOT NULL,
    status             text NOT NULL CHECK (status IN ('sent', 'failed', 'abandoned')),
    attempts           integer NOT NULL DEFAULT 1,
    detail             text,               -- why it failed, without the address
    at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_request_id, notice)
);

DO $$
BEGIN
    IF coalesce(obj_description(current_schema()::regnamespace, 'pg_namespace')
                LIKE 'ioc replay sandbox%', false) THEN
        RETURN;
    END IF;
    EXECUTE 'REVOKE ALL ON reporter_contacts, citizen_notices FROM ioc_grafana';
END;
$$;
