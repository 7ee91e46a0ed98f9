"""Issue 12: fit the learned choice among the picker's best sentences, and estimate how
it generalises by leave-one-file-out cross-validation.

Each dev question file (``questions/sets_*.json``; holdout files are never opened) was
written by another author or session at another time, so training on eleven files and
testing on the twelfth mimics a new holdout. For every question the picker's best
``--k`` sentences (distinct texts, of the passages ``select_evidence`` quotes from) and their
features (:func:`worker.internet.learned.features`) are computed once; a conditional
logit (softmax over a question's candidates, the answering ones the target, L2 penalty,
features standardised on the training rows) is fitted with numpy (damped Newton). The
penalty is chosen by an inner leave-one-file-out over the training files alone (or set:
``--penalty``).
Questions whose candidates all or none hold the answer teach nothing and are left out
of training.

Printed per file: questions, the picker's fact in top-1, the learned choice's, the
questions it gains and loses, and the oracle (any candidate holds the fact); with
``--leads``, what the holdout measures per held-out file without the model (recall@1,
recall@3 and fact-in-lead: the product's picker alone against the weights fitted
without that file, wired in). ``--write`` fits on all files (penalty
chosen by leave-one-file-out over them) and prints ``WEIGHTS`` for
``worker/internet/learned.py``. Deterministic, seconds (``--leads``: a minute or two).
From the repo root:
``PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/retrieval/fit.py [--leads] [--write]``
"""

from __future__ import annotations

import argparse
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bench.retrieval.data import (  # noqa: E402
    contains_answer,
    documents_of,
    load_sets,
    search_result_of,
)
from shared.settings import get_settings  # noqa: E402
from worker.internet import learned  # noqa: E402
from worker.internet.learned import (  # noqa: E402
    FEATURES,
    TOP_K,
    candidates,
    features,
    learned_scores,
)
from worker.internet.pipeline import build_candidates, lead_pool, quoted_passages  # noqa: E402
from worker.internet.quote import scored_sentences  # noqa: E402

PENALTIES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""L2 penalties tried: the loss is the mean over training questions of minus the log
share of the answering candidates, plus ``penalty / 200 * |w|^2`` (standardised w)."""

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Weights:
    """A fitted linear model on standardised features (``(x - mean) / scale``)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weight: tuple[float, ...]

    def per_feature(self) -> dict[str, float]:
        """The weights per raw feature value, as ``worker/internet/learned.py`` holds
        them (the means shift every candidate alike, so they drop out)."""
        return {
            name: weight / scale
            for name, weight, scale in zip(FEATURES, self.weight, self.scale, strict=True)
        }


@dataclass
class Question:
    """One question's candidates: feature rows (best first) and which hold the fact."""

    id: str
    file: str
    rows: Array
    hits: NDArray[np.bool_]


def collect(k: int) -> list[Question]:
    """The candidates of every dev question, as the worker ranks and scores them."""
    out: list[Question] = []
    for qs in load_sets(HERE / "questions", "sets_*.json"):
        cands, _ = build_candidates(search_result_of(qs), documents_of(qs))
        quoted = quoted_passages(lead_pool(qs.question, cands))
        top = candidates(scored_sentences(qs.question, quoted), k)
        rows = np.array(features(qs.question, top), dtype=np.float64).reshape(
            len(top), len(FEATURES)
        )
        hits = np.array([contains_answer(found.quote.text, qs.answer) for found in top], dtype=bool)
        out.append(Question(qs.id, qs.file, rows, hits))
    return out


