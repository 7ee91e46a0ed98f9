"""What a sentence must agree with the question on besides its terms: the time it asks
about. A sentence about the same attribute at another time is the commonest look-alike
("scored 14 goals in 2022" for "in 2023", "Last year's winner" for "this year's"), and
term overlap cannot tell them apart: both share every word of the question but one.
"""

from __future__ import annotations

import re

from worker.internet.answer_kind import spans
from worker.internet.rank import STOPWORDS


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


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


# Who held a role in making or running something: the verbs and nouns a question asks
# it with, and the role words a page attaches to that person's name. A name attached to
# another role ("Director Paulo Wenz" for "Who wrote ...") is that other person.
_ROLES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "write": (
        _words("wrote write writes written writer author"),
        _words(
            "author writer novelist poet composer lyricist librettist songwriter"
            " playwright screenwriter journalist wrote written"
        ),
    ),
    "direct": (
        _words("directed direct directs director"),
        _words("director filmmaker directed"),
    ),
    "found": (
        _words("founded found founds founder"),
        _words("founder co-founder founded"),
    ),
    "design": (
        _words("designed design designs designer architect"),
        _words("designer architect engineer designed"),
    ),
    "build": (
        _words("built build builds builder"),
        _words("builder architect engineer built"),
    ),
    "invent": (
        _words("invented invent inventor"),
        _words("inventor invented"),
    ),
    "compose": (
        _words("composed compose composer"),
        _words("composer composed"),
    ),
    "paint": (
        _words("painted paint painter"),
        _words("painter artist painted"),
    ),
    "own": (_words("owns own owned owner"), _words("owner owned")),
    "coach": (
        _words("coaches coach coached manages manager"),
        _words("coach manager trainer coached managed"),
    ),
    "mayor": (frozenset(["mayor"]), frozenset(["mayor"])),
    "chef": (frozenset(["chef"]), frozenset(["chef", "cook"])),
    "captain": (
        frozenset(["captain", "captains", "captained"]),
        frozenset(["captain", "skipper", "captained"]),
    ),
}
OTHER_ROLE_WORDS = _words(
    "producer editor publisher translator illustrator actor actress star presenter"
    " executive ceo chairman chairwoman chair president curator conductor narrator"
    " judge produced edited published translated illustrated narrated starring played"
    " run developer developed client commissioned sponsor sponsored"
)
"""Role words of no asked role: they mark a name as someone else's."""
_ALL_ROLE_WORDS = frozenset().union(*(words for _, words in _ROLES.values())) | OTHER_ROLE_WORDS
_BEFORE_ROLE = frozenset(["the", "a", "an", "its", "his", "her", "their", "our", "by"])


def asked_roles(question: str) -> frozenset[str]:
    """The role words that may stand by the answer's name when ``question`` asks who
    held a role ("Who wrote ...": author, writer, poet ...); empty when it asks none
    ("Who won ...": a winner is named by any role, "Its author, ...")."""
    words = {word.casefold() for word in re.findall(r"[\w-]+", question)}
    roles: set[str] = set()
    for verbs, role_words in _ROLES.values():
        if verbs & words:
            roles |= role_words
    return frozenset(roles)


def names_of_asked_roles(
    words: list[str], positions: list[int], roles: frozenset[str]
) -> list[int]:
    """``positions`` (of name words in ``words``) less the names a role word other than
    ``roles`` is attached to: right before the name ("Director Paulo Wenz", "directed
    by Ana Pell") or right after it ("Ana Pell, the producer")."""
    kept: list[int] = []
    for span in spans(positions):
        role = None
        while span and words[span[0]].casefold() in _ALL_ROLE_WORDS:  # "Director Ana Pell"
            role = words[span.pop(0)].casefold()
        if span and role is None:
            role = _attached_role(words, span[0], span[-1])
        if role is None or role in roles:
            kept.extend(span)
    return kept


