"""The benchmark's question sets: loading, rendering their pages, and checking them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lxml.html

from bench.retrieval.render import render_page
from worker.internet.extract import Document, extract_document
from worker.internet.search import SearchHit, SearchResult


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
    file: str = ""  # the question file's name without ".json" ("holdout_04")


def load_sets(data_dir: Path, pattern: str = "*.json") -> list[QuestionSet]:
    """All question sets (of the files matching ``pattern``: "sets_*.json" reads dev
    alone, never opening a holdout), their pages rendered to HTML."""
    sets: list[QuestionSet] = []
    for path in sorted(data_dir.glob(pattern)):
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
            sets.append(
                QuestionSet(raw["id"], raw["question"], raw["answer"], pages, split, path.stem)
            )
    return sets


def normalise(text: str) -> str:
    return " ".join(text.replace("\u2212", "-").casefold().split())


def contains_answer(text: str, answer: str) -> bool:
    return normalise(answer) in normalise(text)


def whole_text(page_html: str) -> str:
    tree = lxml.html.fromstring(page_html)
    for element in tree.xpath("//script|//style"):
        element.drop_tree()
    return " ".join(tree.text_content().split())


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
