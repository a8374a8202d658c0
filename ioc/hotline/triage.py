"""Triage of 1022 tickets: category, urgency, priority and SLA deadline from the free text.

Method: text is normalised (NFC, casefold, SMS abbreviations, Telex and typo repair) and each word
kept both diacritic-folded and with the marks actually typed. Weighted phrases from
`triage_rules.toml`, written with diacritics, match on the folded words, so unaccented text finds
them; marks that were typed must agree (chạy ≠ cháy), and syllables folding onto several words
count only with marks, in longer phrases or near context words. The heaviest category wins
(else a syllable-level vote from the same phrases, else `khac`); urgency adds up phrase and cue
weights, negation-aware."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ioc.hotline.model import TriageModel, decide_urgent, rule_features, text_features
from ioc.hotline.text import Analysed, Normaliser, Syllable, syllable, words
from ioc.models.categories import Category

RULES_PATH = Path(__file__).resolve().with_name("triage_rules.toml")
SLA_PATH = Path(__file__).resolve().with_name("sla.toml")
PRIORITIES = (1, 2, 3, 4)

Finite = Annotated[float, Field(allow_inf_nan=False)]
Hours = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _has_words(value: str) -> str:
    if not words(value):
        raise ValueError(f"phrase {value!r} has no words")
    return value


def _all_have_words(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_has_words(value) for value in values)


class PhraseRule(_Strict):
    """A phrase pointing to a category; `urgency` counts when that category is chosen."""

    text: str
    weight: Finite
    urgency: Finite = 0.0
    exact: bool = False  # words with marks in the phrase must be typed with them
    near: tuple[str, ...] = ()  # one of these must occur within `window` words
    window: int = Field(5, ge=1, le=20)
    decisive: bool = False  # a speech act (praise, wrong number): its category wins

    _text = field_validator("text")(_has_words)
    _near = field_validator("near")(_all_have_words)


class UrgencyCue(_Strict):
    """A category-independent sign of danger (weight > 0) or of no hurry (weight < 0)."""

    text: str
    weight: Finite
    exact: bool = False
    over: bool = False  # says the danger has passed ("đã dập tắt"), not merely calm ("xin hỏi")
    near: tuple[str, ...] = ()  # one of these must occur within `window` words
    window: int = Field(5, ge=1, le=20)

    _text = field_validator("text")(_has_words)
    _near = field_validator("near")(_all_have_words)

    @model_validator(mode="after")
    def _over_calms(self) -> UrgencyCue:
        if self.over and self.weight >= 0:
            raise ValueError(f"cue {self.text!r}: a cue saying the danger is over must calm")
        return self


class CategoryRules(_Strict):
    base_urgency: Finite = 0.0
    phrases: tuple[PhraseRule, ...] = ()


class UrgencyRules(_Strict):
    negators: tuple[str, ...] = ()
    negation_window: int = Field(3, ge=0, le=10)
    cues: tuple[UrgencyCue, ...] = ()


class PriorityRules(_Strict):
    urgent_threshold: Finite
    critical_threshold: Finite
    low_threshold: Finite

    @model_validator(mode="after")
    def _ordered(self) -> PriorityRules:
        if not self.low_threshold < self.urgent_threshold <= self.critical_threshold:
            raise ValueError("need low_threshold < urgent_threshold <= critical_threshold")
        return self


class TextRules(_Strict):
    accented_share: float = Field(0.2, ge=0, le=1)
    skippable: tuple[str, ...] = ()
    abbreviations: dict[str, str] = Field(default_factory=dict)


class BackoffRules(_Strict):
    """Syllable-level fallback when no phrase reaches `min_score`; 0 disables it."""

    min_score: float = Field(0.0, ge=0, allow_inf_nan=False)
    saturation: float = Field(6.0, gt=0, allow_inf_nan=False)
    confidence_scale: float = Field(0.5, ge=0, le=1)
    ignore: tuple[str, ...] = ()


class TriageRules(_Strict):
    """The whole rules file; every category must have its table (possibly empty)."""

    version: Literal[1]
    default_category: Category = Category.KHAC
    min_score: float = Field(gt=0, allow_inf_nan=False)
    confidence_prior: float = Field(2.0, ge=0, allow_inf_nan=False)
    fallback_confidence: float = Field(0.25, ge=0, le=1)
    text: TextRules = TextRules()
    priority: PriorityRules
    urgency: UrgencyRules = UrgencyRules()
    backoff: BackoffRules = BackoffRules()
    categories: dict[Category, CategoryRules]

    @field_validator("categories")
    @classmethod
    def _complete(cls, value: dict[Category, CategoryRules]) -> dict[Category, CategoryRules]:
        missing = [category.value for category in Category if category not in value]
        if missing:
            raise ValueError(f"categories missing: {', '.join(missing)}")
        return value


class PriorityHours(_Strict):
    p1: Hours
    p2: Hours
    p3: Hours
    p4: Hours

    @model_validator(mode="after")
    def _non_decreasing(self) -> PriorityHours:
        if not self.p1 <= self.p2 <= self.p3 <= self.p4:
            raise ValueError("hours must not decrease from p1 to p4")
        return self

    def of(self, priority: int) -> float:
        if priority not in PRIORITIES:
            raise ValueError(f"priority {priority} is not 1..4")
        return float(getattr(self, f"p{priority}"))


class SlaTable(_Strict):
    """Hours from receipt to the deadline, per category and priority (1 = most urgent)."""

    version: Literal[1]
    hours: dict[Category, PriorityHours]

    @field_validator("hours")
    @classmethod
    def _complete(cls, value: dict[Category, PriorityHours]) -> dict[Category, PriorityHours]:
        missing = [category.value for category in Category if category not in value]
        if missing:
            raise ValueError(f"SLA hours missing for: {', '.join(missing)}")
        return value

    def hours_for(self, category: Category, priority: int) -> float:
        return self.hours[category].of(priority)


def load_rules(path: Path = RULES_PATH) -> TriageRules:
    with path.open("rb") as handle:
        return TriageRules.model_validate(tomllib.load(handle))


def load_sla(path: Path = SLA_PATH) -> SlaTable:
    with path.open("rb") as handle:
        return SlaTable.model_validate(tomllib.load(handle))


@dataclass(frozen=True)
class TriageResult:
    category: Category
    urgent: bool
    priority: int  # 1..4, 1 most urgent
    confidence: float  # 0..1, of the category
    matched: tuple[str, ...]  # category phrases, then urgency cues as "+cue" / "-cue"
    urgency_confidence: float  # 0..1, that `urgent` is right: staff look at low ones first
    model: str | None = None  # the model's version; None for the rules alone


@dataclass(frozen=True)
class _Verdict:
    """The rules' result and the evidence the model takes from them."""

    result: TriageResult
    totals: dict[Category, float]  # phrase weight per category
    urgency: float  # the harm score: phrase and cue urgency
    relief: bool  # a sign that the danger is over or was never there ("đã dập tắt", "xin hỏi")
    settled: bool  # the danger has passed, or nothing live is said (see `_judge`)
    cues: tuple[tuple[str, float], ...]  # urgency cues found, with their weights


