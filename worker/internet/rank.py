"""Rank passages against a question: BM25 (bm25s) over stemmed, stopword-free tokens of
the passage with its page title and section heading, a few cheap question-answering
cues (words pages use for the asked attribute, question words side by side, a number
or a date where the question asks for one), near-duplicates dropped, and the best
passages kept within a character budget."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import bm25s
from bm25s.stopwords import STOPWORDS_EN_PLUS

_TOKEN = re.compile(r"\w+", re.UNICODE)
_VOWEL = re.compile(r"[aeiouy]")
_IRREGULAR_PLURALS = {
    "women": "woman",
    "men": "man",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
}
# Words that say how a question is asked, not what it is about.
_QUERY_FILLERS = frozenset(
    {"tell", "know", "please", "explain", "many", "much", "would", "could", "also", "get"}
)
STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | {"us", "also", "may", "might", "must", "shall"}

# An attribute a question asks about, and words pages use for it ("how tall" is answered
# by "an elevation of ..."). Matched on stems, weighted by RELATED_WEIGHT.
_ATTRIBUTE_WORDS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (
        frozenset({"tall", "high", "height", "elevation"}),
        ("height", "tall", "tallest", "high", "highest", "elevation", "rise", "rises"),
    ),
    (frozenset({"long", "length"}), ("length", "long")),
    (frozenset({"far", "distance"}), ("distance", "far", "away")),
    (frozenset({"deep", "depth"}), ("depth", "deep", "deepest", "below")),
    (frozenset({"big", "large", "size", "area"}), ("area", "size", "large", "square")),
    (frozenset({"hot", "cold", "warm", "temperature", "temp"}), ("temperature", "degrees")),
    (frozenset({"old", "age"}), ("age", "old", "born")),
    (frozenset({"fast", "speed"}), ("speed", "fast", "fastest", "mph")),
    (frozenset({"heavy", "weight", "weigh"}), ("weight", "mass", "heavy")),
    (
        frozenset({"population", "people", "populous"}),
        ("population", "inhabitants", "residents", "people"),
    ),
    (frozenset({"released", "release", "launched"}), ("release", "launch", "sale")),
    (
        frozenset({"ingredient", "ingredients", "material", "materials"}),
        ("ingredient", "made", "mostly", "mainly", "recipe"),
    ),
    # Verbs and nouns pages use for an event or a price in other words ("the last looms
    # stopped in 1967" for "close", "set up in 1994" for "founded", "admission" for
    # "ticket").
    (
        frozenset({"close", "closed", "closes", "closing", "closure", "shut"}),
        ("closed", "closure", "shut", "stopped", "ceased", "ended"),
    ),
    (
        frozenset({"found", "founded", "established", "started", "set"}),
        ("founded", "founder", "established", "set", "started", "formed", "began"),
    ),
    (
        frozenset({"open", "opens", "opened", "opening"}),
        ("open", "opening", "doors", "unlock", "start"),
    ),
    (
        frozenset({"cost", "costs", "price", "ticket", "tickets", "admission", "fee", "fare"}),
        ("price", "cost", "ticket", "admission", "entry", "fee", "fare", "pay", "charge"),
    ),
    (frozenset({"won", "win", "wins", "winner"}), ("won", "winner", "win", "awarded", "went")),
    (
        frozenset({"wrote", "write", "written", "writer", "author"}),
        ("author", "writer", "wrote", "written", "novelist", "poet"),
    ),
    (frozenset({"born", "birthplace", "birth"}), ("born", "birth", "birthplace", "native")),
    (frozenset({"died", "die", "death"}), ("died", "death", "dead")),
    (
        frozenset({"finished", "finish", "completed", "complete", "completion"}),
        ("completed", "completion", "finished"),
    ),
    (frozenset({"capital"}), ("capital", "seat")),
    (frozenset({"fastest", "quickest", "record"}), ("record", "fastest", "quickest")),
    (frozenset({"play", "plays", "playing"}), ("joined", "signed", "plays", "playing")),
    (
        frozenset({"based", "located", "headquartered", "headquarters"}),
        ("based", "located", "headquarters", "headquartered", "premises", "work"),
    ),
    (
        frozenset({"call", "called", "nickname", "nicknamed"}),
        ("called", "named", "renamed", "nickname", "nicknamed", "known", "dubbed"),
    ),
    (
        frozenset({"stolen", "stole", "steal", "theft", "robbed"}),
        ("stolen", "stole", "theft", "took", "thieves", "disappearance"),
    ),
)
_EXPECTS_DATE = re.compile(
    r"^\s*(when|since when|(in |on )?(what|which) (year|date|day|month|century))\b", re.I
)
_EXPECTS_NUMBER = re.compile(
    r"^\s*(how (many|much|tall|high|far|long|deep|big|large|old|hot|cold|warm|fast|heavy|wide"
    r"|often)|at what (temperature|age|speed|height|depth)|(at |by |until )?what time"
    r"|what(\s+is|\s+was|\s+are|'s)? (the )?([a-z-]+ ){0,2}?(population|height"
    r"|length|distance|depth|area|size|temperature|temp|speed|weight|mass|number|price|cost|age"
    r"|melting point|boiling point|freezing point|half-life|atomic number|diameter|radius"
    r"|elevation|capacity|lifespan|duration|volume|wingspan|width|range|share|percentage"
    r"|proportion|fraction|abv|alcohol content))\b",
    re.I,
)
_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|thousand"
    r"|million|billion|trillion"
)
_HAS_NUMBER = re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)
_HAS_DATE = re.compile(
    r"\b(1[0-9]{3}|20[0-9]{2})\b|\b(january|february|march|april|may|june|july|august"
    r"|september|october|november|december)\b",
    re.I,
)
_ANSWER_PATTERNS = {"number": _HAS_NUMBER, "date": _HAS_DATE}

BM25_K1 = 1.5
BM25_B = 0.5
"""Less length normalisation than the usual 0.75: passages are already of similar size,
and a short look-alike should not win on brevity alone."""
ADJACENCY_BOOST = 0.15
"""Score multiplier added per pair of neighbouring question terms found side by side."""
RELATED_WEIGHT = 0.5
"""Weight of the words pages use for the asked attribute, against the question's own."""
PAGE_WEIGHT = 0.5
"""Share of a passage's score that depends on how well its whole page matches: a passage
from a page about the question's subject beats a look-alike from a page about another."""
ANSWER_TYPE_BOOST = 0.5
"""Score multiplier added when a passage holds what the question asks for (a number for
"how many", a date for "when")."""
DUPLICATE_JACCARD = 0.8
"""Passages whose word 3-gram sets overlap at least this much count as one."""


