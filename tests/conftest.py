"""Shared fixtures: real Postgres and SQLite databases built by migrations, real Redis,
and the default model pulled once into the test data folder."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from tests.redis_lease import lease_redis_db

# Tests use a Redis database of their own, so they never touch a running chatbot's queue
# and two test runs on one machine never take each other's jobs.
os.environ["REDIS_URL"] = os.environ.get("REDIS_URL") or lease_redis_db()
os.environ.setdefault("LOG_JSON", "true")

import httpx
import psycopg
import pytest
from alembic.config import Config
from sqlalchemy import text

from alembic import command
from shared import modelstore
from shared.db import make_engine
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://root@127.0.0.1:5432/test")
# Outside tmp so repeated runs reuse the ~100 MB download; pulling again is then a checksum.
TEST_DATA_DIR = Path(os.environ.get("CHATBOT_TEST_DATA_DIR", ROOT / ".pytest-data"))


def migrate(url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database for this run, built by migrations, dropped afterwards."""
    name = f"chatbot_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    migrate(url)
    yield url
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "chatbot.db"
    url = f"sqlite:///{path}"
    migrate(url)
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on Postgres and once on SQLite, on empty tables."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM generations"))
        conn.execute(text("DELETE FROM conversations"))
        conn.execute(text("DELETE FROM chats"))
    engine.dispose()
    return url


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "redis_url": os.environ["REDIS_URL"],
        "log_json": True,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in-process, with its lifespan running."""
    from web.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as c:
        yield c


def _settings_in(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings_in() -> Callable[..., Settings]:
    """Makes settings for a data folder, ignoring any .env file of the developer's."""
    return _settings_in


@pytest.fixture(scope="session")
def model_settings() -> Settings:
    """Settings whose data folder holds the pulled default model (pulled once, reused)."""
    settings = _settings_in(TEST_DATA_DIR, model="smollm2")
    modelstore.pull(settings=settings, progress=False)
    return settings