def fit(train: list[Question], penalty: float) -> Weights:
    """The conditional logit's weights on ``train`` (standardised features): damped
    Newton steps (the Hessian of the softmax over all candidates, plus the penalty: a
    positive definite stand-in for the exact one) with a backtracking line search."""
    useful = [q for q in train if q.hits.any() and not q.hits.all()]
    stacked = np.vstack([q.rows for q in train if len(q.rows)])
    mean = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    size, width = stacked.shape[1], max((len(q.rows) for q in useful), default=1)
    x = np.zeros((len(useful), width, size))
    real = np.zeros((len(useful), width), dtype=bool)
    pos = np.zeros((len(useful), width), dtype=bool)
    for n, q in enumerate(useful):
        x[n, : len(q.rows)] = (q.rows - mean) / scale
        real[n, : len(q.rows)] = True
        pos[n, : len(q.rows)] = q.hits
    count, lam = max(1, len(useful)), penalty / 100

    def softmax(s: Array, mask: NDArray[np.bool_]) -> tuple[Array, Array]:
        s = np.where(mask, s, -np.inf)
        peak = s.max(axis=1, keepdims=True)
        e = np.exp(s - peak)
        total = e.sum(axis=1, keepdims=True)
        return e / total, (np.log(total) + peak)[:, 0]

    def loss(w: Array) -> tuple[float, Array, Array]:
        s = x @ w
        p_all, z_all = softmax(s, real)
        p_pos, z_pos = softmax(s, pos)
        value = float((z_all - z_pos).sum()) / count + 0.5 * lam * float(w @ w)
        grad = np.einsum("qk,qkd->d", p_all - p_pos, x) / count + lam * w
        centred = x - np.einsum("qk,qkd->qd", p_all, x)[:, None, :]
        hess = np.einsum("qk,qkd,qke->de", p_all, centred, centred) / count
        return value, grad, hess + lam * np.eye(size)

    w = np.zeros(size)
    value, grad, hess = loss(w)
    for _ in range(100):
        step = np.linalg.solve(hess, grad)
        rate = 1.0
        while rate > 1e-6:
            new = w - rate * step
            new_value, new_grad, new_hess = loss(new)
            if new_value <= value - 1e-4 * rate * float(grad @ step):
                break
            rate /= 2
        else:
            break
        converged = value - new_value < 1e-10
        w, value, grad, hess = new, new_value, new_grad, new_hess
        if converged:
            break
    return Weights(tuple(mean.tolist()), tuple(scale.tolist()), tuple(w.tolist()))


def choose(question: Question, weights: Weights) -> int:
    """The learned choice's candidate (the earliest of equals)."""
    if not len(question.rows):
        return 0
    x = (question.rows - np.array(weights.mean)) / np.array(weights.scale)
    return int(np.argmax(x @ np.array(weights.weight)))


def right(questions: list[Question], weights: Weights) -> int:
    """How many of ``questions`` the learned choice answers (fact in its sentence)."""
    return sum(bool(q.hits[choose(q, weights)]) for q in questions if len(q.hits))


def pick_penalty(train: list[Question]) -> float:
    """The penalty with the most right answers in leave-one-file-out over ``train``
    (the larger penalty among equals: the simpler model)."""
    files = sorted({q.file for q in train})
    best, best_right = PENALTIES[-1], -1
    for penalty in reversed(PENALTIES):
        total = 0
        for held in files:
            weights = fit([q for q in train if q.file != held], penalty)
            total += right([q for q in train if q.file == held], weights)
        if total > best_right:
            best, best_right = penalty, total
    return best


def cross_validate(questions: list[Question], penalty: float | None) -> dict[str, Weights]:
    """Leave-one-file-out: per file, the picker's and the learned choice's top-1; the
    weights fitted without each file (with ``penalty``, else the one an inner
    leave-one-file-out picks)."""
    files = sorted({q.file for q in questions})
    print("| file | n | picker@1 | learned@1 | gained | lost | oracle@K | penalty |")
    print("|---|---|---|---|---|---|---|---|")
    totals = [0, 0, 0, 0, 0, 0]
    fitted: dict[str, Weights] = {}
    for held in files:
        train = [q for q in questions if q.file != held]
        test = [q for q in questions if q.file == held]
        chosen_penalty = pick_penalty(train) if penalty is None else penalty
        weights = fitted[held] = fit(train, chosen_penalty)
        picker = sum(bool(len(q.hits) and q.hits[0]) for q in test)
        chosen = [bool(len(q.hits) and q.hits[choose(q, weights)]) for q in test]
        first = [bool(len(q.hits) and q.hits[0]) for q in test]
        learned = sum(chosen)
        gained = sum(c and not f for c, f in zip(chosen, first, strict=True))
        lost = sum(f and not c for c, f in zip(chosen, first, strict=True))
        oracle = sum(bool(q.hits.any()) for q in test)
        row = (len(test), picker, learned, gained, lost, oracle)
        for n, value in enumerate(row):
            totals[n] += value
        print(f"| {held} | " + " | ".join(map(str, row)) + f" | {chosen_penalty} |")
    print("| all | " + " | ".join(map(str, totals)) + " | |")
    return fitted


