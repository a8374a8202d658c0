"""The real default model on real sample frames (CPU)."""

from pathlib import Path

import cv2
import pytest

from ioc.assets import DEFAULT_MODEL_PATH
from ioc.vision.detector import Detector, decode_jpeg


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(str(DEFAULT_MODEL_PATH), device="cpu", image_size=640, min_score=0.25)


def test_fire_frames_show_fire_or_smoke_and_negatives_do_not(
    detector: Detector, samples_dir: Path
) -> None:
    fire = sorted((samples_dir / "frames" / "fire").glob("*.jpg"))
    negative = sorted((samples_dir / "frames" / "negative").glob("*.jpg"))
    results = detector.detect([decode_jpeg(path.read_bytes()) for path in fire + negative])
    fire_hits = [
        any(d.class_name in {"fire", "smoke"} and d.score >= 0.4 for d in r) for r in results
    ]
    assert all(fire_hits[: len(fire)]), "every sample fire frame is flagged"
    assert not any(fire_hits[len(fire) :]), "no negative frame is flagged"


def test_boxes_are_in_frame_pixels(detector: Detector, samples_dir: Path) -> None:
    image = decode_jpeg((samples_dir / "frames" / "traffic" / "traffic_03.jpg").read_bytes())
    assert image is not None
    detections = detector.detect([image])[0]
    assert any(d.class_name == "bus" for d in detections)
    height, width = image.shape[:2]
    for d in detections:
        assert 0 <= d.box.x1 < d.box.x2 <= width and 0 <= d.box.y1 < d.box.y2 <= height


def test_batch_results_match_single_results(detector: Detector, samples_dir: Path) -> None:
    images = [
        decode_jpeg(p.read_bytes())
        for p in sorted((samples_dir / "frames" / "traffic").glob("*.jpg"))[:3]
    ]
    batched = detector.detect(images)
    single = [detector.detect([image])[0] for image in images]
    assert [[d.class_name for d in r] for r in batched] == [
        [d.class_name for d in r] for r in single
    ]


def test_decode_rejects_non_images() -> None:
    assert decode_jpeg(b"") is None
    assert decode_jpeg(b"\x00garbage") is None
    ok, png = cv2.imencode(
        ".png",
        cv2.imread(
            str(next(Path(__file__).parents[2].glob("ioc/assets/samples/frames/fire/*.jpg")))
        ),
    )
    assert ok and decode_jpeg(png.tobytes()) is not None


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="IOC_VISION__MODEL_PATH"):
        Detector(str(tmp_path / "absent.pt"), device="cpu", image_size=640, min_score=0.25)
