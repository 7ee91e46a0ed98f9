"""Tenants in-process: the default tenant, chats made before keys were set, the migration."""

from __future__ import annotations

import uuid
from pathlib import Path

from alembic.config import Config
from sqlalchemy import text

from alembic import command
from shared.db import make_engine
from tests.conftest import ROOT, app_client, make_settings


async def test_chats_made_without_keys_belong_to_the_default_tenant(
    tmp_path: Path, sqlite_url: str
) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM chats"))
    engine.dispose()
    async with app_client(make_settings(tmp_path, database_url=sqlite_url)) as open_client:
        chat = (await open_client.post("/chats/create", json={"name": "old"})).json()
    default, bob = uuid.uuid4().hex, uuid.uuid4().hex
    keyed = make_settings(
        tmp_path, database_url=sqlite_url, api_keys=f"default:{default},bob:{bob}"
    )
    async with app_client(keyed) as client:
        as_default = {"Authorization": f"Bearer {default}"}
        as_bob = {"Authorization": f"Bearer {bob}"}
        assert [c["id"] for c in (await client.get("/chats/", headers=as_default)).json()] == [
            chat["id"]
        ]
        assert (await client.get("/chats/", headers=as_bob)).json() == []
        assert (await client.get(f"/chats/{chat['id']}", headers=as_bob)).status_code == 404
        assert (await client.get(f"/chats/{chat['id']}")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200


def test_migration_gives_existing_chats_the_default_owner(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "0003")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO chats (id, name, created_at, updated_at) "
                "VALUES ('0123456789abcdef0123456789abcdef', 'old', "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    command.upgrade(config, "head")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT owner FROM chats")).scalar_one() == "default"
    command.downgrade(config, "0003")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT name FROM chats")).scalar_one() == "old"
    engine.dispose()
