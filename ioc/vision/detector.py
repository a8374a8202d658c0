"""A detection model behind the batched fast path: encoded frames in, `Detection` lists and frame
statistics out, one `FrameResult` per frame."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ioc.models import BoundingBox, Detection, FrameStats

if TYPE_CHECKING:
    from ioc.vision.pipeline import FrameOutput

log = logging.getLogger(__name__)
os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach out for fonts or AMP-check models


@dataclass(frozen=True)
class FrameResult:
    """What one frame gave: its size, the detections (boxes in its pixels) and health stats."""

    width: int
    height: int
    detections: list[Detection]
    stats: FrameStats


class Detector:
    def __init__(
        self,
        model_path: str,
        *,
        device: str,
        image_size: int,
        min_score: float,
        class_min_scores: dict[str, float] | None = None,
        half: bool = True,
    ) -> None:
        """`class_min_scores` replace `min_score` for the classes they name; `half` is fp16 on
        CUDA (ignored on the CPU)."""
        from ultralytics import YOLO

        from ioc.vision.pipeline import Pipeline, resolve_device

        if Path(model_path).suffix and not Path(model_path).exists():
            raise FileNotFoundError(f"model not found: {model_path} (set IOC_VISION__MODEL_PATH)")
        model = YOLO(model_path)
        self.name = Path(model_path).name
        if model.task != "detect":
            raise ValueError(f"{self.name} is a {model.task} model: the worker needs a detector")
        self.class_names: dict[int, str] = dict(model.names)
        scores = class_min_scores or {}
        unknown = sorted(set(scores) - set(self.class_names.values()))
        if unknown:  # a setting written for another model: say so, detect with the rest
            log.warning("class_min_scores: %s not among %s's classes", unknown, self.name)
        self.pipeline = Pipeline(
            model.model,
            device=resolve_device(device),
            half=half,
            image_size=image_size,
            thresholds=[
                scores.get(self.class_names[index], min_score)
                for index in range(len(self.class_names))
            ],
        )
        self.device = str(self.pipeline.device)

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> list[FrameResult | None]:
        """Encoded frames (JPEG; PNG, WebP and BMP too) in, one result per frame in order; None
        for bytes that do not decode."""
        return [
            None if output is None else self._result(output, data)
            for output, data in zip(self.pipeline(jpegs), jpegs, strict=True)
        ]

    def _result(self, output: FrameOutput, data: bytes) -> FrameResult:
        detections = [
            Detection(
                class_name=self.class_names[int(cls)],
                score=round(score, 4),
                box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
            )
            for x1, y1, x2, y2, score, cls in output.boxes.tolist()
        ]
        return FrameResult(
            width=output.width,
            height=output.height,
            detections=detections,
            stats=frame_stats(output, data),
        )


def frame_stats(output: FrameOutput, data: bytes) -> FrameStats:
    """Luma mean and spread on the 64x64 grey thumbnail, a difference hash of the 9x8 one, and a
    hash of the bytes as sent."""
    bits = (output.hash_thumb[:, 1:] > output.hash_thumb[:, :-1]).flatten().tolist()
    signature = sum(1 << (63 - position) for position, bit in enumerate(bits) if bit)
    return FrameStats(
        luma_mean=round(float(output.luma.mean()), 2),
        luma_std=round(float(output.luma.std(correction=0)), 2),
        signature=f"{signature:016x}",
        digest=hashlib.blake2b(data, digest_size=8).hexdigest(),
    )
