"""Numbers as answers: which kinds of unit a question's attribute is measured in ("how
fast": km/h, not "four feet"), which a sentence holds, and which numbers are no answer
to "how many" ("opened in 2016")."""

from __future__ import annotations

import re

from worker.internet.answer_kind import (
    CLOCK_TIME,
    FREQUENCY,
    MONTHS,
    NOT_NAMES,
    asks_for_clock_time,
)

NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
        "million",
        "billion",
        "trillion",
        "dozen",
        "half",
    ]
)
"""Numbers written as words; a sentence holding one holds a number."""
_YEAR_CUES = frozenset(["in", "since", "by", "from", "until", "before", "after", "of", "circa"])
_YEAR = re.compile(r"^(1[0-9]{3}|20[0-9]{2})s?$")
_WORD = re.compile(r"[\w'\u2019-]+")

_UNIT_KINDS = {
    "length": r"mm|cm|m|km|metres?|meters?|kilometres?|kilometers?|feet|foot|ft|inch(?:es)?"
    r"|miles?|yards?",
    "area": r"square (?:kilometres?|kilometers?|metres?|meters?|miles?|feet)|km2|m2"
    r"|hectares?|acres?",
    "speed": r"km/h|mph|kph|knots?|m/s|(?:kilometres?|kilometers?|miles?) (?:an|per) hour",
    "mass": r"g|kg|grams?|kilo(?:gram)?s?|tonnes?|tons?|pounds?|lbs?|ounces?",
    "temperature": r"°\s?[CF]|degrees?|kelvin|K",
    "volume": r"ml|l|litres?|liters?|gallons?",
    "share": r"percent|per cent|%",
    "time": r"seconds?|minutes?|hours?|days?|weeks?|months?|years?|centuries",
    "money": r"(?:(?:million|billion) )?(?:dollars|euros|pounds|crowns|francs|yen)",
}
_UNITS = "|".join([*_UNIT_KINDS.values(), "million", "billion"])
MEASURE = re.compile(rf"\d(?:[\d,.]*\d)?\s?(?:{_UNITS})(?![\w/])", re.I)
"""A number with its unit: "4,127 metres", "11 weeks"."""
_KIND_OF = {
    kind: re.compile(rf"\d(?:[\d,.]*\d)?\s?(?:{units})(?![\w/])", re.I)
    for kind, units in _UNIT_KINDS.items()
}
_MONEY_SYMBOL = re.compile(r"[$\u00a3\u20ac\u00a5]\s?\d")
# The units an asked attribute is measured in ("how fast": km/h, not "four feet").
_ATTRIBUTE_KINDS: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (
        frozenset(
            [
                "tall",
                "high",
                "height",
                "elevation",
                "far",
                "distance",
                "deep",
                "depth",
                "wide",
                "width",
                "wingspan",
                "diameter",
                "radius",
                "range",
                "span",
                "length",
            ]
        ),
        frozenset({"length"}),
    ),
    (frozenset({"long"}), frozenset({"length", "time"})),
    (frozenset({"area"}), frozenset({"area"})),
    (frozenset({"fast", "speed"}), frozenset({"speed"})),
    (frozenset({"heavy", "weight", "weigh", "mass"}), frozenset({"mass"})),
    (
        frozenset(
            [
                "hot",
                "cold",
                "warm",
                "temperature",
                "temp",
                "boil",
                "boiling",
                "melting",
                "freezing",
                "oven",
            ]
        ),
        frozenset({"temperature"}),
    ),
    (frozenset({"old", "age", "lifespan", "duration"}), frozenset({"time"})),
    # Alcohol by volume is a share too ("5.8% ABV").
    (frozenset({"percentage", "percent", "share", "proportion", "abv"}), frozenset({"share"})),
    (
        frozenset(
            [
                "cost",
                "costs",
                "price",
                "pay",
                "spend",
                "spent",
                "worth",
                "ticket",
                "tickets",
                "admission",
                "fee",
                "fees",
                "fare",
                "fares",
            ]
        ),
        frozenset({"money"}),
    ),
)


_COUNTED = re.compile(
    r"\bhow many ((?:[\w-]+ ){0,2}?[\w-]+) (?:do|does|did|are|is|were|was|has|have|had|can"
    r"|will|would|live|lived|there|of|in|on)\b",
    re.I,
)
COUNTED_WITHIN = 3
"""A count answers "how many arches" when "arches" follows within this many words."""


def counted_thing(question: str) -> str | None:
    """What "how many" counts: "arches" in "How many arches does the viaduct have?",
    "goals" in "How many league goals did ... score?"; the number of it is the answer
    ("its 27 arches"), a number in a unit ("400 metres") is some other measure."""
    match = _COUNTED.search(question)
    if match is None:  # "How many bridges cross the river ...": the word after "many"
        match = _COUNTED_WORD.search(question)
    return match.group(1).split()[-1].casefold() if match else None


_COUNTED_WORD = re.compile(r"\bhow many ([a-z-]{3,})\b", re.I)


def unit_kinds(question: str) -> frozenset[str]:
    """The kinds of unit an answer to ``question`` is measured in (``length``, ``time``,
    ``money`` ...); empty when the question names no measured attribute."""
    words = {word.casefold() for word in _WORD.findall(question)}
    kinds: set[str] = {"clock"} if asks_for_clock_time(question) else set()
    for triggers, found in _ATTRIBUTE_KINDS:
        if triggers & words:
            kinds |= found
    return frozenset(kinds)


def measure_kinds(sentence: str) -> set[str]:
    """The kinds of unit the numbers in ``sentence`` are in; "every 15 minutes" says how
    often, not how long."""
    sentence = FREQUENCY.sub(" ", sentence)
    kinds = {kind for kind, pattern in _KIND_OF.items() if pattern.search(sentence)}
    if _MONEY_SYMBOL.search(sentence):
        kinds.add("money")
    if CLOCK_TIME.search(sentence):
        kinds.add("clock")
    if "area" in kinds:
        kinds.discard("length")
    return kinds


def is_number_answer(words: list[str], index: int) -> bool:
    """Whether ``words[index]`` is a number that may answer "how many": not a year after
    "in", "since", a month ... ("opened in 2016")."""
    word = words[index].casefold()
    before = words[index - 1].casefold() if index > 0 else ""
    if _YEAR.match(word) and (before in _YEAR_CUES or before in MONTHS):
        return False
    after = words[index + 1].casefold() if index + 1 < len(words) else ""
    if word == "one" and after in ("of", "day", "way", "time"):  # "One of my favourite ..."
        return False
    if _DAY.match(word) and (after in MONTHS or before in MONTHS):  # "3 May 1973", "May 3"
        return False
    return any(ch.isdigit() for ch in word) or word in NUMBER_WORDS


_DAY = re.compile(r"^\d{1,2}(st|nd|rd|th)?$")
"""A day of the month ("3", "21st"): with a month beside it, a date's, not a count."""


def is_year(word: str) -> bool:
    """A year ("1887") or a decade ("1880s")."""
    return bool(_YEAR.match(word))


def counts_another(stems: list[str], index: int) -> bool:
    """Whether the number at ``index`` (of the stemmed words ``stems``) counts a thing
    named right after it ("two people", "one walk")."""
    following = stems[index + 1] if index + 1 < len(stems) else ""
    return following.isalpha() and following not in NOT_NAMES and following not in _NOT_COUNTED


_NOT_COUNTED = frozenset(["more", "less", "fewer", "than", "times", "per", "each", "are", "were"])
