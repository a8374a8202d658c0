from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("IOC_"):
            monkeypatch.delenv(key)


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("IOC_VISION__BATCH_SIZE", "16")
    settings = Settings()
    assert settings.kafka.first_host_port == ("broker-a", 9092)
    assert settings.vision.batch_size == 16


def test_a_local_cluster_is_seen_alike_from_its_node_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IOC_STACK__KAFKA_BROKERS", "3")
    kafka = Settings().kafka
    assert kafka.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert (kafka.replication_factor, kafka.effective_min_insync_replicas) == (3, 2)
    listed = Settings(kafka={"bootstrap_servers": "h:1,h:5,h:9", "replication_factor": 2}).kafka
    assert (listed.addresses, listed.replication_factor) == ([("h", 1), ("h", 5), ("h", 9)], 2)
    with pytest.raises(ValidationError, match="lists 2 addresses"):
        Settings(kafka={"bootstrap_servers": "h:1,h:5"})
    monkeypatch.setenv("IOC_STACK__KAFKA", "false")  # an external cluster: taken as it is
    assert Settings().kafka.bootstrap_servers == "127.0.0.1:19092"


def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_VISION__BATCH_SIZ", "16")
    with pytest.raises(ValidationError, match="IOC_VISION__BATCH_SIZ"):
        Settings()


def test_unknown_top_level_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFAK__PARTITIONS", "3")
    with pytest.raises(ValidationError, match="IOC_KAFAK__PARTITIONS"):
        Settings()


def test_settings_file_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ioc.toml"
    path.write_text(
        '[alerts]\nwebhook_url = "http://hotline.local/hook"\n[kafka]\npartitions = 6\n'
    )
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(path))
    monkeypatch.setenv("IOC_KAFKA__PARTITIONS", "9")
    settings = Settings()
    assert settings.alerts.webhook_url == "http://hotline.local/hook"
    assert settings.kafka.partitions == 9, "environment overrides the file"


def test_unknown_key_in_settings_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ioc.toml"
    path.write_text("[alerts]\nweb_hook = 'x'\n")
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(path))
    with pytest.raises(ValidationError, match="web_hook"):
        Settings()


def test_missing_settings_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        Settings()


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="postgresql"):
        Settings(database={"dsn": "mysql://x"})
    with pytest.raises(ValidationError):
        Settings(vision={"min_score": 1.5})


def test_sasl_needs_username_and_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IOC_KAFKA__SASL_USERNAME", "ioc")
    with pytest.raises(ValidationError, match="IOC_KAFKA__SASL_PASSWORD"):
        Settings()
    monkeypatch.setenv("IOC_KAFKA__SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"
    monkeypatch.delenv("IOC_KAFKA__SASL_USERNAME")
    with pytest.raises(ValidationError, match="IOC_KAFKA__SASL_USERNAME"):
        Settings()
    with pytest.raises(ValidationError, match="ssl_certfile"):
        Settings(kafka={"ssl_keyfile": "client.key"})


def test_kafka_password_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IOC_KAFKA__SASL_USERNAME", "ioc")
    monkeypatch.setenv("IOC_KAFKA__SASL_PASSWORD", "hunter2")
    settings = Settings()
    for shown in (repr(settings), str(settings), repr(settings.kafka), settings.model_dump_json()):
        assert "hunter2" not in shown
    # Nor in a validation error of the same section (pydantic echoes the input it rejects).
    monkeypatch.delenv("IOC_KAFKA__SASL_USERNAME")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "hunter2" not in str(error.value)
    monkeypatch.setenv("IOC_KAFKA__SASL_USERNAME", "ioc")
    monkeypatch.setenv("IOC_KAFKA__SSL_KEYFILE", "client.key")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "hunter2" not in str(error.value)
