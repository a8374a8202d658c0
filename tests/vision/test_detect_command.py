"""`ioc vision detect` as a user runs it: real model, real frames, one JSON line per image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def detect(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")} | {"YOLO_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ioc", "vision", "detect", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_flags_every_sample_fire_and_no_negative_and_names_an_unreadable_file(
    samples_dir: Path, tmp_path: Path
) -> None:
    fire, negative = samples_dir / "frames" / "fire", samples_dir / "frames" / "negative"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    result = detect(str(fire), str(negative), str(broken))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2, result.stderr[-2000:]
    by_path = {Path(line["path"]).name: line for line in lines}
    assert len(lines) == len(list(fire.glob("*.jpg"))) + len(list(negative.glob("*.jpg"))) + 1
    for path in fire.glob("*.jpg"):
        flags = by_path[path.name]["flags"]
        assert flags["fire"] or flags["smoke"], f"{path.name} not flagged"
    for path in negative.glob("*.jpg"):
        assert by_path[path.name]["flags"] == {"fire": False, "smoke": False}
    assert by_path["broken.jpg"] == {"path": str(broken), "error": "not a decodable image"}
    detection = next(d for line in lines for d in line.get("detections", []))
    assert set(detection) == {"class", "confidence", "box"}
    assert set(detection["box"]) == {"x1", "y1", "x2", "y2"}


def test_a_missing_model_is_a_clear_error(samples_dir: Path) -> None:
    result = detect(str(samples_dir / "frames" / "fire"), "--model", "/nowhere/model.pt")
    assert result.returncode == 1
    assert "model not found: /nowhere/model.pt" in result.stdout
