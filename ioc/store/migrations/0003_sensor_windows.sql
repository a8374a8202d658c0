-- Sensor windows: per-sensor, per-property tumbling aggregates by event time, written once the
-- window closes (its end passed the watermark). Readings that arrive after their window closed
-- are kept in sensor_readings with late = true and do not change the window.

ALTER TABLE sensor_readings ADD COLUMN IF NOT EXISTS late boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS sensor_windows (
    sensor_id     text NOT NULL,
    property      text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    count         integer NOT NULL,
    min           double precision NOT NULL,
    max           double precision NOT NULL,
    mean          double precision NOT NULL,
    last          double precision NOT NULL,
    closed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, property, window_start)
);
