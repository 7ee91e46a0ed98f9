"""What a sentence must agree with the question on besides its terms: the time it asks
about. A sentence about the same attribute at another time is the commonest look-alike
("scored 14 goals in 2022" for "in 2023", "Last year's winner" for "this year's"), and
term overlap cannot tell them apart: both share every word of the question but one.
"""

from __future__ import annotations

import re

OTHER_TIME_FACTOR = 0.5
"""Score multiplier for a sentence about another time than the question asks about: it
holds a year and none of the question's years, or it says "last year's" where the
question says "this year's" (or the other way round)."""
UNMARKED_BEFORE_FACTOR = 0.7
"""Score multiplier, for a question about an earlier time ("last year's"), for a sentence
that does not say it is about one: news and pages state the present unmarked."""

_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NOW = re.compile(
    r"\bthis (year|season)('s)?(?!\w)|\bcurrent(ly)?\b|\bthe latest\b|\bthese days\b", re.I
)
_BEFORE = re.compile(
    r"\b(last|previous|former|past) (year|season|edition|winner|holder|champion)s?('s)?(?!\w)"
    r"|\blast (year|season)'s(?!\w)|\ba year (earlier|before)\b|\bthe year before\b",
    re.I,
)


def asked_years(question: str) -> frozenset[str]:
    """The years ``question`` names ("in 2023")."""
    return frozenset(_YEAR.findall(question))


def asked_time(question: str) -> str | None:
    """``now`` for "this year's", "current"; ``before`` for "last year's", "previous";
    None when the question says neither."""
    if _NOW.search(question):
        return "now"
    if _BEFORE.search(question):
        return "before"
    return None


def time_phrases(question: str) -> str:
    """The text of ``question``'s time phrases ("this year's"): their words say when, not
    what, so a sentence need not hold them."""
    found = [match.group() for pattern in (_NOW, _BEFORE) for match in pattern.finditer(question)]
    return " ".join(found)


def time_factor(sentence: str, *, years: frozenset[str], when: str | None) -> float:
    """:data:`OTHER_TIME_FACTOR` when ``sentence`` is about another time than the asked
    ``years`` or ``when`` (``now``/``before``), :data:`UNMARKED_BEFORE_FACTOR` when an
    earlier time is asked about and the sentence names none, else 1."""
    held = set(_YEAR.findall(sentence))
    if years and held and not held & years:
        return OTHER_TIME_FACTOR
    if when == "now" and _BEFORE.search(sentence) and not _NOW.search(sentence):
        return OTHER_TIME_FACTOR
    if when == "before" and not _BEFORE.search(sentence):
        return OTHER_TIME_FACTOR if _NOW.search(sentence) else UNMARKED_BEFORE_FACTOR
    return 1.0
