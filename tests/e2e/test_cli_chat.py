"""``chatbot chat`` against a running stack (real uvicorn, Celery worker and model), driven
as a person would: lines on its stdin, Ctrl-C (SIGINT) while an answer streams."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

LONG_QUESTION = "Write a long story about a dragon who learns to fly, in ten paragraphs."
# Wide bounds against hangs, not speed goals.
WAIT_S = 120.0


class Terminal:
    """A ``chatbot chat`` process with its output collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "chat", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out = ""
        self.err = ""
        self._lock = threading.Lock()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.process.stdout, "out"), (self.process.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], name: str) -> None:
        while chunk := stream.read1(4096):  # type: ignore[attr-defined]
            with self._lock:
                setattr(self, name, getattr(self, name) + chunk.decode("utf-8", "replace"))

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def wait_for(self, what: str, condition: object) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                if condition():  # type: ignore[operator]
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"waited for {what}; out={self.out!r} err={self.err!r}")

    def prompts(self) -> int:
        return self.out.count("you> ")

    def streaming(self, answers: int) -> bool:
        """Whether answer number ``answers`` has shown some text (and is not over)."""
        parts = self.out.split("bot> ")
        return len(parts) == answers + 1 and len(parts[-1]) > 20 and "you> " not in parts[-1]

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def close(self) -> int:
        """Ctrl-D (end of input), then wait for the exit; returns the exit status."""
        assert self.process.stdin is not None
        if not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            code = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture
def terminals(stack: Stack) -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def test_chat_stream_stop_and_quit(stack: Stack, terminals: list[Terminal]) -> None:
    base = stack.url()
    terminal = Terminal("--url", base, env=stack.env)
    terminals.append(terminal)
    terminal.wait_for("the prompt", lambda: terminal.prompts() == 1)

    # A whole answer: tokens, then the prompt again.
    terminal.type("Say hello in one short sentence.")
    terminal.wait_for("the answer and the next prompt", lambda: terminal.prompts() == 2)
    assert "new chat " in terminal.err
    chat_id = terminal.err.split("new chat ", 1)[1].split("]", 1)[0]
    first = terminal.out.split("bot> ", 1)[1].rsplit("\nyou> ", 1)[0]
    saved = httpx.get(f"{base}/chats/{chat_id}/conversations").json()
    assert [m["role"] for m in saved] == ["Human", "Assistant"]
    assert saved[1]["message"] == first
    assert saved[1]["status"] == "done"

    # Ctrl-C while the answer streams: it stops, the partial answer is kept, chat goes on.
    terminal.type(LONG_QUESTION)
    terminal.wait_for("tokens", lambda: terminal.streaming(2))
    terminal.interrupt()
    terminal.wait_for("the next prompt", lambda: terminal.prompts() == 3)
    assert "stopped: the partial answer is kept" in terminal.err
    assert terminal.process.poll() is None
    saved = httpx.get(f"{base}/chats/{chat_id}/conversations").json()
    assert [m["role"] for m in saved] == ["Human", "Assistant", "Human", "Assistant"]
    assert saved[3]["status"] == "cancelled"
    streamed = terminal.out.rsplit("bot> ", 1)[1].rsplit("\nyou> ", 1)[0]
    assert streamed == saved[3]["message"]

    # A second Ctrl-C quits.
    terminal.type(LONG_QUESTION)
    terminal.wait_for("tokens", lambda: terminal.streaming(3))
    terminal.interrupt()
    time.sleep(0.2)
    terminal.interrupt()
    assert terminal.process.wait(timeout=WAIT_S) == 130

    # Continue the chat by id: its history is shown; Ctrl-D quits.
    again = Terminal(chat_id, "--url", base, env=stack.env)
    terminals.append(again)
    again.wait_for("the history and a prompt", lambda: again.prompts() >= 3)
    assert again.out.startswith("you> Say hello in one short sentence.\nbot> ")
    assert again.close() == 0


def test_errors_are_shown_plainly(stack: Stack, terminals: list[Terminal]) -> None:
    terminal = Terminal("00000000-0000-0000-0000-000000000000", "--url", stack.url(), env=stack.env)
    terminals.append(terminal)
    assert terminal.close() == 1
    assert "does not exist (404)" in terminal.err

    # Internet answers need a search key this stack does not have: said, and the chat goes on.
    terminal = Terminal("--internet", "--url", stack.url(), env=stack.env)
    terminals.append(terminal)
    terminal.type("What is new today?")
    terminal.wait_for("the error and the next prompt", lambda: terminal.prompts() == 2)
    assert "SERPAPI_API_KEY" in terminal.err
    assert terminal.close() == 0
