"""``chatbot chat``: a terminal chat against a running server, over its public HTTP API.

Tokens are printed as they arrive. Ctrl-C while an answer streams asks the server to stop
it (``POST /conversations/stop/{chat_id}``; the partial answer is kept) and the stream
ends with its ``done`` event; a second Ctrl-C quits. Ctrl-C or Ctrl-D at the prompt quits.
A dropped connection is resumed with ``Last-Event-ID``, as a browser would.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

import httpx

RECONNECTS = 5


class ChatClientError(Exception):
    """The server refused a request; the message is the server's, for people."""


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str = ""


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Server-Sent Events from a response's lines (comments skipped)."""
    event = SseEvent()
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                event.data = "\n".join(data)
                yield event
            event, data = SseEvent(), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event.event = value
        elif name == "id":
            event.id = value


@dataclass
class Interrupts:
    """Counts Ctrl-C presses while an answer streams; the first asks the server to stop."""

    client: ChatClient
    chat_id: str = ""
    presses: int = 0
    stop_sent: threading.Event = field(default_factory=threading.Event)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt
        # A thread, so the stream keeps being read while the stop request is on its way.
        threading.Thread(target=self._stop, daemon=True).start()

    def _stop(self) -> None:
        try:
            self.client.stop(self.chat_id)
        except (ChatClientError, httpx.HTTPError) as exc:
            self.client.note(f"could not stop the answer: {exc}")
        self.stop_sent.set()


class ChatClient:
    """The HTTP calls of a terminal chat and how their results are printed."""

    def __init__(
        self, url: str, *, api_key: str = "", out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)
        self.out = out
        self.err = err
        self._sources: list[dict[str, Any]] = []

    def note(self, message: str) -> None:
        print(f"[{message}]", file=self.err, flush=True)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ChatClientError(_error_message(response))
        return response.json() if response.content else None

    def create_chat(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("POST", "/chats/create", json={"name": name})
        return data

    def get_chat(self, chat_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", f"/chats/{chat_id}")
        return data

    def messages(self, chat_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._call(
            "GET", f"/chats/{chat_id}/conversations", params={"limit": 200}
        )
        return data

    def ask(self, chat_id: str, text: str) -> None:
        self._call(
            "POST",
            "/conversations/create",
            json={"chat_id": chat_id, "role": "Human", "message": text},
        )

    def stop(self, chat_id: str) -> None:
        response = self.http.post(f"/conversations/stop/{chat_id}")
        if response.status_code >= 400 and response.status_code != 409:  # 409: it just ended
            raise ChatClientError(_error_message(response))

    def answer(self, chat_id: str, *, internet: bool) -> dict[str, Any] | None:
        """Stream the answer to the chat's last question; returns the ``done`` payload."""
        path = f"/conversations/{'inference_internet' if internet else 'inference'}/{chat_id}"
        last_id = ""
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self.http.stream("GET", path, headers=headers, timeout=None) as response:
                    if response.status_code == 204:
                        return None  # ended while we were away
                    if response.status_code != 200:
                        response.read()
                        raise ChatClientError(_error_message(response))
                    for event in parse_sse(response.iter_lines()):
                        last_id = event.id or last_id
                        failures = 0
                        outcome = self._show(event)
                        if outcome is not None:
                            return outcome
            except httpx.TransportError as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise ChatClientError(f"the connection keeps dropping ({exc})") from None
                self.note("connection lost: reconnecting")
                time.sleep(min(0.5 * failures, 3))

    def _show(self, event: SseEvent) -> dict[str, Any] | None:
        """Print one event; the ``done`` payload ends the answer (an error raises)."""
        if event.event == "message":
            self.out.write(event.data)
            self.out.flush()
        elif event.event == "sources":
            self._sources = json.loads(event.data).get("sources") or []
        elif event.event == "restart":
            self.out.write("\n")
            self.note("the worker was lost: the answer starts over")
        elif event.event == "error":
            error = json.loads(event.data).get("error") or {}
            if error.get("code") in ("server_shutdown", "unavailable"):
                raise httpx.TransportError(error.get("message", "stream interrupted"))
            raise ChatClientError(error.get("message", "the answer failed"))
        elif event.event == "done":
            self.out.write("\n")
            done: dict[str, Any] = json.loads(event.data)
            for source in self._sources:
                self.out.write(f"  [{source['index']}] {source['title']} <{source['url']}>\n")
            self._sources = []
            if done.get("status") == "cancelled":
                self.note("stopped: the partial answer is kept")
            self.out.flush()
            return done
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('message', response.text)} ({response.status_code})"
    except (ValueError, AttributeError):
        return f"the server answered {response.status_code}"


def run_chat(
    *,
    url: str,
    chat_id: str | None,
    internet: bool,
    api_key: str = "",
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The interactive loop; returns the exit status."""
    client = ChatClient(url, api_key=api_key, out=out, err=err)
    interrupts = Interrupts(client)
    previous = signal.getsignal(signal.SIGINT)
    try:
        if chat_id:
            chat = client.get_chat(chat_id)
            client.note(f"chat {chat['id']}: {chat['name']}")
            history = client.messages(chat_id)
            for message in history:
                who = "you" if message["role"] == "Human" else "bot"
                out.write(f"{who}> {message['message']}\n")
            if history and history[-1]["role"] == "Human":
                # Unanswered (or being answered): follow that answer first.
                out.write("bot> ")
                _answer(client, interrupts, chat_id, internet=internet)
        else:
            client.note(f"connected to {url}; Ctrl-C stops an answer, Ctrl-D quits")
        while True:
            out.write("you> ")
            out.flush()
            line = stdin.readline()
            if not line:
                out.write("\n")
                return 0
            text = line.strip()
            if not text:
                continue
            try:
                if not chat_id:
                    words = text.split()
                    name = " ".join(words[:8]) + (" …" if len(words) > 8 else "")
                    chat_id = str(client.create_chat(f"chat: {name}"[:255])["id"])
                    client.note(f"new chat {chat_id}")
                client.ask(chat_id, text)
                out.write("bot> ")
                out.flush()
                _answer(client, interrupts, chat_id, internet=internet)
            except (ChatClientError, httpx.HTTPError) as exc:
                out.write("\n")
                client.note(f"error: {exc}")
    except KeyboardInterrupt:
        out.write("\n")
        return 130
    except (ChatClientError, httpx.HTTPError) as exc:
        out.write("\n")
        client.note(f"error: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)


def _answer(client: ChatClient, interrupts: Interrupts, chat_id: str, *, internet: bool) -> None:
    interrupts.chat_id = chat_id
    interrupts.presses = 0
    signal.signal(signal.SIGINT, interrupts.handler)
    try:
        client.answer(chat_id, internet=internet)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
