-- Photos citizens send with an Open311 POST (`media`): the ticket's evidence, written by the API
-- before it publishes the ticket (so no foreign key: the ticket row comes later, from the stream
-- agent) and served to staff only. Checked by type (JPEG, PNG, WebP magic bytes) and size
-- (`open311.max_media_bytes`) at intake.

CREATE TABLE IF NOT EXISTS ticket_media (
    service_request_id text PRIMARY KEY,
    media_type         text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png', 'image/webp')),
    content            bytea NOT NULL,
    sha256             text NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now()
);

-- Faces, number plates, homes: personal data, so not for the walls (see 0008_roles.sql).
REVOKE ALL ON ticket_media FROM ioc_grafana;
