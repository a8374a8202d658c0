-- A short video of each camera incident (`vision.clip_before_s` before its first evidence frame
-- to `vision.clip_after_s` after), assembled from the frames already on Kafka. The evidence
-- writer asks for it (`pending`) in the same step that reads the candidate, before committing
-- the candidate's offset, so a crash cannot lose it; it builds it once the window has passed.

CREATE TABLE IF NOT EXISTS incident_clips (
    incident_id      text PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    camera_id        text NOT NULL,
    frame_partition  integer NOT NULL,
    anchor_ms        bigint NOT NULL,       -- Kafka timestamp of the frame the window is around
    starts_at        timestamptz NOT NULL,  -- the window, in the camera's time: fixed when asked
    ends_at          timestamptz NOT NULL,  -- for, so every builder cuts the same clip
    due_at           timestamptz NOT NULL,  -- when the window's last frame should be on Kafka
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'ready', 'empty', 'failed')),
    path             text,
    frames           integer,
    first_frame_at   timestamptz,
    last_frame_at    timestamptz,
    reason           text,                  -- why it is empty or failed
    requested_at     timestamptz NOT NULL DEFAULT now(),
    saved_at         timestamptz
);
CREATE INDEX IF NOT EXISTS incident_clips_pending ON incident_clips (due_at)
    WHERE status = 'pending';
