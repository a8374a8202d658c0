"""A local Eclipse Mosquitto broker (the Debian `mosquitto` package) at `mqtt.host:port`.

The local broker lets anyone on loopback connect (`allow_anonymous true`) and keeps persistent
sessions and queued QoS 1 messages on disk, so the bridge's unacknowledged messages survive a
broker restart. Started by root (CI, containers), Mosquitto drops to its `mosquitto` account, which
then owns only the broker's data folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
from pathlib import Path

from ioc.config import MqttSettings, StackSettings
from ioc.devtools.stack.process import Health, ManagedProcess, StackError, port_open

SERVICE_USER = "mosquitto"  # created by the Debian package
SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


def find_mosquitto() -> Path:
    """The broker binary: PATH first, then the sbin folders a non-root PATH often lacks."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
    found = shutil.which("mosquitto", path=path)
    if found is None:
        raise StackError(
            "mosquitto not found: install it with `apt-get install mosquitto` "
            "(`make` does, when run as root), or set IOC_STACK__MOSQUITTO=false "
            "and point IOC_MQTT__HOST/PORT at a running broker"
        )
    return Path(found)


def _run_as() -> pwd.struct_passwd | None:
    """None when not root (Mosquitto keeps our user); else the account it drops to, if any."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None


def _allow_traversal(path: Path) -> None:
    """Let the service account reach `path`: add o+x to each parent folder (nothing else)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def connack(host: str, port: int, timeout: float = 3.0) -> int | None:
    """An MQTT 3.1.1 CONNECT/CONNACK round trip: the CONNACK return code, None if no answer."""
    client_id = b"ioc-stack-health"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol level 4, clean session, keepalive 10
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(bytes([0x10, len(body)]) + body)
            answer = b""
            while len(answer) < 4:
                chunk = conn.recv(4 - len(answer))
                if not chunk:
                    return None
                answer += chunk
            conn.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return None
    return answer[3] if answer[:2] == b"\x20\x02" else None


class MosquittoService:
    """Local Mosquitto at `mqtt.host:port`, its data and log in `<stack dir>/mosquitto`."""

    name = "mosquitto"

    def __init__(self, stack: StackSettings, mqtt: MqttSettings) -> None:
        self.stack = stack
        self.mqtt = mqtt
        self.host = mqtt.host
        self.port = mqtt.port
        self.home = stack.dir / "mosquitto"
        self.data = self.home / "data"
        self.conf = self.home / "mosquitto.conf"
        self.process = ManagedProcess(
            "mosquitto",
            self.home / "mosquitto.pid",
            self.home / "mosquitto.log",
            marker=str(self.conf.resolve()),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _write_config(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by `ioc stack up` on every start; edit the ioc settings instead.",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data.resolve()}/",
            "autosave_interval 30",
            "max_queued_messages 100000",
            "log_dest stderr",  # unbuffered, into <stack dir>/mosquitto/mosquitto.log
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            account = _run_as()
            if account is None:  # a build without the Debian account: nothing to drop to
                lines.append("user root")
            else:
                lines.append(f"user {account.pw_name}")
                _allow_traversal(self.data)
                for entry in [self.data, *self.data.iterdir()]:
                    os.chown(entry, account.pw_uid, account.pw_gid)
        self.conf.write_text("\n".join(lines) + "\n")

    def up(self) -> str:
        if self.process.running():
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(f"{self.address} is taken by another process; set IOC_MQTT__PORT")
        binary = find_mosquitto()
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process.start([str(binary), "-c", str(self.conf.resolve())])
        self.process.wait_ready(lambda: port_open(self.host, self.port), self.stack.start_timeout_s)
        return "started"

    def down(self) -> bool:
        return self.process.stop()

    def health(self) -> Health:
        running = self.process.running()
        code = connack(self.host, self.port)
        if code is None:
            detail = "no MQTT answer" if running else "stopped"
            return Health(self.name, self.address, running, False, detail)
        detail = "ok" if code == 0 else f"connected, CONNACK return code {code}"
        return Health(self.name, self.address, running, True, detail)
