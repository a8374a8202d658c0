"""A thin, batched wrapper over an Ultralytics model: images in, `Detection` lists out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ioc.models import BoundingBox, Detection

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach out for fonts or AMP-check models


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


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """BGR image, or None when the bytes are not a decodable image."""
    import cv2

    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None
