"""What one worker process holds: settings, the loaded engine, database and Redis clients.

Loaded once per process (``worker_process_init`` for prefork children, ``worker_ready``
for the solo pool), never per task, and never before the fork: CUDA must not be touched
in the parent process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from shared.db import engine_from_settings, make_sessionmaker
from shared.redisconn import sync_client
from shared.settings import Settings, get_settings
from shared.tokenbus import (
    MODEL_ERROR_KEY,
    WORKER_HEARTBEAT_S,
    worker_gone,
    worker_heartbeat,
)
from worker.engine import Engine, load_engine

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    worker_id: str
    stop: threading.Event


_runtime: Runtime | None = None
_lock = threading.Lock()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def load(settings: Settings | None = None) -> Runtime:
    """Load the model and open connections for this process (once)."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.worker_id == worker_id():
            return _runtime
        settings = settings or get_settings()
        client = sync_client(settings)
        try:
            engine = load_engine(settings)
        except Exception as exc:
            # Tell the web tier why no worker can answer; it shows this in its 503.
            try:
                client.set(MODEL_ERROR_KEY, f"{type(exc).__name__}: {exc}"[:500], ex=60)
            finally:
                log.exception("could not load the model %s", settings.model)
            raise
        client.delete(MODEL_ERROR_KEY)
        db = engine_from_settings(settings, pool_size=2, max_overflow=2)
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(db),
            redis=client,
            worker_id=worker_id(),
            stop=threading.Event(),
        )
        threading.Thread(target=_beat, args=(runtime,), name="heartbeat", daemon=True).start()
        log.info("model loaded", extra={"model": engine.model_name, "worker": runtime.worker_id})
        _runtime = runtime
        return runtime


def get() -> Runtime:
    """This process's runtime, loading it on first use."""
    return _runtime if _runtime is not None and _runtime.worker_id == worker_id() else load()


def shutdown() -> None:
    """Say goodbye to the web tier so it stops counting this process."""
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is None:
        return
    runtime.stop.set()
    try:
        worker_gone(runtime.redis, worker_id=runtime.worker_id)
    except redis.RedisError:
        log.warning("could not remove the worker heartbeat")


def _beat(runtime: Runtime) -> None:
    info = {"model": runtime.engine.model_name, "pid": os.getpid()}
    while not runtime.stop.is_set():
        try:
            worker_heartbeat(runtime.redis, worker_id=runtime.worker_id, info=info)
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", exc)
        runtime.stop.wait(WORKER_HEARTBEAT_S)
