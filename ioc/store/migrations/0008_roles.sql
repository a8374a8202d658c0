-- Least-privilege group roles (NOLOGIN). Operators create the login users and grant them a role:
--   CREATE ROLE ioc_app LOGIN PASSWORD '…';  GRANT ioc_writer TO ioc_app;
--   CREATE ROLE grafana_user LOGIN PASSWORD '…';  GRANT ioc_grafana TO grafana_user;
-- Migrations (DDL) stay with the role that owns the schema and runs `ioc db migrate`. Where that
-- role may not create roles (CREATEROLE), create the two group roles beforehand.
--
-- ioc_writer: what the ioc services need at runtime: USAGE on the schema, SELECT, INSERT, UPDATE,
-- DELETE on its tables, USAGE and SELECT on its sequences. No CREATE on the schema: no DDL.
--
-- ioc_grafana: read-only for the walls: SELECT on every table and view, except the reporter's
-- personal data. In `tickets` it may read every column but:
--   address, lat, lon            where the reporter was (app reports send the phone's position);
--   reporter_hash, reporter_masked  who the reporter is (a keyed hash links repeat callers);
--   description                  the citizen's own words: phone numbers and e-mail addresses in it
--                                are masked at intake (ioc.hotline.privacy.redact_text), names and
--                                house numbers are not;
--   status_notes, media_url      staff's free-text notes (may quote the caller) and the
--                                reporter's photo.
-- In `ticket_events` it may read every column but `note` (the same free-text notes).
-- These two tables are granted column by column: a column added to them later stays hidden from
-- ioc_grafana until a migration grants it (tests/store/test_roles.py fails until someone decides).
-- The walls count tickets by area through the view `ticket_areas`, which shows only the ward,
-- commune or district named in the address (never the street or house number).
--
-- Tables created later by the migration owner in this schema get the same grants through default
-- privileges, SELECT for ioc_grafana included: a migration that adds a table (or a column) with
-- personal data must REVOKE it from ioc_grafana explicitly, as done for tickets below.
--
-- Grants apply to current_schema(), so a replay sandbox (schema sandbox_NAME) gets its own. The
-- walls read the live schema: ioc_grafana gets nothing in a sandbox schema (one whose comment
-- marks it as an ioc replay sandbox); grant it by hand if engineers want a wall on one.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ioc_writer', 'ioc_grafana'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                -- needs CREATEROLE: else create the role beforehand
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object THEN NULL;  -- a concurrent migration made it
            END;
        END IF;
    END LOOP;
END;
$$;

CREATE OR REPLACE VIEW ticket_areas AS
SELECT t.service_request_id,
       t.requested_at,
       coalesce(
           (SELECT trim(part)
            FROM unnest(string_to_array(t.address, ',')) WITH ORDINALITY AS p (part, n)
            WHERE trim(part) ~* '^(phường|xã|thị trấn|quận|huyện|thị xã|tp\.|thành phố)\s'
            ORDER BY n
            LIMIT 1),
           'không rõ') AS area
FROM tickets AS t;

DO $$
DECLARE
    schema_name text := quote_ident(current_schema());
    sandbox boolean := coalesce(
        obj_description(current_schema()::regnamespace, 'pg_namespace') LIKE 'ioc replay sandbox%',
        false);
    public_may_create boolean;
BEGIN
    -- PostgreSQL before 15 lets every role CREATE in schema public: close that for this schema.
    SELECT EXISTS (
        SELECT 1 FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
        WHERE n.oid = current_schema()::regnamespace AND a.grantee = 0
          AND a.privilege_type = 'CREATE')
      AND pg_has_role(current_user, nspowner, 'USAGE')
    INTO public_may_create
    FROM pg_namespace WHERE oid = current_schema()::regnamespace;
    IF public_may_create THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %s FROM PUBLIC', schema_name);
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %s TO ioc_writer', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s'
                   ' TO ioc_writer', schema_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %s TO ioc_writer', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ioc_writer', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s'
                   ' GRANT USAGE, SELECT ON SEQUENCES TO ioc_writer', schema_name);

    IF sandbox THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO ioc_grafana', schema_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %s TO ioc_grafana', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT SELECT ON TABLES TO ioc_grafana',
                   schema_name);
    -- Personal data: the table grant goes, the other columns are granted one by one.
    EXECUTE 'REVOKE SELECT ON tickets, ticket_events FROM ioc_grafana';
    EXECUTE 'GRANT SELECT (service_request_id, requested_at, channel, urgent, ingested_at,'
            ' service_code, category, priority, triage_confidence, sla_due, sla_breached_at,'
            ' status, incident_id, updated_at) ON tickets TO ioc_grafana';
    EXECUTE 'GRANT SELECT (service_request_id, at, status) ON ticket_events TO ioc_grafana';
END;
$$;
