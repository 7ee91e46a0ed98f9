"""Database timeouts: the settings, and what the engine does with them on each backend."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from shared.db import engine_from_settings
from shared.settings import Settings


def test_database_timeouts_have_bounded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.db_connect_timeout_s == 5
    assert settings.db_statement_timeout_s == 5.0
    assert settings.db_pool_timeout_s == 5.0
    # A database that never answers: a request waits for a pooled connection, then for a
    # new one, and gives up after about ten seconds at worst, never forever.
    assert settings.db_pool_timeout_s + settings.db_connect_timeout_s <= 10

    monkeypatch.setenv("DB_CONNECT_TIMEOUT_S", "3")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.db_connect_timeout_s, settings.db_statement_timeout_s) == (3, 0.5)
    assert settings.db_pool_timeout_s == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("db_connect_timeout_s", 1), ("db_statement_timeout_s", 0), ("db_pool_timeout_s", -1)],
)
def test_unbounded_or_impossible_timeouts_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})  # type: ignore[call-arg, arg-type]


def test_postgres_gets_a_statement_timeout(postgres_url: str) -> None:
    settings = Settings(
        database_url=postgres_url,
        db_statement_timeout_s=0.3,
        db_pool_timeout_s=2,
        _env_file=None,  # type: ignore[call-arg]
    )
    engine = engine_from_settings(settings)
    try:
        assert engine.pool.timeout() == 2  # type: ignore[attr-defined]
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "300ms"
        with pytest.raises(OperationalError) as caught, engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(5)"))
        assert isinstance(caught.value.orig, psycopg.errors.QueryCanceled)
    finally:
        engine.dispose()


def test_sqlite_keeps_its_busy_timeout(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, _env_file=None)  # type: ignore[call-arg]
    engine = engine_from_settings(settings)
    try:
        assert engine.pool.timeout() == 5.0  # type: ignore[attr-defined]
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_postgres_checkout_costs_no_round_trip(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live pooled connection is handed out as it is: no "SELECT 1" before each unit of
    # work (a round trip on the way to every answer's first token).
    engine = engine_from_settings(Settings(database_url=postgres_url, _env_file=None))  # type: ignore[call-arg]
    try:
        first = _backend_pid(engine)

        def no_ping(*args: object) -> bool:
            raise AssertionError("the pool pinged the server")

        monkeypatch.setattr(engine.dialect, "do_ping", no_ping)
        assert _backend_pid(engine) == first  # the same pooled connection, unpinged
    finally:
        engine.dispose()


def test_postgres_connection_the_server_closed_is_replaced(postgres_url: str) -> None:
    # Postgres restarted, or an administrator ended the session: the pool notices at the
    # next checkout and connects again, so the request that follows does not fail.
    engine = engine_from_settings(Settings(database_url=postgres_url, _env_file=None))  # type: ignore[call-arg]
    try:
        first = _backend_pid(engine)
        with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            deadline = time.monotonic() + 10  # the backend is gone when it leaves the list
            while admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)
            ).fetchone():
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.05)
        second = _backend_pid(engine)
        assert second != first
        assert _backend_pid(engine) == second  # and the new one stays pooled
    finally:
        engine.dispose()


def test_postgres_checkout_with_a_descriptor_beyond_1024(postgres_url: str) -> None:
    # A web process with a thousand open streams gives its database sockets descriptors
    # beyond what select() can watch: the checkout check still works there.
    held: list[int] = []
    engine = engine_from_settings(Settings(database_url=postgres_url, _env_file=None))  # type: ignore[call-arg]
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None and raw.fileno() > 1024
        assert _backend_pid(engine) == _backend_pid(engine)  # checked out twice, pooled
    finally:
        engine.dispose()
        for fd in held:
            os.close(fd)