def _attached_role(words: list[str], start: int, end: int) -> str | None:
    lower = [word.casefold() for word in words]
    before = [lower[i] for i in range(max(0, start - 3), start)]
    if before and before[-1] in ("the", "a", "an"):  # "developed by the Halder Group"
        before.pop()
    before = before[-2:]
    if before and before[-1] == "by" and len(before) == 2:  # "directed by"
        before = before[:1]
    if before and before[-1] in _ALL_ROLE_WORDS:
        return before[-1]
    after = [word for word in lower[end + 1 : end + 3] if word not in _BEFORE_ROLE][:1]
    return after[0] if after and after[0] in _ALL_ROLE_WORDS else None


OTHER_MODEL_FACTOR = 0.5
"""Score multiplier for a sentence about another model of the asked name: "Ventra K2"
where the question asks about the "Ventra K3", "Apollo 13" for "Apollo 11"."""
_NUMBER = r"[A-Za-z]{0,3}\d(?:[\w-]|\.\d)*"
"""A model number: "K3", "RX-7", "760", "4.2" (a release, with its point)."""
_MODEL = re.compile(rf"\b([A-Z][\w-]*) ({_NUMBER})\b")


_ASKED_MODEL = re.compile(rf"\b([A-Za-z][\w-]*) ({_NUMBER})\b")
"""A name and a model number in a question, in any case: a question typed as a search
query writes names in lower case ("nimbussync 7", "kovar rx 760")."""


def asked_models(question: str) -> dict[str, str]:
    """The names with a model number in ``question`` ("Ventra K3", or "ventra k3" in a
    lower-case query: ``ventra`` -> ``k3``); a stopword is no name ("at 180")."""
    return {
        name.casefold(): number.casefold()
        for name, number in _ASKED_MODEL.findall(question)
        if name.casefold() not in STOPWORDS
    }


def model_factor(sentence: str, models: dict[str, str]) -> float:
    """:data:`OTHER_MODEL_FACTOR` when ``sentence`` names an asked name with another
    model number and never with the asked one, else 1."""
    if not models:
        return 1.0
    held = [(name.casefold(), number.casefold()) for name, number in _MODEL.findall(sentence)]
    other = any(models.get(name, number) != number for name, number in held)
    asked = any(models.get(name) == number for name, number in held)
    # A model number alone names the model too ("The E5 cuts out at 25 km/h").
    numbers = {word.casefold() for word in _MODEL_NUMBER.findall(sentence)}
    wanted = set(models.values())
    asked = asked or bool(numbers & wanted)
    other = other or any(_same_series(number, wanted) for number in numbers - wanted)
    return OTHER_MODEL_FACTOR if other and not asked else 1.0


_MODEL_NUMBER = re.compile(r"\b[A-Z]{1,3}\d[\w-]*\b")


def _same_series(number: str, wanted: set[str]) -> bool:
    """Whether ``number`` ("e5") is another model of a series asked for ("e7")."""
    prefix = number.rstrip("0123456789")
    return bool(prefix) and any(
        other.rstrip("0123456789") == prefix and other != number for other in wanted
    )


LIKENESS_FACTOR = 0.5
"""Score multiplier for a sentence about a likeness of the asked thing ("A 20 cm model of
the Ferryman statue, cast in resin"): the model's size or material is not the thing's."""
_LIKENESS = re.compile(
    r"\b(?:a|an)\s+(?:[\w-]+\s+){0,3}?(?:model|replica|miniature|mock-up|figurine"
    r"|statuette|toy|souvenir)s?\s+of\b",
    re.I,
)


def likeness_factor(sentence: str, question: str) -> float:
    """:data:`LIKENESS_FACTOR` when ``sentence`` is about a model, replica or miniature of
    something and ``question`` asks about no such likeness, else 1."""
    if _LIKENESS.search(sentence) and not _LIKENESS_WORD.search(question):
        return LIKENESS_FACTOR
    return 1.0


_LIKENESS_WORD = re.compile(
    r"\b(?:model|replica|miniature|mock-up|figurine|statuette|toy|souvenir)s?\b",
    re.I,
)
