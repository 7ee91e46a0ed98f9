"""Pick the sentence that answers the question from the ranked passages.

Small models given a passage that holds the answer often ignore it, so the answer can
open with the best sentence, cited, before the model writes a word. A sentence scores by
how much of the question it covers (terms weighted by rarity), whether it holds the kind
of answer asked for (a number for "how many", a date for "when", a name for "who"), how
close that answer sits to the question's terms, how well its passage ranked, and whether
it is about the asked time, model and role (:mod:`worker.internet.agreement`); a sentence
opening with a pronoun counts the subject of the one before (:mod:`.sentences`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from worker.internet.agreement import (
    asked_models,
    asked_roles,
    asked_time,
    asked_years,
    likeness_factor,
    model_factor,
    names_of_asked_roles,
    time_factor,
    time_phrases,
)
from worker.internet.answer_kind import (
    COLOURS,
    FREQUENCY,
    FULL_DATE,
    MONTH_YEAR,
    MONTHS,
    NOT_NAMES,
    POSTCODE,
    WORDS_OF_KIND,
    asked_place_kind,
    expected_answer,
    in_street_name,
    match_positions,
    material_positions,
    named_thing,
    naming_positions,
    place_share,
    places_of_kind,
    starts_a_name,
)
from worker.internet.measure import (
    COUNTED_WITHIN,
    MEASURE,
    counted_thing,
    counts_another,
    is_number_answer,
    is_year,
    measure_kinds,
    unit_kinds,
)
from worker.internet.rank import QuestionShape, analyse_question, stem, tokenize
from worker.internet.sentences import Sentence, sentences_with_referents, trim_sentence

_WORD = re.compile(r"[\w'\u2019-]+")
_ASKS = re.compile(r"\?[\"'\u201d)]*\s*$")

MAX_QUOTE_CHARS = 320
"""Longest quote; a longer sentence is cut around the words that matched the question."""
ANSWER_WEIGHT = 1.0
"""Added to a sentence's score when it holds the kind of answer asked for."""
MISSING_ANSWER_FACTOR = 0.35
"""Score multiplier for a sentence without the kind of answer the question asks for."""
FULL_ANSWER_BONUS = 1.0
"""Extra answer weight for a full answer: a day, month and year; a first and last name."""
CLOSENESS_WEIGHT = 0.6
"""Added (times 1 / (1 + distance / 4)) for an answer near the question's terms."""
PASSAGE_WEIGHT = 0.3
"""Share of a sentence's score that depends on its passage's rank score."""
TITLE_WEIGHT = 0.4
"""Share of a sentence's score that depends on how much of the question its page's title
holds (a page about the question's subject beats a page that mentions it)."""
CONTEXT_CREDIT = 0.6
"""Credit for a question term found only around a sentence (its passage, heading, title)
rather than in it: "It has 163 floors" answers for the building its page is about."""
REFERENT_CREDIT = 0.7
"""Credit for a question term that a sentence holds only through the pronoun it opens
with ("She was born in ..." after a sentence naming Ilse Marren)."""
SUBJECT_MISSING_FACTOR = 0.5
"""Score multiplier per subject term (a question term that most of the pages hold: what
the question is about) missing from a sentence, its heading and its page's title."""
PHRASE_WEIGHT = 0.5
"""Added, times the share of the question's neighbouring term pairs, for those pairs
side by side in a sentence, its heading or its title ("Apollo 11", not "Apollo 13")."""
MIN_IDF_SHARE = 0.5
"""Each question term weighs at least this share of the heaviest one: the question's
subject is on most pages, so its rarity among the sentences undersells it."""
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
class _Asked:
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
    attribute: frozenset[str] = frozenset()
    """Stems of the question's terms, the words pages use for its attribute and its role
    words: a table row answers only when its label holds one ("Founder", not "Colours")."""
    """The stem of what "how many" counts ("arch" for "How many arches ...")."""


