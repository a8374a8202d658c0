"""The stored triage model: a clear error for a missing or damaged file, the same model after a
round trip, and pure-Python predictions equal to scikit-learn's."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.hotline.model import (
    CATEGORY_FEATURES,
    MODEL_PATH,
    TriageModel,
    TriageModelError,
    text_features,
    view,
)
from ioc.hotline.text import fold
from ioc.hotline.training import REGULARISATION, _fit, read_examples
from ioc.hotline.triage import Triage, load_rules, load_sla
from ioc.models.categories import Category

HOLDOUT = Path(__file__).resolve().parents[1] / "data" / "tickets_holdout.jsonl"


@pytest.fixture(scope="module")
def bundled() -> TriageModel:
    return TriageModel.load()


def test_a_missing_model_says_so_and_how_to_rebuild_it(tmp_path: Path) -> None:
    with pytest.raises(TriageModelError, match=r"not found; rebuild it with `ioc triage train`"):
        TriageModel.load(tmp_path / "absent.json.gz")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip at all", "corrupt"),
        (gzip.compress(b"{truncated"), "not a format-1 model"),
        (gzip.compress(json.dumps({"format": 2}).encode()), r"not a format-1 model \(format"),
    ],
)
def test_a_damaged_model_is_refused_with_the_reason(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.json.gz"
    path.write_bytes(content)
    with pytest.raises(TriageModelError, match=message):
        TriageModel.load(path)


def test_a_truncated_model_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "model.json.gz"
    path.write_bytes(MODEL_PATH.read_bytes()[:5000])
    with pytest.raises(TriageModelError, match="corrupt"):
        TriageModel.load(path)


def test_a_model_with_a_category_missing_is_refused(tmp_path: Path, bundled: TriageModel) -> None:
    content = bundled.content.model_dump(mode="json")
    content["category"]["classes"] = content["category"]["classes"][:-1]
    content["category"]["bias"] = content["category"]["bias"][:-1]
    content["category"]["weights"] = {}
    path = tmp_path / "model.json.gz"
    path.write_bytes(gzip.compress(json.dumps(content).encode()))
    with pytest.raises(TriageModelError, match="ten categories"):
        TriageModel.load(path)


def test_saved_and_loaded_the_model_keeps_its_version_and_predictions(
    tmp_path: Path, bundled: TriageModel
) -> None:
    path = tmp_path / "copy.json.gz"
    bundled.save(path)
    again = TriageModel.load(path)
    assert again.version == bundled.version
    assert path.read_bytes() == MODEL_PATH.read_bytes(), "saving is deterministic"
    features = text_features(("chay", "nha", "to", "5"))
    assert again.predict(features) == bundled.predict(features)


def test_the_version_changes_with_the_content(tmp_path: Path, bundled: TriageModel) -> None:
    content = bundled.content.model_copy(update={"urgent_threshold": 0.4321})
    assert TriageModel.from_content(content).version != bundled.version


def test_the_text_features_do_not_depend_on_the_diacritics() -> None:
    """Only the rules' evidence may differ: unmarked, "chay" may also be chạy (run)."""
    rules = Triage(load_rules(), load_sla(), None)
    marked = "Cháy nhà ở tổ 5 phường Tân Thịnh, khói đen bốc cao"
    words = ("w ", "b ", "c ")
    assert view(rules.features(marked), words) == view(rules.features(fold(marked)), words)
    assert rules.features(fold(marked))["r cat chay_no ~"] > 0.5


def test_pure_python_probabilities_equal_scikit_learn() -> None:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    rules = Triage(load_rules(), load_sla(), None)
    examples = read_examples(HOLDOUT)
    features = [rules.features(example.text) for example in examples]
    fitted = _fit(examples, features)

    vectoriser = DictVectorizer()
    matrix = vectoriser.fit_transform([view(sample, CATEGORY_FEATURES) for sample in features])
    reference = LogisticRegression(C=REGULARISATION, max_iter=5000)
    reference.fit(matrix, [example.category.value for example in examples])
    expected = reference.predict_proba(matrix)
    for row, sample in zip(expected, features, strict=True):
        ours = fitted.category.probabilities(sample)
        for label, probability in zip(reference.classes_, row, strict=True):
            assert ours[label] == pytest.approx(probability, abs=1e-3)
    absent = set(Category) - {example.category for example in examples}
    for category in absent:  # never seen in training: about zero, never chosen
        assert fitted.category.probabilities(features[0])[category.value] < 1e-9


@pytest.mark.parametrize("command", [("streams", "run"), ("triage", "-")])
def test_the_worker_and_the_cli_refuse_to_start_without_a_usable_model(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    damaged = tmp_path / "model.json.gz"
    damaged.write_bytes(b"\x1f\x8b not really gzip")
    done = subprocess.run(
        [sys.executable, "-m", "ioc", *command],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"IOC_HOTLINE__TRIAGE_MODEL": str(damaged)},
    )
    said = " ".join(done.stdout.split())
    assert done.returncode == 1
    assert f"triage model {damaged}: corrupt" in said
    assert "ioc triage train" in said and "Traceback" not in done.stderr
