"""`run_async`: SIGTERM stops a coroutine between steps, its clean-up runs, the exit is 143."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from ioc.runtime import run_async


def test_sigterm_cancels_the_coroutine_lets_its_clean_up_run_and_exits_143() -> None:
    cleaned: list[str] = []

    async def publishing() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits, as a client's stop() does
            cleaned.append("stopped")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_:
        run_async(publishing())
    assert exit_.value.code == 128 + signal.SIGTERM
    assert cleaned == ["stopped"]
    assert signal.getsignal(signal.SIGTERM) == before, "the caller's SIGTERM handler is restored"


def test_without_a_signal_it_is_asyncio_run() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def cancelled_by_itself() -> None:
        raise asyncio.CancelledError

    assert run_async(answer()) == 42
    with pytest.raises(asyncio.CancelledError):  # only SIGTERM's cancellation becomes an exit
        run_async(cancelled_by_itself())