Pattern = tuple[Syllable, ...]


def _pattern(text: str) -> Pattern:
    return tuple(syllable(word) for word in words(text))


@dataclass(frozen=True)
class _Rule:
    category: Category | None  # None: an urgency cue
    text: str
    pattern: Pattern
    weight: float
    urgency: float
    exact: bool
    near: tuple[Pattern, ...]
    window: int
    decisive: bool = False


Span = tuple[int, int, float]  # start, end, agreement (1.0, or 0.5 with a hỏi/ngã slip)


class _Matcher:
    """Finds phrases in one analysed text."""

    def __init__(self, analysed: Analysed, skippable: frozenset[str]) -> None:
        self.tokens = analysed.syllables
        self.lenient = not analysed.accented
        self.skippable = skippable
        self.index: dict[str, list[int]] = defaultdict(list)
        for position, token in enumerate(self.tokens):
            self.index[token.folded].append(position)
        self._cache: dict[tuple[int, bool], list[Span]] = {}

    def _agreement(self, token: Syllable, wanted: Syllable, exact: bool) -> float:
        if exact and wanted.marked and not token.marked:
            return 0.0
        return token.agreement(wanted, self.lenient)

    def spans(self, pattern: Pattern, exact: bool = False) -> list[Span]:
        """Each occurrence; one skippable word may sit between two words of the phrase.

        A single-word phrase needs full agreement; in longer phrases the context vouches for a
        hỏi/ngã slip, at half weight.
        """
        if pattern[0].folded not in self.index:
            return []
        key = (id(pattern), exact)  # patterns live as long as the rules (hashing one is slow)
        if key in self._cache:
            return self._cache[key]
        found: list[Span] = []
        size = len(self.tokens)
        floor = 0.5 if len(pattern) > 1 else 1.0
        for start in self.index.get(pattern[0].folded, ()):
            agreement = self._agreement(self.tokens[start], pattern[0], exact)
            position = start + 1
            for wanted in pattern[1:]:
                if agreement < floor:
                    break
                if position < size and (
                    step := self._agreement(self.tokens[position], wanted, exact)
                ):
                    position += 1
                elif (
                    position + 1 < size
                    and self.tokens[position].folded in self.skippable
                    and (step := self._agreement(self.tokens[position + 1], wanted, exact))
                ):
                    position += 2
                else:
                    step = 0.0
                agreement = min(agreement, step)
            if agreement >= floor:
                found.append((start, position, agreement))
        self._cache[key] = found
        return found

    def near(self, span: Span, patterns: Iterable[Pattern], window: int) -> bool:
        start, end, _ = span
        for pattern in patterns:
            for other_start, other_end, _ in self.spans(pattern):
                if other_start < end + window and other_end > start - window:
                    return True
        return False


