"""Issue 12 exploration: can the default model rerank the picker's candidate sentences?

For each question, the picker's top K sentences (``score_sentences`` on the passages that
``select_evidence`` ranks, best score first, duplicates dropped) are scored by the default
model, teacher-forced, greedy (no sampling):

- ``a``: mean log P(sentence | "Question: <q>\\nAnswer (one sentence from a web page):")
  per token (the prompt is evaluated once per question; its KV cache is shared);
- ``b``: mean log P(question | "<sentence>\\nA question this sentence answers:") per token;
- ``fuse_a``, ``fuse_b``, ``fuse_ab``: rank fusion with the picker (sum of ranks, the
  picker's order breaks ties).

Reported per question file: fact in the picker's top-1 sentence, in each method's top-1,
the oracle (any of the top K holds the fact), tokens evaluated and model seconds per
question. Run from the repo root:
``PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/retrieval/rerank.py [--files holdout_08 ...]``
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bench.retrieval.data import (  # noqa: E402
    QuestionSet,
    contains_answer,
    documents_of,
    load_sets,
    search_result_of,
)
from shared.settings import Settings, get_settings  # noqa: E402
from worker.engine import load_engine  # noqa: E402
from worker.internet.pipeline import (  # noqa: E402
    MAX_PASSAGES_PER_SOURCE,
    build_candidates,
    passage_budget_chars,
)
from worker.internet.quote import QuotedPassage, score_sentences  # noqa: E402
from worker.internet.rank import rank_passages  # noqa: E402

MAX_TARGET_TOKENS = 64
METHODS = ("a", "b", "fuse_a", "fuse_b", "fuse_ab")


def candidates_of(qs: QuestionSet, settings: Settings, k: int) -> list[tuple[str, float]]:
    """The picker's top ``k`` sentences for ``qs`` (text, score), best first, as
    ``select_evidence`` ranks passages and ``score_sentences`` scores their sentences."""
    cands, _ = build_candidates(search_result_of(qs), documents_of(qs))
    ranked = rank_passages(
        qs.question,
        cands,
        limit=settings.context_passages,
        budget_chars=passage_budget_chars(settings),
        max_per_source=MAX_PASSAGES_PER_SOURCE,
    )
    quoted = [
        QuotedPassage(
            source_index=n,
            text=item.candidate.text,
            score=item.score,
            context=item.candidate.heading,
            title=item.candidate.title,
        )
        for n, item in enumerate(ranked)
    ]
    scored = sorted(score_sentences(qs.question, quoted), key=lambda pair: -pair[1].score)
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    for _, quote in scored:
        if quote.text in seen:
            continue
        seen.add(quote.text)
        out.append((quote.text, quote.score))
        if len(out) == k:
            break
    return out


class Scorer:
    """Teacher-forced log-probabilities with the engine's ctransformers model; a prompt
    prefix already in the context is kept (its KV cache reused)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.llm = engine._llm  # a measurement needs the raw logits
        self.evaluated = 0

    def _log_softmax_at(self, token: int) -> float:
        llm = self.llm
        size = llm.ctransformers_llm_logits_size()
        pointer = ctypes.cast(llm.ctransformers_llm_logits_data(), ctypes.POINTER(ctypes.c_float))
        logits = np.ctypeslib.as_array(pointer, shape=(size,)).astype(np.float64)
        peak = logits.max()
        return float(logits[token] - peak - np.log(np.exp(logits - peak).sum()))

    def _eval(self, tokens: list[int]) -> None:
        if tokens:
            self.llm.eval(tokens)
            self.evaluated += len(tokens)

    def mean_logprob(self, prompt: list[int], target: list[int]) -> float:
        context = self.llm._context
        shared = 0
        limit = min(len(prompt), len(context))
        while shared < limit and prompt[shared] == context[shared]:
            shared += 1
        if shared == len(prompt):
            shared -= 1  # re-evaluate the last prompt token to get its logits
        del context[shared:]
        self._eval(prompt[shared:])
        total = 0.0
        for n, token in enumerate(target):
            total += self._log_softmax_at(token)
            if n + 1 < len(target):
                self._eval([token])
        return total / len(target)


def ranks(values: list[float]) -> list[int]:
    """Rank (0 best) of each value, higher is better; earlier wins ties."""
    order = sorted(range(len(values)), key=lambda n: (-values[n], n))
    out = [0] * len(values)
    for rank, n in enumerate(order):
        out[n] = rank
    return out


def top_of(scores: list[float]) -> int:
    return ranks(scores).index(0)


def fused(*rank_lists: list[int]) -> int:
    """The candidate with the lowest sum of ranks (the picker's order breaks ties)."""
    totals = [sum(column) for column in zip(*rank_lists, strict=True)]
    return min(range(len(totals)), key=lambda n: (totals[n], n))


