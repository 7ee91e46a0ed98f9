"""The Procfile, line by line, as ``bash -c`` expands it (a stand-in ``python`` records
the command); tests/e2e/test_ops.py runs each line for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import (
    flower_command,
    node_name,
    warn_if_open,
    web_command,
    worker_command,
    worker_pool,
)
from shared.settings import Settings
from tests.conftest import ROOT

FAKE_PYTHON = f"""#!{sys.executable}
import json, sys
print(json.dumps(sys.argv[1:]))
"""
#: The environment the lines may use: the platform's PORT and documented settings.
ALLOWED_VARIABLES = {
    "PORT",
    "FLOWER_BASIC_AUTH",
    "FLOWER_URL_PREFIX",
    "FORWARDED_ALLOW_IPS",
    "WEB_LIMIT_CONCURRENCY",
    "DYNO",
}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name.strip(): command.strip()
        for name, _, command in (line.partition(":") for line in lines if line.strip())
    }


def expand(process: str, tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    """Run the line with bash as Heroku does; returns (status, python's argv, stderr)."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", procfile()[process]],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
        timeout=30,
    )
    argv = json.loads(done.stdout) if done.stdout.strip() else []
    return done.returncode, argv, done.stderr


def test_procfile_has_the_four_processes() -> None:
    assert set(procfile()) == {"release", "web", "worker", "flower"}


def test_lines_use_only_documented_variables() -> None:
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", (ROOT / "Procfile").read_text()))
    assert used <= ALLOWED_VARIABLES
    fields = {name.upper() for name in Settings.model_fields}
    assert used - {"PORT"} <= fields  # each is a setting with a description


def test_release_migrates(tmp_path: Path) -> None:
    assert expand("release", tmp_path)[:2] == (0, ["-m", "shared.cli", "migrate"])


def test_web_serves_on_port_behind_a_proxy(tmp_path: Path) -> None:
    status, argv, _ = expand("web", tmp_path, PORT="5123")
    assert status == 0
    assert argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    # Forwarded headers are trusted from loopback only, unless FORWARDED_ALLOW_IPS says.
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "127.0.0.1"
    assert "--proxy-headers" in argv
    # The same server as `chatbot web`, apart from where it binds.
    local = web_command(host="0.0.0.0", port=5123)
    assert argv[:4] == local[1:5]
    for option in (
        "--limit-concurrency",
        "--timeout-keep-alive",
        "--h11-max-incomplete-event-size",
    ):
        assert argv[argv.index(option) + 1] == local[local.index(option) + 1], option
    assert expand("web", tmp_path)[1][argv.index("--port") + 1] == "8000"  # no PORT: 8000
    _, argv, _ = expand("web", tmp_path, FORWARDED_ALLOW_IPS="10.0.0.0/8")
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "10.0.0.0/8"


def test_worker_takes_one_generation_at_a_time_with_events(tmp_path: Path) -> None:
    status, argv, _ = expand("worker", tmp_path)
    assert status == 0
    assert argv[:5] == ["-m", "celery", "-A", "worker.app", "worker"]
    assert argv[argv.index("-Q") + 1] == "inference"
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"
    assert "-E" in argv  # task events, for Flower
    local = worker_command(name="worker@%h")
    for option in ("-Q", "--pool", "--concurrency", "--prefetch-multiplier"):
        assert argv[argv.index(option) + 1] == local[local.index(option) + 1], option


def test_each_worker_process_gets_its_own_node_name(tmp_path: Path) -> None:
    # Two processes from one line on one host: the process id tells them apart.
    names = {argv[argv.index("-n") + 1] for argv in (expand("worker", tmp_path)[1] for _ in "ab")}
    assert len(names) == 2
    assert all(re.fullmatch(r"worker-\d+@%h", name) for name in names), names
    # On Heroku each dyno has its name: worker.1, worker.2.
    argv = expand("worker", tmp_path, DYNO="worker.2")[1]
    assert argv[argv.index("-n") + 1] == "worker.2@%h"


def test_chatbot_worker_names_itself_the_same_way() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert node_name(settings) == f"worker-{os.getpid()}@%h"
    assert node_name(Settings(dyno="worker.3", _env_file=None)) == "worker.3@%h"  # type: ignore[call-arg]


def test_gpu_workers_run_on_the_solo_pool() -> None:
    # CUDA fails in forked pool children: with GPU layers, chatbot up/worker choose solo.
    assert worker_pool(Settings(_env_file=None)) == "prefork"  # type: ignore[call-arg]
    assert worker_pool(Settings(gpu_layers=100, _env_file=None)) == "solo"  # type: ignore[call-arg]


def test_flower_requires_basic_auth(tmp_path: Path) -> None:
    status, argv, stderr = expand("flower", tmp_path, PORT="5555")
    assert status != 0 and not argv
    assert "FLOWER_BASIC_AUTH" in stderr


@pytest.mark.parametrize("prefix", ["", "flower"])
def test_flower_with_auth_and_prefix(tmp_path: Path, prefix: str) -> None:
    status, argv, _ = expand(
        "flower", tmp_path, PORT="5600", FLOWER_BASIC_AUTH="a:b,c:d", FLOWER_URL_PREFIX=prefix
    )
    assert status == 0
    assert argv[:5] == ["-m", "celery", "-A", "worker.app", "flower"]
    assert {"--port=5600", "--basic-auth=a:b,c:d", f"--url-prefix={prefix}"} <= set(argv)
    settings = Settings(
        flower_basic_auth="a:b,c:d",
        flower_url_prefix=prefix,  # type: ignore[call-arg]
        _env_file=None,
    )
    local = flower_command(settings, port=5600)
    assert set(local[1:]) - {"--url-prefix="} <= set(argv)


def test_flower_without_auth_binds_only_to_loopback() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(SystemExit, match="FLOWER_BASIC_AUTH"):
        flower_command(settings, port=5555)
    with pytest.raises(SystemExit, match="FLOWER_BASIC_AUTH"):
        flower_command(settings, port=5555, address="0.0.0.0")
    assert "--address=127.0.0.1" in flower_command(settings, port=5555, address="127.0.0.1")


def test_web_warns_when_open_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    open_settings = Settings(_env_file=None)  # type: ignore[call-arg]
    warn_if_open(open_settings, "127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_open(open_settings, "0.0.0.0")
    assert "WARNING" in capsys.readouterr().err
    keyed = Settings(api_keys="a:b", _env_file=None)  # type: ignore[call-arg]
    warn_if_open(keyed, "0.0.0.0")
    assert capsys.readouterr().err == ""
