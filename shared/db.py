"""Database engine, sessions and the declarative base.

The code uses synchronous SQLAlchemy sessions everywhere: the worker is synchronous, and
the web tier runs each unit of database work in Starlette's thread pool, so the event loop
never blocks and both tiers share one set of repositories.
"""

from __future__ import annotations

import select
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from shared.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A fresh random primary key."""
    return uuid.uuid4()


class Base(DeclarativeBase):
    """Base class of every table, with a naming convention so migrations name constraints."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores ON DELETE CASCADE unless foreign keys are switched on per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL never corrupts the database; it only skips an fsync per commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """At checkout, a Postgres connection the server has closed (a restart, an ended
    session) is replaced (``DisconnectionError``: the pool connects again and retries).

    Instead of ``pool_pre_ping``'s ``SELECT 1``, a round trip before every unit of work,
    this looks at the socket: an idle connection in autocommit receives nothing, so a
    readable socket means the server said goodbye (its FATAL message, or the end of the
    stream). Anything else it sent while idle (a parameter change on reload) costs only a
    needless reconnect. A server that vanished without a word is noticed by the query, as
    it was by the ping."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    # poll, not select: a web process with a thousand open streams hands its database
    # sockets descriptors beyond select()'s 1024.
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection")


def make_engine(
    url: str,
    *,
    connect_timeout_s: int | None = None,
    statement_timeout_s: float | None = None,
    pool_timeout_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url``; SQLite gets foreign keys, WAL and its folder created.

    The timeouts bound how long a caller waits when Postgres is slow or does not answer;
    ``None`` leaves one unbounded (migrations, which may rewrite large tables, use that).
    ``connect_timeout_s`` covers the whole connection handshake (psycopg enforces it), so
    a server that accepts TCP but never answers fails after it; ``statement_timeout_s`` is
    Postgres's own ``statement_timeout``, set at connection start (it raises
    ``QueryCanceled``, an ``OperationalError``); ``pool_timeout_s`` bounds the wait for a
    free pooled connection (SQLAlchemy's ``TimeoutError``). SQLite waits for locks
    through its ``busy_timeout`` instead.
    """
    if pool_timeout_s is not None:
        kwargs.setdefault("pool_timeout", pool_timeout_s)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if connect_timeout_s is not None:
        connect_args.setdefault("connect_timeout", connect_timeout_s)
    if statement_timeout_s is not None:
        milliseconds = max(1, round(statement_timeout_s * 1000))
        connect_args.setdefault("options", f"-c statement_timeout={milliseconds}")
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if engine.dialect.driver == "psycopg":
        event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


def engine_from_settings(settings: Settings, **kwargs: Any) -> Engine:
    """The engine of ``settings.sqlalchemy_url`` with the configured timeouts (``DB_*``)."""
    return make_engine(
        settings.sqlalchemy_url,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        pool_timeout_s=settings.db_pool_timeout_s,
        **kwargs,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit, so rows can be serialized."""
    return sessionmaker(engine, expire_on_commit=False)


def single_statement_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """``factory``'s sessions with each statement committed on its own (``AUTOCOMMIT``),
    sharing its pool: for units of work whose every write is one self-contained statement
    (a conditional ``UPDATE ... RETURNING``, an ``INSERT ... ON CONFLICT``) and whose reads
    need no common snapshot. Without ``BEGIN`` and ``COMMIT``, such a unit takes two round
    trips fewer; on the way to an answer's first token that is 1-2 ms on a busy host."""
    engine: Engine = factory.kw["bind"]
    return sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    with factory() as session, session.begin():
        yield session
