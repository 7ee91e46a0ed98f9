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

import dataclasses
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
    time_factor,
    time_phrases,
)
from worker.internet.answer_kind import (
    asked_place_kind,
    expected_answer,
    named_thing,
    versions_in,
)
from worker.internet.asked import Asked, answer_positions, answer_strength, bare
from worker.internet.learned import by_passage, close_runners, rank
from worker.internet.measure import counted_thing, measure_kinds, unit_kinds
from worker.internet.rank import QuestionShape, analyse_question, stem, tokenize
from worker.internet.sentences import Sentence, sentences_with_referents, trim_sentence

_WORD = re.compile(r"[\w'\u2019-]+")
_ASKS = re.compile(r"\?[\"'\u201d)]*\s*$")

_VERSION_HEADING = re.compile(
    r"((version|release|firmware|build) )?v?\d+(\.\d+)+[\w.-]*(\s.{0,40})?", re.I
)
"""A changelog's section heading: a version, maybe with its date ("v3.8.0 (2024-05-02)",
"Firmware 4.2.17")."""

MAX_QUOTE_CHARS = 320
"""Longest quote; a longer sentence is cut around the words that matched the question."""
ANSWER_WEIGHT = 1.0
"""Added to a sentence's score when it holds the kind of answer asked for."""
MISSING_ANSWER_FACTOR = 0.35
"""Score multiplier for a sentence without the kind of answer the question asks for."""
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
    """A sentence of each passage that answers at all, best first (passages without one
    are left out): :func:`choose_quotes`'s quotes."""
    return choose_quotes(question, passages).quotes


@dataclass(frozen=True)
class Picked:
    """What :func:`choose_quotes` picks."""

    quotes: list[Quote]
    """A sentence of each passage, the best first."""
    runners: tuple[Quote, ...] = ()
    """The learned runners-up that score close to the first quote (one or two; they may
    come from the same passage), best first; they stand at the first quote's score."""


def choose_quotes(question: str, passages: Sequence[QuotedPassage]) -> Picked:
    """A sentence of each passage that answers at all, best first, and the lead's second.

    The hand-set scores find the best few sentences; the learned model
    (:func:`worker.internet.learned.rank`) orders them, since the hand-set weights fit
    the questions they were set on, not new writers'. The passages come in the order of
    their best learned candidate, each quoted by it; then the passages without a
    candidate, in hand-set order, each by its hand-set best. The first quote takes the
    best hand-set score, so that whether an answer has a lead (:mod:`worker.internet.lead`)
    does not depend on the order. When the learned model finds a second sentence (or a
    second and a third) nearly as likely to answer, they are ``runners``."""
    scored = scored_sentences(question, passages)
    best_of: dict[int, Quote] = {}
    for found in scored:
        current = best_of.get(found.number)
        if current is None or found.quote.score > current.score:
            best_of[found.number] = found.quote
    if not best_of:
        return Picked([])
    top_score = max(quote.score for quote in best_of.values())
    ranked = rank(question, scored)
    chosen = by_passage(ranked)
    if chosen:  # the first passage's best candidate leads; the others may be its runners
        ranked = [chosen[0], *(item for item in ranked if item[0] is not chosen[0][0])]
    quote_of: dict[int, Quote] = {}  # in insertion order: the learned order first
    for found, _ in chosen:
        quote_of.setdefault(found.number, found.quote)
    for number, quote in sorted(best_of.items(), key=lambda item: -item[1].score):
        quote_of.setdefault(number, quote)
    first, *rest = quote_of.values()
    runners = tuple(
        dataclasses.replace(found.quote, score=top_score) for found in close_runners(ranked)
    )
    return Picked([dataclasses.replace(first, score=top_score), *rest], runners)


def score_sentences(question: str, passages: Sequence[QuotedPassage]) -> list[tuple[int, Quote]]:
    """Every sentence of ``passages`` that answers ``question`` at all, with the position
    of its passage in ``passages`` and its score (in passage and sentence order)."""
    return [(found.number, found.quote) for found in scored_sentences(question, passages)]


@dataclass(frozen=True)
class Factors:
    """The parts of a sentence's score, kept apart so that a learned choice
    (:mod:`worker.internet.learned`) can weigh them anew; :func:`combine` joins them
    into the hand-set score."""

    coverage: float
    """Share of the question's terms (idf-weighted) in the sentence or around it."""
    related: float
    """Bonus for a related term ("height" for "how tall") in the sentence."""
    answer: bool | None
    """Whether it holds the kind of answer asked for (None: no kind is asked)."""
    strength: float
    """How specific that answer is (0 without one)."""
    closeness: float
    """CLOSENESS_WEIGHT / (1 + distance / 4) from the answer to the question's terms."""
    phrase: float
    """Share of the question's neighbouring term pairs side by side near the sentence."""
    subject_missing: int
    """Subject terms missing from the sentence, its heading and its title."""
    time: float
    model: float
    likeness: float
    passage: float
    """The passage's rank score as a share of the best passage's (0 to 1)."""
    title: float
    """Share of the question's terms (idf-weighted) in the page's title (0 to 1)."""


def combine(factors: Factors) -> float:
    """The hand-set score of a sentence with ``factors`` (what :func:`pick_quotes` sorts
    by), in the order the picker has always added and multiplied them."""
    score = factors.coverage + factors.related
    if factors.answer is False:
        score *= MISSING_ANSWER_FACTOR
    elif factors.answer:
        score += ANSWER_WEIGHT * factors.strength
        score += factors.closeness
    score += PHRASE_WEIGHT * factors.phrase
    score *= SUBJECT_MISSING_FACTOR**factors.subject_missing
    score *= factors.time * factors.model
    score *= factors.likeness
    score *= 1.0 - PASSAGE_WEIGHT + PASSAGE_WEIGHT * factors.passage
    score *= 1.0 - TITLE_WEIGHT + TITLE_WEIGHT * factors.title
    return score