@dataclass(frozen=True)
class _Hit:
    rule: _Rule
    spans: tuple[Span, ...]

    @property
    def agreement(self) -> float:
        return max(span[2] for span in self.spans)

    @property
    def weight(self) -> float:
        return self.rule.weight * self.agreement

    @property
    def urgency(self) -> float:
        return self.rule.urgency * self.agreement

    def inside(self, other: _Hit) -> bool:
        """Every occurrence lies within an occurrence of a longer phrase."""
        return len(other.rule.pattern) > len(self.rule.pattern) and all(
            any(start >= o_start and end <= o_end for o_start, o_end, _ in other.spans)
            for start, end, _ in self.spans
        )


class _Profile:
    """Which categories each syllable of the rules' phrases speaks for (by phrase weight).

    A ticket none of whose phrases is known still has words the rules use: "xe", "đâm",
    "trộm", "ngập". Each distinct word votes with its category distribution squared, so words
    that belong to one category count and words spread over many (đường, nhà) hardly do, and
    scaled by how much phrase weight stands behind it (full from `saturation`), so a word seen
    in a single phrase (mở in "mở nhạc") hardly counts either.
    """

    def __init__(
        self, rules: Iterable[_Rule], ignore: frozenset[str], saturation: float = 6.0
    ) -> None:
        self.saturation = saturation
        weights: dict[str, dict[Category, float]] = defaultdict(lambda: defaultdict(float))
        canonical: dict[str, Syllable] = {}
        for rule in rules:
            if rule.category is None or rule.weight <= 0:
                continue
            share = rule.weight / len(rule.pattern)
            for word in rule.pattern:
                if word.folded in ignore or len(word.folded) < 2 or word.folded.isdigit():
                    continue
                weights[word.written][rule.category] += share
                canonical[word.written] = word
        self.by_folded: dict[str, list[tuple[Syllable, dict[Category, float]]]] = defaultdict(list)
        for written, per_category in weights.items():
            self.by_folded[canonical[written].folded].append((canonical[written], per_category))

    def votes(self, analysed: Analysed) -> dict[Category, list[tuple[str, float]]]:
        lenient = not analysed.accented
        out: dict[Category, list[tuple[str, float]]] = defaultdict(list)
        seen: set[str] = set()
        for token in analysed.syllables:
            if token.written in seen:
                continue
            seen.add(token.written)
            counts: dict[Category, float] = defaultdict(float)
            for word, per_category in self.by_folded.get(token.folded, ()):
                if token.agreement(word, lenient) == 1.0:
                    for category, weight in per_category.items():
                        counts[category] += weight
            total = sum(counts.values())
            evidence = min(1.0, total / self.saturation)
            for category, weight in counts.items():
                out[category].append((token.written, (weight / total) ** 2 * evidence))
        return out


