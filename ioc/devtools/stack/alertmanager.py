"""A local Prometheus Alertmanager (the Debian `prometheus-alertmanager` package) on loopback.

It runs the shipped routing tree (`stack.alertmanager_config`) unchanged, so what hotline staff
would receive in production can be tried on a laptop. Gossip is off (`--cluster.listen-address=`
empty): one node, nothing listening beyond its HTTP port, and ready as soon as it has loaded the
configuration. Silences and the notification log live in `<stack dir>/alertmanager`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

from ioc.config import StackSettings
from ioc.devtools.stack.process import Health, ManagedProcess, StackError, port_open

BINARY_NAMES = ("alertmanager", "prometheus-alertmanager")  # upstream, Debian
SEARCH_PATH = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
REPO_ROOT = Path(__file__).resolve().parents[3]


def find_alertmanager() -> Path:
    """The Alertmanager binary: PATH first, then the folders packages install it in."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
    for name in BINARY_NAMES:
        found = shutil.which(name, path=path)
        if found is not None:
            return Path(found)
    raise StackError(
        "alertmanager not found: install it with `apt-get install prometheus-alertmanager` "
        "(`make` does, when run as root), or set IOC_STACK__ALERTMANAGER=false and point "
        "IOC_ALERTS__ALERTMANAGER_URL at a running Alertmanager"
    )


def resolve_config(config: Path) -> Path:
    """The routing tree file: as given, else relative to the repository (for `ioc` run from
    another folder), so the default `deploy/alertmanager/alertmanager.yml` is found either way."""
    candidates = [config] if config.is_absolute() else [config, REPO_ROOT / config]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise StackError(
        f"Alertmanager configuration {config} not found; set IOC_STACK__ALERTMANAGER_CONFIG"
    )


def ready(url: str, timeout: float = 2.0) -> bool:
    """Alertmanager's own readiness probe: `/-/ready` answers 200 once the config is loaded."""
    try:
        # trust_env off: a loopback probe must not go through an HTTP(S)_PROXY
        return httpx.get(f"{url}/-/ready", timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


class AlertmanagerService:
    """Local Alertmanager at `127.0.0.1:stack.alertmanager_port`, its data and log in
    `<stack dir>/alertmanager`."""

    name = "alertmanager"
    host = "127.0.0.1"

    def __init__(self, stack: StackSettings) -> None:
        self.stack = stack
        self.port = stack.alertmanager_port
        self.home = stack.dir / "alertmanager"
        self.data = self.home / "data"
        self.process = ManagedProcess(
            "alertmanager",
            self.home / "alertmanager.pid",
            self.home / "alertmanager.log",
            # the storage path is unique per stack folder: it tells our daemon from any other
            marker=f"--storage.path={self.data.resolve()}",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL for `AlertmanagerClient` and `IOC_ALERTS__ALERTMANAGER_URL`."""
        return f"http://{self.address}"

    def argv(self, binary: Path, config: Path) -> list[str]:
        return [
            str(binary),
            f"--config.file={config}",
            f"--storage.path={self.data.resolve()}",
            f"--web.listen-address={self.address}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",  # no gossip: a single local node
            "--log.level=info",
        ]

    def up(self) -> str:
        if self.process.running():
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.address} is taken by another process; set IOC_STACK__ALERTMANAGER_PORT"
            )
        binary = find_alertmanager()
        config = resolve_config(self.stack.alertmanager_config)
        self.data.mkdir(parents=True, exist_ok=True)
        self.process.start(self.argv(binary, config))
        self.process.wait_ready(lambda: ready(self.url), self.stack.start_timeout_s)
        return "started"

    def down(self) -> bool:
        return self.process.stop()

    def reload(self) -> None:
        """Re-read the configuration file (`POST /-/reload`); a bad file keeps the old tree."""
        try:
            response = httpx.post(f"{self.url}/-/reload", timeout=10.0, trust_env=False)
        except httpx.HTTPError as error:
            raise StackError(f"alertmanager at {self.address} did not answer: {error}") from error
        if response.status_code != 200:
            raise StackError(f"alertmanager refused the configuration: {response.text.strip()}")

    def health(self) -> Health:
        running = self.process.running()
        if ready(self.url):
            return Health(self.name, self.address, running, True, "ok")
        if port_open(self.host, self.port):
            return Health(self.name, self.address, running, False, "listening, not ready")
        detail = "no HTTP answer" if running else "stopped"
        return Health(self.name, self.address, running, False, detail)