@dataclass(frozen=True)
class Scored:
    """A sentence that answers at all: its passage's position in the passages, its
    position in that passage, the sentence, its quote (hand-set score) and its factors."""

    number: int
    index: int
    sentence: Sentence
    quote: Quote
    factors: Factors
    heading: str = ""
    """Its passage's section heading."""
    title: str = ""
    """Its page's title."""
    row_answer: bool = False
    """A table row that holds the kind of answer asked for, whatever its label says."""


def scored_sentences(question: str, passages: Sequence[QuotedPassage]) -> list[Scored]:
    """What :func:`score_sentences` returns, with each score's factors (in passage and
    sentence order)."""
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
    asked = Asked(
        expects=expects,
        question_words=frozenset(bare(word) for word in _WORD.findall(question)),
        kinds=unit_kinds(question),
        thing=named_thing(question) if expects == "name" else None,
        place_kind=asked_place_kind(question) if expects in ("place", "name") else None,
        roles=asked_roles(question) if expects == "person" else frozenset(),
        counted=stem(thing) if (thing := counted_thing(question)) else None,
        attribute=frozenset([*shape.terms, *shape.related, *map(stem, asked_roles(question))]),
        versions=versions_in(question),
    )
    top = max((passage.score for passage in passages), default=0.0) or 1.0
    join = MAX_QUOTE_CHARS if expects == "person" else 0
    versions = expects == "version"
    sentences = [
        (n, i, _under_version(s, p.context) if versions else s)
        for n, p in enumerate(passages)
        for i, s in enumerate(sentences_with_referents(p.text, join))
    ]
    idf = _idf(shape, [set(tokenize(sentence.text)) for _, _, sentence in sentences])
    contexts = [set(tokenize(f"{p.title}\n{p.context}\n{p.text}")) for p in passages]
    titles = [set(tokenize(p.title)) for p in passages]
    term_weight = sum(idf[term] for term in set(shape.terms)) or 1.0
    subject = _subject_terms(shape, passages)
    pairs = set(itertools.pairwise(shape.terms))
    wanted = {*shape.terms, *shape.related}
    scored: list[Scored] = []
    for number, index, found in sentences:
        passage, sentence, referent = passages[number], found.text, tokenize(found.referent)
        parts = _sentence_factors(shape, idf, asked, found, contexts[number], set(referent))
        if parts is None:
            continue
        near = [*tokenize(sentence), "", *referent, "", *tokenize(passage.context)]
        near += ["", *tokenize(passage.title)]
        in_title = sum(idf[term] for term in set(shape.terms) if term in titles[number])
        factors = Factors(
            *parts,
            phrase=len(pairs & set(itertools.pairwise(near))) / len(pairs) if pairs else 0.0,
            subject_missing=len(subject - set(near)),
            time=time_factor(sentence, years=years, when=when),
            model=model_factor(sentence, models),
            likeness=likeness_factor(sentence, question),
            passage=max(0.0, passage.score) / top,
            title=in_title / term_weight,
        )
        text = trim_sentence(sentence, wanted, MAX_QUOTE_CHARS)
        quote = Quote(passage.source_index, text, combine(factors))
        scored.append(
            Scored(
                number,
                index,
                found,
                quote,
                factors,
                passage.context,
                passage.title,
                bool(found.label and asked.expects and answer_positions(sentence, asked)),
            )
        )
    return scored


def _under_version(found: Sentence, heading: str) -> Sentence:
    """``found`` opening with its changelog section's version ("v3.8.0: - Write-ahead
    logging is now enabled by default ..."), when ``heading`` is one: the version a
    question asks for is often only there."""
    version = heading.strip()
    if not _VERSION_HEADING.fullmatch(version):
        return found
    return dataclasses.replace(found, text=f"{version}: {found.text}")


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


def _sentence_factors(
    shape: QuestionShape,
    idf: dict[str, float],
    asked: Asked,
    found: Sentence,
    around: set[str],
    referent: set[str],
) -> tuple[float, float, bool | None, float, float] | None:
    """How well ``found`` answers (coverage, related bonus, whether it holds the answer,
    its strength, its closeness; None when it shares no term with the question);
    ``around`` are the words of its passage, heading and title, ``referent`` those of
    the names a pronoun at its start stands for."""
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
        return None
    bonus = 0.5 * max(idf[term] for term in related) / weight if related else 0.0
    if asked.expects is None:
        return coverage, bonus, None, 0.0, 0.0
    answers = answer_positions(sentence, asked)
    if found.label and not (
        set(tokenize(found.label)) & asked.attribute or measure_kinds(sentence) & asked.kinds
    ):
        answers = []  # "Colours: Dark blue" is another attribute's row
    if not answers or _ASKS.search(sentence):  # what a page asks ("Who designed it?")
        return coverage, bonus, False, 0.0, 0.0
    strength = answer_strength(sentence, asked, answers)
    words = [word.casefold() for word in _WORD.findall(sentence)]
    anchors = [
        index
        for index, word in enumerate(words)
        if tokenize(word) and tokenize(word)[0] in set(terms) | set(related)
    ]
    if referent & set(terms):
        anchors.append(0)  # "She was born in ...": the pronoun stands for the asked name
    closeness = 0.0
    if anchors:
        distance = min(abs(a - b) for a in answers for b in anchors)
        closeness = CLOSENESS_WEIGHT / (1.0 + distance / 4.0)
    return coverage, bonus, True, strength, closeness
