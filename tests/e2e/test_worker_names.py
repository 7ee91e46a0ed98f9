"""Two worker processes from one Procfile line on one host: two Celery nodes, not one."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_ops import procfile
from worker.app import app as celery_app

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_from_one_line(
    stack_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Stack, list[str]]]:
    env = {
        **stack_env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    stack = Stack(env=env, logs=tmp_path)
    before = set(stack.live_workers())
    try:
        for name in ("worker_1", "worker_2"):
            stack._spawn(name, ["bash", "-c", procfile()["worker"]], {})
        wait_until(
            lambda: len(set(stack.live_workers()) - before) >= 2,
            "both workers to load the model",
            timeout=120,
        )
        yield stack, [str(stack.processes[n].pid) for n in ("worker_1", "worker_2")]
    finally:
        stack.close()


def test_each_process_answers_ping_under_its_own_name(
    two_from_one_line: tuple[Stack, list[str]],
) -> None:
    stack, pids = two_from_one_line
    celery_app.conf.broker_url = stack.env["REDIS_URL"]
    names: set[str] = set()

    def both_answer() -> bool:
        replies = celery_app.control.inspect(timeout=2).ping() or {}
        names.update(replies)
        return all(any(name.startswith(f"worker-{pid}@") for name in names) for pid in pids)

    wait_until(both_answer, "both workers to answer ping under their own names", timeout=60)
    ours = {name for name in names if name.split("@")[0] in {f"worker-{p}" for p in pids}}
    assert len(ours) == 2, names
