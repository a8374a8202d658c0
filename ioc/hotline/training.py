"""Fitting the triage model (`ioc triage train`) and scoring triage on labelled files
(`ioc triage eval`).

Training data is the labelled corpus in `corpus/` plus staff corrections from the database,
which weigh more: they are what the model got wrong in service. Every example is also learnt
without its diacritics, as SMS arrive. The urgent threshold is chosen on out-of-fold
predictions (5 folds, a ticket and its unmarked copy always in the same fold) as the highest
that still finds `target_recall` of the urgent tickets: triage leans urgent.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ioc.hotline.model import (
    CATEGORY_FEATURES,
    PRIORITIES,
    URGENCY_CLASSES,
    URGENCY_FEATURES,
    Linear,
    ModelCard,
    ModelFile,
    TriageModel,
    decide_urgent,
    settled,
    view,
)
from ioc.hotline.text import fold
from ioc.hotline.triage import Triage, TriageResult
from ioc.models.categories import Category

CORPUS_DIR = Path(__file__).resolve().with_name("corpus")
CORRECTION_WEIGHT = 3.0
GOAL_RECALL = 0.95  # issue 17's goal: the share of urgent tickets triage must flag
# The out-of-fold recall the urgent threshold is chosen for. Strangers' tickets (blind sets
# 14-17, now in the corpus as writers3-*) were found more surely than the corpus's own hard cases
# out of fold: at 0.92 the 2,700-ticket corpus gave 0.94-0.98 recall on them, and at 0.97 nearly
# all, but with a third to a half of the calm tickets flagged, which would teach staff to ignore
# the flag. With the blind sets' tickets in the corpus that margin shrank (0.93 on sets 22-23).
TARGET_RECALL = 0.92
FOLDS = 5
# scikit-learn's C, chosen by cross-validation on the corpus and by scoring tickets outside it:
# held this close, the models lean on the rules' evidence, which carries to other writers.
REGULARISATION = 3.0
KEPT_WEIGHT = 1e-4  # smaller weights are dropped from the file
ABSENT_BIAS = -30.0  # a class no training example has


class CorpusError(ValueError):
    """A labelled file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    category: Category
    priority: int
    weight: float = 1.0
    source: str = ""

    @property
    def urgent(self) -> bool:
        return self.priority <= 2


