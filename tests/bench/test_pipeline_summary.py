"""The pipeline and workers parts' summaries: their ratios are paired."""

from __future__ import annotations

from typing import Any

from bench.pipeline import summarize
from bench.stack import Answer
from bench.workers import relative

TOKENS = 200


def pair(engine_rate: float, pipeline_rate: float) -> tuple[dict[str, Any], Answer]:
    alone = {"ttft_ms": 80.0, "tokens": TOKENS, "tokens_per_s": engine_rate}
    piped = Answer(sent=0.0, headers=0.005, first_token=0.1)
    piped.last_token = 0.1 + (TOKENS - 1) / pipeline_rate
    piped.done = {
        "usage": {"completion_tokens": TOKENS},
        "timings": {"queue_ms": 5.0, "ttft_ms": 88.0},
    }
    piped.events = {"token": 70}
    return alone, piped


def test_the_decode_ratio_is_the_median_of_each_rounds_own_ratio() -> None:
    # The machine slowed down in the middle round: both sides of it did.
    pairs = [pair(100.0, 95.0), pair(50.0, 49.0), pair(80.0, 80.0)]
    summary = summarize(pairs, send_task_ms=1.0)
    assert summary["decode_ratio"] == 0.98  # the median of 0.95, 0.98 and 1.0
    assert summary["decode_ratio_of_medians"] == 1.0  # 80 / 80: rounds mixed
    assert summary["engine_tokens_per_s_p50"] == 80.0
    assert summary["pipeline_tokens_per_s_p50"] == 80.0
    assert summary["added_ttft_ms_p50"] == 20.0  # 100 ms at the client, 80 alone


def test_rounds_without_a_rate_do_not_count() -> None:
    failed = pair(100.0, 90.0)
    failed[1].done = None
    summary = summarize([pair(100.0, 97.0), failed], send_task_ms=1.0)
    assert summary["valid"] == 1
    assert summary["decode_ratio"] == 0.97


def test_a_lone_answer_is_compared_across_hosts_through_the_engine_alone() -> None:
    # The 2-worker stage ran while the machine was slower: its lone answer's own rate
    # fell with the engine alone's, which the paired figure cancels.
    stages = relative(
        {
            "1": {
                "aggregate_tokens_per_s": 100.0,
                "lone_tokens_per_s": 100.0,
                "lone_vs_engine": 0.95,
            },
            "2": {
                "aggregate_tokens_per_s": 120.0,
                "lone_tokens_per_s": 76.0,
                "lone_vs_engine": 0.95,
            },
        }
    )
    assert stages["2"]["lone_vs_one"] == 1.0
    assert stages["2"]["lone_vs_one_unpaired"] == 0.76
    assert stages["2"]["aggregate_vs_one"] == 1.2
