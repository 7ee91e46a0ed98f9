"""The job queue: one Celery configuration, built from ``Settings``, for every process.

``celery_config(settings)`` is the only place Celery settings are written. The worker
reads it through the root ``celeryconfig`` module (``celery -A worker.app``); the web
tier's client, built by ``make_celery(settings)`` in ``create_app(settings)``, applies the
same function to the app's own settings, so both sides always agree.

Workers take one generation at a time (prefetch 1) and acknowledge a job only when it is
finished, so a job whose worker dies is delivered again; the broker's visibility timeout
(``Settings.visibility_timeout_s``) is longer than a task may run
(``Settings.task_time_limit_s``), so a live job is never handed out twice.
"""

from __future__ import annotations

import ssl
from typing import Any

from celery import Celery

from shared.settings import Settings

GENERATE_TASK = "chatbot.generate"
INFERENCE_QUEUE = "inference"

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting of the product, by Celery's (lower-case) names."""
    config: dict[str, Any] = {
        "broker_url": settings.redis_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": INFERENCE_QUEUE,
        "task_routes": {"chatbot.*": {"queue": INFERENCE_QUEUE}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure": True,  # a task that raises is not run again
        "task_acks_on_timeout": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": None,
        "worker_hijack_root_logger": False,
        # Flower sees a task from when a worker receives it. No "task-sent" event: that
        # would be a second publish on the way to every answer's first token (0.2 ms);
        # the jobs still waiting are /metrics' chatbot_queue_depth.
        "worker_send_task_events": True,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Above the task's hard limit: a running job is never redelivered while alive.
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_keepalive": True,
        },
    }
    if settings.redis_url.startswith("rediss://"):
        config["broker_use_ssl"] = {"ssl_cert_reqs": _CERT_REQS[settings.redis_ssl_cert_reqs]}
    return config


def make_celery(settings: Settings, name: str = "chatbot") -> Celery:
    """A Celery app (a client that sends tasks by name) configured from ``settings``."""
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def enqueue_generation(app: Celery, *, generation_id: str, request_id: str | None) -> None:
    """Queue a generation's job. It carries no expiry: a job the broker hands out again
    (its worker died) must still run while its generation needs an answer; the life cycle
    decides whether it does."""
    app.send_task(
        GENERATE_TASK,
        args=[generation_id],
        kwargs={"request_id": request_id},
        queue=INFERENCE_QUEUE,
    )
