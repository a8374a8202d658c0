"""PostgreSQL/TimescaleDB: migrations and the writes of the pipeline."""