def cross_validate_leads(fitted: dict[str, Weights]) -> None:
    """What the holdout measures (no model), per held-out file: recall@1 and @3 (the
    passages the answer quotes, in its order: ``methods.pipeline``) and fact-in-lead
    (the product's lead, runner-up and all), with the picker alone (no weights) and
    with the weights fitted without that file, wired in as ``select_evidence`` uses
    them."""
    from bench.retrieval.answers import evaluate_leads
    from bench.retrieval.methods import pipeline

    settings = get_settings()
    sets = load_sets(HERE / "questions", "sets_*.json")
    print(
        "| file | n | recall@1 (picker) | (learned) | recall@3 (picker) | (learned) "
        "| lead (picker) | (learned) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    totals = [0] * 7
    for held, weights in fitted.items():
        chosen = [qs for qs in sets if qs.file == held]
        counts = []  # (recall@1, recall@3, fact in lead) for the picker, then learned
        for patched in ({}, weights.per_feature()):
            learned.WEIGHTS = patched
            quoted = [pipeline(qs) for qs in chosen]
            counts.append(
                [
                    sum(
                        any(contains_answer(text, qs.answer) for text in texts[:k])
                        for qs, texts in zip(chosen, quoted, strict=True)
                    )
                    for k in (1, 3)
                ]
                + [round(evaluate_leads(settings, chosen)["fact_in_lead"] * len(chosen))]
            )
        row = [len(chosen), *(value for pair in zip(*counts, strict=True) for value in pair)]
        for n, value in enumerate(row):
            totals[n] += value
        print(f"| {held} | " + " | ".join(map(str, row)) + " |")
    print("| all | " + " | ".join(map(str, totals)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=TOP_K, help="candidates per question")
    parser.add_argument("--flat", action="store_true", help="penalty 1.0, no inner CV")
    parser.add_argument("--write", action="store_true", help="fit on all and print weights")
    parser.add_argument(
        "--leads", action="store_true", help="recall@1/@3, fact-in-lead per held-out file"
    )
    parser.add_argument("--penalty", type=float, help="this penalty, no inner CV (--write too)")
    parser.add_argument("--drop", nargs="*", default=[], help="features left out")
    parser.add_argument("--cache", type=Path, help="pickle of the candidates (made if absent)")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        questions = pickle.loads(args.cache.read_bytes())
    else:
        questions = collect(args.k)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(questions))
    dropped = [FEATURES.index(name) for name in args.drop]
    for q in questions:
        q.rows[:, dropped] = 0.0  # a constant feature gets no weight
    fitted = cross_validate(questions, 1.0 if args.flat else args.penalty)
    if args.leads:
        saved = learned.WEIGHTS
        cross_validate_leads(fitted)
        learned.WEIGHTS = saved
    if args.write:
        penalty = args.penalty if args.penalty is not None else pick_penalty(questions)
        weights = fit(questions, penalty)
        raw = weights.per_feature()
        same = sum(
            choose(q, weights) == _first_best(learned_scores(q.rows.tolist(), raw))
            for q in questions
            if len(q.rows)
        )
        print(f"# penalty {penalty}, K {args.k}, {len(questions)} questions, {same} agree")
        print("WEIGHTS: dict[str, float] = {")
        for name, value in raw.items():
            print(f'    "{name}": {value:.6g},')
        print("}")


def _first_best(values: list[float]) -> int:
    return max(range(len(values)), key=lambda n: (values[n], -n))


if __name__ == "__main__":
    main()
