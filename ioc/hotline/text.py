"""Vietnamese text normalisation for hotline triage.

Citizens type with full diacritics, with none at all (SMS, phones without a Vietnamese keyboard),
with Telex keys left in (`chayj nhaf` = cháy nhà), with SMS abbreviations (`ko`, `dc`, `ng`) and
with stretched letters (`gấpppp`). Everything here turns such text into a sequence of
`Syllable`s that keep both the folded form (`duong`) and the marks the writer actually typed, so
a matcher can compare on the folded form and still tell `cháy` (burn) from `chạy` (run) when the
writer did type the marks.

Steps: NFC, casefold, punctuation to spaces, whitespace collapse, split into words (letters and
digits apart: `50cm` → `50 cm`), expand the abbreviation map (data, from the rules file), then
repair words that cannot be Vietnamese syllables: stretched letters, Telex residue, two syllables
typed together, and last a one-edit correction to a word of the rules' vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

TONES = {
    "\u0300": "huyen",  # à
    "\u0301": "sac",  # á
    "\u0303": "nga",  # ã
    "\u0309": "hoi",  # ả
    "\u0323": "nang",  # ạ
}
# Vowel quality marks: ă (breve), â ê ô (circumflex), ơ ư (horn).
QUALITIES = {"\u0306": "breve", "\u0302": "circumflex", "\u031b": "horn"}
# Hỏi and ngã are confused in writing all over the north (nổ / nỗ), but they also tell words
# apart (bão storm / bảo tell, đổ fall / đỗ park): a confusion is only a half match.
CONFUSABLE_TONES = frozenset({"hoi", "nga"})

_WORD = re.compile(r"[^\W\d_]+|\d+")
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+|_+")

# Folded Vietnamese syllable structure: onset + rhyme (ă/â→a, ê→e, ô/ơ→o, ư→u, đ→d).
_ONSETS = "ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx]"
_RHYME_LIST = """
a ac ach ai am an ang anh ao ap at au ay
e ec ech em en eng enh eo ep et eu
i ia ich iec iem ien ieng iep iet ieu im in inh ip it iu
o oa oac oach oai oam oan oang oanh oao oap oat oay oc oe oem oen oeo oet oi om on ong ooc
oong op ot
u ua uan uang uat uay uc ue uech uenh ui um un ung uo uoc uoi uom uon uong uop uot uou up
ut uu uy uya uych uyen uyet uynh uyt uyu
y yem yen yet yeu
"""
_RHYMES = _RHYME_LIST.split()
_SYLLABLE = re.compile(rf"(?:{_ONSETS})?(?:{'|'.join(sorted(_RHYMES, key=len, reverse=True))})")


def is_syllable(folded: str) -> bool:
    """Whether a folded word can be a Vietnamese syllable (`nguoi` yes, `nguoii`, `chayj` no)."""
    return bool(folded) and _SYLLABLE.fullmatch(folded) is not None and _has_vowel(folded)


def _has_vowel(word: str) -> bool:
    return any(letter in "aeiouy" for letter in word)


def normalise(text: str) -> str:
    """NFC, casefold, punctuation to spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text).casefold()
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text)).strip()


