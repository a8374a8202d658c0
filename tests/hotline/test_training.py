"""Training and scoring triage: the labelled formats, the urgent threshold, corrections that
change what the model learns, and the figures `ioc triage eval` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ioc.hotline.training import (
    TARGET_RECALL,
    CorpusError,
    Example,
    _threshold,
    evaluate,
    read_corpus,
    read_examples,
    score,
    train,
    urgency_rank,
)
from ioc.hotline.triage import Triage, TriageResult, load_rules, load_sla
from ioc.models.categories import Category

HOLDOUT = Path(__file__).resolve().parents[1] / "data" / "tickets_holdout.jsonl"


@pytest.fixture(scope="module")
def rules() -> Triage:
    return Triage(load_rules(), load_sla(), None)


def test_both_labelled_formats_are_read(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({"description": "Cháy chợ", "category": "chay_no", "priority": 1})
        + "\n\n"
        + json.dumps(
            {
                "description": "Đèn hỏng",
                "expected": {"category": "dien_nuoc_chieu_sang", "urgent": False},
            }
        )
        + "\n",
        encoding="utf-8",
    )
    first, second = read_examples(path)
    assert (first.category, first.priority, first.urgent) == (Category.CHAY_NO, 1, True)
    assert (second.category, second.priority, second.urgent) == (
        Category.DIEN_NUOC_CHIEU_SANG,
        3,
        False,
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "Expecting"),
        ('{"description": "x", "category": "fire", "priority": 1}', "'fire' is not a valid"),
        ('{"description": "x", "category": "khac", "priority": 7}', "priority 7"),
        ('{"description": " ", "category": "khac", "priority": 4}', "missing description"),
        ('{"category": "khac", "priority": 4}', "description"),
    ],
)
def test_a_bad_line_names_its_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"description": "ok", "category": "khac", "priority": 4}\n' + line + "\n")
    with pytest.raises(CorpusError, match=rf"bad.jsonl:2: .*{reason}"):
        read_examples(path)


def test_an_empty_corpus_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no \*\.jsonl"):
        read_corpus(tmp_path)


def test_the_bundled_corpus_covers_every_category_and_both_urgencies() -> None:
    examples = read_corpus()
    assert {example.category for example in examples} == set(Category)
    urgent = sum(example.urgent for example in examples)
    assert 0.2 < urgent / len(examples) < 0.6


def test_the_threshold_is_the_highest_reaching_the_target_recall() -> None:
    rows = [Example(f"t{i}", Category.KHAC, 1 if i < 10 else 4) for i in range(20)]
    chances = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05] + [0.01] * 10
    out_of_fold = [(i, Category.KHAC, chance, False) for i, chance in enumerate(chances)]
    assert _threshold(rows, out_of_fold, 0.9) == pytest.approx(0.1)  # 9 of 10 found
    assert _threshold(rows, out_of_fold, 1.0) == pytest.approx(0.05)
    assert _threshold(rows, out_of_fold, 0.3) == pytest.approx(0.5), "never above one half"


def test_scores_count_recall_precision_and_the_confusion() -> None:
    examples = [
        Example("a", Category.CHAY_NO, 1),
        Example("b", Category.CHAY_NO, 3),
        Example("c", Category.GIAO_THONG, 2),
        Example("d", Category.KHAC, 4),
    ]
    predicted = [
        (Category.CHAY_NO, True),
        (Category.CHAY_NO, True),
        (Category.CHAY_NO, False),
        (Category.KHAC, False),
    ]
    scores = score(examples, predicted)
    assert scores.category_accuracy == 0.75
    assert (scores.urgent_recall, scores.urgent_precision) == (0.5, 0.5)
    assert scores.false_urgent_rate == 0.5
    assert (scores.fires, scores.fires_urgent) == (1, 1)
    assert scores.confusion[(Category.GIAO_THONG, Category.CHAY_NO)] == 1
    assert scores.missed == ("c",)
    assert scores.flagged_by_label == {
        (Category.CHAY_NO, 1): (1, 1),
        (Category.CHAY_NO, 3): (1, 1),
        (Category.GIAO_THONG, 2): (1, 0),
        (Category.KHAC, 4): (1, 0),
    }


def test_the_ranking_figures_count_pairs_and_the_least_false_urgent_for_a_recall() -> None:
    labels = [1, 1, 1, 3, 4]
    examples = [Example(f"t{i}", Category.KHAC, priority) for i, priority in enumerate(labels)]
    predicted = [(Category.KHAC, False)] * len(examples)
    scores = score(examples, predicted, ranks=[0.9, 0.5, 0.3, 0.5, 0.2])
    # urgent above calm in 4 of the 6 pairs, one tie counted half
    assert scores.urgent_auc == pytest.approx(4.5 / 6)
    assert scores.false_urgent_at(1.0) == 0.5  # down to 0.3 also flags the calm 0.5
    assert scores.false_urgent_at(0.6) == 0.5  # two of three urgent: down to 0.5, a tie
    assert scores.false_urgent_at(0.3) == 0.0
    unranked = score(examples, predicted)
    assert unranked.urgent_auc is None and unranked.false_urgent_at(0.95) is None


def test_a_ticket_flagged_below_the_threshold_ranks_first() -> None:
    triage = Triage.load()
    assert triage.model is not None
    threshold = triage.model.urgent_threshold

    def result(urgent: bool, confidence: float) -> TriageResult:
        return TriageResult(Category.CHAY_NO, urgent, 1 if urgent else 3, 1.0, (), confidence)

    assert urgency_rank(result(True, threshold / 2), triage) == 1.0  # a fire, urgent regardless
    assert urgency_rank(result(True, 0.9), triage) == 0.9
    assert urgency_rank(result(False, 0.8), triage) == pytest.approx(0.2)
    rules_alone = Triage(triage.rules, triage.sla, None)
    assert urgency_rank(result(False, 1.0), rules_alone) == 0.0


def test_training_reaches_the_target_recall_out_of_fold_and_learns_corrections(
    rules: Triage,
) -> None:
    examples = read_examples(HOLDOUT)
    unusual = "con trâu nhà ông Bảy lồng lên húc người ở đầu cầu"
    before = train(rules, examples)
    assert before.content.card.urgent_recall_cv >= TARGET_RECALL
    assert before.content.card.corrections == 0

    correction = Example(unusual, Category.AN_NINH_TRAT_TU, 1)
    after = train(rules, examples, [correction] * 2)
    assert after.content.card.corrections == 2
    assert after.version != before.version
    triage = Triage(rules.rules, rules.sla, after)
    result = triage.classify(unusual)
    assert (result.category, result.urgent) == (Category.AN_NINH_TRAT_TU, True)
    assert result.model == after.version


def test_eval_scores_the_model_on_a_file_with_and_without_marks() -> None:
    triage = Triage.load()
    examples = read_examples(HOLDOUT)
    written = evaluate(triage, examples)
    stripped = evaluate(triage, examples, strip_marks=True)
    assert written.total == stripped.total == len(examples)
    assert written.urgent_recall >= 0.95 and stripped.urgent_recall >= 0.95
    assert written.category_accuracy >= 0.85 and stripped.category_accuracy >= 0.85
    for scores in (written, stripped):
        assert len(scores.ranking) == len(examples)
        assert scores.urgent_auc is not None and scores.urgent_auc >= 0.9
        floor = scores.false_urgent_at(scores.urgent_recall)
        assert floor is not None and floor <= scores.false_urgent_rate
