"""Tenants end to end: two API keys, a real uvicorn server, worker, Redis and Postgres.

Every route is walked with the other tenant's key (each cross-tenant access is 404, lists
are filtered), including a live stream, a Last-Event-ID resume and a stop. Then every
log line the processes wrote is searched: no key and no message text appears.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.e2e.conftest import Stack, running_stack, wait_until

pytestmark = pytest.mark.e2e

ALICE = f"alice-secret-{uuid.uuid4().hex}"
BOB = f"bob-secret-{uuid.uuid4().hex}"
BARE = f"bare-secret-{uuid.uuid4().hex}"
SECRET_TEXT = f"Zebra-quartz-{uuid.uuid4().hex[:8]}"
QUESTION = f"Write a very long story about a lighthouse keeper. {SECRET_TEXT}"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("isolation-logs")


@pytest.fixture(scope="module")
def keyed(stack_env: dict[str, str], logs: Path) -> Iterator[Stack]:
    env = {
        **stack_env,
        "API_KEYS": f"alice:{ALICE},bob:{BOB},{BARE}",
        "MAX_NEW_TOKENS": "400",
        "STREAM_GRACE_S": "30",  # the stream below outlives its hang-ups
        "GENERATION_STARTS_PER_MINUTE": "100",
    }
    with running_stack(env, logs) as stack:
        yield stack


def client(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url(), headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def first_events(
    http: httpx.Client, path: str, count: int, **headers: str
) -> tuple[int, list[Any]]:
    """Open a stream, read ``count`` events and hang up."""
    with connect_sse(http, "GET", path, headers=headers) as source:
        if source.response.status_code != 200:
            source.response.read()
            return source.response.status_code, [source.response.json()]
        events = []
        for event in source.iter_sse():
            if event.data:
                events.append(event)
            if len(events) >= count:
                break
        return 200, events


def test_every_route_is_private_to_its_tenant(keyed: Stack) -> None:
    with client(keyed, ALICE) as alice, client(keyed, BOB) as bob:
        chat = alice.post("/chats/create", json={"name": "alice's"}).json()
        chat_id = chat["id"]
        message = alice.post(
            "/conversations/create",
            json={"chat_id": chat_id, "role": "Human", "message": QUESTION},
        )
        assert message.status_code == 201
        bobs = bob.post("/chats/create", json={"name": "bob's"}).json()["id"]
        bob.post(
            "/conversations/create",
            json={"chat_id": bobs, "role": "Human", "message": "Hi from Bob"},
        )

        # Lists are filtered.
        assert [c["id"] for c in alice.get("/chats/").json()] == [chat_id]
        assert [c["id"] for c in bob.get("/chats/").json()] == [bobs]
        assert bob.get("/chats/").headers["x-total-count"] == "1"
        listed = bob.get("/conversations/")
        assert [m["chat_id"] for m in listed.json()] == [bobs]
        assert listed.headers["x-total-count"] == "1"
        assert SECRET_TEXT not in listed.text

        # Each route on Alice's chat, with Bob's key: 404, and nothing changes.
        foreign = [
            bob.get(f"/chats/{chat_id}"),
            bob.put(f"/chats/update/{chat_id}", json={"name": "mine now"}),
            bob.delete(f"/chats/delete/{chat_id}"),
            bob.get(f"/chats/{chat_id}/conversations"),
            bob.get("/conversations/", params={"chat_id": chat_id}),
            bob.post(
                "/conversations/create",
                json={"chat_id": chat_id, "role": "Human", "message": "injected"},
            ),
            bob.get(f"/conversations/inference/{chat_id}"),
            bob.get(f"/conversations/inference_internet/{chat_id}"),
            bob.post(f"/conversations/stop/{chat_id}"),
            # The query key of EventSource streams names the same tenant.
            httpx.get(f"{keyed.url()}/conversations/inference/{chat_id}", params={"api_key": BOB}),
        ]
        for response in foreign:
            assert response.status_code == 404, (response.request.url, response.text)
            assert response.json()["error"]["code"] == "not_found"
        assert alice.get(f"/chats/{chat_id}").json() == chat
        assert len(alice.get(f"/chats/{chat_id}/conversations").json()) == 1

        # A live answer: Bob cannot attach to it, replay it, or stop it.
        status, events = first_events(alice, f"/conversations/inference/{chat_id}", 3)
        assert status == 200
        last_id = events[-1].id
        status, body = first_events(
            bob, f"/conversations/inference/{chat_id}", 1, **{"Last-Event-ID": last_id}
        )
        assert status == 404 and body[0]["error"]["code"] == "not_found"
        assert bob.post(f"/conversations/stop/{chat_id}").status_code == 404

        # Alice can: resume exactly after her last event, then stop.
        status, more = first_events(
            alice, f"/conversations/inference/{chat_id}", 2, **{"Last-Event-ID": last_id}
        )
        assert status == 200
        assert more[0].id != last_id and more[0].id.split(":")[0] == last_id.split(":")[0]
        stopped = alice.post(f"/conversations/stop/{chat_id}")
        assert stopped.status_code in (200, 202), stopped.text
        wait_until(
            lambda: alice.post(f"/conversations/stop/{chat_id}").status_code == 409,
            "the answer to stop",
        )

        # A Last-Event-ID beyond Redis's 64-bit ids is treated as absent: never a 503.
        huge = f"{last_id.split(':')[0]}:{2**64}-{2**64}"
        response = alice.get(f"/conversations/inference/{chat_id}", headers={"Last-Event-ID": huge})
        assert response.status_code == 409  # answered (cancelled) already: nothing to do

        # Alice's chat survived Bob's attempts; Bob's delete works on his own chat only.
        assert bob.delete(f"/chats/delete/{bobs}").status_code == 200
        assert alice.get(f"/chats/{chat_id}").status_code == 200


def test_bare_key_is_its_own_tenant(keyed: Stack) -> None:
    with client(keyed, BARE) as bare:
        assert bare.get("/chats/").json() == []
        assert bare.post("/chats/create", json={"name": "bare"}).status_code == 201
        assert len(bare.get("/chats/").json()) == 1
    assert (
        httpx.get(f"{keyed.url()}/chats/", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_disconnects_end_quietly(keyed: Stack) -> None:
    with client(keyed, ALICE) as alice:
        chat_id = alice.post("/chats/create", json={"name": "hang-ups"}).json()["id"]
        alice.post(
            "/conversations/create",
            json={"chat_id": chat_id, "role": "Human", "message": QUESTION},
        )
        for _ in range(15):
            status, _events = first_events(alice, f"/conversations/inference/{chat_id}", 2)
            assert status == 200
        alice.post(f"/conversations/stop/{chat_id}")
    time.sleep(1)  # let the web process finish its cancelled streams


def test_no_key_or_message_text_in_any_log(keyed: Stack, logs: Path) -> None:
    keyed.close()  # every process flushed and gone
    lines = [
        (path.name, line)
        for path in sorted(logs.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]
    assert any("web.access" in line for _, line in lines)  # the logs were written
    for name, line in lines:
        for secret in (ALICE, BOB, BARE, SECRET_TEXT):
            assert secret not in line, (name, line)
        assert "Task was destroyed" not in line, (name, line)
        assert '"level": "ERROR"' not in line, (name, line)
