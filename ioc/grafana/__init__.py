"""Grafana walls as code: panel and dashboard builders (`dashboards`), the six IOC walls
(`walls`), Grafana's SQL macros expanded for tests and tooling (`macros`), and writing or
uploading the result (`publish`)."""
