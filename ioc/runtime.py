"""Run async work from a command: a service until SIGTERM or SIGINT, or one coroutine to its end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger(__name__)


class Service(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


def run_until_signal(build: Callable[[], Service]) -> None:
    """`build` runs inside the event loop: aiokafka clients must be created there."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await build().run(stop)

    asyncio.run(main())


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, but SIGTERM cancels `main` between two steps, so its `finally` blocks run
    and its clients stop, and then exits 128 + SIGTERM. A SystemExit raised by a Python signal
    handler lands at any bytecode, inside the event loop's or aiokafka's own code too, and once
    left asyncio.run waiting forever on a task it could not finish (a demo stopped by SIGTERM
    while publishing)."""
    terminated = False

    async def guarded() -> T | None:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, cancel)
        try:
            return await main
        except asyncio.CancelledError:
            if terminated:
                return None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = asyncio.run(guarded())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # remove_signal_handler left the default
    if terminated:
        raise SystemExit(128 + signal.SIGTERM)
    return cast(T, result)


async def periodically(
    what: str, step: Callable[[], Awaitable[object]], period_s: float, stop: asyncio.Event
) -> None:
    """`step` every `period_s` until `stop`. A failed step (the database restarting) is logged
    and the next one tries again: a worker's side loop must not die of one bad moment."""
    while not stop.is_set():
        try:
            outcome = await step()
            if outcome:
                log.info("%s: %s", what, outcome)
        except Exception:
            log.exception("%s failed; trying again in %.0f s", what, period_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)
