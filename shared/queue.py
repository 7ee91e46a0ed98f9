"""The job queue as the web tier sees it: a Celery client that sends tasks by name."""

from __future__ import annotations

from celery import Celery

GENERATE_TASK = "chatbot.generate"
INFERENCE_QUEUE = "inference"


def make_celery(name: str = "chatbot", *, broker_url: str | None = None) -> Celery:
    """A Celery app configured from ``celeryconfig`` (which reads ``shared.settings``);
    ``broker_url`` overrides the environment's, for an app built from other settings."""
    app = Celery(name)
    app.config_from_object("celeryconfig")
    if broker_url is not None:
        app.conf.broker_url = broker_url
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