@dataclass(frozen=True)
class Candidate:
    """A passage to rank: ``source`` names where it came from (a URL), ``heading`` and
    ``title`` are the section and page it sits in (they count as its words too), and
    ``prior`` scales its score (1.0 for a page passage)."""

    text: str
    source: str
    heading: str = ""
    title: str = ""
    prior: float = 1.0


@dataclass(frozen=True)
class RankedPassage:
    """A chosen candidate and its score (higher is better)."""

    candidate: Candidate
    score: float


def stem(word: str) -> str:
    """A light English suffix stripper (plurals, then -ing, -ed, -ly, then a final -e),
    enough to match "boils"/"boiling"/"boiled", "sinkings"/"sink" and
    "cruise"/"cruising"/"cruises" without a stemming library."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    word = _strip_final_e(_strip_plural(word))
    for suffix, min_root in (("ing", 3), ("edly", 3), ("ed", 3), ("ly", 4)):
        root = word[: -len(suffix)]
        # The root must keep a vowel ("string" is no "str"+"ing") and "-eed" is no past
        # tense ("speed", "need").
        if (
            not word.endswith(suffix)
            or len(root) < min_root
            or not _VOWEL.search(root)
            or (suffix == "ed" and root.endswith("e"))
        ):
            continue
        if len(root) > 3 and root[-1] == root[-2] and root[-1] not in "lsz":
            root = root[:-1]  # "running" -> "run"
        return root
    return word


def _strip_final_e(word: str) -> str:
    # "-ing" and "-es" take a silent e with them ("cruising", "closes"), so the bare
    # word loses it too ("cruise" -> "cruis"); "-ee" stays ("free", "degree").
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        return word[:-1]
    return word


def _strip_plural(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def tokenize(text: str, *, drop_stopwords: bool = True) -> list[str]:
    """Lower-cased, stemmed word tokens of ``text``, stopwords dropped."""
    tokens = []
    for word in _TOKEN.findall(text.casefold()):
        if drop_stopwords and word in STOPWORDS:
            continue
        tokens.append(stem(word))
    return tokens


@dataclass(frozen=True)
class QuestionShape:
    """What a question is about (``terms``), the words pages use for the attribute it asks
    about (``related``), and the kind of answer it expects."""

    terms: list[str]
    related: list[str]
    expects: Literal["number", "date"] | None


def analyse_question(question: str) -> QuestionShape:
    """The :class:`QuestionShape` of ``question``."""
    words = _TOKEN.findall(question.casefold())
    terms = [token for token in tokenize(question) if token not in _QUERY_FILLERS]
    related: list[str] = []
    for triggers, synonyms in _ATTRIBUTE_WORDS:
        if triggers.intersection(words):
            related.extend(stem(word) for word in synonyms if stem(word) not in terms)
    expects: Literal["number", "date"] | None = None
    if _EXPECTS_DATE.match(question):
        expects = "date"
    elif _EXPECTS_NUMBER.match(question):
        expects = "number"
    return QuestionShape(terms=terms, related=list(dict.fromkeys(related)), expects=expects)


def score_passages(question: str, candidates: Sequence[Candidate]) -> list[float]:
    """One score per candidate: BM25 of the question's terms (plus, at half weight, the
    words pages use for the asked attribute) over title, heading and text; times the
    candidate's prior; times boosts for question terms side by side as in the question
    and for holding the kind of answer asked for."""
    if not candidates:
        return []
    shape = analyse_question(question)
    if not shape.terms:
        return [0.0 for _ in candidates]
    documents = [tokenize(f"{c.title}\n{c.heading}\n{c.text}") for c in candidates]
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    # bm25s wants at least one token per document; a placeholder matches no query.
    retriever.index([doc or [""] for doc in documents], show_progress=False)
    bm25 = retriever.get_scores(shape.terms)
    if shape.related:
        bm25 = bm25 + RELATED_WEIGHT * retriever.get_scores(shape.related)
    page_factor = _page_factors(shape, candidates, documents)
    query_pairs = set(itertools.pairwise(shape.terms))
    pattern = _ANSWER_PATTERNS[shape.expects] if shape.expects else None
    scores: list[float] = []
    for candidate, document, base in zip(candidates, documents, bm25, strict=True):
        score = float(base) * candidate.prior * page_factor[candidate.source]
        if score > 0 and query_pairs:
            pairs = query_pairs & set(itertools.pairwise(document))
            score *= 1.0 + ADJACENCY_BOOST * len(pairs)
        if score > 0 and pattern is not None and pattern.search(candidate.text):
            score *= 1.0 + ANSWER_TYPE_BOOST
        scores.append(score)
    return scores


def _page_factors(
    shape: QuestionShape, candidates: Sequence[Candidate], documents: list[list[str]]
) -> dict[str, float]:
    """Per source: 1 - PAGE_WEIGHT + PAGE_WEIGHT * (its page's BM25 / the best page's)."""
    pages: dict[str, list[str]] = {}
    for candidate, document in zip(candidates, documents, strict=True):
        pages.setdefault(candidate.source, []).extend(document)
    if PAGE_WEIGHT == 0 or len(pages) < 2:
        return dict.fromkeys(pages, 1.0)
    retriever = bm25s.BM25()
    retriever.index([tokens or [""] for tokens in pages.values()], show_progress=False)
    scores = retriever.get_scores(shape.terms + shape.related)
    best = float(max(scores))
    return {
        source: 1.0 - PAGE_WEIGHT + PAGE_WEIGHT * (float(score) / best if best > 0 else 1.0)
        for source, score in zip(pages, scores, strict=True)
    }


def rank_passages(
    question: str,
    candidates: Sequence[Candidate],
    *,
    limit: int,
    budget_chars: int,
    max_per_source: int | None = None,
    scores: Sequence[float] | None = None,
) -> list[RankedPassage]:
    """The best candidates for ``question``, best first (``scores``: their
    :func:`score_passages`, when the caller has them already).

    At most ``limit`` passages, at most ``max_per_source`` from one source when given,
    and at most ``budget_chars`` characters of passage text together (a first passage
    longer than the budget is cut at a word boundary). Near-duplicate passages are
    kept once. Ties keep the candidates' input order (search rank, then page order).
    """
    if limit <= 0 or budget_chars <= 0:
        return []
    if scores is None:
        scores = score_passages(question, candidates)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    chosen: list[RankedPassage] = []
    chosen_shingles: list[frozenset[tuple[str, ...]]] = []
    per_source: dict[str, int] = {}
    remaining = budget_chars
    for index in order:
        candidate = candidates[index]
        if max_per_source is not None and per_source.get(candidate.source, 0) >= max_per_source:
            continue
        shingles = _shingles(candidate.text)
        if any(_similar(shingles, other) for other in chosen_shingles):
            continue
        text = candidate.text
        if len(text) > remaining:
            if chosen:
                continue
            text = _cut(text, remaining)
            if not text:
                break
            candidate = dataclasses.replace(candidate, text=text)
        chosen.append(RankedPassage(candidate=candidate, score=scores[index]))
        chosen_shingles.append(shingles)
        per_source[candidate.source] = per_source.get(candidate.source, 0) + 1
        remaining -= len(text)
        if len(chosen) >= limit or remaining <= 0:
            break
    return chosen


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = tokenize(text, drop_stopwords=False)
    if len(words) < 3:
        return frozenset({tuple(words)})
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _similar(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> bool:
    if not a or not b:
        return a == b
    overlap = len(a & b)
    # Jaccard for look-alikes, containment for a passage quoted inside a longer one.
    return (
        overlap / len(a | b) >= DUPLICATE_JACCARD
        or overlap / min(len(a), len(b)) >= math.sqrt(DUPLICATE_JACCARD) + 0.05
    )


def _cut(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)].rsplit(" ", 1)[0].rstrip()
    return f"{cut}…" if cut else ""
