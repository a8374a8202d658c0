"""The incident domain: candidates from the sources fused into the incidents staff act on, and
their lifecycle (versions, staff changes, timers)."""

API_PATH = "/api/v1/incidents"  # where the API serves them: the routers and the alerts' links