def score_question(
    scorer: Scorer, qs: QuestionSet, cands: list[tuple[str, float]]
) -> dict[str, Any]:
    engine = scorer.engine
    before, started = scorer.evaluated, time.perf_counter()
    prompt_a = engine.tokenize(f"Question: {qs.question}\nAnswer (one sentence from a web page):")
    question_tokens = engine.tokenize(f" {qs.question}")[:MAX_TARGET_TOKENS]
    a, b = [], []
    for text, _ in cands:
        sentence = engine.tokenize(f" {text}")[:MAX_TARGET_TOKENS]
        a.append(scorer.mean_logprob(prompt_a, sentence))
    for text, _ in cands:
        prompt_b = engine.tokenize(f"{text}\nA question this sentence answers:")
        b.append(scorer.mean_logprob(prompt_b, question_tokens))
    return {
        "a": a,
        "b": b,
        "model_s": time.perf_counter() - started,
        "tokens": scorer.evaluated - before,
    }


def picks(a: list[float], b: list[float]) -> dict[str, int]:
    picker = list(range(len(a)))
    ra, rb = ranks(a), ranks(b)
    return {
        "picker": 0,
        "a": top_of(a),
        "b": top_of(b),
        "fuse_a": fused(picker, ra),
        "fuse_b": fused(picker, rb),
        "fuse_ab": fused(picker, ra, rb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="*", default=None, help="question file names")
    parser.add_argument("--k", type=int, nargs="*", default=[5, 8])
    parser.add_argument("--limit", type=int, default=0, help="questions per file (0: all)")
    parser.add_argument("--no-model", action="store_true", help="picker@1 and oracle@K only")
    parser.add_argument("--json", type=Path, default=Path("rerank_rows.jsonl"))
    args = parser.parse_args()
    settings = get_settings()
    engine = load_engine(settings)
    scorer = Scorer(engine)
    kmax = max(args.k)
    sets = load_sets(HERE / "questions")
    files = args.files or sorted({qs.file for qs in sets})
    done: set[str] = set()
    if args.json.exists():
        done = {json.loads(line)["id"] for line in args.json.read_text().splitlines() if line}
    per_file = [[qs for qs in sets if qs.file == name][: args.limit or None] for name in files]
    # interleaved across files, so a run cut short covers every file
    queue = [qs for column in itertools.zip_longest(*per_file) for qs in column if qs]
    if args.no_model:
        report_oracle(queue, settings)
        return
    with args.json.open("a", encoding="utf-8") as out:
        for qs in queue:
            if qs.id in done:
                continue
            cands = candidates_of(qs, settings, kmax)
            row: dict[str, Any] = {"id": qs.id, "file": qs.file}
            row["hits"] = [contains_answer(text, qs.answer) for text, _ in cands]
            if cands:
                row.update(score_question(scorer, qs, cands))
            else:
                row.update({"a": [], "b": [], "model_s": 0.0, "tokens": 0})
            row["texts"] = [text for text, _ in cands]
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(qs.id, row["hits"], round(row["model_s"], 2), row["tokens"], flush=True)
    summarise(args.json, args.k)


def report_oracle(queue: list[QuestionSet], settings: Settings) -> None:
    """Without the model: fact in the picker's top-1 and in any of its top 5 / top 8."""
    by_file: dict[str, list[list[bool]]] = {}
    for qs in queue:
        hits = [contains_answer(text, qs.answer) for text, _ in candidates_of(qs, settings, 8)]
        by_file.setdefault(qs.file, []).append(hits)
    dev = [h for name, rows in by_file.items() if name.startswith("sets_") for h in rows]
    print("| file | n | picker@1 | oracle@5 | oracle@8 |")
    for name, rows in [*sorted(by_file.items()), ("dev (all sets_*)", dev)]:
        top1 = sum(bool(h) and h[0] for h in rows)
        at5, at8 = sum(any(h[:5]) for h in rows), sum(any(h[:8]) for h in rows)
        print(f"| {name} | {len(rows)} | {top1} | {at5} | {at8} |")


def summarise(path: Path, ks: list[int]) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row)
    groups = dict(sorted(by_file.items()))
    dev = [r for name, rs in groups.items() if name.startswith("sets_") for r in rs]
    if dev:
        groups["dev (all sets_*)"] = dev
    header = "| split | n | K | picker@1 | " + " | ".join(f"{m}@1" for m in METHODS)
    print(header + " | oracle@K | tokens/q | model s/q |")
    for name, group in groups.items():
        for k in ks:
            counts = dict.fromkeys(["picker", *METHODS, "oracle"], 0)
            for row in group:
                hits = row["hits"][:k]
                if not hits:
                    continue
                chosen = picks(row["a"][:k], row["b"][:k])
                for method, index in chosen.items():
                    counts[method] += hits[index]
                counts["oracle"] += any(hits)
            # time: K=8 runs cost what they cost; K=5 scales the per-candidate work
            tokens = statistics.mean(
                r["tokens"] * min(k, len(r["hits"])) / max(1, len(r["hits"])) for r in group
            )
            seconds = statistics.mean(
                r["model_s"] * min(k, len(r["hits"])) / max(1, len(r["hits"])) for r in group
            )
            cells = " | ".join(str(counts[m]) for m in ["picker", *METHODS])
            print(
                f"| {name} | {len(group)} | {k} | {cells} | {counts['oracle']} | "
                f"{tokens:.0f} | {seconds:.2f} |"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        summarise(Path(sys.argv[2]), [5, 8])
    else:
        main()
