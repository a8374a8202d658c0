-- The on-call pager (`ioc.dispatch.pager`): every attempt to page a person of the roster about an
-- incident, by the chain's page (episode:cycle:step:round), the channel tried and its outcome, so
-- a failed first channel and the second one tried are both on the console. No address is kept.

CREATE TABLE IF NOT EXISTS oncall_pages (
    incident_id  text NOT NULL,
    page_key     text NOT NULL,
    person       text NOT NULL,
    role         text NOT NULL,
    channel      text NOT NULL,
    ok           boolean NOT NULL,
    error        text,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (incident_id, page_key, person, channel)
);
CREATE INDEX IF NOT EXISTS oncall_pages_failed ON oncall_pages (at DESC) WHERE NOT ok;
