"""`ioc vision detect` as a user runs it: real model, real frames, one JSON line per image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

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


def test_flags_every_sample_fire_and_no_other_scene_and_names_an_unreadable_file(
    samples_dir: Path, tmp_path: Path
) -> None:
    frames = samples_dir / "frames"
    fire, others = frames / "fire", [frames / "negative", frames / "traffic"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    source = sorted(fire.glob("*.jpg"))[0]
    png = tmp_path / "fire.png"  # another format, same pixels: same answer
    cv2.imwrite(str(png), cv2.imread(str(source)))
    result = detect(str(fire), *map(str, others), str(broken), str(png))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2, result.stderr[-2000:]
    expected = [*sorted(fire.glob("*.jpg")), *(p for o in others for p in sorted(o.glob("*.jpg")))]
    assert [line["path"] for line in lines] == [*map(str, expected), str(broken), str(png)]
    by_path = {Path(line["path"]).name: line for line in lines}
    for path in fire.glob("*.jpg"):
        flags = by_path[path.name]["flags"]
        assert flags["fire"] or flags["smoke"], f"{path.name} not flagged"
    for path in (p for other in others for p in other.glob("*.jpg")):
        assert by_path[path.name]["flags"] == {"fire": False, "smoke": False}, path.name
    assert by_path["broken.jpg"] == {"path": str(broken), "error": "not a decodable image"}
    assert by_path["fire.png"]["detections"] == by_path[source.name]["detections"]
    detection = next(d for line in lines for d in line.get("detections", []))
    assert set(detection) == {"class", "confidence", "box"}
    assert set(detection["box"]) == {"x1", "y1", "x2", "y2"}


def test_a_missing_model_is_a_clear_error(samples_dir: Path) -> None:
    result = detect(str(samples_dir / "frames" / "fire"), "--model", "/nowhere/model.pt")
    assert result.returncode == 1
    assert "model not found: /nowhere/model.pt" in result.stdout
