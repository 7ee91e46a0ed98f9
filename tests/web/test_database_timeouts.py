"""An API request that waits too long for the database gets a 503 JSON error."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.conftest import app_client, make_settings


async def test_a_statement_past_its_timeout_is_a_503(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=postgres_url, db_statement_timeout_s=0.5)
    # Another session holds the table: the route's query waits on the lock until Postgres
    # cancels it (QueryCanceled).
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as blocker:
        blocker.execute("LOCK TABLE chats IN ACCESS EXCLUSIVE MODE")
        async with app_client(settings) as client:
            response = await client.get("/chats/")
        blocker.rollback()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "unavailable"
    assert "database" in response.json()["error"]["message"]
