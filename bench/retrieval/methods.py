"""The ways of picking what to quote that the benchmark compares (see ``run.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import bm25s
import lxml.html

from bench.retrieval.data import QuestionSet, documents_of, search_result_of, whole_text
from shared.settings import Settings
from worker.internet.extract import split_passages
from worker.internet.pipeline import (
    MAX_PASSAGES_PER_SOURCE,
    build_candidates,
    lead_pool,
    quoted_passages,
    select_evidence,
)
from worker.internet.quote import pick_quotes
from worker.internet.rank import rank_passages, tokenize

K_VALUES = (1, 3, 5)
BUDGET_CHARS = 100_000  # recall is about order, not the budget

# --- the seed's whole-page method ------------------------------------------------------


def first_five_texts(page_html: str) -> str:
    """The first five non-empty p/tr/span texts of a page, in document order."""
    tree = lxml.html.fromstring(page_html)
    texts: list[str] = []
    for element in tree.iter("p", "tr", "span"):
        text = " ".join(element.text_content().split())
        if text:
            texts.append(text)
        if len(texts) == 5:
            break
    return " ".join(texts)


_WORD = re.compile(r"\w+")
_BASIC_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "what",
        "when",
        "how",
        "who",
        "which",
        "does",
        "do",
        "did",
        "many",
        "much",
        "long",
    ]
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if w not in _BASIC_STOPWORDS}


def seed_overlap(qs: QuestionSet) -> list[str]:
    units = [first_five_texts(page.html) for page in qs.pages]
    query = _words(qs.question)
    order = sorted(range(len(units)), key=lambda i: (-len(query & _words(units[i])), i))
    return [units[i] for i in order]


def page_bm25(qs: QuestionSet) -> list[str]:
    retriever = bm25s.BM25()
    retriever.index(
        [tokenize(whole_text(page.html)) or [""] for page in qs.pages], show_progress=False
    )
    scores = retriever.get_scores(tokenize(qs.question))
    order = sorted(range(len(qs.pages)), key=lambda i: (-float(scores[i]), i))
    return [first_five_texts(qs.pages[i].html) for i in order]


def page_bm25_extracted(qs: QuestionSet) -> list[str]:
    """A stronger whole-page baseline: main text extracted, pages ranked by BM25 over it,
    each quoted by its first five paragraphs."""
    texts = [document.text for document in documents_of(qs).values()]
    retriever = bm25s.BM25()
    retriever.index([tokenize(text) or [""] for text in texts], show_progress=False)
    scores = retriever.get_scores(tokenize(qs.question))
    order = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))
    return [" ".join(texts[i].split("\n")[:5]) for i in order]


# --- our passages ----------------------------------------------------------------------


def passages_bm25_plain(qs: QuestionSet) -> list[str]:
    texts = [
        piece.text
        for document in documents_of(qs).values()
        for piece in split_passages(document.text)
    ]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    query = bm25s.tokenize([qs.question], stopwords="en", show_progress=False)
    vocab = {index: token for token, index in query.vocab.items()}
    scores = retriever.get_scores([vocab[i] for i in query.ids[0]])
    order = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))
    return [texts[i] for i in order]


def ranker(qs: QuestionSet) -> list[str]:
    candidates, _ = build_candidates(search_result_of(qs), documents_of(qs))
    ranked = rank_passages(
        qs.question,
        candidates,
        limit=max(K_VALUES),
        budget_chars=BUDGET_CHARS,
        max_per_source=MAX_PASSAGES_PER_SOURCE,
    )
    return [item.candidate.text for item in ranked]


_SETTINGS = Settings(_env_file=None, context_passages=max(K_VALUES))  # type: ignore[call-arg]


def pipeline(qs: QuestionSet) -> list[str]:
    """The passages in the order the worker quotes them (best answering sentence first)."""
    evidence = select_evidence(
        qs.question,
        search_result_of(qs),
        documents_of(qs),
        settings=_SETTINGS,
        budget_chars=BUDGET_CHARS,
    )
    return [passage.text for passage in evidence.passages]


def best_sentence(qs: QuestionSet) -> list[str]:
    """The worker's quotes (one per passage, of the passages it picks quotes from), best
    first: the first is the sentence the answer's lead opens with."""
    candidates, _ = build_candidates(search_result_of(qs), documents_of(qs))
    quoted = quoted_passages(lead_pool(qs.question, candidates))
    return [quote.text for quote in pick_quotes(qs.question, quoted)]


METHODS: dict[str, Callable[[QuestionSet], list[str]]] = {
    "seed-overlap": seed_overlap,
    "page-bm25": page_bm25,
    "page-bm25-extracted": page_bm25_extracted,
    "passages-bm25-plain": passages_bm25_plain,
    "ranker": ranker,
    "pipeline": pipeline,
    "best-sentence": best_sentence,
}