def fold(text: str) -> str:
    """Diacritics removed: đ→d, tone and vowel marks dropped (`Đường` → `duong` once casefolded)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize(
        "NFC", "".join(char for char in decomposed if not unicodedata.combining(char))
    )


def words(text: str) -> list[str]:
    """Normalised words: letters and digits apart."""
    return _WORD.findall(normalise(text))


def ngrams(items: Sequence[str], n: int) -> Iterator[tuple[str, ...]]:
    """Consecutive n-grams of a token sequence."""
    for start in range(len(items) - n + 1):
        yield tuple(items[start : start + n])


@dataclass(frozen=True, slots=True)
class Syllable:
    """One written word: as typed (NFC, casefolded), folded, and the marks that were typed."""

    written: str
    folded: str
    qualities: tuple[str | None, ...]  # vowel quality mark per letter of `folded`
    tone: str | None
    marked: bool  # any tone, quality mark or đ was typed
    corrected: bool = False  # rewritten to a vocabulary word by the one-edit repair
    guessed: bool = False  # marks rebuilt from Telex keys: the tone key may be the slip

    def agreement(self, canonical: Syllable, lenient: bool) -> float:
        """How well this typed word stands for the canonical (fully marked) word of a phrase.

        1.0 or 0.0, except 0.5 when the tones differ only by hỏi for ngã (`nỗ` for `nổ`), a
        misspelling common in the north, or in a word rebuilt from Telex keys (the tone key may
        be the slip): callers decide whether to forgive it. The folded
        forms must be equal. A word typed without marks matches any marking when `lenient`
        (the text as a whole was typed without diacritics). Otherwise the marks typed must
        agree with the phrase: quality marks may be missing but not different, tones equal.
        """
        if self.folded != canonical.folded:
            return 0.0
        if self.corrected or (lenient and not self.marked):
            return 1.0
        for typed, wanted in zip(self.qualities, canonical.qualities, strict=True):
            if typed is not None and typed != wanted:
                return 0.0
        if self.tone == canonical.tone:
            return 1.0
        if self.guessed or {self.tone, canonical.tone} == CONFUSABLE_TONES:
            return 0.5
        return 0.0


@lru_cache(maxsize=65536)
def syllable(word: str) -> Syllable:
    """Analyse one normalised word."""
    letters: list[str] = []
    qualities: list[str | None] = []
    tone: str | None = None
    marked = "đ" in word
    for char in unicodedata.normalize("NFD", word.replace("đ", "d")):
        if unicodedata.combining(char):
            marked = True
            if char in TONES:
                tone = TONES[char]
            elif char in QUALITIES and qualities:
                qualities[-1] = QUALITIES[char]
            continue
        letters.append(char)
        qualities.append(None)
    return Syllable(
        written=word,
        folded=unicodedata.normalize("NFC", "".join(letters)),
        qualities=tuple(qualities),
        tone=tone,
        marked=marked,
    )


@dataclass(frozen=True)
class Analysed:
    """A text as syllables, and whether it was typed with diacritics."""

    syllables: tuple[Syllable, ...]
    accented: bool

    @property
    def folded(self) -> tuple[str, ...]:
        return tuple(item.folded for item in self.syllables)


_TELEX_DOUBLES = (("dd", "đ"), ("aa", "â"), ("ee", "ê"), ("oo", "ô"))
_TELEX_HORN = {"a": "ă", "o": "ơ", "u": "ư"}


def _telex_letters(letters: str) -> str:
    """`dd aa ee oo` → đ â ê ô; `w` marks the last a/o/u before it (`uow` → ươ), else is ư."""
    for typed, meant in _TELEX_DOUBLES:
        letters = letters.replace(typed, meant)
    out: list[str] = []
    for char in letters:
        if char != "w":
            out.append(char)
            continue
        vowel = next((i for i in range(len(out) - 1, -1, -1) if out[i] in _TELEX_HORN), None)
        if vowel is None:
            out.append("ư")
            continue
        out[vowel] = _TELEX_HORN[out[vowel]]
        if out[vowel] == "ơ" and vowel > 0 and out[vowel - 1] == "u":
            out[vowel - 1] = "ư"
    return "".join(out)


_TELEX_TONES = "sfrxj"
_TELEX_TONE_MARKS = dict(zip(_TELEX_TONES, "\u0301\u0300\u0309\u0303\u0323", strict=True))


class Normaliser:
    """Turns free text into syllables; `abbreviations` and `vocabulary` come from the rules.

    `abbreviations` maps what people type (`ko`, `đc`, `xm`, `xạt lở`) to the intended words;
    keys are matched as written (casefolded), so `dò` (a typo of `rò`) never rewrites `do`.
    `vocabulary` is the set of folded words the rules use: targets of the one-edit repair.
    """

    def __init__(
        self,
        abbreviations: Mapping[str, str] | None = None,
        vocabulary: Iterable[str] = (),
        accented_share: float = 0.2,
    ) -> None:
        self._abbreviations: dict[tuple[str, ...], tuple[str, ...]] = {}
        for typed, meant in (abbreviations or {}).items():
            key, value = tuple(words(typed)), tuple(words(meant))
            if key and value:
                self._abbreviations[key] = value
        self._longest = max((len(key) for key in self._abbreviations), default=0)
        self.vocabulary = frozenset(fold(word) for word in vocabulary)
        self.accented_share = accented_share

    def analyse(self, text: str) -> Analysed:
        typed = words(text)
        letters = [word for word in typed if not word.isdigit()]
        marked = sum(1 for word in letters if syllable(word).marked)
        accented = bool(letters) and marked / len(letters) >= self.accented_share
        out: list[Syllable] = []
        for word in self._expand(typed):
            out.extend(self._repair(word))
        return Analysed(tuple(out), accented)

    def _expand(self, typed: list[str]) -> list[str]:
        out: list[str] = []
        index = 0
        while index < len(typed):
            for size in range(min(self._longest, len(typed) - index), 0, -1):
                meant = self._abbreviations.get(tuple(typed[index : index + size]))
                if meant is not None:
                    out.extend(meant)
                    index += size
                    break
            else:
                out.append(typed[index])
                index += 1
        return out

    def _repair(self, word: str) -> list[Syllable]:
        if word.isdigit():
            return [syllable(word)]
        # Letters held down: three or more in a row are never Vietnamese (`gấpppp`).
        word = re.sub(r"(.)\1{2,}", r"\1\1", word)
        found = syllable(word)
        if is_syllable(found.folded) or found.folded in self.vocabulary:
            return [self._spelling(found)]
        single = re.sub(r"(.)\1", r"\1", word)
        if is_syllable(fold(single)):
            return [self._spelling(syllable(single))]
        if not found.marked:
            telex = self._telex(found.folded)
            if telex is not None:
                rebuilt = syllable(telex)
                return [
                    Syllable(
                        word, rebuilt.folded, rebuilt.qualities, rebuilt.tone, True, guessed=True
                    )
                ]
            split = self._split(found.folded)
            if split is not None:
                return [syllable(part) for part in split]
        near = self._nearest(found.folded)
        if near is not None:
            base = syllable(near)
            return [Syllable(word, base.folded, base.qualities, None, False, corrected=True)]
        return [found]

    @staticmethod
    def _spelling(found: Syllable) -> Syllable:
        """`ngiêng` → `nghiêng`: `ng`/`g` before e, ê, i are spelled `ngh`/`gh`."""
        folded = found.folded
        if folded.startswith("ng") and folded[2:3] in ("e", "i") and not folded.startswith("ngh"):
            return syllable("ngh" + found.written[2:])
        return found

    @staticmethod
    def _telex(folded: str) -> str | None:
        """Telex keys typed with the Vietnamese keyboard off, turned into the marks they stand
        for: `nguowif` → `người`, `gaaps` → `gấp`, `nhaf` → `nhà`."""
        letters, tone = folded, ""
        if letters[-1:] in _TELEX_TONES and len(letters) > 2:
            letters, tone = letters[:-1], _TELEX_TONE_MARKS[letters[-1]]
        letters = _telex_letters(letters)
        plain = fold(letters)
        if letters == folded or not is_syllable(plain):
            return None
        vowels = [index for index, char in enumerate(plain) if char in "aeiouy"]
        if tone and vowels:
            at = vowels[-1] + 1
            letters = unicodedata.normalize("NFD", letters)
            # The tone goes after the last vowel letter (its quality marks follow the letter).
            seen, cut = -1, len(letters)
            for index, char in enumerate(letters):
                if not unicodedata.combining(char):
                    seen += 1
                    if seen == at:
                        cut = index
                        break
            letters = letters[:cut] + tone + letters[cut:]
        return unicodedata.normalize("NFC", letters)

    def _split(self, folded: str) -> tuple[str, str] | None:
        """Two syllables typed without the space (`chaynha`), both words of the rules."""
        for cut in range(1, len(folded)):
            head, tail = folded[:cut], folded[cut:]
            known = head in self.vocabulary and tail in self.vocabulary
            if known and is_syllable(head) and is_syllable(tail):
                return head, tail
        return None

    def _nearest(self, folded: str) -> str | None:
        """The single vocabulary word one edit away (Damerau), for words of 4+ letters."""
        if len(folded) < 4:
            return None
        hits = {word for word in _one_edit(folded) if word in self.vocabulary}
        return hits.pop() if len(hits) == 1 else None


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _one_edit(word: str) -> set[str]:
    splits = [(word[:cut], word[cut:]) for cut in range(len(word) + 1)]
    deletes = {head + tail[1:] for head, tail in splits if tail}
    swaps = {head + tail[1] + tail[0] + tail[2:] for head, tail in splits if len(tail) > 1}
    replaces = {head + char + tail[1:] for head, tail in splits if tail for char in _ALPHABET}
    inserts = {head + char + tail for head, tail in splits for char in _ALPHABET}
    return deletes | swaps | replaces | inserts
