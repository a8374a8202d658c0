"""A thin, batched wrapper over an Ultralytics model: images in, `Detection` lists out."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ioc.models import BoundingBox, Detection, FrameStats

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach out for fonts or AMP-check models


@dataclass(frozen=True)
class FrameResult:
    """What one frame gave: its size, the detections (boxes in its pixels) and health stats."""

    width: int
    height: int
    detections: list[Detection]
    stats: FrameStats


class Detector:
    def __init__(self, model_path: str, *, device: str, image_size: int, min_score: float) -> None:
        from ultralytics import YOLO

        if Path(model_path).suffix and not Path(model_path).exists():
            raise FileNotFoundError(f"model not found: {model_path} (set IOC_VISION__MODEL_PATH)")
        self.model = YOLO(model_path)
        self.name = Path(model_path).name
        self.device = device
        self.image_size = image_size
        self.min_score = min_score
        self.class_names: dict[int, str] = dict(self.model.names)

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """One forward pass over the batch; one detection list per image, in order."""
        if not images:
            return []
        results = self.model.predict(
            images, imgsz=self.image_size, conf=self.min_score, device=self.device, verbose=False
        )
        batches = []
        for result in results:
            boxes = result.boxes
            batches.append(
                [
                    Detection(
                        class_name=self.class_names[int(cls)],
                        score=round(float(score), 4),
                        box=BoundingBox(x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2)),
                    )
                    for (x1, y1, x2, y2), score, cls in zip(
                        boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                    )
                ]
            )
        return batches

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> list[FrameResult | None]:
        """JPEG bytes in, one result per frame in order; None for bytes that do not decode."""
        images = [decode_jpeg(data) for data in jpegs]
        decoded = [image for image in images if image is not None]
        found = iter(self.detect(decoded))
        return [
            None
            if image is None
            else FrameResult(
                width=image.shape[1],
                height=image.shape[0],
                detections=next(found),
                stats=frame_stats(image, data),
            )
            for image, data in zip(images, jpegs, strict=True)
        ]


def frame_stats(image: np.ndarray, jpeg: bytes) -> FrameStats:
    """Luma mean and spread on a 64x64 grey thumbnail, a difference hash of a 9x8 one, and a
    hash of the bytes as sent."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    tiny = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (tiny[:, 1:] > tiny[:, :-1]).flatten()
    signature = int("".join("1" if bit else "0" for bit in bits), 2)
    return FrameStats(
        luma_mean=round(float(small.mean()), 2),
        luma_std=round(float(small.std()), 2),
        signature=f"{signature:016x}",
        digest=hashlib.blake2b(jpeg, digest_size=8).hexdigest(),
    )


def signature_distance(a: str, b: str) -> int:
    """Differing bits between two frame signatures (0..64)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """BGR image, or None when the bytes are not a decodable image."""
    import cv2

    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None
