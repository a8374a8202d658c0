"""What the hotline asks per category beyond the description (the Open311 service definitions,
`attribute[code]`), and which answers say that someone is in danger now.

Answers travel beside the description (`Ticket.attributes`), never inside it: the description is
the citizen's own words, stored, shown to staff and read by triage, and statements appended to it
would change what triage reads (a "vehicles involved" line once made an urgent collision not
urgent). An answer can only make a ticket more urgent, through `raise_for_danger`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from ioc.hotline.triage import TriageResult
from ioc.models.categories import Category
from ioc.models.events import MAX_ANSWER

Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
MAX_STRING_ANSWER = 200
MAX_TEXT_ANSWER = MAX_ANSWER
URGENT_PRIORITY = 2  # the least urgent priority of an urgent ticket


@dataclass(frozen=True)
class Choice:
    """One answer of a list question; `danger`: someone is in danger now, the ticket is urgent."""

    key: str
    name: str
    danger: bool = False


@dataclass(frozen=True)
class Question:
    """A question a category asks; `bounds` limits a number answer."""

    code: str
    datatype: Datatype
    order: int
    description: str
    required: bool = False
    datatype_description: str | None = None
    choices: tuple[Choice, ...] = ()
    bounds: tuple[float, float] | None = None


def _trapped(order: int, question: str) -> Question:
    return Question(
        code="nguoi_mac_ket",
        datatype="singlevaluelist",
        order=order,
        description=question,
        choices=(
            Choice("co", "Có người mắc kẹt", danger=True),
            Choice("khong", "Không ai mắc kẹt"),
            Choice("khong_ro", "Chưa rõ có ai bên trong"),
        ),
    )


# Only what changes who is sent, or how fast: people trapped or hurt, the kind of place, water
# depth. Emergencies never require an answer (a report of a fire is taken as it is; the operator
# calls back); the one required question is the violation kind, which decides the team sent and
# offers "Khác" so any reporter can answer it. "Chưa rõ" is no danger signal: the description
# still decides then.
QUESTIONS: dict[Category, tuple[Question, ...]] = {
    Category.CHAY_NO: (
        _trapped(1, "Có người bị mắc kẹt trong đám cháy không? (Are people trapped?)"),
        Question(
            code="noi_chay",
            datatype="singlevaluelist",
            order=2,
            description="Nơi xảy ra cháy, nổ (Where is it?)",
            choices=(
                Choice("nha_o", "Cháy ở nhà dân"),
                Choice("chung_cu", "Cháy ở chung cư, nhà cao tầng"),
                Choice("nha_xuong", "Cháy ở nhà xưởng, kho bãi"),
                Choice("cho_cua_hang", "Cháy ở chợ, cửa hàng"),
                Choice("phuong_tien", "Cháy phương tiện giao thông"),
                Choice("rung", "Cháy rừng, đồi"),
                Choice("khac", "Nơi cháy khác"),
            ),
        ),
    ),
    Category.NGAP_LUT_THIEN_TAI: (
        Question(
            code="do_sau_nuoc_cm",
            datatype="number",
            datatype_description="Số centimet, từ 0 đến 500 (centimetres, 0 to 500)",
            order=1,
            description="Nước ngập sâu khoảng bao nhiêu centimet? (Water depth)",
            bounds=(0, 500),
        ),
        _trapped(2, "Có người bị mắc kẹt, bị cô lập không? (People trapped or cut off?)"),
    ),
    Category.GIAO_THONG: (
        Question(
            code="nguoi_bi_thuong",
            datatype="singlevaluelist",
            order=1,
            description="Có người bị thương không? (Anyone injured?)",
            choices=(
                Choice("co", "Có người bị thương", danger=True),
                Choice("khong", "Không ai bị thương"),
                Choice("khong_ro", "Chưa rõ thương vong"),
            ),
        ),
        Question(
            code="phuong_tien",
            datatype="multivaluelist",
            order=2,
            description="Phương tiện liên quan (Vehicles involved)",
            choices=(
                Choice("xe_may", "Xe máy"),
                Choice("o_to", "Ô tô con"),
                Choice("xe_tai", "Xe tải"),
                Choice("xe_khach", "Xe khách, xe buýt"),
                Choice("xe_dap", "Xe đạp"),
                Choice("di_bo", "Người đi bộ"),
            ),
        ),
    ),
    Category.TRAT_TU_DO_THI: (
        Question(
            code="loai_vi_pham",
            datatype="singlevaluelist",
            required=True,
            order=1,
            description="Loại vi phạm (Kind of violation)",
            choices=(
                Choice("lan_chiem", "Lấn chiếm vỉa hè, lòng đường"),
                Choice("xay_dung", "Xây dựng trái phép, sai phép"),
                Choice("quang_cao", "Quảng cáo, biển hiệu sai quy định"),
                Choice("khac", "Vi phạm trật tự đô thị khác"),
            ),
        ),
        Question(
            code="tu_khi_nao",
            datatype="datetime",
            datatype_description="ISO 8601 có múi giờ, ví dụ 2026-11-20T08:00:00+07:00",
            order=2,
            description="Vi phạm có từ khi nào? (Since when?)",
        ),
    ),
    Category.MOI_TRUONG: (
        Question(
            code="co_so_gay_o_nhiem",
            datatype="string",
            datatype_description=f"Tối đa {MAX_STRING_ANSWER} ký tự",
            order=1,
            description="Tên cơ sở gây ô nhiễm, nếu biết (The polluter, if known)",
        ),
        Question(
            code="dien_bien",
            datatype="text",
            datatype_description=f"Tối đa {MAX_TEXT_ANSWER} ký tự",
            order=2,
            description="Diễn ra vào lúc nào, kéo dài bao lâu? (When and how long?)",
        ),
    ),
}


def danger_answers(
    category: Category | None, answers: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """`code=key` of each answer to the category's questions that says someone is in danger."""
    questions = QUESTIONS.get(category, ()) if category is not None else ()
    return tuple(
        f"{question.code}={choice.key}"
        for question in questions
        for choice in question.choices
        if choice.danger and choice.key in answers.get(question.code, ())
    )


def raise_for_danger(
    result: TriageResult, category: Category | None, answers: Mapping[str, tuple[str, ...]]
) -> TriageResult:
    """Triage of the description, made urgent (priority at most 2) by a danger answer.

    Triage reads the citizen's words only; an answer is a fact the citizen stated about the
    danger ("people trapped: yes"), so it can raise urgency but never lower it: a ticket whose
    words are urgent stays urgent whatever else is answered. Raised, the answers are the
    evidence (`+attribute:code=key` in `matched`) and the urgency is certain.
    """
    signals = danger_answers(category, answers)
    if not signals or result.urgent:
        return result
    return replace(
        result,
        urgent=True,
        priority=min(result.priority, URGENT_PRIORITY),
        matched=result.matched + tuple(f"+attribute:{signal}" for signal in signals),
        urgency_confidence=1.0,
    )
