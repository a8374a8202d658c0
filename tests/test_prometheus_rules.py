"""The pipeline's alert rules (deploy/prometheus/) with Prometheus's own tool: valid, and each
alert fires when its unit test says, and not before (Debian `prometheus` gives promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found (Debian: prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", "ioc-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_each_alert_fires_as_its_unit_test_says() -> None:
    tested = promtool("test", "rules", "ioc-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rules_read_is_one_ioc_exports() -> None:
    from prometheus_client import REGISTRY

    import ioc.metrics  # noqa: F401  (registers the metrics)

    families = {family.name for family in REGISTRY.collect()}  # counters without "_total"
    rules = (RULES / "ioc-rules.yml").read_text(encoding="utf-8")
    for name in (
        "ioc_consumer_lag",
        "ioc_dead_letters_total",
        "ioc_last_batch_timestamp_seconds",
        "ioc_alert_deliveries_total",
    ):
        assert name in rules and name.removesuffix("_total") in families, name