def _features(analysed: Analysed, verdict: _Verdict) -> dict[str, float]:
    return text_features(analysed.folded) | rule_features(
        verdict.totals,
        verdict.urgency,
        verdict.result.urgent,
        verdict.relief,
        verdict.settled,
        verdict.cues,
        analysed.accented,
    )


class Triage:
    """Categorises and prioritises tickets with the rules, and dates them with the SLA table."""

    def __init__(self, rules: TriageRules, sla: SlaTable, model: TriageModel | None) -> None:
        self.rules = rules
        self.sla = sla
        self.model = model
        self._rules = [
            _Rule(
                category=category,
                text=phrase.text,
                pattern=_pattern(phrase.text),
                weight=phrase.weight,
                urgency=phrase.urgency,
                exact=phrase.exact,
                near=tuple(_pattern(text) for text in phrase.near),
                window=phrase.window,
                decisive=phrase.decisive,
            )
            for category, table in rules.categories.items()
            for phrase in table.phrases
        ]
        # Each rule by the folded form of its first word: a ticket only tries the rules whose
        # first word it contains (profiled: trying all 1,300 took 40 % of triage).
        self._by_first: dict[str, list[int]] = defaultdict(list)
        for index, rule in enumerate(self._rules):
            self._by_first[rule.pattern[0].folded].append(index)
        self._cues = [
            _Rule(
                None,
                cue.text,
                _pattern(cue.text),
                cue.weight,
                0.0,
                cue.exact,
                tuple(_pattern(text) for text in cue.near),
                cue.window,
            )
            for cue in rules.urgency.cues
        ]
        self._over = frozenset(cue.text for cue in rules.urgency.cues if cue.over)
        self._negators = [_pattern(text) for text in rules.urgency.negators]
        self._skippable = frozenset(
            syllable(word).folded for text in rules.text.skippable for word in words(text)
        )
        vocabulary = {
            token.folded
            for rule in (*self._rules, *self._cues)
            for pattern in (rule.pattern, *rule.near)
            for token in pattern
        }
        vocabulary |= {
            syllable(word).folded
            for text in rules.text.abbreviations.values()
            for word in words(text)
        }
        self.normaliser = Normaliser(
            rules.text.abbreviations, vocabulary, rules.text.accented_share
        )
        ignore = {syllable(word).folded for text in rules.backoff.ignore for word in words(text)}
        self._profile = _Profile(
            self._rules, frozenset(ignore | self._skippable), rules.backoff.saturation
        )

    @classmethod
    def load(
        cls, rules: Path | None = None, sla: Path | None = None, model: Path | None = None
    ) -> Triage:
        """The bundled rules, SLA table and model unless other files are given; a missing or
        corrupt model raises `TriageModelError`."""
        return cls(
            load_rules(rules or RULES_PATH), load_sla(sla or SLA_PATH), TriageModel.load(model)
        )

    def _rules_starting(self, matcher: _Matcher) -> list[_Rule]:
        """The rules whose first word is in the text, in the rules' order."""
        found = sorted(index for token in matcher.index for index in self._by_first.get(token, ()))
        return [self._rules[index] for index in found]

    def _matches(self, matcher: _Matcher) -> list[_Hit]:
        """The phrases found: the strongest rule per category and phrase text (each phrase counts
        once), less those lying inside a longer phrase of the same category found in the text."""
        best: dict[tuple[Category | None, str], _Hit] = {}
        for rule in self._rules_starting(matcher):
            spans = matcher.spans(rule.pattern, rule.exact)
            if rule.near:
                spans = [span for span in spans if matcher.near(span, rule.near, rule.window)]
            if not spans:
                continue
            hit = _Hit(rule, tuple(spans))
            key = (rule.category, rule.text)
            if key not in best or (hit.weight, hit.urgency) > (best[key].weight, best[key].urgency):
                best[key] = hit
        hits = list(best.values())
        return [
            hit
            for hit in hits
            if not any(
                other.rule.category == hit.rule.category and hit.inside(other) for other in hits
            )
        ]

    def scores(self, text: str) -> dict[Category, float]:
        """The total phrase weight per category, for explanations and tuning."""
        matcher = _Matcher(self.normaliser.analyse(text), self._skippable)
        totals = dict.fromkeys(Category, 0.0)
        for hit in self._matches(matcher):
            totals[hit.rule.category] += hit.weight
        return totals

    def classify(self, text: str, service_code: Category | None = None) -> TriageResult:
        """Category (or `service_code` when given), urgency and priority from the text.

        The rules judge first; with a model, their evidence joins the text's n-grams and the
        model decides (see `ioc.hotline.model`), leaning urgent below certainty: a ticket is
        urgent from `urgent_threshold`, a probability well under one half, and a fire or
        explosion is urgent unless the text says it is out or reads calm with nothing live.
        """
        analysed = self.normaliser.analyse(text)
        verdict = self._judge(analysed, service_code)
        if self.model is None:
            return verdict.result
        prediction = self.model.predict(_features(analysed, verdict))
        if service_code is None:
            category = max(Category, key=lambda name: prediction.category[name])
            confidence = prediction.category[category]
        else:
            category, confidence = Category(service_code), 1.0
        chance = prediction.urgent_probability
        urgent = decide_urgent(category, chance, self.model.urgent_threshold, verdict.settled)
        odds = prediction.priority
        pair = (1, 2) if urgent else (3, 4)
        priority = max(pair, key=lambda level: odds[level])
        return TriageResult(
            category=category,
            urgent=urgent,
            priority=priority,
            confidence=round(confidence, 3),
            matched=verdict.result.matched,
            urgency_confidence=round(chance if urgent else 1.0 - chance, 3),
            model=self.model.version,
        )

    def features(self, text: str) -> dict[str, float]:
        """What the model reads of a text: its n-grams and the rules' evidence."""
        analysed = self.normaliser.analyse(text)
        return _features(analysed, self._judge(analysed, None))

    def _judge(self, analysed: Analysed, service_code: Category | None) -> _Verdict:
        matcher = _Matcher(analysed, self._skippable)
        hits = self._matches(matcher)
        totals = dict.fromkeys(Category, 0.0)
        for hit in hits:
            totals[hit.rule.category] += hit.weight

        backed: list[str] = []
        decisive = [
            hit.rule.category
            for hit in hits
            if hit.rule.decisive and hit.weight > 0 and hit.rule.category is not None
        ]
        if decisive:
            category = max(decisive, key=lambda name: totals[name])
            confidence = 1.0
        else:
            category, confidence = self._decide(totals)
            if max(totals.values()) < self.rules.min_score:
                category, confidence, backed = self._back_off(analysed, totals)

        cues = self._cues_found(matcher)
        cue_urgency = sum(weight for _, weight in cues)
        urgency, chosen = self._urgency(category, hits)
        if service_code is not None:
            # The code fixes the category; the text still says how urgent it is, also when it
            # speaks of another category (a fire filed under traffic is still a fire).
            given = Category(service_code)
            given_urgency, given_hits = self._urgency(given, hits)
            if given_urgency >= urgency:
                urgency, chosen = given_urgency, given_hits
            category, confidence, backed = given, 1.0, []
        urgency += cue_urgency

        thresholds = self.rules.priority
        urgent = urgency >= thresholds.urgent_threshold
        if urgent:
            priority = 1 if urgency >= thresholds.critical_threshold else 2
        else:
            priority = 4 if urgency <= thresholds.low_threshold else 3
        explained = [hit.rule.text for hit in chosen if hit.weight > 0 or hit.urgency > 0]
        explained += [f"~{word}" for word in backed]
        explained += [
            ("+" if weight > 0 else "-") + text
            for text, weight in sorted(cues, key=lambda cue: (-abs(cue[1]), cue[0]))
        ]
        result = TriageResult(
            category,
            urgent,
            priority,
            round(confidence, 3),
            tuple(explained),
            urgency_confidence=1.0,
        )
        relief = any(weight < 0 for _, weight in cues)
        # Settled: the text says the danger has passed, or reads calm with no sign of anything
        # live ("cho hỏi" alone is settled; "cho hỏi … bình gas đang xì" is not).
        settled = any(text in self._over for text, _ in cues) or (
            relief and not any(weight > 0 for _, weight in cues)
        )
        return _Verdict(result, totals, urgency, relief, settled, tuple(cues))

    def _urgency(self, category: Category, hits: list[_Hit]) -> tuple[float, list[_Hit]]:
        """The category's base urgency plus the urgency of its phrases found."""
        chosen = sorted(
            (hit for hit in hits if hit.rule.category == category),
            key=lambda hit: (-hit.weight, hit.rule.text),
        )
        base = self.rules.categories[category].base_urgency
        return base + sum(hit.urgency for hit in chosen), chosen

    def _decide(self, totals: dict[Category, float]) -> tuple[Category, float]:
        ranked = sorted(Category, key=lambda category: -totals[category])
        top, second = totals[ranked[0]], max(totals[ranked[1]], 0.0)
        if top < self.rules.min_score:
            return self.rules.default_category, self.rules.fallback_confidence
        return ranked[0], top / (top + second + self.rules.confidence_prior)

    def _back_off(
        self, analysed: Analysed, phrase_totals: dict[Category, float]
    ) -> tuple[Category, float, list[str]]:
        """No phrase decided: the weak phrase evidence and the words the rules use (see
        `_Profile`) compete; the stronger wins if it reaches the backoff's `min_score`."""
        settings = self.rules.backoff
        fallback = (self.rules.default_category, self.rules.fallback_confidence, [])
        if settings.min_score <= 0:
            return fallback
        votes = self._profile.votes(analysed)
        totals = {name: sum(vote for _, vote in items) for name, items in votes.items()}
        for name, score in phrase_totals.items():
            if score > totals.get(name, 0.0):
                totals[name] = score
                votes[name] = []
        ranked = sorted(totals, key=lambda name: (-totals[name], list(Category).index(name)))
        if not ranked or totals[ranked[0]] < settings.min_score:
            return fallback
        top = totals[ranked[0]]
        second = max(totals[ranked[1]], 0.0) if len(ranked) > 1 else 0.0
        share = top / (top + second + self.rules.confidence_prior)
        words_used = [word for word, vote in votes[ranked[0]] if vote >= 0.25]
        return ranked[0], share * settings.confidence_scale, words_used

    def _cues_found(self, matcher: _Matcher) -> list[tuple[str, float]]:
        """Urgency cues found (each once, none inside a longer cue found); a raising cue with a
        negator just before it ("không ai bị thương") does not count, nor a cue with `near`
        words when none of them is close by."""
        window = self.rules.urgency.negation_window
        hits: list[_Hit] = []
        for cue in self._cues:
            spans = [
                span
                for span in matcher.spans(cue.pattern, cue.exact)
                if (cue.weight < 0 or not self._negated(matcher, span[0], window))
                and (not cue.near or matcher.near(span, cue.near, cue.window))
            ]
            if spans:
                hits.append(_Hit(cue, tuple(spans)))
        return [
            (hit.rule.text, hit.weight)
            for hit in hits
            if not any(hit.inside(other) for other in hits)
        ]

    def _negated(self, matcher: _Matcher, start: int, window: int) -> bool:
        return any(
            max(0, start - window) <= negation_start < start
            for negator in self._negators
            for negation_start, _, _ in matcher.spans(negator)
        )

    def sla_due(self, result: TriageResult, received_at: datetime) -> datetime:
        """When the ticket must be handled: receipt plus the table's hours."""
        return received_at + timedelta(hours=self.sla.hours_for(result.category, result.priority))
