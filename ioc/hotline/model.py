"""The learned half of triage: two linear models over the ticket's words and the rules' evidence.

Phrase rules miss phrasing nobody wrote down; a model over character and word n-grams of the
diacritic-folded text generalises from examples instead, and the rules' scores enter it as
features, so what the rules know is not thrown away and stays the explanation shown to staff.
One model picks the category; another judges urgency (priority 1 or 2) as harm, from the text and
the rules' signs of harm and calm, never from the category; a third splits 1 from 2 and 3 from 4.

Models are trained by scikit-learn (`ioc.hotline.training`) but stored as plain JSON weights and
applied here in pure Python: loading runs no pickled code, and the stream worker pays neither
scikit-learn's import nor its per-call overhead for one ticket at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ioc.models.categories import Category

MODEL_PATH = Path(__file__).resolve().with_name("triage_model.json.gz")
FORMAT = 1
CHAR_SIZES = (3, 4, 5)
PRIORITIES = (1, 2, 3, 4)
URGENCY_CLASSES = ("calm", "urgent")
SETTLED_CHANCE = 0.5  # see `decide_urgent`; "more likely than not", not tuned on any set


class TriageModelError(RuntimeError):
    """The model file is missing, unreadable or not a model of this format."""


def text_features(folded: Sequence[str]) -> dict[str, float]:
    """Words, word pairs and character n-grams (within words) of the folded, repaired text,
    log-scaled and L2-normalised so that long transcripts do not outweigh short messages."""
    counts: Counter[str] = Counter()
    for index, word in enumerate(folded):
        counts["w " + word] += 1
        if index:
            counts[f"b {folded[index - 1]} {word}"] += 1
        padded = f" {word} "
        for size in CHAR_SIZES:
            for start in range(len(padded) - size + 1):
                counts["c " + padded[start : start + size]] += 1
    scaled = {name: 1.0 + math.log(count) for name, count in counts.items()}
    norm = math.sqrt(sum(value * value for value in scaled.values())) or 1.0
    return {name: value / norm for name, value in scaled.items()}


def rule_features(
    scores: Mapping[Category, float],
    urgency: float,
    urgent: bool,
    relief: bool,
    settled: bool,
    cues: Iterable[tuple[str, float]],
    marked: bool,
) -> dict[str, float]:
    """What the phrase rules found, squashed to [0, 1): per-category phrase weight, the harm
    score and the rules' own urgent verdict, how calm the text sounds, whether a calming sign
    was seen, and each urgency cue found (people hurt, hazards spreading, exposure). Whether
    the danger reads as settled ("r settled") rides along for `decide_urgent`; no model reads
    it. Found in text typed without marks, where the rules match leniently ("dang" may
    be đang, now, or đăng, to post), each feature is a different one, with its own weight."""
    out = {
        f"r cat {category.value}": max(score, 0.0) / (max(score, 0.0) + 2.0)
        for category, score in scores.items()
    }
    out["r harm"] = math.tanh(max(urgency, 0.0) / 4.0)
    out["r urgent"] = 1.0 if urgent else 0.0
    out["r calm"] = math.tanh(max(-urgency, 0.0) / 2.0)
    out["r relief"] = 1.0 if relief else 0.0
    out["r settled"] = 1.0 if settled else 0.0
    for text, weight in cues:
        out[("k +" if weight > 0 else "k -") + text] = 1.0
    suffix = "" if marked else " ~"
    return {name + suffix: value for name, value in out.items() if value}


# The features each model reads: the category model the text and the rules' category scores;
# the urgency and priority models the text and the rules' signs of harm and of calm, never the
# category, so that urgency is judged as harm whatever the kind of report.
CATEGORY_FEATURES = ("w ", "b ", "c ", "r cat ")
URGENCY_FEATURES = ("w ", "b ", "c ", "r harm", "r urgent", "r calm", "r relief", "k ")


def view(features: Mapping[str, float], prefixes: tuple[str, ...]) -> dict[str, float]:
    return {name: value for name, value in features.items() if name.startswith(prefixes)}


def settled(features: Mapping[str, float]) -> bool:
    """Whether the rules read the danger as settled (see `rule_features`)."""
    return any(name.startswith("r settled") for name in features)


def decide_urgent(category: Category, chance: float, threshold: float, settled: bool) -> bool:
    """Urgent from the threshold, which leans urgent; a fire or explosion always. A report the
    rules read as settled (put out, nobody hurt, a question with nothing live in it) is urgent
    only when the model thinks it more likely than not: the calm it states must lower urgency,
    as staff expect, whatever the alarming words around it."""
    if settled:
        return chance >= max(threshold, SETTLED_CHANCE)
    return chance >= threshold or category is Category.CHAY_NO


class Linear(BaseModel):
    """A multinomial logistic regression: per feature, one weight per class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: tuple[str, ...] = Field(min_length=2)
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]

    @model_validator(mode="after")
    def _shapes(self) -> Linear:
        size = len(self.classes)
        if len(self.bias) != size:
            raise ValueError(f"bias has {len(self.bias)} values for {size} classes")
        wrong = next((name for name, row in self.weights.items() if len(row) != size), None)
        if wrong is not None:
            raise ValueError(f"feature {wrong!r} has the wrong number of weights")
        return self

    @cached_property
    def _alone(self) -> LinearStack:
        return LinearStack((self,))

    def probabilities(self, features: Mapping[str, float]) -> dict[str, float]:
        return self._alone.probabilities(features)[0]


