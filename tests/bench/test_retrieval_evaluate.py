"""The retrieval benchmark's per-method figures (``bench/retrieval/run.py``)."""

from __future__ import annotations

import pytest

from bench.retrieval import run
from bench.retrieval.data import QuestionSet


def test_recall_and_the_misses_at_3_count_the_unit_that_holds_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ranked = {
        "first": ["It is 47 minutes.", "other", "other", "other", "other"],
        "fourth": ["other", "other", "other", "It is 47 minutes.", "other"],
        "absent": ["other"] * 5,
    }
    monkeypatch.setattr(run, "METHODS", {"fake": lambda qs: ranked[qs.id]})
    sets = [QuestionSet(name, "how long?", "47 minutes", [], "dev") for name in ranked]
    figures = run.evaluate(sets, verbose=False)["fake"]
    assert figures["recall@1"] == pytest.approx(1 / 3)
    assert figures["recall@3"] == pytest.approx(1 / 3)
    assert figures["recall@5"] == pytest.approx(2 / 3)
    assert figures["misses_at_3"] == ["fourth", "absent"]
