"""A small SSE client on top of httpx-sse for the end-to-end tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse


@dataclass
class Received:
    status: int
    events: list[ServerSentEvent] = field(default_factory=list)
    body: Any = None
    keepalives: int = 0

    @property
    def tokens(self) -> list[str]:
        return [e.data for e in self.events if e.event == "message"]

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def named(self, name: str) -> list[ServerSentEvent]:
        return [e for e in self.events if e.event == name]

    @property
    def done(self) -> dict[str, Any] | None:
        found = self.named("done")
        return json.loads(found[-1].data) if found else None

    @property
    def last_id(self) -> str:
        return self.events[-1].id

    @property
    def generation_id(self) -> str:
        return self.events[0].id.split(":", 1)[0]


def stream(
    base: str,
    path: str,
    *,
    last_event_id: str | None = None,
    max_tokens: int | None = None,
    on_event: Any = None,
    timeout: float = 60,
) -> Received:
    """Read an SSE stream until it ends, or until ``max_tokens`` token events (then hang up)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with (
        httpx.Client(base_url=base, timeout=timeout) as client,
        connect_sse(client, "GET", path, headers=headers) as source,
    ):
        response = source.response
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            response.read()
            body = response.json() if response.content else None
            return Received(status=response.status_code, body=body)
        received = Received(status=200)
        for event in source.iter_sse():
            if event.event == "message" and not event.data:
                received.keepalives += 1  # a comment line; EventSource dispatches nothing
                continue
            received.events.append(event)
            if on_event is not None:
                on_event(event)
            if max_tokens is not None and len(received.tokens) >= max_tokens:
                break
        return received