class LinearStack:
    """Linear models over one feature space, scored together: one lookup per feature for all
    of them and one matrix product (profiled: the per-weight loops took 40 % of triage)."""

    def __init__(self, models: Sequence[Linear]) -> None:
        self.models = tuple(models)
        self.rows: dict[str, int] = {}
        for model in self.models:
            for name in model.weights:
                self.rows.setdefault(name, len(self.rows))
        self.bounds: list[tuple[int, int]] = []
        self.matrix = np.zeros((len(self.rows), sum(len(m.classes) for m in self.models)))
        first = 0
        for model in self.models:
            last = first + len(model.classes)
            self.bounds.append((first, last))
            if model.weights:
                rows = [self.rows[name] for name in model.weights]
                self.matrix[rows, first:last] = np.array(list(model.weights.values()))
            first = last
        self.bias = np.concatenate([np.asarray(model.bias, dtype=np.float64) for model in models])

    def probabilities(self, features: Mapping[str, float]) -> list[dict[str, float]]:
        """Each model's class probabilities (softmax), in the models' order."""
        rows, values = [], []
        for name, value in features.items():
            row = self.rows.get(name)
            if row is not None:
                rows.append(row)
                values.append(value)
        scores = self.bias + np.asarray(values, dtype=np.float64) @ self.matrix[rows]
        out = []
        for model, (first, last) in zip(self.models, self.bounds, strict=True):
            part = scores[first:last]
            exps = np.exp(part - part.max())
            shares = exps / exps.sum()
            out.append({label: float(v) for label, v in zip(model.classes, shares, strict=True)})
        return out


class ModelCard(BaseModel):
    """Where a model came from: shown by `ioc triage eval` and kept with every ticket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trained_at: str
    examples: int = Field(ge=1)
    corrections: int = Field(0, ge=0)
    corpus_sha256: str
    library: str
    urgent_recall_cv: float = Field(ge=0, le=1)
    false_urgent_cv: float = Field(ge=0, le=1)
    category_accuracy_cv: float = Field(ge=0, le=1)


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    card: ModelCard
    urgent_threshold: float = Field(gt=0, lt=1)
    category: Linear
    urgency: Linear
    priority: Linear

    @model_validator(mode="after")
    def _classes(self) -> ModelFile:
        if set(self.category.classes) != {category.value for category in Category}:
            raise ValueError("the category model must know exactly the ten categories")
        if self.urgency.classes != URGENCY_CLASSES:
            raise ValueError("the urgency model's classes must be calm, urgent")
        if self.priority.classes != tuple(str(priority) for priority in PRIORITIES):
            raise ValueError("the priority model's classes must be 1, 2, 3, 4")
        return self


@dataclass(frozen=True)
class Prediction:
    category: dict[Category, float]
    urgent_probability: float
    priority: dict[int, float]  # which of 1-2 or 3-4, once urgency is decided


class TriageModel:
    """A loaded model; `version` is the digest of its content, recorded on every ticket."""

    def __init__(self, content: ModelFile, version: str) -> None:
        self.content = content
        self.version = version
        self._stack = LinearStack((content.category, content.urgency, content.priority))

    @property
    def urgent_threshold(self) -> float:
        return self.content.urgent_threshold

    @classmethod
    def from_content(cls, content: ModelFile) -> TriageModel:
        return cls(content, _version(_canonical(content)))

    @classmethod
    def load(cls, path: Path | None = None) -> TriageModel:
        """The bundled model unless `path` is given; anything wrong says what and what to do."""
        path = path or MODEL_PATH
        hint = "rebuild it with `ioc triage train`"
        try:
            raw = gzip.decompress(path.read_bytes())
        except FileNotFoundError:
            raise TriageModelError(f"triage model {path}: not found; {hint}") from None
        except (OSError, EOFError, zlib.error) as error:
            raise TriageModelError(f"triage model {path}: corrupt ({error}); {hint}") from None
        try:
            content = ModelFile.model_validate_json(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "file"
            raise TriageModelError(
                f"triage model {path}: not a format-{FORMAT} model ({where}: {first['msg']}); "
                f"{hint}"
            ) from None
        return cls(content, _version(raw))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime 0: the same model gives the same bytes, so the file only changes when it does.
        path.write_bytes(gzip.compress(_canonical(self.content), mtime=0))

    def predict(self, features: Mapping[str, float]) -> Prediction:
        category, urgency, priority = self._stack.probabilities(features)
        return Prediction(
            {Category(name): value for name, value in category.items()},
            urgency["urgent"],
            {int(name): value for name, value in priority.items()},
        )


def _canonical(content: ModelFile) -> bytes:
    return json.dumps(content.model_dump(mode="json"), sort_keys=True).encode()


def _version(raw: bytes) -> str:
    return "m" + hashlib.sha256(raw).hexdigest()[:12]
