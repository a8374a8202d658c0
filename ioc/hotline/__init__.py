"""The 1022 hotline: categories, triage, SLA, duplicates and reporter privacy."""
