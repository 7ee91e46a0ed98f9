"""What one worker process holds: settings, the loaded engine, database and Redis clients.

Loaded once per process (``worker_process_init`` for prefork children, ``worker_ready``
for the solo pool), never per task, and never before the fork: CUDA must not be touched
in the parent process.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from shared import workers
from shared.db import engine_from_settings, make_sessionmaker
from shared.generations.lifecycle import Lifecycle
from shared.redisconn import sync_client
from shared.settings import Settings, get_settings
from worker.engine import Engine, load_engine
from worker.threads import ThreadsBudget, fixed_threads

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    lifecycle: Lifecycle
    worker_id: str
    stop: threading.Event
    threads: ThreadsBudget
    #: The generation this process runs now; its heartbeat keeps the ownership fresh.
    current: str | None = None


_runtime: Runtime | None = None
_lock = threading.Lock()


def load(settings: Settings | None = None) -> Runtime:
    """Load the model and open connections for this process (once)."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.worker_id == workers.this_process_id():
            return _runtime
        settings = settings or get_settings()
        client = sync_client(settings)
        try:
            engine = load_engine(settings)
        except Exception as exc:
            # Tell the web tier why no worker can answer; it shows this in its 503.
            try:
                client.set(workers.MODEL_ERROR_KEY, f"{type(exc).__name__}: {exc}"[:500], ex=60)
            finally:
                log.exception("could not load the model %s", settings.model)
            raise
        client.delete(workers.MODEL_ERROR_KEY)
        db = engine_from_settings(settings, pool_size=2, max_overflow=2)
        sessions = make_sessionmaker(db)
        wid = workers.this_process_id()
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=client,
            lifecycle=Lifecycle(settings=settings, sessions=sessions, redis=client),
            worker_id=wid,
            stop=threading.Event(),
            threads=ThreadsBudget(
                client, worker_id=wid, override=fixed_threads(settings.threads, engine)
            ),
        )
        runtime.threads.subscribe()  # now, not before the first generation's first token
        threading.Thread(target=_beat, args=(runtime,), name="heartbeat", daemon=True).start()
        log.info("model loaded", extra={"model": engine.model_name, "worker": runtime.worker_id})
        _runtime = runtime
        return runtime


def get() -> Runtime:
    """This process's runtime, loading it on first use."""
    if _runtime is not None and _runtime.worker_id == workers.this_process_id():
        return _runtime
    return load()


def shutdown() -> None:
    """Say goodbye to the web tier so it stops counting this process."""
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is None:
        return
    runtime.stop.set()
    try:
        workers.gone(runtime.redis, worker_id=runtime.worker_id)
    except redis.RedisError:
        log.warning("could not remove the worker heartbeat")


def _beat(runtime: Runtime) -> None:
    info = {"model": runtime.engine.model_name, "pid": os.getpid()}
    while not runtime.stop.is_set():
        try:
            workers.heartbeat(
                runtime.redis,
                worker_id=runtime.worker_id,
                info=info,
                generation_id=runtime.current,
                owner_ttl_s=int(runtime.settings.generation_time_limit_s) + 600,
            )
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", exc)
        if runtime.current is None:
            runtime.threads.sample_load()
        runtime.stop.wait(workers.WORKER_HEARTBEAT_S)
