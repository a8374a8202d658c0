"""Run an async service until SIGTERM or SIGINT, then let it finish its current step."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol


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
