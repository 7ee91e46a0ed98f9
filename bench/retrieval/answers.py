"""Fact-in-answer: does the answer the worker generates state the fact, cited? And its
cheap proxy, fact-in-lead: does the lead the answer would open with state it (no model)?

For each question set the worker's own code runs in this process: evidence selected from
the rendered pages (``worker.internet.pipeline.select_evidence``), the prompt and lead
(``worker.internet.answer.internet_prompt``), then the default model decodes with the
worker's sampling settings, the lead first, as ``worker.generate`` does. The answer
counts when it holds the exact fact string (``contains_answer``); ``cited_answer_page``
counts answers that also cite (``[n]``) the gold page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.retrieval.data import QuestionSet, contains_answer, documents_of, search_result_of
from shared.settings import Settings
from worker.engine import Engine, SamplingParams, fit_messages
from worker.internet.answer import internet_prompt
from worker.internet.lead import lead_text
from worker.internet.pipeline import select_evidence


def evaluate_leads(settings: Settings, sets: Sequence[QuestionSet]) -> dict[str, Any]:
    """Fact-in-lead over ``sets``: the share of leads (as with ``EVIDENCE_LEAD=on``) that
    hold the exact fact string, computed without the model; and the share of leads that
    quote two sources."""
    rows: list[dict[str, Any]] = []
    for qs in sets:
        evidence = select_evidence(
            qs.question, search_result_of(qs), documents_of(qs), settings=settings
        )
        lead = lead_text(evidence.best, *evidence.runners)
        rows.append(
            {
                "id": qs.id,
                "fact_in_lead": contains_answer(lead, qs.answer),
                "two_sources": lead != lead_text(evidence.best),
                "lead": lead,
            }
        )
    count = len(rows) or 1
    return {
        "fact_in_lead": sum(row["fact_in_lead"] for row in rows) / count,
        "two_source_leads": sum(row["two_sources"] for row in rows) / count,
        "leads": rows,
    }


def answer_one(engine: Engine, settings: Settings, qs: QuestionSet) -> dict[str, Any]:
    """Generate the answer to ``qs`` as the worker does, and check it."""
    started = time.perf_counter()
    evidence = select_evidence(
        qs.question, search_result_of(qs), documents_of(qs), settings=settings
    )
    messages, lead = internet_prompt(qs.question, evidence, engine=engine, settings=settings)
    fitted = fit_messages(engine, messages, max_new_tokens=settings.max_new_tokens)
    prompt = [*fitted.tokens, *engine.tokenize(lead)] if lead else fitted.tokens
    prepared_s = time.perf_counter() - started
    pieces = [lead] if lead else []
    first_model_token_s = None
    with engine.stream(prompt, SamplingParams.from_settings(settings)) as stream:
        for piece in stream:
            if first_model_token_s is None:
                first_model_token_s = time.perf_counter() - started
            pieces.append(piece)
    answer = "".join(pieces)
    gold = next((page.url for page in qs.pages if page.gold), "")
    gold_numbers = [source.index for source in evidence.sources if source.url == gold]
    return {
        "id": qs.id,
        "fact_in_answer": contains_answer(answer, qs.answer),
        "cited_answer_page": contains_answer(answer, qs.answer)
        and any(f"[{number}]" in answer for number in gold_numbers),
        "lead": bool(lead),
        "prompt_tokens": len(prompt),
        "prepare_s": round(prepared_s, 3),
        "first_model_token_s": round(first_model_token_s or 0.0, 3),
        "answer": answer,
    }


def evaluate_answers(
    engine: Engine, settings: Settings, sets: Sequence[QuestionSet], *, progress: bool = False
) -> dict[str, Any]:
    """Fact-in-answer and cited-answer-page rates over ``sets``, with each answer."""
    rows = []
    for qs in sets:
        rows.append(answer_one(engine, settings, qs))
        if progress:
            row = rows[-1]
            print(f"  {qs.id}: fact {row['fact_in_answer']} {row['answer'][:100]!r}", flush=True)
    count = len(rows) or 1
    return {
        "fact_in_answer": sum(row["fact_in_answer"] for row in rows) / count,
        "cited_answer_page": sum(row["cited_answer_page"] for row in rows) / count,
        "lead_share": sum(row["lead"] for row in rows) / count,
        "prompt_tokens_median": statistics.median(row["prompt_tokens"] for row in rows)
        if rows
        else 0,
        "answers": rows,
    }
