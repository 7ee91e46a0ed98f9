"""Message routes, on Postgres and SQLite."""

from __future__ import annotations

import uuid

import httpx
import pytest


async def new_chat(client: httpx.AsyncClient, name: str = "c") -> str:
    return str((await client.post("/chats/create", json={"name": name})).json()["id"])


async def post(client: httpx.AsyncClient, chat_id: str, role: str, message: str) -> httpx.Response:
    return await client.post(
        "/conversations/create", json={"chat_id": chat_id, "role": role, "message": message}
    )


async def test_create_returns_whole_row(client: httpx.AsyncClient) -> None:
    chat_id = await new_chat(client)
    response = await post(client, chat_id, "Human", "Hello, 世界 👋")
    assert response.status_code == 201
    row = response.json()
    assert row["chat_id"] == chat_id
    assert row["role"] == "Human"
    assert row["message"] == "Hello, 世界 👋"
    assert row["created_at"].endswith("Z")
    assert row["generation_id"] is None and row["status"] is None and row["sources"] is None
    uuid.UUID(row["id"])


async def test_messages_are_chronological_with_pagination(client: httpx.AsyncClient) -> None:
    chat_id = await new_chat(client)
    other = await new_chat(client, "other")
    ids = []
    for i in range(6):
        ids.append(
            (await post(client, chat_id, ["Human", "Assistant"][i % 2], f"m{i}")).json()["id"]
        )
    await post(client, other, "Human", "elsewhere")

    response = await client.get(f"/chats/{chat_id}/conversations")
    assert [m["id"] for m in response.json()] == ids
    assert response.headers["x-total-count"] == "6"

    filtered = await client.get(
        "/conversations/", params={"chat_id": chat_id, "limit": 4, "offset": 2}
    )
    assert [m["id"] for m in filtered.json()] == ids[2:6]
    assert filtered.headers["x-total-count"] == "6"

    everything = await client.get("/conversations/")
    assert everything.headers["x-total-count"] == "7"

    second_page = await client.get(
        f"/chats/{chat_id}/conversations", params={"limit": 2, "offset": 2}
    )
    assert [m["id"] for m in second_page.json()] == ids[2:4]


async def test_missing_chat(client: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    response = await post(client, missing, "Human", "hi")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"chat {missing} does not exist"
    assert (await client.get(f"/chats/{missing}/conversations")).status_code == 404
    assert (await client.get("/conversations/", params={"chat_id": missing})).status_code == 404
    bad = await client.get("/conversations/", params={"chat_id": "nope"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "chat_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "Human", "message": "hi"}, "chat_id"),
        ({"chat_id": "not-a-uuid", "role": "Human", "message": "hi"}, "chat_id"),
        ({"chat_id": "CHAT", "message": "hi"}, "role"),
        ({"chat_id": "CHAT", "role": "System", "message": "hi"}, "role"),
        ({"chat_id": "CHAT", "role": "human", "message": "hi"}, "role"),
        ({"chat_id": "CHAT", "role": "Human"}, "message"),
        ({"chat_id": "CHAT", "role": "Human", "message": ""}, "message"),
        ({"chat_id": "CHAT", "role": "Human", "message": 42}, "message"),
        ({"chat_id": "CHAT", "role": "Human", "message": "a\u0000b"}, "message"),
        ({"chat_id": "CHAT", "role": "Human", "message": "hi", "extra": 1}, "extra"),
    ],
)
async def test_validation(client: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    chat_id = await new_chat(client)
    body = {k: (chat_id if v == "CHAT" else v) for k, v in body.items()}
    response = await client.post("/conversations/create", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["field"] == field
    assert field in error["message"]


async def test_message_size_cap(client: httpx.AsyncClient) -> None:
    chat_id = await new_chat(client)
    at_cap = "a" * (32 * 1024)
    assert (await post(client, chat_id, "Human", at_cap)).status_code == 201
    over = await post(client, chat_id, "Human", at_cap + "b")
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "payload_too_large"
    # The cap counts UTF-8 bytes, not characters.
    wide = await post(client, chat_id, "Human", "€" * 11_000)
    assert wide.status_code == 413
