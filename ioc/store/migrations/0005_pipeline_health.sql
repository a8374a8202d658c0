-- Pipeline health for the walls: what Kafka knows, copied into the database.

-- Every record of ioc.dlq (the bytes stay on the topic): why, from where, by which consumer.
-- Keyed by the record's own place in the DLQ, so a re-read records nothing twice.
CREATE TABLE IF NOT EXISTS dead_letters (
    dlq_partition     integer NOT NULL,
    dlq_offset        bigint NOT NULL,
    failed_at         timestamptz NOT NULL,
    source_topic      text NOT NULL,
    source_partition  integer,
    source_offset     bigint,
    consumer          text NOT NULL,
    reason            text NOT NULL,
    size_bytes        integer NOT NULL,
    PRIMARY KEY (dlq_partition, dlq_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_failed_at ON dead_letters (failed_at DESC);

-- Consumer-group lag (messages not yet committed) per group and topic, sampled by the streams
-- leader on a timer.
CREATE TABLE IF NOT EXISTS consumer_lag (
    at        timestamptz NOT NULL,
    group_id  text NOT NULL,
    topic     text NOT NULL,
    lag       bigint NOT NULL,
    PRIMARY KEY (group_id, topic, at)
);
CREATE INDEX IF NOT EXISTS consumer_lag_at ON consumer_lag (at DESC);