@dataclass(frozen=True)
class Quote:
    """A sentence from source ``source_index`` and how well it answers (higher is better)."""

    source_index: int
    text: str
    score: float


@dataclass(frozen=True)
class QuotedPassage:
    """What :func:`pick_quotes` reads: a passage's source number, text and rank score."""

    source_index: int
    text: str
    score: float
    context: str = ""
    """The section heading: a sentence's subject is often only there or in the title."""
    title: str = ""
    """The page's title: a page about the question's subject is likelier to answer it."""


def pick_quotes(question: str, passages: Sequence[QuotedPassage]) -> list[Quote]:
    """The best sentence of each passage, best first (passages without one are left out)."""
    best_of: dict[int, Quote] = {}
    for number, quote in score_sentences(question, passages):
        current = best_of.get(number)
        if current is None or quote.score > current.score:
            best_of[number] = quote
    return sorted(best_of.values(), key=lambda quote: -quote.score)


def score_sentences(question: str, passages: Sequence[QuotedPassage]) -> list[tuple[int, Quote]]:
    """Every sentence of ``passages`` that answers ``question`` at all, with the position
    of its passage in ``passages`` and its score (in passage and sentence order)."""
    shape = analyse_question(question)
    expects = expected_answer(question, shape)
    when_words = set(tokenize(time_phrases(question)))
    shape = QuestionShape(
        terms=[term for term in shape.terms if term not in when_words],
        related=shape.related,
        expects=shape.expects,
    )
    if not shape.terms or not passages:
        return []
    years, when = asked_years(question), asked_time(question)
    models = asked_models(question)
    asked = _Asked(
        expects=expects,
        question_words=frozenset(_bare(word) for word in _WORD.findall(question)),
        kinds=unit_kinds(question),
        thing=named_thing(question) if expects == "name" else None,
        place_kind=asked_place_kind(question) if expects in ("place", "name") else None,
        roles=asked_roles(question) if expects == "person" else frozenset(),
        counted=stem(thing) if (thing := counted_thing(question)) else None,
        attribute=frozenset([*shape.terms, *shape.related, *map(stem, asked_roles(question))]),
    )
    top = max((passage.score for passage in passages), default=0.0) or 1.0
    join = MAX_QUOTE_CHARS if expects == "person" else 0
    sentences = [
        (n, s) for n, p in enumerate(passages) for s in sentences_with_referents(p.text, join)
    ]
    idf = _idf(shape, [set(tokenize(sentence.text)) for _, sentence in sentences])
    contexts = [set(tokenize(f"{p.title}\n{p.context}\n{p.text}")) for p in passages]
    titles = [set(tokenize(p.title)) for p in passages]
    term_weight = sum(idf[term] for term in set(shape.terms)) or 1.0
    subject = _subject_terms(shape, passages)
    pairs = set(itertools.pairwise(shape.terms))
    wanted = {*shape.terms, *shape.related}
    scored: list[tuple[int, Quote]] = []
    for number, found in sentences:
        passage, sentence, referent = passages[number], found.text, tokenize(found.referent)
        score = _sentence_score(shape, idf, asked, found, contexts[number], set(referent))
        if score <= 0:
            continue
        near = [*tokenize(sentence), "", *referent, "", *tokenize(passage.context)]
        near += ["", *tokenize(passage.title)]
        if pairs:
            score += PHRASE_WEIGHT * len(pairs & set(itertools.pairwise(near))) / len(pairs)
        score *= SUBJECT_MISSING_FACTOR ** len(subject - set(near))
        score *= time_factor(sentence, years=years, when=when) * model_factor(sentence, models)
        score *= likeness_factor(sentence, question)
        score *= 1.0 - PASSAGE_WEIGHT + PASSAGE_WEIGHT * max(0.0, passage.score) / top
        in_title = sum(idf[term] for term in set(shape.terms) if term in titles[number])
        score *= 1.0 - TITLE_WEIGHT + TITLE_WEIGHT * in_title / term_weight
        text = trim_sentence(sentence, wanted, MAX_QUOTE_CHARS)
        scored.append((number, Quote(passage.source_index, text, score)))
    return scored


