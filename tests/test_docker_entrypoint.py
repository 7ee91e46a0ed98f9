"""The image's entrypoint (docker/entrypoint.sh), run with bash and a stand-in ``python``
that records how it was called (no Docker engine needed), and the Dockerfile's shape."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, signal, sys, time

def note(record):
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(record) + "\\n")

note({{"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
      "env": {{k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "GPU_LAYERS", "PORT")}}}})
if "celery" in sys.argv and os.environ.get("FAKE_SERVE"):
    def stop(*_):
        note({{"terminated": os.getpid()}})
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
"""

FAKE_NVIDIA_SMI = """#!/bin/sh
printf '0\\n1\\n'
"""


class Fakes:
    def __init__(self, folder: Path) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "calls.jsonl"
        (self.bin / "python").write_text(FAKE_PYTHON)
        (self.bin / "python").chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_LOG": str(self.log), "HOME": "/tmp"}
        env.update(extra)
        return env

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ENTRYPOINT), *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def test_web_runs_the_procfile_line_in_one_process(fakes: Fakes) -> None:
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT), "web", "--workers", "2"], env=fakes.env(PORT="1234"), cwd="/"
    )
    assert process.wait(30) == 0
    [call] = fakes.calls()
    assert call["argv"][:4] == ["-m", "uvicorn", "--factory", "web.app:app_factory"]
    assert call["argv"][call["argv"].index("--port") + 1] == "1234"
    assert {"--proxy-headers", "--no-access-log"} <= set(call["argv"])
    assert call["argv"][-2:] == ["--workers", "2"]  # extra arguments are appended
    assert call["cwd"] == str(ROOT)
    assert call["pid"] == process.pid  # exec all the way: signals reach the server itself


def test_default_process_is_web(fakes: Fakes) -> None:
    assert fakes.run().returncode == 0
    assert fakes.calls()[0]["argv"][:2] == ["-m", "uvicorn"]


def test_worker_pulls_the_model_then_runs_the_procfile_worker(fakes: Fakes) -> None:
    done = fakes.run("worker")
    assert done.returncode == 0, done.stderr
    pull, worker = fakes.calls()
    assert pull["argv"] == ["-m", "shared.cli", "models", "pull", "--quiet"]
    assert worker["argv"][:5] == ["-m", "celery", "-A", "worker.app", "worker"]
    argv = " ".join(worker["argv"])
    assert "-Q inference" in argv and "--concurrency 1" in argv and "-E" in worker["argv"]


def test_release_and_up(fakes: Fakes) -> None:
    assert fakes.run("release").returncode == 0
    assert fakes.run("up", "--workers", "2").returncode == 0
    release, up = fakes.calls()
    assert release["argv"] == ["-m", "shared.cli", "migrate"]
    assert up["argv"] == ["-m", "shared.cli", "up", "--host", "0.0.0.0", "--workers", "2"]


def test_flower_needs_basic_auth(fakes: Fakes) -> None:
    refused = fakes.run("flower")
    assert refused.returncode != 0
    assert "FLOWER_BASIC_AUTH" in refused.stderr
    assert not fakes.calls()
    done = fakes.run("flower", FLOWER_BASIC_AUTH="ops:pw", FLOWER_URL_PREFIX="flower", PORT="5566")
    assert done.returncode == 0, done.stderr
    argv = fakes.calls()[0]["argv"]
    assert argv[:5] == ["-m", "celery", "-A", "worker.app", "flower"]
    assert {"--basic-auth=ops:pw", "--url-prefix=flower", "--port=5566"} <= set(argv)


def test_any_other_command_runs_as_given(fakes: Fakes) -> None:
    done = fakes.run("echo", "hello", "there")
    assert done.returncode == 0
    assert done.stdout == "hello there\n"


def test_gpu_worker_without_a_gpu_says_so(fakes: Fakes) -> None:
    done = fakes.run("gpu-worker")
    assert done.returncode == 69
    assert "no GPU" in done.stderr


def _serve_gpu_workers(fakes: Fakes, **env: str) -> tuple[subprocess.Popen[str], list[Any]]:
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT), "gpu-worker"],
        env=fakes.env(FAKE_SERVE="1", **env),
        cwd="/",
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = [c for c in fakes.calls() if "celery" in c.get("argv", [])]
        if len(workers) == 2:
            return process, workers
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the GPU workers did not start")


@pytest.mark.parametrize("source", ["CUDA_VISIBLE_DEVICES", "nvidia-smi"])
def test_gpu_worker_runs_one_solo_worker_per_gpu(fakes: Fakes, source: str) -> None:
    env = {}
    if source == "nvidia-smi":
        (fakes.bin / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
        (fakes.bin / "nvidia-smi").chmod(0o755)
    else:
        env["CUDA_VISIBLE_DEVICES"] = "0,1"
    process, workers = _serve_gpu_workers(fakes, **env)
    try:
        by_device = {w["env"]["CUDA_VISIBLE_DEVICES"]: w for w in workers}
        assert set(by_device) == {"0", "1"}
        for device, worker in by_device.items():
            argv = worker["argv"]
            assert argv[argv.index("--pool") + 1] == "solo"
            assert argv[argv.index("-n") + 1] == f"gpu{device}@%h"
            assert worker["env"]["GPU_LAYERS"] == "100"
        assert fakes.calls()[0]["argv"][:4] == ["-m", "shared.cli", "models", "pull"]
        # SIGTERM reaches every worker (each finishes its generation), then it exits 0.
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        terminated = {c["terminated"] for c in fakes.calls() if "terminated" in c}
        assert terminated == {w["pid"] for w in workers}
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_gpu_worker_keeps_a_chosen_gpu_layers(fakes: Fakes) -> None:
    process, workers = _serve_gpu_workers(fakes, CUDA_VISIBLE_DEVICES="3,5", GPU_LAYERS="20")
    try:
        assert {w["env"]["CUDA_VISIBLE_DEVICES"] for w in workers} == {"3", "5"}
        assert {w["env"]["GPU_LAYERS"] for w in workers} == {"20"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        process.communicate()


def test_dockerfile_is_multi_stage_non_root_with_a_cuda_variant() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M)
    assert stages == ["build", "runtime"]
    runtime = dockerfile.split("AS runtime", 1)[1]
    users = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in runtime
    assert 'CMD ["web"]' in runtime
    assert "ctransformers[cuda]" in dockerfile and "ARG VARIANT=cpu" in dockerfile
    # Everything the build COPYs exists (README.md is the pyproject's readme).
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "data", ".pytest-data"} <= set(ignored)
    assert os.access(ENTRYPOINT, os.X_OK)
