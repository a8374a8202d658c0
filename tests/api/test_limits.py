"""Rate limits at the HTTP edge: per integration key, else per client address."""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ioc.api.app import create_app
from ioc.api.limits import MAX_BUCKETS, RateLimiter
from ioc.config import Settings

SERVICES = "/open311/v2/services.json"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("portal") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("portal") == pytest.approx(1.0)
    assert limiter.take("app") == 0.0  # another integration has its own bucket
    clock.now += 0.5
    assert limiter.take("portal") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("portal") == 0.0
    clock.now += 3600
    assert [limiter.take("portal") for _ in range(4)][-1] > 0  # refills up to the burst only


def test_idle_full_buckets_are_forgotten_when_there_are_too_many() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    for index in range(MAX_BUCKETS):
        limiter.take(f"address:{index}")
    clock.now += 10  # every bucket is full again
    limiter.take("address:new")
    assert list(limiter.buckets) == ["address:new"]


@pytest.fixture
def client(live_stack: Settings) -> Iterator[TestClient]:
    settings = live_stack.model_copy(
        update={
            "hotline": live_stack.hotline.model_copy(
                update={
                    "api_keys": {  # model_copy does not validate: secrets as settings hold them
                        "c-thainguyen": SecretStr("key-app"),
                        "portal-1022": SecretStr("key-portal"),
                    },
                    "rate_limit_per_minute": 6,
                    "rate_limit_burst": 2,
                }
            ),
            "alerts": live_stack.alerts.model_copy(
                update={"staff_keys": {"lan": SecretStr("key-lan")}}
            ),
        }
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_each_integration_has_its_own_limit_and_the_rest_share_their_address(
    client: TestClient,
) -> None:
    app_key = {"X-API-Key": "key-app"}
    assert [client.get(SERVICES, headers=app_key).status_code for _ in range(2)] == [200, 200]
    limited = client.get(SERVICES, headers=app_key)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) == 10
    assert limited.json() == [{"code": 429, "description": "rate limit exceeded: retry in 10 s"}]
    as_xml = client.get(SERVICES.replace(".json", ".xml"), headers=app_key)
    assert as_xml.status_code == 429 and as_xml.headers["content-type"].startswith("text/xml")
    error = ElementTree.fromstring(as_xml.content).find("error")
    assert error is not None and error.findtext("code") == "429"
    assert error.findtext("description") == "rate limit exceeded: retry in 10 s"
    # Another integration, a staff member (Bearer) and the address itself are untouched.
    assert client.get(SERVICES, headers={"X-API-Key": "key-portal"}).status_code == 200
    staff = {"Authorization": "Bearer key-lan"}
    assert client.get("/api/v1/incidents", headers=staff).status_code == 200
    # Without a known key, requests share the client address's bucket, bad keys included.
    statuses = [
        client.get(SERVICES, headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert client.get(SERVICES).status_code == 429
    assert client.get("/healthz").status_code == 200  # health checks are never limited
