"""Chat routes, on Postgres and SQLite."""

from __future__ import annotations

import uuid

import httpx
import pytest


async def create_chat(client: httpx.AsyncClient, name: str = "Chat 1") -> dict[str, object]:
    response = await client.post("/chats/create", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_create_returns_whole_chat(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client, "  Trip planning  ")
    assert chat["name"] == "Trip planning"
    uuid.UUID(str(chat["id"]))
    assert str(chat["created_at"]).endswith("Z")
    assert chat["created_at"] == chat["updated_at"]


async def test_get_chat_and_missing_chat(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client)
    response = await client.get(f"/chats/{chat['id']}")
    assert response.status_code == 200
    assert response.json() == chat
    missing = uuid.uuid4()
    response = await client.get(f"/chats/{missing}")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": f"chat {missing} does not exist"}
    }


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "3fa85f64-5717-4562-b3fc-2c963f66afaZ"])
async def test_malformed_uuid_in_path_is_404(client: httpx.AsyncClient, bad: str) -> None:
    for method, path in [
        ("GET", f"/chats/{bad}"),
        ("PUT", f"/chats/update/{bad}"),
        ("DELETE", f"/chats/delete/{bad}"),
        ("GET", f"/chats/{bad}/conversations"),
    ]:
        response = await client.request(method, path, json={"name": "x"})
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"


async def test_list_newest_first_with_pagination(client: httpx.AsyncClient) -> None:
    ids = [(await create_chat(client, f"chat {i}"))["id"] for i in range(5)]
    response = await client.get("/chats/")
    assert response.status_code == 200
    assert [c["id"] for c in response.json()] == list(reversed(ids))
    assert response.headers["x-total-count"] == "5"
    page = await client.get("/chats/", params={"limit": 2, "offset": 1})
    assert [c["id"] for c in page.json()] == [ids[3], ids[2]]
    assert page.headers["x-total-count"] == "5"
    empty = await client.get("/chats/", params={"offset": 10})
    assert empty.json() == []


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"offset": -1}, {"offset": "x"}]
)
async def test_bad_pagination_is_422(client: httpx.AsyncClient, params: dict[str, object]) -> None:
    response = await client.get("/chats/", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == next(iter(params))


async def test_update_chat(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client)
    response = await client.put(f"/chats/update/{chat['id']}", json={"name": "Renamed"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Renamed"
    assert body["created_at"] == chat["created_at"]
    assert body["updated_at"] >= chat["updated_at"]
    stamped = await client.put(
        f"/chats/update/{chat['id']}",
        json={"name": "Stamped", "updated_at": "2030-01-02T03:04:05.678Z"},
    )
    assert stamped.json()["updated_at"] == "2030-01-02T03:04:05.678Z"
    naive = await client.put(
        f"/chats/update/{chat['id']}",
        json={"name": "Naive", "updated_at": "2030-01-02T03:04:05"},
    )
    assert naive.json()["updated_at"] == "2030-01-02T03:04:05.000Z"
    assert (await client.get(f"/chats/{chat['id']}")).json()["name"] == "Naive"
    missing = await client.put(f"/chats/update/{uuid.uuid4()}", json={"name": "x"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "a\u0000b"}, "name"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/chats/create", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert field in error["message"]


async def test_name_of_255_characters_is_accepted(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client, "é" * 255)
    assert chat["name"] == "é" * 255


async def test_update_validation(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client)
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "x", "updated_at": "yesterday"}, "updated_at"),
    ]:
        response = await client.put(f"/chats/update/{chat['id']}", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 400, "bad_request"),
        (b"{not json", 400, "bad_request"),
        (b"\xff\xfe", 400, "bad_request"),
        (b"[1, 2]", 422, "validation_error"),
        (b'"name"', 422, "validation_error"),
        (b"null", 422, "validation_error"),
    ],
)
async def test_body_that_is_not_a_json_object(
    client: httpx.AsyncClient, content: bytes, status: int, code: str
) -> None:
    response = await client.post(
        "/chats/create", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chats/create",
        content=b'{"name": "' + b"x" * 300_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_delete_cascades_to_messages(client: httpx.AsyncClient) -> None:
    chat = await create_chat(client)
    other = await create_chat(client, "other")
    for text in ("hello", "hi there"):
        await client.post(
            "/conversations/create", json={"chat_id": chat["id"], "role": "Human", "message": text}
        )
    kept = await client.post(
        "/conversations/create", json={"chat_id": other["id"], "role": "Human", "message": "keep"}
    )
    response = await client.delete(f"/chats/delete/{chat['id']}")
    assert response.status_code == 200
    assert response.json() == chat
    assert (await client.get(f"/chats/{chat['id']}")).status_code == 404
    listed = await client.get("/conversations/")
    assert [m["id"] for m in listed.json()] == [kept.json()["id"]]
    again = await client.delete(f"/chats/delete/{chat['id']}")
    assert again.status_code == 404


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await client.post("/chats/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_lone_surrogate_is_422(client: httpx.AsyncClient) -> None:
    # Valid JSON ("\ud800" escaped) that no database can store.
    response = await client.post(
        "/chats/create",
        content=b'{"name": "a\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "name"
