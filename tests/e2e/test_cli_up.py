"""`chatbot up` as a new user runs it: embedded defaults, one command, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.conftest import ROOT, TEST_DATA_DIR
from tests.e2e.conftest import free_port, wait_until
from tests.e2e.sse import stream
from tests.e2e.test_streaming import new_chat

pytestmark = pytest.mark.e2e


def test_up_serves_on_embedded_defaults_and_ctrl_c_stops_everything(
    tmp_path: Path, pulled_model: Path
) -> None:
    # An empty data folder with the model already pulled, so the test does not refetch it.
    (tmp_path / "models").symlink_to(TEST_DATA_DIR / "models")
    port, redis_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "MODEL"))
    }
    env.update(
        {
            "DATA_DIR": str(tmp_path),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",  # nothing answers there yet
            "TEMPERATURE": "0",
            "MAX_NEW_TOKENS": "24",
        }
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base), "chatbot up to be ready", timeout=120)
        assert redis.Redis(port=redis_port).ping()  # the embedded valkey-server
        assert (tmp_path / "chatbot.db").exists()  # the SQLite default, migrated
        chat_id = new_chat(base, ("Human", "What is the capital of France?"))
        got = stream(base, f"/conversations/inference/{chat_id}")
        assert got.done is not None and got.done["status"] == "done"
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3  # valkey-server, a worker, the web server
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=60)[0].decode(errors="replace")
    assert up.returncode == 0, output
    assert "embedded valkey-server" in output
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=1)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.2)
        return False
