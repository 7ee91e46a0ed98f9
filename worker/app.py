"""The Celery app of the workers. Settings come from ``celeryconfig`` (``shared.settings``).

Shutdown (checked end to end in tests/e2e/test_ops.py):
- SIGTERM is Celery's warm shutdown: the worker takes no new job, lets the running
  generation finish, then exits 0.
- When a prefork child dies mid-generation (killed, out of memory), its job is rejected
  (``acks_late`` + ``reject_on_worker_lost``) and goes back to the queue at once; the
  next child takes the generation over (``restart``, attempt + 1).
- A worker killed outright (SIGKILL after a platform's grace period, e.g. Heroku's 30 s,
  while a long answer still runs) stops beating: the web tier's sweep retries or ends its
  generation within about 12 s (see ``shared.generations.lifecycle``). Its job, handed
  out again after the broker's visibility timeout, then finds nothing to do. Give workers
  a stop grace period longer than an answer takes.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from celery.utils.log import get_multiprocessing_logger

from shared.logs import configure_logging
from shared.settings import get_settings

log = logging.getLogger(__name__)

app = Celery("chatbot", include=["worker.tasks", "worker.internet.answer"])
app.config_from_object("celeryconfig")


@after_setup_logger.connect
def _logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    # Celery gave billiard's logger (pool process deaths) its own plain-text handler.
    _propagate(get_multiprocessing_logger())


@after_setup_task_logger.connect
def _task_logging(logger: logging.Logger, **_: Any) -> None:
    # The task logger ("celery.task") gets its own plain-text handler and does not
    # propagate: send its records through the root's JSON handler like all others.
    _propagate(logger)


def _propagate(logger: logging.Logger | None) -> None:
    if logger is not None:
        logger.handlers.clear()
        logger.propagate = True


@worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    from worker import runtime

    try:
        runtime.load()
    except Exception:
        # The child stays up without a heartbeat; the web tier reports the reason.
        log.error("worker process has no model; it will not take generations")


@worker_ready.connect
def _load_in_solo(sender: Any = None, **_: Any) -> None:
    # The solo (and threads) pool runs tasks in this process: load here, after start-up.
    pool = getattr(getattr(sender, "pool", None), "__module__", "") or ""
    if "prefork" in pool:
        return
    from worker import runtime

    try:
        runtime.load()
    except Exception:
        log.error("worker has no model; it will not take generations")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _goodbye(**_: Any) -> None:
    from worker import runtime

    runtime.shutdown()
