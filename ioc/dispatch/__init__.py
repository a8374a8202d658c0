"""Dispatch: the units incidents are handed to (`units.toml`), which of them an incident routes
to, and the SLA clock each unit works against."""
