"""Portable recordings of Kafka topics: the format, export from Kafka and replay."""
