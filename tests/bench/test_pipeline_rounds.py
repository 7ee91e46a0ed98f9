"""The pipeline part's rounds: each side answers a short warm-up just before its measured
answer, which side goes first alternates, and a pipeline after the engine alone settles
first; the engine alone answers with the length it is asked for."""

from __future__ import annotations

import os
from typing import Any

from bench.pipeline import (
    WARM_UP_TOKENS,
    EngineAlone,
    paired_round,
    question,
    warm_up_question,
)
from bench.stack import Answer
from shared.settings import Settings


class Recorder:
    """Stands in for the engine alone and the stack; records what each was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def ask(self, text: str, max_new_tokens: int | None = None) -> dict[str, Any]:
        self.calls.append(("alone", text, str(max_new_tokens)))
        return {"ttft_ms": 1.0}

    def warm_up(self, text: str, max_tokens: int) -> None:
        self.calls.append(("pipeline", text, str(max_tokens)))

    def settle(self) -> None:
        self.calls.append(("settle",))

    def through_pipeline(self, text: str) -> Answer:
        self.calls.append(("pipeline", text, "None"))
        return Answer(sent=0.0)


def test_each_measured_answer_follows_a_warm_up_of_its_own_side() -> None:
    warm, tokens = warm_up_question(question(0)), str(WARM_UP_TOKENS)
    assert warm != question(0)
    assert warm_up_question(question(1)) == warm_up_question(question(1))  # both sides alike

    even = Recorder()
    paired_round(0, even, even, even.through_pipeline)  # type: ignore[arg-type]
    assert even.calls == [
        ("alone", warm, tokens),
        ("alone", question(0), "None"),
        ("settle",),
        ("pipeline", warm, tokens),
        ("pipeline", question(0), "None"),
    ]

    odd = Recorder()
    alone, piped = paired_round(1, odd, odd, odd.through_pipeline)  # type: ignore[arg-type]
    warm = warm_up_question(question(1))
    assert odd.calls == [
        ("pipeline", warm, tokens),
        ("pipeline", question(1), "None"),
        ("alone", warm, tokens),
        ("alone", question(1), "None"),
    ]
    assert alone == {"ttft_ms": 1.0} and isinstance(piped, Answer)


def test_the_engine_alone_answers_with_the_length_it_is_asked_for(
    model_settings: Settings,
) -> None:
    env = {
        **os.environ,
        "DATA_DIR": str(model_settings.data_dir),
        "MODEL": "smollm2",
        "TEMPERATURE": "0",
        "MAX_NEW_TOKENS": "24",
    }
    engine = EngineAlone(env)
    try:
        short = engine.ask(question(0), max_new_tokens=3)
        whole = engine.ask(question(1))
    finally:
        engine.close()
    assert short["tokens"] == 3
    assert 3 < whole["tokens"] <= 24
    assert short["ttft_ms"] > 0 and whole["tokens_per_s"] > 0
