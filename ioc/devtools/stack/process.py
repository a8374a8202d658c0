"""Background processes owned by the local stack: pid files, readiness, log tails."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A local service could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class Health:
    service: str
    address: str
    running: bool
    healthy: bool
    detail: str


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ManagedProcess:
    """A daemon started in its own session, tracked by a pid file so `down` stops only it."""

    def __init__(self, name: str, pid_file: Path, log_file: Path, marker: str) -> None:
        self.name = name
        self.pid_file = pid_file
        self.log_file = log_file
        self.marker = marker  # a string its command line must contain, against pid reuse
        self._child: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        return pid if self.marker in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, **popen: object) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._child = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                **popen,  # type: ignore[arg-type]
            )
        self.pid_file.write_text(str(self._child.pid))
        return self._child.pid

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `ready` until true; fail fast with the log tail if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if self._child is not None and self._child.poll() is not None:
                raise StackError(
                    f"{self.name} exited during start-up. Log tail:\n{log_tail(self.log_file)}"
                )
            time.sleep(0.25)
        raise StackError(
            f"{self.name} not ready after {timeout_s:.0f}s. Log tail:\n{log_tail(self.log_file)}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout_s`. Returns whether anything was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


_LOWEST_LISTEN_PORT = 10000
_handed_out: set[int] = set()


def free_port(consecutive: int = 1) -> int:
    """A free loopback port with `consecutive - 1` free ports after it (Kafka's controller).

    Ports come from below the kernel's ephemeral range: a port picked there could be taken, before
    our service binds it, by any outgoing connection (brokers of a starting cluster dial each
    other). No port is handed out twice by one process.
    """
    ephemeral_low = _ephemeral_range_start()
    for _ in range(2000):
        port = random.randrange(_LOWEST_LISTEN_PORT, ephemeral_low - consecutive)
        candidates = range(port, port + consecutive)
        if _handed_out.isdisjoint(candidates) and all(_is_free(p) for p in candidates):
            _handed_out.update(candidates)
            return port
    raise StackError(
        f"no {consecutive} free loopback port(s) found in {_LOWEST_LISTEN_PORT}-{ephemeral_low}"
    )


def _ephemeral_range_start() -> int:
    """Where the kernel starts picking outgoing ports (Linux); 32768 elsewhere."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return max(low, _LOWEST_LISTEN_PORT + 1000)


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
