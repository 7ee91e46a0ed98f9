"""Celery tasks: thin wrappers that take ids and call the generation service."""

from __future__ import annotations

from celery import Task

from shared.logs import generation_id_var, request_id_var
from shared.queue import GENERATE_TASK
from worker.app import app


@app.task(
    name=GENERATE_TASK,
    bind=True,
    acks_late=True,  # redelivered if the worker dies; the attempt cap stops loops
    reject_on_worker_lost=True,
    ignore_result=True,
)
def generate(self: Task, generation_id: str, request_id: str | None = None) -> None:
    """Answer one generation: stream its tokens to the bus and save the answer."""
    from worker import runtime
    from worker.generate import run_generation

    request_token = request_id_var.set(request_id)
    generation_token = generation_id_var.set(generation_id)
    try:
        run_generation(runtime.get(), generation_id=generation_id)
    finally:
        generation_id_var.reset(generation_token)
        request_id_var.reset(request_token)
