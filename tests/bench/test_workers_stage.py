"""The workers part starts every measured answer on a host idle alike: the engine alone,
the lone answer and the concurrent round each follow a wait for the workers' next
host-load sample (``Stack.settle``)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import workers


class Recorder:
    """Stands in for the stack and the engine alone; records the order of what happens."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def settle(self) -> None:
        self.calls.append("settle")

    def ask(self, text: str, max_new_tokens: int | None = None) -> dict[str, Any]:
        self.calls.append("engine")
        return {"tokens_per_s": 100.0}


def test_every_measured_answer_follows_a_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()

    async def fake_round(stack: Any, chats: int) -> tuple[float, list[float], int]:
        recorder.calls.append(f"answers x{chats}")
        return 80.0 * chats, [80.0] * chats, 0

    monkeypatch.setattr(workers, "_round", fake_round)
    result = workers._stage(recorder, recorder, 2, lone=2, rounds=2)  # type: ignore[arg-type]
    assert recorder.calls == [
        "answers x2",  # the stage's warm round: loads the new workers' model
        *["settle", "engine", "settle", "answers x1"] * 2,  # lone answers
        *["settle", "answers x1", "settle", "answers x2"] * 2,  # paired rounds
    ]
    assert result["lone_vs_engine"] == 0.8
    assert result["paired_vs_one_answer"] == 2.0
