"""The benchmark report: targets judged honestly, and the README table rewritten in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.run as run
from bench import readme
from bench.run import NO_GPU, NOT_MEASURED, figures, judged, main


def by_name(parts: dict[str, object]) -> dict[str, dict[str, object]]:
    return {f["name"]: f for f in figures(parts)}  # type: ignore[arg-type]


def test_unmeasured_figures_are_never_met() -> None:
    report = by_name({})
    assert report[DECODE]["met"] is None
    internet = report["internet answer: time to first token, p50"]
    assert internet["value"] == NOT_MEASURED and internet["met"] is None
    assert report["GPU check"]["value"] == NO_GPU


DECODE = "pipeline decode / engine alone (paired rounds)"
PAIRED = "2 workers: aggregate vs one answer at a time (paired rounds)"


def test_targets_are_judged() -> None:
    parts = {
        "pipeline": {
            "decode_ratio": 0.97,
            "decode_ratio_of_medians": 0.99,
            "added_ttft_ms_p50": 12.0,
        },
        "workers": {
            "1": {"aggregate_vs_one": 1.0, "lone_vs_one": 1.0},
            "2": {
                "aggregate_vs_one": 1.2,
                "paired_vs_one_answer": 1.35,
                "lone_vs_one": 0.85,
                "lone_vs_one_unpaired": 0.95,
            },
        },
        "burst": {"chats": 200, "done": 200, "queue_events": 0},
        "internet": {"first_token_s_p50": 1.8, "first_model_token_s_p50": 2.2},
    }
    report = by_name(parts)
    assert report[DECODE]["met"] is False
    assert report["pipeline decode / engine alone, ratio of the medians"]["met"] is None
    assert report["added time to first token, p50"]["met"] is True
    assert report[PAIRED]["met"] is True
    assert report["2 workers: aggregate vs the 1-worker stage (minutes earlier)"]["met"] is None
    lone = "2-worker host: a lone answer vs 1-worker host"
    assert report[f"{lone} (each against the engine alone)"]["met"] is False
    assert report[f"{lone} (the stages' rates, minutes apart)"]["met"] is None
    assert report["burst: 200 chats, 1 worker: done"]["met"] is True
    assert report["burst: queue events seen"]["met"] is False
    assert report["internet answer: time to first token, p50"]["met"] is True


def test_a_capped_burst_is_judged_on_its_429s_and_its_admitted_chats() -> None:
    capped = {
        "env": {"MAX_QUEUED": "50"},
        "rejected_429": 140,
        "rejected_with_retry_after": 140,
        "admitted": 60,
        "admitted_done": 60,
    }
    turned_away = "capped burst (MAX_QUEUED=50): turned away with 429 and Retry-After"
    finished = "capped burst: admitted chats that finished"
    report = by_name({"burst_capped": capped})
    assert report[turned_away]["met"] is True
    assert report[finished]["met"] is True
    report = by_name({"burst_capped": {**capped, "rejected_with_retry_after": 139}})
    assert report[turned_away]["met"] is False  # a 429 without Retry-After
    report = by_name({"burst_capped": {**capped, "admitted_done": 59}})
    assert report[finished]["met"] is False
    assert by_name({})[finished]["met"] is None


def test_readme_table_is_rewritten_between_markers(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(f"# Title\n\n{readme.START}\nold table\n{readme.END}\n\n## After\n")
    report = {"date": "d", "commit": "abc", "figures": figures({}), "parts": {}}
    readme.rewrite(report, page)
    text = page.read_text()
    assert "old table" not in text
    assert text.startswith("# Title\n") and text.endswith("## After\n")
    assert "| GPU check | " + NO_GPU in text
    readme.rewrite(report, page)  # idempotent
    assert page.read_text() == text


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The results file and a README page of this test alone; no GPU here, as on CI."""
    results = tmp_path / "latest.json"
    page = tmp_path / "README.md"
    page.write_text(f"{readme.START}\n{readme.END}\n")
    monkeypatch.setattr(run, "RESULTS", results)
    monkeypatch.setattr(readme, "README", page)
    monkeypatch.setattr("bench.gpu_check.nvidia_gpus", lambda: [])
    return results, page


def test_a_part_runs_alone_and_keeps_the_others(files: tuple[Path, Path]) -> None:
    results, page = files
    results.write_text('{"note": "quiet run", "parts": {"burst": {"done": 7, "chats": 200}}}')
    assert main(["--only", "gpu"]) == 0
    report = json.loads(results.read_text())
    assert report["parts"]["burst"]["done"] == 7  # kept
    assert report["note"] == "quiet run"  # kept too
    assert report["parts"]["gpu"]["status"] == NO_GPU
    assert "burst: 200 chats, 1 worker: done | 7 |" in page.read_text()


