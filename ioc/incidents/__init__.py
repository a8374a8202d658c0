"""The incident domain: candidates from the sources fused into the incidents staff act on, and
their lifecycle (versions, staff changes, timers)."""

API_PATH = "/api/v1/incidents"  # where the API serves them: the routers and the alerts' links


def evidence_url(base_url: str, incident_id: str, kind: str, member: str | None = None) -> str:
    """Where staff open an incident's `snapshot` or `clip` on the API at `base_url`; `member`
    picks one camera candidate of several."""
    url = f"{base_url.rstrip('/')}{API_PATH}/{incident_id}/{kind}"
    return url if member is None else f"{url}?member={member}"
