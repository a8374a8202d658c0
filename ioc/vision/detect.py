"""`ioc vision detect`: images in, one JSON line each out, with the worker's own code path.

Decoding (`decode_jpeg`), inference (`Detector`) and the frame-level flags (the classes and
minimum score that make the streams' camera rule raise a fire incident) are the same as in the
running pipeline, so what this prints for a frame is what the pipeline would decide on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioc.models import Detection
from ioc.vision.detector import Detector, decode_jpeg

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


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
    batch: list[tuple[Path, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        results = detector.detect([image for _, image in batch])
        for (path, _), detections in zip(batch, results, strict=True):
            yield {
                "path": str(path),
                "detections": [
                    {
                        "class": d.class_name,
                        "confidence": d.score,
                        "box": {k: round(v, 1) for k, v in d.box.model_dump().items()},
                    }
                    for d in detections
                ],
                "flags": flags.of(detections),
            }
        batch.clear()

    for path in paths:
        try:
            image = decode_jpeg(path.read_bytes())
        except OSError as error:
            image, reason = None, f"cannot read: {error.strerror or error}"
        else:
            reason = "not a decodable image"
        if image is None:
            yield from flush()
            yield {"path": str(path), "error": reason}
            continue
        batch.append((path, image))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def to_json(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False)


__all__ = ["FrameFlags", "detect_lines", "image_paths", "to_json"]
