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
``python -m bench.retrieval.run [--json PATH] [--dump-html DIR] [--verbose] [--no-answers]``

- ``ranker``: the worker's passage ranker alone (BM25 and cues, before quotes).
- ``best-sentence``: the worker's quotes, best first: recall@1 is whether the sentence an
  answer leads with holds the fact.

``fact_in_lead`` (no model) is the share of leads the worker's answers would open with
(``EVIDENCE_LEAD=on``) that hold the fact. Unless ``--no-answers``, the default model
then answers every question as the worker
does (``answers.py``) and ``fact_in_answer`` is the share of saved answers that state
the fact. :func:`run_benchmark` does all this for other scripts and returns the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere: the repo root is importable

from bench.retrieval.data import QuestionSet, check_data, contains_answer, load_sets  # noqa: E402
from bench.retrieval.methods import K_VALUES, METHODS  # noqa: E402
from shared.settings import Settings  # noqa: E402


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
            if not any(contains_answer(unit, qs.answer) for unit in units[:3]):
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


def model_settings(data_dir: Path | None, *, answer_tokens: int) -> Settings:
    """The worker's settings for answering (``.env`` and the environment), with the model
    found in ``data_dir`` (default: DATA_DIR, else the test suite's ``.pytest-data``)."""
    settings = Settings()
    if data_dir is None and not (settings.models_dir / "smollm2").exists():
        fallback = HERE.parent.parent / ".pytest-data"
        data_dir = fallback if fallback.exists() else None
    values: dict[str, Any] = {"max_new_tokens": answer_tokens, "seed": 1}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return settings.model_copy(update=values)


def run_benchmark(
    *,
    data: Path = HERE / "questions",
    json_path: Path | None = HERE / "results.json",
    answers: bool = True,
    answer_tokens: int = 48,
    answer_splits: Sequence[str] = ("dev", "holdout"),
    data_dir: Path | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Recall per method and split and, with ``answers``, fact-in-answer of the default
    model; written to ``json_path`` (None: not written) and returned."""
    sets = load_sets(data)
    problems = check_data(sets)
    if problems:
        raise ValueError("bad question data:\n" + "\n".join(problems))
    report: dict[str, Any] = {"pages": sum(len(qs.pages) for qs in sets), "splits": {}}
    engine = None
    settings = None
    if answers:
        from worker.engine import load_engine

        settings = model_settings(data_dir, answer_tokens=answer_tokens)
        engine = load_engine(settings)
        report["answers_setup"] = {
            "model": engine.model_name,
            "max_new_tokens": answer_tokens,
            "evidence_lead": settings.evidence_lead,
            "evidence_order": settings.evidence_order,
            "evidence_tokens": settings.evidence_tokens,
            "temperature": settings.temperature,
            "seed": settings.seed,
        }
    from bench.retrieval.answers import evaluate_leads

    lead_settings = settings or model_settings(data_dir, answer_tokens=answer_tokens)
    for split in ("dev", "holdout", "all"):
        chosen = [qs for qs in sets if split in ("all", qs.split)]
        if not chosen:
            continue
        results = evaluate(chosen, verbose=verbose and split == "all")
        leads = evaluate_leads(lead_settings, chosen)
        report["splits"][split] = {
            "questions": len(chosen),
            "sets": sorted({qs.file for qs in chosen}),
            "methods": results,
            "leads": leads,
        }
        print_table(f"{split}: {len(chosen)} questions", results)
        print(
            f"{split}: fact in lead {leads['fact_in_lead']:.3f} (no model), two-source leads "
            f"{leads['two_source_leads']:.3f}\n"
        )
    if engine is not None and settings is not None:
        from bench.retrieval.answers import evaluate_answers

        for split in answer_splits:
            chosen = [qs for qs in sets if qs.split == split]
            found = evaluate_answers(engine, settings, chosen, progress=True)
            report["splits"][split]["answers"] = found
            print(
                f"{split}: fact in answer {found['fact_in_answer']:.3f}, cited answer page "
                f"{found['cited_answer_page']:.3f} ({len(chosen)} answers)",
                flush=True,
            )
        if set(answer_splits) >= {"dev", "holdout"}:
            rows = [
                row
                for split in ("dev", "holdout")
                for row in report["splits"][split]["answers"]["answers"]
            ]
            report["splits"]["all"]["answers"] = {
                "fact_in_answer": sum(row["fact_in_answer"] for row in rows) / len(rows),
                "cited_answer_page": sum(row["cited_answer_page"] for row in rows) / len(rows),
            }
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {json_path}")
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a report: per split, its question files, the pipeline's
    recall@1 and @3, the best sentence's recall@1, fact-in-lead (the lead's text holds
    the fact; no model) and fact-in-answer (None when answers were not run)."""
    figures: dict[str, Any] = {}
    for split, part in report["splits"].items():
        methods = part["methods"]
        figures[split] = {
            "questions": part["questions"],
            "sets": part.get("sets", []),
            "recall@1": methods["pipeline"]["recall@1"],
            "recall@3": methods["pipeline"]["recall@3"],
            "best_sentence@1": methods["best-sentence"]["recall@1"],
            "fact_in_lead": part.get("leads", {}).get("fact_in_lead"),
            "two_source_leads": part.get("leads", {}).get("two_source_leads"),
            "fact_in_answer": part.get("answers", {}).get("fact_in_answer"),
            "cited_answer_page": part.get("answers", {}).get("cited_answer_page"),
        }
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HERE / "questions")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--dump-html", type=Path, help="write the rendered pages here")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's misses@1")
    parser.add_argument("--no-answers", action="store_true", help="recall only, no model")
    parser.add_argument("--answer-tokens", type=int, default=48, help="longest answer")
    parser.add_argument("--data-dir", type=Path, help="where the model is (DATA_DIR)")
    parser.add_argument(
        "--answer-splits", default="dev,holdout", help="splits the model answers (comma list)"
    )
    args = parser.parse_args(argv)

    if args.dump_html:
        for qs in load_sets(args.data):
            for n, page in enumerate(qs.pages, start=1):
                target = args.dump_html / qs.id / f"{n}{'-gold' if page.gold else ''}.html"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(page.html, encoding="utf-8")
    try:
        report = run_benchmark(
            data=args.data,
            json_path=args.json,
            answers=not args.no_answers,
            answer_tokens=args.answer_tokens,
            answer_splits=[split for split in args.answer_splits.split(",") if split],
            data_dir=args.data_dir,
            verbose=args.verbose,
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(summary(report), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