def test_the_retrieval_part_has_the_model_answer_the_splits_it_is_told(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The benchmark itself takes minutes with the model: this checks what it is asked.
    asked: list[dict[str, object]] = []

    def run_benchmark(**options: object) -> dict[str, object]:
        asked.append(options)
        return {"splits": {}}

    monkeypatch.setattr("bench.retrieval.run.run_benchmark", run_benchmark)
    assert main(["--only", "retrieval", "--retrieval-answers", "holdout"]) == 0
    assert asked == [{"answers": True, "answer_splits": ["holdout"]}]
    assert main(["--only", "retrieval"]) == 0
    assert asked[-1] == {"answers": True, "answer_splits": ["dev", "holdout"]}
    assert main(["--only", "retrieval", "--quick"]) == 0
    assert asked[-1]["answers"] is False


def _gpu_report(threads: int, cpu: float, gpu: float, used: bool = True) -> dict[str, object]:
    return {
        "model": "smollm2",
        "card": {"name": "NVIDIA H200", "driver": "580", "memory": "143771 MiB"},
        "cpu_count": 16,
        "gpu_used": used,
        "cpu": {"threads": threads, "tokens_per_s": cpu, "long_prompt_ttft_s": 3.0},
        "gpu": {"tokens_per_s": gpu, "long_prompt_ttft_s": 0.2, "long_prompt_tokens": 1464},
    }


def test_gpu_reports_made_elsewhere_are_recorded_with_the_card(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    results, _ = files
    paths = []
    for threads, cpu, gpu in [(16, 142.0, 102.0), (1, 44.0, 168.0)]:
        paths.append(tmp_path / f"gpu_t{threads}.json")
        paths[-1].write_text(json.dumps(_gpu_report(threads, cpu, gpu)))
    pipeline = tmp_path / "pipeline.json"
    pipeline.write_text(json.dumps({"decode_ratio": 0.99, "added_ttft_ms_p50": 12.2}))
    reports = ["--gpu-report", str(paths[0]), "--gpu-report", str(paths[1])]
    assert main(["--only", "gpu", *reports, "--gpu-pipeline", str(pipeline)]) == 0
    gpu = json.loads(results.read_text())["parts"]["gpu"]
    assert gpu["status"] == "measured on NVIDIA H200"
    assert gpu["best_gpu"]["threads"] == 1 and gpu["best_cpu"]["threads"] == 16
    assert gpu["gpu_vs_cpu_decode"] == round(168 / 142, 2)
    assert gpu["gpu_vs_cpu_long_prompt_ttft"] == 15.0
    report = by_name({"gpu": gpu})
    assert report["GPU: decode, every layer on the GPU"]["value"] == 168.0
    assert report["GPU: same host's CPU decode"]["value"] == 142.0
    assert report["GPU: pipeline decode / engine alone"]["value"] == 0.99
    assert report["GPU: added time to first token, p50"]["value"] == 12.2
    unused = run.gpu_summary([_gpu_report(1, 44.0, 40.0, used=False)])
    assert unused["status"] == "measured on NVIDIA H200: the GPU was NOT used"


def test_smoke_runs_are_not_judged() -> None:
    parts = {
        "pipeline": {"decode_ratio": 0.99, "quick": True},
        "workers": {"2": {"paired_vs_one_answer": 1.4}},
    }
    report = {f["name"]: f for f in judged(parts)}
    assert report[DECODE]["met"] is None
    assert "not judged" in str(report[DECODE]["target"])
    assert report[PAIRED]["met"] is True
    assert report[PAIRED]["part"] == "workers"
    assert report["fan-out: ? streams on one web process, identical text"]["part"] == "fanout"


def test_retrieval_holdout_figures_are_judged_and_dev_figures_are_not() -> None:
    splits = {
        "holdout": {"questions": 28, "recall@1": 0.7, "recall@3": 0.93, "fact_in_answer": 0.82},
        "dev": {"questions": 66, "recall@1": 0.8, "recall@3": 0.97, "fact_in_answer": None},
    }
    report = {f["name"]: f for f in judged({"retrieval": {"splits": splits}})}
    assert report["retrieval holdout (28 questions): recall@1"]["met"] is False
    assert report["retrieval holdout (28 questions): recall@3"]["met"] is True
    assert report["retrieval holdout (28 questions): fact in answer"]["met"] is True
    assert report["retrieval holdout (28 questions): fact in answer"]["part"] == "retrieval"
    dev = report["retrieval dev (66 questions): recall@1"]
    assert dev["value"] == 0.8 and dev["met"] is None and dev["target"] == ""
    assert report["retrieval dev (66 questions): fact in answer"]["value"] is None
    # A holdout is named by its question file; fact in lead (no model) is shown, not judged.
    splits["holdout"] = {**splits["holdout"], "sets": ["holdout_04"], "fact_in_lead": 0.9}
    named = {f["name"]: f for f in judged({"retrieval": {"splits": splits}})}
    assert named["retrieval holdout_04 (28 questions): recall@1"]["met"] is False
    assert named["retrieval holdout_04 (28 questions): fact in lead"]["value"] == 0.9
    assert named["retrieval holdout_04 (28 questions): fact in lead"]["met"] is None
    unmeasured = by_name({})["retrieval holdout (? questions): recall@1"]
    assert unmeasured["value"] == NOT_MEASURED and unmeasured["met"] is None
