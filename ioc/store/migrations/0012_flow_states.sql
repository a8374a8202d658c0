-- Each device's rules state for the flows that a plain consumer drives (sensor readings, see
-- ioc/streams/batched.py): JSON, written once per batch per changed device, after the batch's
-- rows and before its offsets are committed, and read when a worker takes over a partition.
-- `flow` is the consumer group, so a replay sandbox or a second deployment keeps its own.

CREATE TABLE IF NOT EXISTS flow_states (
    flow       text NOT NULL,
    key        text NOT NULL,
    state      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow, key)
);
