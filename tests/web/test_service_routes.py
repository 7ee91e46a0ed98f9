"""Health, OpenAPI, docs and API keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import app_client, make_settings


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_request_id_is_kept_when_sane(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


async def test_readyz_reports_each_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    body = response.json()
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}
    # No worker runs in this test: not ready, and it says why.
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert "no worker" in body["checks"]["workers"]["error"]


async def test_readyz_when_redis_is_down(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, redis_url="redis://127.0.0.1:1/0")
    async with app_client(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    expected = {
        ("get", "/chats/"),
        ("get", "/chats/{chat_id}"),
        ("post", "/chats/create"),
        ("put", "/chats/update/{chat_id}"),
        ("delete", "/chats/delete/{chat_id}"),
        ("post", "/conversations/create"),
        ("get", "/conversations/"),
        ("get", "/chats/{chat_id}/conversations"),
        ("get", "/conversations/inference/{chat_id}"),
        ("get", "/conversations/inference_internet/{chat_id}"),
        ("post", "/conversations/stop/{chat_id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/v1/chat/completions"),
        ("get", "/v1/models"),
    }
    assert {(m, p) for p, ops in paths.items() for m in ops} == expected
    create = paths["/chats/create"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert schema["properties"]["name"]["maxLength"] == 255
    assert {"201", "422"} <= set(create["responses"])
    assert "404" in paths["/chats/{chat_id}"]["get"]["responses"]
    listing = paths["/chats/"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset"}


async def test_docs_page_lists_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/conversations/inference/{chat_id}" in response.text
    assert "/openapi.json" in response.text


@pytest.fixture
async def keyed_client(tmp_path: Path, sqlite_url: str) -> httpx.AsyncClient:
    settings: Settings = make_settings(tmp_path, database_url=sqlite_url, api_keys="k1, k2")
    async with app_client(settings) as client:
        yield client


async def test_api_keys(keyed_client: httpx.AsyncClient) -> None:
    response = await keyed_client.get("/chats/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = await keyed_client.get("/chats/", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    for key in ("k1", "k2"):
        ok = await keyed_client.get("/chats/", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert (await keyed_client.get("/healthz")).status_code == 200
    assert (await keyed_client.get("/openapi.json")).status_code == 200


async def test_api_key_in_query_for_get_streams_only(keyed_client: httpx.AsyncClient) -> None:
    ok = await keyed_client.get("/chats/", params={"api_key": "k1"})
    assert ok.status_code == 200
    wrong = await keyed_client.get("/chats/", params={"api_key": "nope"})
    assert wrong.status_code == 401
    post = await keyed_client.post("/chats/create?api_key=k1", json={"name": "x"})
    assert post.status_code == 401


async def test_redis_down_is_a_503_not_a_500(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, redis_url="redis://127.0.0.1:1/0")
    async with app_client(settings) as client:
        chat = (await client.post("/chats/create", json={"name": "x"})).json()
        await client.post(
            "/conversations/create",
            json={"chat_id": chat["id"], "role": "Human", "message": "hi"},
        )
        response = await client.get(f"/conversations/inference/{chat['id']}")
    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": "Redis is unavailable; try again shortly",
    }


async def test_database_down_is_a_503_not_a_500(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url="postgresql+psycopg://root@127.0.0.1:1/nothing")
    async with app_client(settings) as client:
        response = await client.get("/chats/")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "the database is unavailable; try again shortly"
