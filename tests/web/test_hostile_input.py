"""Hostile and malformed input: each gets a 4xx JSON error, and no ERROR log line."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import app_client, make_settings
from web.sse import parse_last_event_id

JSON = {"content-type": "application/json"}


@pytest.fixture(autouse=True)
def no_error_lines(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) < 400
    return error


async def new_chat(client: httpx.AsyncClient) -> str:
    return str((await client.post("/chats/create", json={"name": "c"})).json()["id"])


@pytest.mark.parametrize("depth", [33, 966, 5000, 100_000])
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, depth: int) -> None:
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    response = await client.post("/chats/create", content=body, headers=JSON)
    error = assert_json_error(response, 400, "bad_request")
    assert "deeper than 32" in error["message"]


async def test_nesting_within_the_limit_is_judged_by_the_schema(
    client: httpx.AsyncClient,
) -> None:
    body = '{"name": ' + "[" * 20 + "]" * 20 + "}"
    response = await client.post("/chats/create", content=body, headers=JSON)
    assert_json_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "value",
    [
        0,
        1_700_000_000,
        2e10,
        True,
        "1700000000",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:30:00-01:00",
        "1969-12-31T23:59:59Z",
        "0191-04-09T07:30:47.5-10:32",
        "2026-13-01T00:00:00Z",
        "yesterday",
    ],
)
async def test_updated_at_is_an_iso_string_in_1970_to_9999(
    client: httpx.AsyncClient, value: object
) -> None:
    chat_id = await new_chat(client)
    response = await client.put(f"/chats/update/{chat_id}", json={"name": "n", "updated_at": value})
    error = assert_json_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "updated_at"


async def test_updated_at_in_range_is_kept(client: httpx.AsyncClient) -> None:
    chat_id = await new_chat(client)
    for value, stored in [
        ("9999-12-31T00:00:00Z", "9999-12-31T00:00:00.000Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
    ]:
        response = await client.put(
            f"/chats/update/{chat_id}", json={"name": "n", "updated_at": value}
        )
        assert response.status_code == 200
        assert response.json()["updated_at"] == stored


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"],
)
async def test_bodies_must_be_json(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/chats/create", content=b'{"name": "x"}', headers=headers)
    assert_json_error(response, 415, "unsupported_media_type")
    chat_id = await new_chat(client)
    body = f'{{"chat_id": "{chat_id}", "role": "Human", "message": "hi"}}'.encode()
    response = await client.post("/conversations/create", content=body, headers=headers)
    assert_json_error(response, 415, "unsupported_media_type")
    assert (await client.get("/conversations/")).headers["x-total-count"] == "0"


async def test_json_with_charset_is_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chats/create",
        content=b'{"name": "x"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/chats/create", "POST"),
        ("GET", "/conversations/create", "POST"),
        ("GET", f"/conversations/stop/{uuid.uuid4()}", "POST"),
        ("POST", "/conversations/", "GET"),
        ("DELETE", f"/chats/{uuid.uuid4()}", "GET"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert_json_error(response, 405, "method_not_allowed")
    assert allow in response.headers["allow"]


async def test_long_paths_are_echoed_clipped(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope/" + "a" * 5000)
    error = assert_json_error(response, 404, "not_found")
    assert len(error["message"]) < 260
    response = await client.get("/chats/" + "b" * 5000 + "/conversations")
    error = assert_json_error(response, 404, "not_found")
    assert len(error["message"]) < 260


async def test_huge_url_is_414(client: httpx.AsyncClient) -> None:
    response = await client.get("/chats/" + "a" * 60_000)
    assert_json_error(response, 414, "uri_too_long")
    response = await client.get("/chats/?limit=" + "9" * 60_000)
    assert_json_error(response, 414, "uri_too_long")


async def test_huge_headers_are_431(client: httpx.AsyncClient) -> None:
    response = await client.get("/chats/", headers={"x-junk": "j" * 40_000})
    assert_json_error(response, 431, "headers_too_large")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\x00b"},
        {"name": "   "},
        {"name": "x" * 256},
    ],
)
async def test_bad_names_are_422(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    assert_json_error(await client.post("/chats/create", json=body), 422, "validation_error")


@pytest.mark.parametrize("query", ["limit=", "offset=-1", "limit=1e3", "limit=99999999999"])
async def test_bad_pagination_is_422(client: httpx.AsyncClient, query: str) -> None:
    assert_json_error(await client.get(f"/chats/?{query}"), 422, "validation_error")


async def test_bad_regenerate_is_422(client: httpx.AsyncClient) -> None:
    chat_id = await new_chat(client)
    for value in ("maybe", "", "2"):
        response = await client.get(f"/conversations/inference/{chat_id}?regenerate={value}")
        assert_json_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, False),
        ("", False),
        ("junk", False),
        (f"{uuid.UUID(int=1)}:1-0", True),
        (f"{uuid.UUID(int=1)}:18446744073709551615-18446744073709551615", True),
        (f"{uuid.UUID(int=1)}:18446744073709551616-0", False),
        (f"{uuid.UUID(int=1)}:1-18446744073709551616", False),
        (f"{uuid.UUID(int=1)}:" + "9" * 5000, False),
        (f"{uuid.UUID(int=1)}:1_000-0", False),
        (f"{uuid.UUID(int=1)}:+1-0", False),
        (f"{uuid.UUID(int=1)}:1-", False),
        ("not-a-uuid:1-0", False),
    ],
)
def test_last_event_id_is_bounded(value: str | None, parsed: bool) -> None:
    assert (parse_last_event_id(value) is not None) is parsed


async def test_body_shorter_than_content_length_is_408(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, body_timeout_s=0.5)
    async with app_client(settings) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        sent: list[dict[str, Any]] = []
        stalled = asyncio.Event()
        parts = [{"type": "http.request", "body": b'{"name": ', "more_body": True}]

        async def receive() -> dict[str, Any]:
            if parts:
                return parts.pop()
            await stalled.wait()  # the rest never comes
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/chats/create",
            "raw_path": b"/chats/create",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=30)
    assert sent[0]["status"] == 408
    assert b"request_timeout" in sent[1]["body"]


async def test_rate_limit_per_key(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(
        tmp_path,
        database_url=sqlite_url,
        api_keys=f"a:{uuid.uuid4().hex},b:{uuid.uuid4().hex}",
        generation_starts_per_minute=2,
    )
    keys = {key.name: key.secret for key in settings.api_key_list}
    async with app_client(settings) as client:
        statuses = []
        for _ in range(3):
            auth = {"Authorization": f"Bearer {keys['a']}"}
            chat = await client.post("/chats/create", json={"name": "c"}, headers=auth)
            chat_id = chat.json()["id"]
            await client.post(
                "/conversations/create",
                json={"chat_id": chat_id, "role": "Human", "message": "hi"},
                headers=auth,
            )
            response = await client.get(f"/conversations/inference/{chat_id}", headers=auth)
            statuses.append(response.status_code)
        # No worker runs: the first two reach the worker check (503), the third is refused.
        assert statuses[:2] == [503, 503]
        assert_json_error(response, 429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 61
        # Another key has its own count.
        auth = {"Authorization": f"Bearer {keys['b']}"}
        chat_id = (await client.post("/chats/create", json={"name": "c"}, headers=auth)).json()[
            "id"
        ]
        response = await client.get(f"/conversations/inference/{chat_id}", headers=auth)
        assert response.status_code == 503


def test_malformed_api_keys_fail_without_quoting_them() -> None:
    for value in ("a:", ":S3CR3T", "a:S3CR3T,a:S3CR3T2", "a:S3CR3T," + "n" * 65 + ":x"):
        settings = Settings(api_keys=value, _env_file=None)  # type: ignore[call-arg]
        with pytest.raises(ValueError) as raised:
            settings.api_key_list  # noqa: B018
        assert "S3CR3T" not in str(raised.value) and "nnn" not in str(raised.value)
    bare = Settings(api_keys=" Q7ZK1 ,x:Q7ZK2", _env_file=None)  # type: ignore[call-arg]
    names = [key.name for key in bare.api_key_list]
    assert names[1] == "x" and names[0].startswith("key-") and "Q7ZK" not in names[0]
    assert "Q7ZK" not in repr(bare)
