"""The chat page's files are served at ``/`` and ``/static``, with no third party."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import app_client, make_settings


async def test_page_and_its_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Everything the page loads is local: no CDN, no build step.
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert assets, "the page loads its script and style"
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/static/"), asset
        response = await client.get(asset)
        assert response.status_code == 200, asset
    script = (await client.get("/static/app.js")).text
    assert "EventSource" in script
    assert "/conversations/stop/" in script
    missing = await client.get("/static/nope.js")
    assert missing.status_code == 404


async def test_page_is_public_when_keys_are_on(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, api_keys="secret")
    async with app_client(settings) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/style.css")).status_code == 200
        assert (await client.get("/chats/")).status_code == 401
        # EventSource cannot send headers: a GET stream may carry the key in the query.
        response = await client.get("/chats/?api_key=secret")
        assert response.status_code == 200
