"""The fast path against Ultralytics' own `predict` on the real default model and real frames
(CPU): same classes, boxes and scores within a tight tolerance, same fire/smoke flags, the same
frame statistics as OpenCV computes them, and no batch lost to one bad frame.

Both ways of preparing frames run here: on the host (the CPU path) and with torch (the CUDA
path's letterbox and thumbnails, run on the CPU; nvjpeg and fp16 need a GPU)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox

from ioc.assets import DEFAULT_MODEL_PATH
from ioc.models import BoundingBox, Detection
from ioc.rules.camera.registry import CameraRuleSet
from ioc.vision.detect import FrameFlags
from ioc.vision.detector import Detector
from ioc.vision.pipeline import Pipeline, resolve_device

MIN_SCORE = 0.25
Box = tuple[int, float, list[float]]  # class index, score, (x1, y1, x2, y2)


@pytest.fixture(scope="module")
def frames(samples_dir: Path) -> list[bytes]:
    """Every sample frame, then each again at 1280x720 as a camera sends it."""
    originals = [p.read_bytes() for p in sorted((samples_dir / "frames").glob("*/*.jpg"))]
    camera = [encode(cv2.resize(decode(data), (1280, 720)), ".jpg") for data in originals]
    return originals + camera


@pytest.fixture(scope="module")
def reference(frames: list[bytes]) -> list[list[Box]]:
    """`predict` on each decoded frame, one at a time: what the fast path must reproduce."""
    model = YOLO(str(DEFAULT_MODEL_PATH))
    out = []
    for data in frames:
        boxes = model.predict(decode(data), imgsz=640, conf=MIN_SCORE, verbose=False)[0].boxes
        out.append(rows(boxes.data))
    return out


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(str(DEFAULT_MODEL_PATH), device="cpu", image_size=640, min_score=MIN_SCORE)


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def encode(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def rows(data: torch.Tensor) -> list[Box]:
    return [(int(r[5]), float(r[4]), [float(v) for v in r[:4]]) for r in data.tolist()]


def mismatches(ours: list[Box], theirs: list[Box], floor: float = 0.3) -> list[str]:
    """Boxes of `theirs` at or above `floor` with no box of `ours` of the same class at IoU
    ≥ 0.9 and a score within 0.03 (boxes nearer the cut-off may come and go)."""
    problems = []
    for cls, score, box in theirs:
        if score < floor:
            continue
        partners = [(s, b) for c, s, b in ours if c == cls]
        ious = [float(box_iou(torch.tensor([box]), torch.tensor([b]))) for _, b in partners]
        if not any(
            iou >= 0.9 and abs(s - score) <= 0.03
            for iou, (s, _) in zip(ious, partners, strict=True)
        ):
            problems.append(f"class {cls} at {score:.3f}: best IoU {max(ious, default=0):.2f}")
    return problems


@pytest.mark.parametrize("on_device", [False, True], ids=["host frames", "torch frames"])
def test_same_detections_as_predict_on_every_sample(
    frames: list[bytes], reference: list[list[Box]], on_device: bool
) -> None:
    pipeline = Pipeline(
        YOLO(str(DEFAULT_MODEL_PATH)).model,
        device=torch.device("cpu"),
        half=False,
        image_size=640,
        thresholds=[MIN_SCORE] * 7,
        frames_on_device=on_device,
    )
    outputs = pipeline(frames)
    fire = CameraRuleSet.load().fire
    flags = FrameFlags(fire.classes, fire.min_score)
    names = dict(YOLO(str(DEFAULT_MODEL_PATH)).names)
    for index, (output, theirs) in enumerate(zip(outputs, reference, strict=True)):
        assert output is not None
        ours = rows(output.boxes)
        problems = mismatches(ours, theirs) + mismatches(theirs, ours)
        assert not problems, f"frame {index}: {problems}"
        assert flags.of(named(ours, names)) == flags.of(named(theirs, names)), f"frame {index}"


def named(boxes: list[Box], names: dict[int, str]) -> list[Detection]:
    return [
        Detection(class_name=names[c], score=s, box=BoundingBox(x1=b[0], y1=b[1], x2=b[2], y2=b[3]))
        for c, s, b in boxes
    ]


def test_frame_stats_are_opencvs(detector: Detector, frames: list[bytes]) -> None:
    """Luma of a 64x64 INTER_AREA grey thumbnail, a difference hash of a 9x8 one: computed from
    running sums on either path, they are what OpenCV gives."""
    torch_frames = Pipeline(
        YOLO(str(DEFAULT_MODEL_PATH)).model,
        device=torch.device("cpu"),
        half=False,
        image_size=640,
        thresholds=[MIN_SCORE] * 7,
        frames_on_device=True,
    )
    results = detector.detect_jpegs(frames)
    on_device = torch_frames(frames)
    for data, result, output in zip(frames, results, on_device, strict=True):
        assert result is not None and output is not None
        grey = cv2.cvtColor(decode(data), cv2.COLOR_BGR2GRAY)
        luma = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        tiny = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
        bits = "".join("1" if bit else "0" for bit in (tiny[:, 1:] > tiny[:, :-1]).flatten())
        stats = result.stats
        assert stats.luma_mean == pytest.approx(luma.mean(), abs=0.02)
        assert stats.luma_std == pytest.approx(luma.std(), abs=0.02)
        assert (int(stats.signature, 16) ^ int(bits, 2)).bit_count() <= 1  # differing bits
        assert stats.digest == hashlib.blake2b(data, digest_size=8).hexdigest()
        assert (output.luma - torch.from_numpy(luma)).abs().max() <= 1  # rounding at .5
        assert (result.width, result.height) == (grey.shape[1], grey.shape[0])


def test_a_mixed_batch_gives_what_each_frame_gives_alone(
    detector: Detector, frames: list[bytes]
) -> None:
    """Frames of different sizes and formats in one call: grouped by shape, back in order."""
    png = encode(decode(frames[0]), ".png")
    batch = [frames[-1], frames[3], png, frames[-5], frames[14]]
    together = detector.detect_jpegs(batch)
    for data, result in zip(batch, together, strict=True):
        alone = detector.detect_jpegs([data])[0]
        assert result is not None and alone is not None
        assert (result.width, result.height) == (alone.width, alone.height)
        assert [d.class_name for d in result.detections] == [d.class_name for d in alone.detections]
        for a, b in zip(result.detections, alone.detections, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-3)
            assert a.box.x1 == pytest.approx(b.box.x1, abs=0.5)
            assert a.box.y2 == pytest.approx(b.box.y2, abs=0.5)


def test_bad_bytes_are_none_and_the_rest_of_the_batch_is_detected(
    detector: Detector, frames: list[bytes]
) -> None:
    truncated = frames[0][: len(frames[0]) // 2]
    bmp = encode(decode(frames[0]), ".bmp")
    results = detector.detect_jpegs([frames[0], b"", b"\x00garbage", truncated, bmp])
    assert [r is None for r in results] == [False, True, True, True, False]
    first, last = results[0], results[-1]
    assert first is not None and last is not None
    assert [d.class_name for d in first.detections] == [d.class_name for d in last.detections]
    assert detector.detect_jpegs([]) == []


def test_class_min_scores_replace_min_score_for_their_classes(
    detector: Detector, frames: list[bytes]
) -> None:
    fire_frames = [
        data
        for data, result in zip(frames, detector.detect_jpegs(frames), strict=True)
        if result and any(d.class_name == "smoke" for d in result.detections)
    ]
    strict_smoke = Detector(
        str(DEFAULT_MODEL_PATH),
        device="cpu",
        image_size=640,
        min_score=MIN_SCORE,
        class_min_scores={"smoke": 0.99, "person": 0.05},
    )
    base = detector.detect_jpegs(fire_frames)
    strict = strict_smoke.detect_jpegs(fire_frames)
    assert fire_frames
    for before, after in zip(base, strict, strict=True):
        assert before is not None and after is not None
        assert not any(d.class_name == "smoke" for d in after.detections)
        kept = [d for d in before.detections if d.class_name not in {"smoke", "person"}]
        assert [d for d in after.detections if d.class_name not in {"smoke", "person"}] == kept
        assert all(d.score >= 0.05 for d in after.detections if d.class_name == "person")


@pytest.mark.parametrize("size", [(608, 608), (720, 1280), (333, 517), (1080, 1920), (40, 900)])
def test_letterbox_geometry_is_ultralytics(detector: Detector, size: tuple[int, int]) -> None:
    image = np.zeros((*size, 3), dtype=np.uint8)
    expected = LetterBox(640, auto=True, stride=32)(image=image).shape[:2]
    (new_h, new_w), (left, right, top, bottom) = detector.pipeline.geometry(*size)
    assert (new_h + top + bottom, new_w + left + right) == expected


def test_cuda_asked_for_without_one_runs_on_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("cuda") == torch.device("cpu")
        assert resolve_device("0") == torch.device("cpu")
