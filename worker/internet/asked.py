"""Where in a sentence the asked kind of answer is, and how specific it is.

Split from :mod:`worker.internet.quote` (which scores sentences with these) so that the
picker's scoring and its answer finding each stay readable on their own.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from worker.internet.agreement import names_of_asked_roles
from worker.internet.answer_kind import (
    COLOURS,
    FREQUENCY,
    FULL_DATE,
    MONTH_YEAR,
    MONTHS,
    NOT_NAMES,
    POSTCODE,
    WORDS_OF_KIND,
    in_street_name,
    match_positions,
    material_positions,
    naming_positions,
    place_share,
    places_of_kind,
    starts_a_name,
    version_positions,
)
from worker.internet.measure import (
    COUNTED_WITHIN,
    MEASURE,
    counts_another,
    is_number_answer,
    is_year,
    measure_kinds,
)
from worker.internet.rank import stem

_WORD = re.compile(r"[\w'\u2019-]+")

FULL_ANSWER_BONUS = 1.0
"""Extra answer weight for a full answer: a day, month and year; a first and last name."""
UNIT_BONUS = 0.3
"""Share of FULL_ANSWER_BONUS for a number with its unit ("4,127 metres", "11 weeks")
where a number is asked for: "all four feet" is a number too, but seldom the answer."""

MATCHING_UNIT_BONUS = 0.6
"""Share of FULL_ANSWER_BONUS for a number in the kind of unit the question's attribute
is measured in ("112 km/h" for "how fast", "640 million dollars" for "cost")."""
UNMATCHED_NUMBER_STRENGTH = 0.6
"""Answer strength (a bare number elsewhere: 1) of a number that is not in the kind of
unit the asked attribute has: in another kind ("14 miles" for "how much did it cost")
or in none ("all four feet" for "how fast")."""


NAMED_WITHIN = 4
"""For "What is the name of the ship ...", a name answers only this close to "ship"."""


@dataclass(frozen=True)
class Asked:
    """What a question asks for: the kind of answer, its words (no answer repeats
    them), the units a measured answer comes in, the thing whose name is asked."""

    expects: str | None
    question_words: frozenset[str]
    kinds: frozenset[str]
    thing: str | None
    place_kind: str | None = None
    """The kind of place asked for ("country"): a name said to be another ("the river
    Dresk") is none, one said to be it ("River Weyle") a full answer."""
    roles: frozenset[str] = frozenset()
    """For "Who wrote ...": the role words that may stand by the answer's name."""
    counted: str | None = None
    """The stem of what "how many" counts ("arch" for "How many arches ...")."""
    attribute: frozenset[str] = frozenset()
    """Stems of the question's terms, the words pages use for its attribute and its role
    words: a table row answers only when its label holds one ("Founder", not "Colours")."""
    versions: frozenset[str] = frozenset()
    """The version numbers the question names (none of them answers it)."""


def answer_positions(sentence: str, asked: Asked) -> list[int]:
    """Word positions in ``sentence`` that could be the answer, of the kind expected;
    for "the name of the ship", only a name next to "ship" (within :data:`NAMED_WITHIN`
    words)."""
    matches = list(_WORD.finditer(sentence))
    words = [match.group() for match in matches]
    expects, question_words = asked.expects, asked.question_words
    if expects == "material":
        return material_positions(sentence, [match.start() for match in matches])
    if expects in ("frequency", "postcode"):  # "every second Saturday", "KV7 3RL"
        pattern = FREQUENCY if expects == "frequency" else POSTCODE
        return match_positions(pattern, sentence, [match.start() for match in matches])
    if expects == "version":
        return version_positions(sentence, asked.versions, [match.start() for match in matches])
    positions: list[int] = []
    for index, word in enumerate(words):
        lower = word.casefold()
        if bare(word) in question_words:  # "Library's" restates "Library"
            continue
        if expects == "number":
            if is_number_answer(words, index):  # "opened in 2016" is none to "how many"
                positions.append(index)
        elif expects == "date":
            if is_year(lower) or lower in MONTHS:
                positions.append(index)
        elif expects == "colour":
            if lower in COLOURS:
                positions.append(index)
        elif expects in WORDS_OF_KIND:
            if lower in WORDS_OF_KIND[expects]:
                positions.append(index)
        elif expects == "person" and in_street_name(words, index):
            continue
        elif (
            word[:1].isupper()
            and (index > 0 or starts_a_name(words, question_words))
            and lower not in NOT_NAMES
            and lower not in MONTHS
            and not any(ch.isdigit() for ch in word)
        ):
            positions.append(index)
    if asked.roles:
        positions = names_of_asked_roles(words, positions, asked.roles)
    if asked.place_kind is not None:
        positions = places_of_kind(words, positions, asked.place_kind)
    if asked.thing is not None:
        # A name given by a naming cue ("Staff named him Bramble") needs no thing word.
        things = [i for i, word in enumerate(words) if stem(word.casefold()) == stem(asked.thing)]
        things += naming_positions(words)
        positions = [p for p in positions if any(abs(p - i) <= NAMED_WITHIN for i in things)]
    return positions


def bare(word: str) -> str:
    """``word`` lower-cased without a possessive "'s": "Library's" names the library."""
    lower = word.casefold()
    return lower[:-2] if lower.endswith(("'s", "\u2019s")) and len(lower) > 2 else lower


def answer_strength(sentence: str, asked: Asked, answers: list[int]) -> float:
    """How specific the answer is: a full date beats a year, a full name a single word, a
    measure in the asked kind of unit (or a count of the counted thing: "27 arches") a
    bare number, which beats one in another unit."""
    expects, kinds = asked.expects, asked.kinds
    if expects == "date":
        if FULL_DATE.search(sentence):
            return 1.0 + FULL_ANSWER_BONUS
        return 1.0 + FULL_ANSWER_BONUS / 2 if MONTH_YEAR.search(sentence) else 1.0
    if expects in ("person", "name"):
        named = expects == "name" and bool(naming_positions(_WORD.findall(sentence)) & set(answers))
        paired = named or any(b - a == 1 for a, b in itertools.pairwise(answers))
        return 1.0 + FULL_ANSWER_BONUS if paired else 1.0
    if expects in ("material", "frequency", "postcode", "version"):
        # "mostly smoked eel", "every second Saturday": the sentence says outright what
        # the thing is made of or how often, as a number in the asked unit says how much.
        return 1.0 + FULL_ANSWER_BONUS * MATCHING_UNIT_BONUS
    if expects != "number":  # a place's name is one word as often as two; a colour
        words = _WORD.findall(sentence)
        located = expects == "place"
        return 1.0 + FULL_ANSWER_BONUS * place_share(words, answers, asked.place_kind, located)
    if kinds:
        if measure_kinds(sentence) & kinds:
            return 1.0 + FULL_ANSWER_BONUS * MATCHING_UNIT_BONUS
        return UNMATCHED_NUMBER_STRENGTH
    if asked.counted is not None:
        words = [stem(word.casefold()) for word in _WORD.findall(sentence)]
        if any(asked.counted in words[a + 1 : a + 1 + COUNTED_WITHIN] for a in answers):
            return 1.0 + FULL_ANSWER_BONUS * MATCHING_UNIT_BONUS
        if MEASURE.search(sentence) or all(counts_another(words, a) for a in answers):
            return UNMATCHED_NUMBER_STRENGTH  # "400 metres", "two people" for "how many bridges"
        return 1.0
    if MEASURE.search(sentence):
        return 1.0 + FULL_ANSWER_BONUS * UNIT_BONUS
    return 1.0
