"""The Celery app of the workers. Settings come from ``celeryconfig`` (``shared.settings``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared.logs import configure_logging
from shared.settings import get_settings

log = logging.getLogger(__name__)

app = Celery("chatbot", include=["worker.tasks", "worker.internet.answer"])
app.config_from_object("celeryconfig")


@after_setup_logger.connect
def _logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)


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
