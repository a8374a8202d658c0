"""Answers to a service's questions: triage reads the description only, and an answer that says
someone is in danger makes the ticket urgent; no other answer changes the verdict."""

from __future__ import annotations

import io
import json
from itertools import product

import pytest

from ioc.hotline.attributes import QUESTIONS, danger_answers, raise_for_danger
from ioc.hotline.cli import triage_file
from ioc.hotline.triage import Triage
from ioc.models.categories import Category

# Urgent, but only just (a model probability near the threshold): statements appended to it once
# made it not urgent.
BORDERLINE_COLLISION = "Va chạm giữa xe tải và xe máy ở ngã tư Đồng Quang"
# Calm by the published priorities (standing water, an inconvenience), filed as flooding.
CALM_FLOOD = "Nước mưa đọng trên vỉa hè trước cổng chợ, đi lại hơi bất tiện"


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.load()


def test_the_danger_answers_are_people_trapped_or_injured() -> None:
    dangers = {
        (category, question.code, choice.key)
        for category, questions in QUESTIONS.items()
        for question in questions
        for choice in question.choices
        if choice.danger
    }
    assert dangers == {
        (Category.CHAY_NO, "nguoi_mac_ket", "co"),
        (Category.NGAP_LUT_THIEN_TAI, "nguoi_mac_ket", "co"),
        (Category.GIAO_THONG, "nguoi_bi_thuong", "co"),
    }


def test_the_borderline_collision_stays_urgent_whatever_else_is_answered(triage: Triage) -> None:
    words_only = triage.classify(BORDERLINE_COLLISION, Category.GIAO_THONG)
    assert words_only.urgent and words_only.priority <= 2
    injured = ("khong", "khong_ro")
    vehicles = [choice.key for choice in QUESTIONS[Category.GIAO_THONG][1].choices]
    for hurt, vehicle in product(injured, vehicles):
        answers = {"nguoi_bi_thuong": (hurt,), "phuong_tien": (vehicle, "xe_may")}
        assert raise_for_danger(words_only, Category.GIAO_THONG, answers) == words_only


@pytest.mark.parametrize(
    ("category", "description"),
    [
        (Category.NGAP_LUT_THIEN_TAI, CALM_FLOOD),
        (Category.CHAY_NO, "Đám cháy ở dãy nhà trọ đã được dập tắt"),
    ],
)
def test_people_trapped_make_a_calm_report_urgent(
    triage: Triage, category: Category, description: str
) -> None:
    words_only = triage.classify(description, category)
    assert not words_only.urgent and words_only.priority >= 3
    raised = raise_for_danger(words_only, category, {"nguoi_mac_ket": ("co",)})
    assert raised.urgent and raised.priority == 2 and raised.urgency_confidence == 1.0
    assert raised.matched == (*words_only.matched, "+attribute:nguoi_mac_ket=co")
    assert raised.category == words_only.category and raised.model == words_only.model
    calm = raise_for_danger(words_only, category, {"nguoi_mac_ket": ("khong_ro",)})
    assert calm == words_only


def test_an_answer_counts_only_for_the_service_that_asks_it() -> None:
    trapped = {"nguoi_mac_ket": ("co",)}
    assert danger_answers(Category.CHAY_NO, trapped) == ("nguoi_mac_ket=co",)
    assert danger_answers(Category.GIAO_THONG, trapped) == ()
    assert danger_answers(None, trapped) == ()
    assert danger_answers(Category.GIAO_THONG, {"nguoi_bi_thuong": ("co",)}) == (
        "nguoi_bi_thuong=co",
    )


def test_triage_file_raises_for_danger_answers_as_the_stream_does(triage: Triage) -> None:
    lines = [
        {
            "service_request_id": "A",
            "description": CALM_FLOOD,
            "service_code": "ngap_lut_thien_tai",
        },
        {
            "service_request_id": "B",
            "description": CALM_FLOOD,
            "service_code": "ngap_lut_thien_tai",
            "attributes": {"nguoi_mac_ket": ["co"], "do_sau_nuoc_cm": ["40"]},
        },
        {"service_request_id": "C", "description": CALM_FLOOD, "attributes": {"x": "co"}},
    ]
    sink, errors = io.StringIO(), io.StringIO()
    source = io.StringIO("\n".join(json.dumps(line, ensure_ascii=False) for line in lines))
    assert triage_file(source, sink, triage, errors=errors) == (2, 1)
    calm, trapped = (json.loads(line) for line in sink.getvalue().splitlines())
    assert (calm["urgent"], trapped["urgent"], trapped["priority"]) == (False, True, 2)
    assert "line 3: attributes" in errors.getvalue()
