"""Retrying a message's work through outages.

A database or broker that is down (restarting, failing over, a network cut) is waited for, however
long it takes: the consumer stops with it and Kafka keeps the backlog, so nothing is lost and
nothing is dead-lettered for a cause outside the message. Any other error is retried a few times,
then the caller dead-letters the message with the reason and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

log = logging.getLogger(__name__)

# Connection loss, a server going down or starting up, deadlocks: worth another try.
RETRYABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    KafkaConnectionError,
    KafkaTimeoutError,
    OSError,
)
ATTEMPTS = 5  # for errors that are not an outage
OUTAGE_WAIT_MAX_S = 30.0
OUTAGE_LOG_EVERY_S = 30.0


def is_outage(error: BaseException) -> bool:
    """A service being unreachable, not the message: a query cancelled by a statement timeout
    is the message's (it would time out again), so it is not one."""
    return isinstance(error, RETRYABLE) and not isinstance(error, psycopg.errors.QueryCanceled)


async def retried(
    work: Callable[[], Awaitable[None]],
    what: str,
    permanent: tuple[type[Exception], ...] = (),
) -> Exception | None:
    """Run `work` until it succeeds (None) or fails `ATTEMPTS` times for a reason other than an
    outage (that error). An outage is waited out with capped backoff. `permanent` errors are
    raised at once."""
    failures, delay = 0, 0.25
    outage_since: float | None = None
    last_logged = 0.0
    while True:
        try:
            await work()
        except permanent:
            raise
        except Exception as error:
            if is_outage(error):
                now = time.monotonic()
                outage_since = outage_since or now
                if now - last_logged >= OUTAGE_LOG_EVERY_S:
                    log.warning(
                        "%s waits for an outage to end (%.0f s so far): %s",
                        what,
                        now - outage_since,
                        str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
                    )
                    last_logged = now
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTAGE_WAIT_MAX_S)
                continue
            failures += 1
            if failures == ATTEMPTS:
                return error
            await asyncio.sleep(0.2 * 2**failures)
            continue
        if outage_since is not None:
            log.info("%s went on after %.0f s of outage", what, time.monotonic() - outage_since)
        return None
