"""An outage is waited out however long it lasts; other failures end after a few attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest

from ioc import retry


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    return waits


def failing(errors: list[Exception]) -> tuple[Callable[[], object], list[int]]:
    """Work that raises each of `errors` in turn, then succeeds; and how often it ran."""
    calls = [0]

    async def work() -> None:
        calls[0] += 1
        if errors:
            raise errors.pop(0)

    return work, calls


def test_an_outage_longer_than_the_attempts_is_waited_out(no_waiting: list[float]) -> None:
    outage = [psycopg.OperationalError("connection refused") for _ in range(3 * retry.ATTEMPTS)]
    work, calls = failing(outage)
    assert asyncio.run(retry.retried(work, "test")) is None
    assert calls[0] == 3 * retry.ATTEMPTS + 1
    assert max(no_waiting) == retry.OUTAGE_WAIT_MAX_S, "the backoff is capped"


def test_an_error_of_the_message_gives_up_after_the_attempts() -> None:
    work, calls = failing([ValueError(f"bad {n}") for n in range(10)])
    failure = asyncio.run(retry.retried(work, "test"))
    assert isinstance(failure, ValueError)
    assert calls[0] == retry.ATTEMPTS


def test_a_statement_timeout_is_the_message_not_an_outage() -> None:
    work, calls = failing([psycopg.errors.QueryCanceled("canceling statement") for _ in range(9)])
    assert isinstance(asyncio.run(retry.retried(work, "test")), psycopg.errors.QueryCanceled)
    assert calls[0] == retry.ATTEMPTS


def test_a_permanent_error_is_raised_at_once() -> None:
    work, calls = failing([KeyError("rejected")])
    with pytest.raises(KeyError):
        asyncio.run(retry.retried(work, "test", permanent=(KeyError,)))
    assert calls[0] == 1


def test_outage_errors_do_not_count_towards_the_attempts() -> None:
    errors: list[Exception] = []
    for _ in range(retry.ATTEMPTS - 1):
        errors += [ValueError("flaky"), ConnectionRefusedError("down"), ConnectionResetError()]
    work, calls = failing(errors)
    assert asyncio.run(retry.retried(work, "test")) is None
    assert calls[0] == 3 * (retry.ATTEMPTS - 1) + 1
