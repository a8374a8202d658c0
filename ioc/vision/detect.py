"""`ioc vision detect`: images in, one JSON line each out, with the worker's own code path.

Decoding and inference (`Detector.detect_jpegs`, on the file's bytes as the worker gets a
frame's) and the frame-level flags (the classes and minimum score that make the streams' camera
rule raise a fire incident) are the same as in the running pipeline, so what this prints for a
frame is what the pipeline would decide on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioc.models import Detection
from ioc.vision.detector import Detector
from ioc.vision.sources import IMAGE_SUFFIXES


def image_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders expanded to their images, sorted (not recursive)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


@dataclass(frozen=True)
class FrameFlags:
    """What makes a frame an incident: these classes at or above this score."""

    classes: tuple[str, ...]
    min_score: float

    def of(self, detections: list[Detection]) -> dict[str, bool]:
        return {
            name: any(d.class_name == name and d.score >= self.min_score for d in detections)
            for name in self.classes
        }


def detect_lines(
    detector: Detector, paths: Iterable[Path], flags: FrameFlags, batch_size: int
) -> Iterator[dict[str, Any]]:
    """One result per image, in order; unreadable files get an `error` instead."""
    batch: list[tuple[Path, bytes]] = []

    def flush() -> Iterator[dict[str, Any]]:
        results = detector.detect_jpegs([data for _, data in batch])
        for (path, _), result in zip(batch, results, strict=True):
            if result is None:
                yield {"path": str(path), "error": "not a decodable image"}
                continue
            yield {
                "path": str(path),
                "detections": [
                    {
                        "class": d.class_name,
                        "confidence": d.score,
                        "box": {k: round(v, 1) for k, v in d.box.model_dump().items()},
                    }
                    for d in result.detections
                ],
                "flags": flags.of(result.detections),
            }
        batch.clear()

    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as error:
            yield from flush()
            yield {"path": str(path), "error": f"cannot read: {error.strerror or error}"}
            continue
        batch.append((path, data))
        if len(batch) >= batch_size:
            yield from flush()
    yield from flush()


def to_json(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False)


__all__ = ["FrameFlags", "detect_lines", "image_paths", "to_json"]
