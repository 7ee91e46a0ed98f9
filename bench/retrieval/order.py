"""Where should the best evidence go in the prompt: first, or last (next to the question)?

For each dev question, the prompt the worker builds (lead off) in both orders, and the
default model's mean log-probability per token of the gold sentence (the quoted sentence
that holds the fact) as the answer, teacher-forced. The order under which the model finds
the fact likelier is the one it uses better. Free generation cannot tell: the 135M model
states the fact in neither order.

Run: ``.venv/bin/python bench/retrieval/order.py [--questions 10]`` (slow on a CPU: two
prompt evaluations per question).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bench.retrieval.data import (  # noqa: E402
    QuestionSet,
    contains_answer,
    documents_of,
    load_sets,
    search_result_of,
)
from shared.settings import Settings  # noqa: E402
from worker.engine import fit_messages  # noqa: E402
from worker.engine.ctransformers_engine import CTransformersEngine  # noqa: E402
from worker.internet.answer import internet_prompt  # noqa: E402
from worker.internet.pipeline import select_evidence  # noqa: E402
from worker.internet.sentences import split_sentences  # noqa: E402


def mean_logprob(engine: CTransformersEngine, prompt: list[int], target: list[int]) -> float:
    """Mean log-probability per token of ``target`` after ``prompt``."""
    llm = engine._llm  # a measurement needs the raw logits
    llm.reset()
    llm.eval(prompt)
    total = 0.0
    for token in target:
        logits = list(llm.logits)
        peak = max(logits)
        norm = peak + math.log(sum(math.exp(value - peak) for value in logits))
        total += logits[token] - norm
        llm.eval([token])
    return total / len(target)


def gold_sentence(qs: QuestionSet, settings: Settings) -> tuple[str, Any] | None:
    evidence = select_evidence(
        qs.question, search_result_of(qs), documents_of(qs), settings=settings
    )
    for passage in evidence.passages[:2]:  # within the budget in both orders
        for sentence in split_sentences(passage.text):
            if contains_answer(sentence, qs.answer):
                return sentence, evidence
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--json", type=Path, default=HERE / "order_results.json")
    args = parser.parse_args()
    base = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=HERE.parent.parent / ".pytest-data",
        evidence_lead="off",
    )
    engine = CTransformersEngine.load(base)
    rows: list[dict[str, Any]] = []
    for qs in load_sets(HERE / "questions"):
        if qs.split != "dev" or len(rows) >= args.questions:
            continue
        found = gold_sentence(qs, base)
        if found is None:
            continue
        sentence, evidence = found
        target = engine.tokenize(sentence)[:24]
        row: dict[str, Any] = {"id": qs.id}
        for order in ("best_first", "best_last"):
            settings = base.model_copy(update={"evidence_order": order})
            messages, _ = internet_prompt(qs.question, evidence, engine=engine, settings=settings)
            prompt = fit_messages(engine, messages, max_new_tokens=settings.max_new_tokens).tokens
            row[order] = round(mean_logprob(engine, prompt, target), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = [row["best_first"] for row in rows]
    last = [row["best_last"] for row in rows]
    report = {
        "questions": len(rows),
        "mean_logprob_best_first": round(statistics.mean(first), 4),
        "mean_logprob_best_last": round(statistics.mean(last), 4),
        "best_last_higher": sum(b > a for a, b in zip(first, last, strict=True)),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
