"""Secrets from files: `IOC_<NAME>_FILE` (Docker and Kubernetes secrets) instead of the value."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.config import Settings, required_secret
from ioc.devtools.stack import ensure_pii_key


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's stack exports IOC_* variables; these tests set their own."""
    for key in list(os.environ):
        if key.startswith("IOC_"):
            monkeypatch.delenv(key)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("postgresql://ioc:s3cret-from-file@db:5432/ioc\n")
    return path


def test_a_nested_setting_reads_its_file_without_the_trailing_newline(
    secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_DATABASE__DSN_FILE", str(secret))
    assert Settings().database.dsn == "postgresql://ioc:s3cret-from-file@db:5432/ioc"


def test_a_mapping_setting_reads_json_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"c-thainguyen": "key-1", "zalo": "key-2"}')
    monkeypatch.setenv("IOC_HOTLINE__API_KEYS_FILE", str(keys))
    keys_read = Settings().hotline.api_keys
    assert {name: key.get_secret_value() for name, key in keys_read.items()} == {
        "c-thainguyen": "key-1",
        "zalo": "key-2",
    }
    assert "key-1" not in repr(keys_read), "a key is never printed"


def test_a_top_level_setting_reads_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    level = tmp_path / "level"
    level.write_text("warning")
    monkeypatch.setenv("IOC_LOG_LEVEL_FILE", str(level))
    assert Settings().log_level == "warning"


def test_the_file_goes_over_the_settings_file_and_under_keyword_arguments(
    secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "ioc.toml"
    toml.write_text('[database]\ndsn = "postgresql://from-toml/ioc"\n')
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(toml))
    monkeypatch.setenv("IOC_DATABASE__DSN_FILE", str(secret))
    assert Settings().database.dsn.endswith("s3cret-from-file@db:5432/ioc")
    assert Settings(database={"dsn": "postgresql://kw/ioc"}).database.dsn == "postgresql://kw/ioc"


def test_the_value_and_its_file_together_are_an_error(
    secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_DATABASE__DSN", "postgresql://env/ioc")
    monkeypatch.setenv("IOC_DATABASE__DSN_FILE", str(secret))
    with pytest.raises(ValueError, match="IOC_DATABASE__DSN or IOC_DATABASE__DSN_FILE, not both"):
        Settings()


def test_an_unreadable_file_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_DATABASE__DSN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="IOC_DATABASE__DSN_FILE: cannot read"):
        Settings()


def test_a_file_variable_for_an_unknown_setting_is_an_error(
    secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_DATABASE__DNS_FILE", str(secret))
    with pytest.raises(ValueError, match="unknown settings in the environment: IOC_DATABASE__DNS"):
        Settings()


def test_secrets_are_never_printed_and_have_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().streams.pii_key is None, "a known default key would reverse the hashes"
    monkeypatch.setenv("IOC_STREAMS__PII_KEY", "pii-secret-1")
    monkeypatch.setenv("IOC_MQTT__PASSWORD", "mqtt-secret-2")
    monkeypatch.setenv("IOC_GRAFANA__TOKEN", "grafana-secret-3")
    monkeypatch.setenv("IOC_ALERTS__STAFF_KEYS", '{"lan": "staff-secret-4"}')
    settings = Settings()
    printed = repr(settings) + str(settings.model_dump())
    for value in ("pii-secret-1", "mqtt-secret-2", "grafana-secret-3", "staff-secret-4"):
        assert value not in printed
    assert required_secret(settings.streams.pii_key, "streams.pii_key") == "pii-secret-1"


def test_the_streams_worker_refuses_to_start_without_its_key() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "streams", "run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    said = " ".join(done.stdout.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "streams.pii_key is not set: set IOC_STREAMS__PII_KEY" in said
    assert "Traceback" not in done.stderr


def test_the_native_stack_makes_its_key_once_for_its_owner_only(tmp_path: Path) -> None:
    first = ensure_pii_key(tmp_path)
    key = first.read_text()
    assert len(key) == 64 and stat.S_IMODE(first.stat().st_mode) == 0o600
    assert ensure_pii_key(tmp_path).read_text() == key, "kept: the hashes stay comparable"