def _subject_terms(shape: QuestionShape, passages: Sequence[QuotedPassage]) -> set[str]:
    """What the question is about: its terms in the titles of more than half of the pages
    (two pages at least). Attribute words ("capital", "invented") seldom are."""
    titles = {passage.title: set(tokenize(passage.title)) for passage in passages}
    if len(titles) < 2:
        return set()
    return {
        term
        for term in set(shape.terms)
        if sum(term in words for words in titles.values()) * 2 > len(titles)
    }


def _idf(shape: QuestionShape, sentence_tokens: list[set[str]]) -> dict[str, float]:
    """Rarity of each question term among the sentences (a rare term says more)."""
    counts: Counter[str] = Counter()
    for tokens in sentence_tokens:
        counts.update(term for term in set(shape.terms) | set(shape.related) if term in tokens)
    total = len(sentence_tokens) or 1
    idf = {
        term: math.log(1.0 + (total - counts[term] + 0.5) / (counts[term] + 0.5))
        for term in set(shape.terms) | set(shape.related)
    }
    floor = MIN_IDF_SHARE * max(idf.values(), default=0.0)
    return {term: max(value, floor) for term, value in idf.items()}


def _sentence_score(
    shape: QuestionShape,
    idf: dict[str, float],
    asked: _Asked,
    found: Sentence,
    around: set[str],
    referent: set[str],
) -> float:
    """How well ``found`` answers; ``around`` are the words of its passage, heading and
    title, ``referent`` those of the names a pronoun at its start stands for."""
    sentence = found.text
    present = set(tokenize(sentence))
    terms = list(dict.fromkeys(shape.terms))
    weight = sum(idf[term] for term in terms) or 1.0
    credit = {term: CONTEXT_CREDIT for term in terms if term in around}
    credit |= {term: REFERENT_CREDIT for term in terms if term in referent}
    credit |= {term: 1.0 for term in terms if term in present}
    coverage = sum(idf[term] * share for term, share in credit.items()) / weight
    related = [term for term in shape.related if term in present]
    if coverage == 0 and not related:
        return 0.0
    score = coverage + (0.5 * max(idf[term] for term in related) / weight if related else 0.0)
    if asked.expects is None:
        return score
    answers = _answer_positions(sentence, asked)
    if found.label and not (
        set(tokenize(found.label)) & asked.attribute or measure_kinds(sentence) & asked.kinds
    ):
        answers = []  # "Colours: Dark blue" is another attribute's row
    if not answers or _ASKS.search(sentence):  # what a page asks ("Who designed it?")
        return score * MISSING_ANSWER_FACTOR
    score += ANSWER_WEIGHT * _answer_strength(sentence, asked, answers)
    words = [word.casefold() for word in _WORD.findall(sentence)]
    anchors = [
        index
        for index, word in enumerate(words)
        if tokenize(word) and tokenize(word)[0] in set(terms) | set(related)
    ]
    if referent & set(terms):
        anchors.append(0)  # "She was born in ...": the pronoun stands for the asked name
    if anchors:
        distance = min(abs(a - b) for a in answers for b in anchors)
        score += CLOSENESS_WEIGHT / (1.0 + distance / 4.0)
    return score


def _answer_positions(sentence: str, asked: _Asked) -> list[int]:
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
    positions: list[int] = []
    for index, word in enumerate(words):
        lower = word.casefold()
        if _bare(word) in question_words:  # "Library's" restates "Library"
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


def _bare(word: str) -> str:
    """``word`` lower-cased without a possessive "'s": "Library's" names the library."""
    lower = word.casefold()
    return lower[:-2] if lower.endswith(("'s", "\u2019s")) and len(lower) > 2 else lower


def _answer_strength(sentence: str, asked: _Asked, answers: list[int]) -> float:
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
    if expects in ("material", "frequency", "postcode"):
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
