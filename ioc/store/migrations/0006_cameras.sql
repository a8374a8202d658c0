-- Cameras: tracked detections, one row per processed frame (camera health, drops, latency on the
-- walls) and the annotated best frame of each camera incident.

ALTER TABLE detections ADD COLUMN IF NOT EXISTS track_id integer;

CREATE TABLE IF NOT EXISTS camera_frames (
    camera_id     text NOT NULL,
    event_time    timestamptz NOT NULL,
    seq           bigint NOT NULL,
    ingested_at   timestamptz NOT NULL,   -- Kafka timestamp of the frame
    processed_at  timestamptz NOT NULL DEFAULT now(),
    model         text NOT NULL,
    inference_ms  real NOT NULL,
    width         integer NOT NULL,
    height        integer NOT NULL,
    detections    integer NOT NULL,
    dropped       integer NOT NULL,       -- older frames skipped before this one (overload)
    luma_mean     real,
    luma_std      real,
    signature     text,
    PRIMARY KEY (camera_id, seq, event_time)
);
CREATE INDEX IF NOT EXISTS camera_frames_event_time ON camera_frames (event_time DESC);

-- The frame that best shows a camera incident, boxes drawn, saved as a JPEG. A better frame
-- (higher score) replaces it.
CREATE TABLE IF NOT EXISTS incident_snapshots (
    incident_id      text PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    path             text NOT NULL,
    camera_id        text NOT NULL,
    frame_partition  integer NOT NULL,
    frame_offset     bigint NOT NULL,
    seq              bigint NOT NULL,
    score            real NOT NULL,
    saved_at         timestamptz NOT NULL DEFAULT now()
);
