"""Retrieval benchmark: does the passage that holds the answer reach the top 1 / 3 / 5?

Each question set in ``questions/*.json`` has a question, the answer string, and three
or more pages in search order (one gold page, the rest distractors that share its keywords).
Pages are rendered to realistic HTML (``render.py``), then each method picks units to
quote:

- ``seed-overlap``: the seed's approach, whole pages: the first five p/tr/span texts of
  each page, pages ranked by how many question words those texts contain.
- ``page-bm25``: the same first-five-texts quotes, pages ranked by BM25 over the whole
  page text.
- ``page-bm25-extracted``: a stronger whole-page method: main text extracted as ours is,
  pages ranked by BM25 over it, each quoted by its first five paragraphs.
- ``passages-bm25-plain``: our extraction and passages, plain bm25s (its own tokenizer,
  English stopwords, no stemming), no headings, priors or boosts.
- ``pipeline``: what the worker does (worker.internet extract → passages → rank).

A unit is a hit when it contains the answer string. Usage:
``python -m bench.retrieval.run [--json PATH] [--dump-html DIR] [--verbose]``
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import lxml.html

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere: the repo root is importable

from bench.retrieval.render import render_page  # noqa: E402
from worker.internet.extract import Document, extract_document, split_passages  # noqa: E402
from worker.internet.pipeline import MAX_PASSAGES_PER_SOURCE, build_candidates  # noqa: E402
from worker.internet.rank import rank_passages, tokenize  # noqa: E402
from worker.internet.search import SearchHit, SearchResult  # noqa: E402

K_VALUES = (1, 3, 5)
BUDGET_CHARS = 100_000  # recall is about order, not the budget


@dataclass
class Page:
    url: str
    title: str
    snippet: str
    html: str
    gold: bool


@dataclass
class QuestionSet:
    id: str
    question: str
    answer: str
    pages: list[Page]
    split: str  # "dev" (the ranker was tuned on these) or "holdout" (written afterwards)


def load_sets(data_dir: Path) -> list[QuestionSet]:
    """All question sets, their pages rendered to HTML."""
    sets: list[QuestionSet] = []
    for path in sorted(data_dir.glob("*.json")):
        for raw in json.loads(path.read_text(encoding="utf-8")):
            titles = [page["title"] for page in raw["pages"]]
            pages = [
                Page(
                    url=page["url"],
                    title=page["title"],
                    snippet=page["snippet"],
                    html=render_page(page, related=[t for t in titles if t != page["title"]]),
                    gold=bool(page.get("gold")),
                )
                for page in raw["pages"]
            ]
            split = "holdout" if path.name.startswith("holdout") else "dev"
            sets.append(QuestionSet(raw["id"], raw["question"], raw["answer"], pages, split))
    return sets


def normalise(text: str) -> str:
    return " ".join(text.replace("\u2212", "-").casefold().split())


def contains_answer(text: str, answer: str) -> bool:
    return normalise(answer) in normalise(text)


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


def whole_text(page_html: str) -> str:
    tree = lxml.html.fromstring(page_html)
    for element in tree.xpath("//script|//style"):
        element.drop_tree()
    return " ".join(tree.text_content().split())


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


def documents_of(qs: QuestionSet) -> dict[str, Document]:
    return {page.url: extract_document(page.html, url=page.url) for page in qs.pages}


def search_result_of(qs: QuestionSet) -> SearchResult:
    return SearchResult(
        query=qs.question,
        hits=[
            SearchHit(position=n, title=page.title, url=page.url, snippet=page.snippet)
            for n, page in enumerate(qs.pages, start=1)
        ],
    )


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


def pipeline(qs: QuestionSet) -> list[str]:
    candidates, _ = build_candidates(search_result_of(qs), documents_of(qs))
    ranked = rank_passages(
        qs.question,
        candidates,
        limit=max(K_VALUES),
        budget_chars=BUDGET_CHARS,
        max_per_source=MAX_PASSAGES_PER_SOURCE,
    )
    return [item.candidate.text for item in ranked]


METHODS: dict[str, Callable[[QuestionSet], list[str]]] = {
    "seed-overlap": seed_overlap,
    "page-bm25": page_bm25,
    "page-bm25-extracted": page_bm25_extracted,
    "passages-bm25-plain": passages_bm25_plain,
    "pipeline": pipeline,
}


def check_data(sets: Sequence[QuestionSet]) -> list[str]:
    """Problems with the data: the answer must be in the gold page only."""
    problems: list[str] = []
    for qs in sets:
        if len(qs.pages) < 3 or sum(page.gold for page in qs.pages) != 1:
            problems.append(f"{qs.id}: needs 3+ pages and exactly one gold page")
        for page in qs.pages:
            text = extract_document(page.html, url=page.url).text
            if page.gold and not contains_answer(text, qs.answer):
                problems.append(f"{qs.id}: answer not in the gold page's extracted text")
            if not page.gold and contains_answer(whole_text(page.html), qs.answer):
                problems.append(f"{qs.id}: answer found in distractor {page.url}")
    return problems


def evaluate(sets: Sequence[QuestionSet], *, verbose: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, method in METHODS.items():
        hits = {k: 0 for k in K_VALUES}
        timings: list[float] = []
        misses: list[str] = []
        for qs in sets:
            started = time.perf_counter()
            units = method(qs)
            timings.append((time.perf_counter() - started) * 1000)
            for k in K_VALUES:
                if any(contains_answer(unit, qs.answer) for unit in units[:k]):
                    hits[k] += 1
            if not any(contains_answer(unit, qs.answer) for unit in units[: max(K_VALUES)]):
                misses.append(qs.id)
            if verbose and name == "pipeline" and not contains_answer(units[0], qs.answer):
                print(f"[{qs.id}] {qs.question}\n  top: {units[0][:160]}", file=sys.stderr)
        results[name] = {
            **{f"recall@{k}": hits[k] / len(sets) for k in K_VALUES},
            "median_ms": round(statistics.median(timings), 2),
            "misses_at_3": misses,
        }
    return results


def print_table(title: str, results: dict[str, Any]) -> None:
    header = "".join(f"{f'recall@{k}':>10}" for k in K_VALUES)
    print(f"{title}\n{'method':<22}{header}{'median ms':>11}")
    for name, row in results.items():
        cells = "".join(f"{row[f'recall@{k}']:>10.3f}" for k in K_VALUES)
        print(f"{name:<22}{cells}{row['median_ms']:>11}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HERE / "questions")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--dump-html", type=Path, help="write the rendered pages here")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's misses@1")
    args = parser.parse_args(argv)

    sets = load_sets(args.data)
    if args.dump_html:
        for qs in sets:
            for n, page in enumerate(qs.pages, start=1):
                target = args.dump_html / qs.id / f"{n}{'-gold' if page.gold else ''}.html"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(page.html, encoding="utf-8")
    problems = check_data(sets)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1

    report: dict[str, Any] = {"pages": sum(len(qs.pages) for qs in sets), "splits": {}}
    for split in ("dev", "holdout", "all"):
        chosen = [qs for qs in sets if split in ("all", qs.split)]
        if not chosen:
            continue
        results = evaluate(chosen, verbose=args.verbose and split == "all")
        report["splits"][split] = {"questions": len(chosen), "methods": results}
        print_table(f"{split}: {len(chosen)} questions", results)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
