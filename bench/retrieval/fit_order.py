"""Issue 12, eighth round: could a model fitted like the learned sentence choice order the
passages (what decides recall@1 and recall@3) better than the pipeline does?

The pipeline orders its ranked passages by their best sentence (the learned choice
first). Here each ranked passage (the pipeline's ``K`` = 5, as ``methods.pipeline``
ranks them) is described by generic features: its place in the pipeline's order, its
ranker rank and score share, the plain BM25 of its whole extracted page (the baseline
that beat the ranker on holdout_09), its page's place in the search results, its best
sentence's hand-set score share and learned score (``learned.WEIGHTS``; they saw every
file, so a little optimistic), how many passages its page has. A conditional logit
(``fit.fit``: answering passages against the others of their question) is estimated by
leave-one-file-out as in ``fit.py``. Exploration only: nothing here is wired.
``PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/retrieval/fit_order.py``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import bm25s
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bench.retrieval.data import (  # noqa: E402
    contains_answer,
    documents_of,
    load_sets,
    search_result_of,
)
from bench.retrieval.fit import Question, choose, fit, pick_penalty  # noqa: E402
from bench.retrieval.methods import BUDGET_CHARS, K_VALUES  # noqa: E402
from worker.internet import learned  # noqa: E402
from worker.internet.pipeline import MAX_PASSAGES_PER_SOURCE, build_candidates  # noqa: E402
from worker.internet.quote import QuotedPassage, pick_quotes, scored_sentences  # noqa: E402
from worker.internet.rank import rank_passages, tokenize  # noqa: E402

NAMES = (
    "pipeline_position",
    "pipeline_first",
    "ranker_rank",
    "ranker_share",
    "page_bm25_share",
    "page_bm25_top",
    "search_position",
    "has_quote",
    "quote_share",
    "learned_gap",
    "in_top_k",
    "same_page",
)


def collect() -> list[Question]:
    """Every dev question's ranked passages, their features and which hold the fact."""
    out: list[Question] = []
    for qs in load_sets(HERE / "questions", "sets_*.json"):
        documents = documents_of(qs)
        cands, _ = build_candidates(search_result_of(qs), documents)
        ranked = rank_passages(
            qs.question,
            cands,
            limit=max(K_VALUES),
            budget_chars=BUDGET_CHARS,
            max_per_source=MAX_PASSAGES_PER_SOURCE,
        )
        quoted = [
            QuotedPassage(n, it.candidate.text, it.score, it.candidate.heading, it.candidate.title)
            for n, it in enumerate(ranked)
        ]
        quotes = pick_quotes(qs.question, quoted)
        order = [q.source_index for q in quotes]
        order += [n for n in range(len(ranked)) if n not in order]
        quote_score = {q.source_index: q.score for q in quotes}
        scored = scored_sentences(qs.question, quoted)
        top = learned.candidates(scored)
        values = learned.learned_scores(learned.features(qs.question, top), learned.WEIGHTS)
        best_learned: dict[int, float] = {}
        for found, value in zip(top, values, strict=True):
            best_learned[found.number] = max(best_learned.get(found.number, -1e9), value)
        urls = list(documents)
        retriever = bm25s.BM25()
        retriever.index([tokenize(documents[u].text) or [""] for u in urls], show_progress=False)
        page_scores = dict(
            zip(urls, (float(s) for s in retriever.get_scores(tokenize(qs.question))), strict=True)
        )
        search_pos = {page.url: n for n, page in enumerate(qs.pages, start=1)}
        top_bm25 = max(page_scores.values(), default=0.0) or 1.0
        top_rank = max((it.score for it in ranked), default=0.0) or 1.0
        top_quote = max(quote_score.values(), default=0.0) or 1.0
        top_learned = max(values, default=0.0)
        rows: list[list[float]] = []
        hits: list[bool] = []
        for position, n in enumerate(order):
            item = ranked[n]
            source = item.candidate.source
            bm = page_scores.get(source, 0.0)
            rows.append(
                [
                    float(position),
                    float(position == 0),
                    float(n),
                    item.score / top_rank,
                    bm / top_bm25,
                    float(bm >= top_bm25 and bm > 0),
                    float(search_pos.get(source, 0)),
                    float(n in quote_score),
                    math.log(max(quote_score.get(n, 0.0), 1e-6) / top_quote),
                    best_learned.get(n, top_learned - 10.0) - top_learned,
                    float(n in best_learned),
                    float(sum(r.candidate.source == source for r in ranked)),
                ]
            )
            hits.append(contains_answer(item.candidate.text, qs.answer))
        out.append(
            Question(
                qs.id,
                qs.file,
                np.array(rows, dtype=np.float64).reshape(len(rows), len(NAMES)),
                np.array(hits, dtype=bool),
            )
        )
    return out


def top_n(question: Question, weights: object, n: int) -> bool:
    """Whether the model's best ``n`` passages hold the fact."""
    from bench.retrieval.fit import Weights

    assert isinstance(weights, Weights)
    x = (question.rows - np.array(weights.mean)) / np.array(weights.scale)
    s = x @ np.array(weights.weight)
    idx = sorted(range(len(s)), key=lambda i: (-s[i], i))[:n]
    return bool(question.hits[idx].any())


def main() -> None:
    questions = [q for q in collect() if len(q.rows)]
    files = sorted({q.file for q in questions})
    print("| file | n | pipeline@1 | learned@1 | pipeline@3 | learned@3 | penalty |")
    print("|---|---|---|---|---|---|---|")
    totals = [0, 0, 0, 0, 0]
    for held in files:
        train = [q for q in questions if q.file != held]
        test = [q for q in questions if q.file == held]
        penalty = pick_penalty(train)
        weights = fit(train, penalty)
        row = (
            len(test),
            sum(bool(q.hits[0]) for q in test),
            sum(bool(q.hits[choose(q, weights)]) for q in test),
            sum(bool(q.hits[:3].any()) for q in test),
            sum(top_n(q, weights, 3) for q in test),
        )
        for n, value in enumerate(row):
            totals[n] += value
        print(f"| {held} | " + " | ".join(map(str, row)) + f" | {penalty} |")
    print("| all | " + " | ".join(map(str, totals)) + " | |")
    weights = fit(questions, pick_penalty(questions))
    for name, w, sc in zip(NAMES, weights.weight, weights.scale, strict=True):
        print(f"{name:>18} {w:+.3f} (per raw {w / sc:+.4g})")


if __name__ == "__main__":
    main()