def read_examples(path: Path) -> list[Example]:
    """Labelled tickets from JSONL: `description` with `category` and `priority`, or with
    `expected: {category, urgent[, priority]}` (an urgent ticket without a priority counts
    as 2, another as 3)."""
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(_example(json.loads(line), f"{path.name}:{number}"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise CorpusError(f"{path}:{number}: {error}") from None
    return examples


def _example(record: dict[str, Any], source: str) -> Example:
    labels = record.get("expected", record)
    priority = labels.get("priority")
    if priority is None:
        priority = 2 if labels["urgent"] else 3
    if priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is not 1..4")
    text = record["description"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing description")
    return Example(text, Category(labels["category"]), int(priority), source=source)


def read_corpus(directory: Path = CORPUS_DIR) -> list[Example]:
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise CorpusError(f"no *.jsonl files in {directory}")
    return [example for path in files for example in read_examples(path)]


@dataclass
class Fitted:
    category: Linear
    urgency: Linear
    priority: Linear


@dataclass(frozen=True)
class Scores:
    """Figures for a set of tickets: what `ioc triage eval` prints."""

    total: int
    category_correct: int
    urgent: int
    urgent_found: int
    not_urgent: int
    false_urgent: int
    flagged: int
    fires: int
    fires_urgent: int
    confusion: dict[tuple[Category, Category], int] = field(default_factory=dict)
    missed: tuple[str, ...] = ()
    flagged_by_label: dict[tuple[Category, int], tuple[int, int]] = field(default_factory=dict)
    """(labelled category, labelled priority) -> (tickets, flagged urgent): where urgency errs."""
    ranking: tuple[tuple[float, bool], ...] = ()
    """(how strongly triage judged the ticket urgent, labelled urgent) per ticket, when known."""

    @property
    def category_accuracy(self) -> float:
        return self.category_correct / self.total if self.total else 0.0

    @property
    def urgent_recall(self) -> float:
        return self.urgent_found / self.urgent if self.urgent else 1.0

    @property
    def urgent_precision(self) -> float:
        return self.urgent_found / self.flagged if self.flagged else 1.0

    @property
    def false_urgent_rate(self) -> float:
        return self.false_urgent / self.not_urgent if self.not_urgent else 0.0

    @property
    def urgent_auc(self) -> float | None:
        """The chance that an urgent ticket is judged more urgent than a calm one (ties count
        half): how well triage ranks, whatever the threshold."""
        urgent = [rank for rank, label in self.ranking if label]
        calm = [rank for rank, label in self.ranking if not label]
        if not urgent or not calm:
            return None
        ordered = sorted(calm)
        above = sum(bisect_left(ordered, rank) for rank in urgent)
        tied = sum(bisect_right(ordered, rank) - bisect_left(ordered, rank) for rank in urgent)
        return (above + tied / 2) / (len(urgent) * len(calm))

    def false_urgent_at(self, recall: float) -> float | None:
        """The least share of calm tickets any threshold must flag to find `recall` of the
        urgent ones: whether a threshold alone could meet a goal, or the ranking cannot."""
        urgent = [rank for rank, label in self.ranking if label]
        calm = [rank for rank, label in self.ranking if not label]
        if not urgent or not calm:
            return None
        needed = rank_reaching(urgent, recall)
        return sum(rank >= needed for rank in calm) / len(calm)


def rank_reaching(urgent: Iterable[float], recall: float) -> float:
    """The highest rank (or probability) at or above which `recall` of the urgent tickets lie:
    the threshold training chooses, and the one eval's ranking figure tries."""
    ordered = sorted(urgent, reverse=True)
    return ordered[min(max(1, math.ceil(recall * len(ordered) - 1e-9)), len(ordered)) - 1]


def score(
    examples: Sequence[Example],
    predicted: Sequence[tuple[Category, bool]],
    ranks: Sequence[float] = (),
) -> Scores:
    """Figures for `predicted` (category, urgent) against the labels; `ranks`, when given, are
    how strongly each ticket was judged urgent."""
    confusion: dict[tuple[Category, Category], int] = {}
    flagged_by_label: dict[tuple[Category, int], tuple[int, int]] = {}
    missed: list[str] = []
    counts = dict.fromkeys(
        ("correct", "urgent", "found", "calm", "false", "flagged", "fires", "fires_urgent"), 0
    )
    for example, (category, urgent) in zip(examples, predicted, strict=True):
        key = (example.category, category)
        confusion[key] = confusion.get(key, 0) + 1
        label = (example.category, example.priority)
        tickets, flagged = flagged_by_label.get(label, (0, 0))
        flagged_by_label[label] = (tickets + 1, flagged + urgent)
        counts["correct"] += category == example.category
        counts["flagged"] += urgent
        if example.urgent:
            counts["urgent"] += 1
            counts["found"] += urgent
            if not urgent:
                missed.append(example.text)
        else:
            counts["calm"] += 1
            counts["false"] += urgent
        if example.category is Category.CHAY_NO and example.urgent:
            counts["fires"] += 1
            counts["fires_urgent"] += urgent
    return Scores(
        total=len(examples),
        category_correct=counts["correct"],
        urgent=counts["urgent"],
        urgent_found=counts["found"],
        not_urgent=counts["calm"],
        false_urgent=counts["false"],
        flagged=counts["flagged"],
        fires=counts["fires"],
        fires_urgent=counts["fires_urgent"],
        confusion=confusion,
        missed=tuple(missed),
        flagged_by_label=flagged_by_label,
        ranking=tuple(zip(ranks, (example.urgent for example in examples), strict=True))
        if ranks
        else (),
    )


def evaluate(triage: Triage, examples: Sequence[Example], strip_marks: bool = False) -> Scores:
    predicted, ranks = [], []
    for example in examples:
        result = triage.classify(fold(example.text) if strip_marks else example.text)
        predicted.append((result.category, result.urgent))
        ranks.append(urgency_rank(result, triage))
    return score(examples, predicted, ranks)


def urgency_rank(result: TriageResult, triage: Triage) -> float:
    """How strongly `result` judges its ticket urgent: the model's urgent probability, and 1 for
    a ticket flagged below the threshold (a fire, urgent whatever the model says)."""
    if triage.model is None:
        return float(result.urgent)
    chance = result.urgency_confidence if result.urgent else 1.0 - result.urgency_confidence
    return 1.0 if result.urgent and chance < triage.model.urgent_threshold else chance


def train(
    rules: Triage,
    examples: Sequence[Example],
    corrections: Sequence[Example] = (),
    target_recall: float = TARGET_RECALL,
    progress: Callable[[str], None] = lambda _: None,
) -> TriageModel:
    """A model from the corpus and the corrections; `rules` supplies the rules' evidence."""
    from sklearn.model_selection import GroupKFold

    weighted = [*examples, *(replace(fix, weight=CORRECTION_WEIGHT) for fix in corrections)]
    rows, groups = _augmented(weighted)
    progress(f"features of {len(rows)} texts ({len(weighted)} tickets, with and without marks)")
    features = [rules.features(example.text) for example in rows]

    progress(f"cross-validating ({FOLDS} folds) to choose the urgent threshold")
    out_of_fold: list[tuple[int, Category, float, bool]] = []
    for train_index, test_index in GroupKFold(n_splits=FOLDS).split(rows, groups=groups):
        fitted = _fit([rows[i] for i in train_index], [features[i] for i in train_index])
        for i in test_index:
            odds = fitted.category.probabilities(features[i])
            category = Category(max(odds, key=lambda name: odds[name]))
            chance = fitted.urgency.probabilities(features[i])["urgent"]
            out_of_fold.append((i, category, chance, settled(features[i])))
    threshold = _threshold(rows, out_of_fold, target_recall)
    predicted = [
        (category, decide_urgent(category, chance, threshold, calm))
        for _, category, chance, calm in out_of_fold
    ]
    cv = score([rows[i] for i, *_ in out_of_fold], predicted)

    progress("fitting on everything")
    card = ModelCard(
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        examples=len(examples),
        corrections=len(corrections),
        corpus_sha256=_digest(weighted),
        library=_library(),
        urgent_recall_cv=round(cv.urgent_recall, 4),
        false_urgent_cv=round(cv.false_urgent_rate, 4),
        category_accuracy_cv=round(cv.category_accuracy, 4),
    )
    return TriageModel.from_content(_content(_fit(rows, features), threshold, card))


def _augmented(examples: Iterable[Example]) -> tuple[list[Example], list[int]]:
    rows: list[Example] = []
    groups: list[int] = []
    for index, example in enumerate(examples):
        rows.append(example)
        groups.append(index)
        plain = fold(example.text)  # as typed on a phone without Vietnamese input
        if plain != example.text:
            rows.append(replace(example, text=plain))
            groups.append(index)
    return rows, groups


def _fit(rows: Sequence[Example], features: Sequence[dict[str, float]]) -> Fitted:
    weights = [row.weight for row in rows]
    return Fitted(
        _regression(
            [view(sample, CATEGORY_FEATURES) for sample in features],
            [row.category.value for row in rows],
            sorted(category.value for category in Category),
            weights,
        ),
        _regression(
            [view(sample, URGENCY_FEATURES) for sample in features],
            [URGENCY_CLASSES[row.urgent] for row in rows],
            URGENCY_CLASSES,
            weights,
        ),
        _regression(
            [view(sample, URGENCY_FEATURES) for sample in features],
            [str(row.priority) for row in rows],
            [str(priority) for priority in PRIORITIES],
            weights,
        ),
    )


def _regression(
    features: Sequence[dict[str, float]],
    labels: Sequence[str],
    classes: Sequence[str],
    weights: Sequence[float],
) -> Linear:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = DictVectorizer()
    matrix = vectoriser.fit_transform(features)
    classifier = LogisticRegression(C=REGULARISATION, max_iter=5000)
    classifier.fit(matrix, labels, sample_weight=weights)
    return _linear(classifier, vectoriser.get_feature_names_out(), classes)


def _linear(classifier: Any, names: Sequence[str], classes: Sequence[str]) -> Linear:
    """The fitted classifier as a `Linear` over all `classes`; a class absent from the training
    labels gets no weights and a bias that keeps its probability at about zero."""
    import numpy as np

    learnt = [str(label) for label in classifier.classes_]
    coefficients, intercepts = classifier.coef_, classifier.intercept_
    if len(learnt) == 2:  # scikit-learn keeps one row, for the second class: softmax of (0, row)
        coefficients = np.vstack([np.zeros_like(coefficients[0]), coefficients[0]])
        intercepts = np.array([0.0, intercepts[0]])
    rows = {
        label: (coefficients[index], float(intercepts[index])) for index, label in enumerate(learnt)
    }
    matrix = np.vstack(
        [rows[label][0] if label in rows else np.zeros(len(names)) for label in classes]
    )
    keep = np.abs(matrix).max(axis=0) >= KEPT_WEIGHT
    return Linear(
        classes=tuple(classes),
        bias=tuple(rows[label][1] if label in rows else ABSENT_BIAS for label in classes),
        weights={
            str(names[column]): tuple(round(float(value), 6) for value in matrix[:, column])
            for column in np.flatnonzero(keep)
        },
    )


def _threshold(
    rows: Sequence[Example],
    out_of_fold: Sequence[tuple[int, Category, float, bool]],
    target_recall: float,
) -> float:
    """The highest threshold whose out-of-fold urgent recall reaches the target."""
    urgent = [chance for index, _, chance, _ in out_of_fold if rows[index].urgent]
    if not urgent:
        return 0.5
    return min(max(rank_reaching(urgent, target_recall), 0.01), 0.5)


def _content(fitted: Fitted, threshold: float, card: ModelCard) -> ModelFile:
    return ModelFile(
        format=1,
        card=card,
        urgent_threshold=round(threshold, 6),
        category=fitted.category,
        urgency=fitted.urgency,
        priority=fitted.priority,
    )


def _digest(examples: Iterable[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(
            f"{example.text}\t{example.category}\t{example.priority}\t{example.weight}\n".encode()
        )
    return digest.hexdigest()


def _library() -> str:
    import sklearn

    return f"scikit-learn {sklearn.__version__}"
