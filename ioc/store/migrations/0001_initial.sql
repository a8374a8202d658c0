-- Tables of the walking skeleton. Time columns are timestamptz (UTC on the wire and in Grafana).
-- Keys are deterministic so retries and replays upsert instead of duplicating.

CREATE TABLE IF NOT EXISTS tickets (
    service_request_id text PRIMARY KEY,
    requested_at       timestamptz NOT NULL,
    channel            text NOT NULL,
    description        text NOT NULL,
    address            text,
    lat                double precision,
    lon                double precision,
    reporter_hash      text,            -- keyed hash of the phone: contact data stops at intake
    urgent             boolean NOT NULL,
    ingested_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_requested_at ON tickets (requested_at DESC);

CREATE TABLE IF NOT EXISTS sensor_readings (
    sensor_id    text NOT NULL,
    observed_at  timestamptz NOT NULL,
    property     text NOT NULL,
    value        double precision NOT NULL,
    sensor_type  text NOT NULL,
    ingested_at  timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, property, observed_at)
);

CREATE TABLE IF NOT EXISTS detections (
    camera_id    text NOT NULL,
    event_time   timestamptz NOT NULL,
    seq          bigint NOT NULL,
    idx          integer NOT NULL,      -- position of the box within its frame
    class_name   text NOT NULL,
    score        real NOT NULL,
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    model        text NOT NULL,
    PRIMARY KEY (camera_id, seq, idx, event_time)
);

CREATE TABLE IF NOT EXISTS incidents (
    id           text PRIMARY KEY,
    kind         text NOT NULL,
    severity     text NOT NULL,
    source       text NOT NULL,
    source_key   text NOT NULL,
    title        text NOT NULL,
    status       text NOT NULL,
    district     text,
    lat          double precision,
    lon          double precision,
    event_time   timestamptz NOT NULL,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    evidence     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS incidents_event_time ON incidents (event_time DESC);

CREATE TABLE IF NOT EXISTS alerts (
    id            text PRIMARY KEY,     -- incident id + channel: one delivery per channel
    incident_id   text NOT NULL,
    channel       text NOT NULL,
    delivered_at  timestamptz NOT NULL,
    latency_ms    double precision NOT NULL,
    ok            boolean NOT NULL,
    error         text
);
CREATE INDEX IF NOT EXISTS alerts_incident_id ON alerts (incident_id);
