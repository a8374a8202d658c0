"""Secrets from files: `IOC_<NAME>_FILE` (Docker and Kubernetes secrets) instead of the value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ioc.config import Settings


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
    assert Settings().hotline.api_keys == {"c-thainguyen": "key-1", "zalo": "key-2"}


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
