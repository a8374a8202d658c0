"""The local Alertmanager as `ioc stack up` runs it: the shipped routing tree as is, start,
readiness, stop, and failures that say why."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from ioc.alerts.alertmanager import AlertmanagerClient
from ioc.config import Settings, StackSettings
from ioc.devtools.stack import alertmanager as am_module
from ioc.devtools.stack import stack_services, stack_status
from ioc.devtools.stack.alertmanager import AlertmanagerService, find_alertmanager
from ioc.devtools.stack.process import StackError, free_port


def _missing() -> str | None:
    try:
        find_alertmanager()
    except StackError as error:
        return str(error)
    return None


pytestmark = pytest.mark.integration
needs_binary = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def stack_settings(home: Path, **overrides: object) -> StackSettings:
    """A stack of nothing but Alertmanager, on a free port in `home`; the shipped tree by
    default (`deploy/alertmanager/alertmanager.yml`, found from any working folder)."""
    values: dict[str, object] = {
        "dir": home,
        "kafka": False,
        "postgres": False,
        "alertmanager": True,
        "alertmanager_port": free_port(),
        "start_timeout_s": 30,
        **overrides,
    }
    return StackSettings.model_validate(values)


@needs_binary
def test_shipped_config_starts_ready_and_stops(tmp_path: Path) -> None:
    settings = Settings(stack=stack_settings(tmp_path))
    (service,) = stack_services(settings)
    assert isinstance(service, AlertmanagerService)
    try:
        assert service.up() == "started"
        assert service.up() == "already running"
        (health,) = stack_status(settings)
        assert (health.service, health.running, health.healthy) == ("alertmanager", True, True)
        assert health.address == f"127.0.0.1:{settings.stack.alertmanager_port}"
        assert httpx.get(f"{service.url}/-/ready", timeout=5).status_code == 200

        async def probe() -> bool:
            async with AlertmanagerClient(service.url) as client:
                return await client.ready()

        assert asyncio.run(probe())
        status = httpx.get(f"{service.url}/api/v2/status", timeout=5).json()
        assert "hotline-duty" in status["config"]["original"]  # the shipped tree, unchanged
        assert status["cluster"]["status"] == "disabled"  # no gossip port
        assert (tmp_path / "alertmanager" / "data").is_dir()
        service.reload()
    finally:
        assert service.down()
    assert not service.process.running()
    (health,) = stack_status(settings)
    assert (health.running, health.healthy, health.detail) == (False, False, "stopped")
    assert not service.down()


def test_amtool_accepts_the_shipped_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (it comes with prometheus-alertmanager)")
    shipped = am_module.resolve_config(StackSettings().alertmanager_config)
    checked = subprocess.run(
        [amtool, "check-config", str(shipped)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_binary
def test_a_bad_config_fails_start_up_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    service = AlertmanagerService(stack_settings(tmp_path, alertmanager_config=bad))
    with pytest.raises(StackError, match="exited during start-up") as failed:
        service.up()
    assert "nobody" in str(failed.value)  # Alertmanager's own complaint, from its log
    service.down()


def test_a_missing_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(am_module, "SEARCH_PATH", ())
    service = AlertmanagerService(stack_settings(tmp_path))
    with pytest.raises(StackError, match="apt-get install prometheus-alertmanager"):
        service.up()
    assert not service.process.running()


def test_a_missing_config_and_a_taken_port_are_refused(tmp_path: Path) -> None:
    missing = AlertmanagerService(stack_settings(tmp_path, alertmanager_config=tmp_path / "no"))
    if _missing() is None:
        with pytest.raises(StackError, match="IOC_STACK__ALERTMANAGER_CONFIG"):
            missing.up()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        taken = AlertmanagerService(stack_settings(tmp_path, alertmanager_port=port))
        with pytest.raises(StackError, match="IOC_STACK__ALERTMANAGER_PORT"):
            taken.up()
