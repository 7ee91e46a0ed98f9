"""One Celery configuration, from ``Settings``, for the web tier's client and the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.queue import GENERATE_TASK, celery_config, enqueue_generation, make_celery
from shared.settings import Settings
from tests.conftest import ROOT, make_settings
from web.app import create_app

# The worker's app, as `celery -A worker.app` builds it, in a process of its own that reads
# its settings from the environment; it prints its settings and its Celery configuration.
WORKER_CONFIG = """
import json, sys
from shared.queue import celery_config
from shared.settings import get_settings
from worker.app import app
keys = sorted(celery_config(get_settings()))
json.dump({"settings": get_settings().model_dump(mode="json"),
           "conf": {key: app.conf[key] for key in keys}}, sys.stdout, default=str)
"""


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def test_derived_timeouts_are_named_settings() -> None:
    settings = Settings(generation_time_limit_s=100.5, _env_file=None)  # type: ignore[call-arg]
    assert settings.task_soft_time_limit_s == 161
    assert settings.task_time_limit_s == 221
    assert settings.visibility_timeout_s == 521
    config = celery_config(settings)
    assert config["task_soft_time_limit"] == settings.task_soft_time_limit_s
    assert config["task_time_limit"] == settings.task_time_limit_s
    assert config["broker_transport_options"]["visibility_timeout"] == 521
    # A live job is never redelivered: the broker waits longer than any task may run.
    assert (
        settings.generation_time_limit_s
        < settings.task_soft_time_limit_s
        < settings.task_time_limit_s
        < settings.visibility_timeout_s
    )


def test_make_celery_applies_the_settings_not_the_environment(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_url="redis://elsewhere.example:6390/3")
    app = make_celery(settings, "test")
    assert app.conf.broker_url == "redis://elsewhere.example:6390/3"
    for key, value in celery_config(settings).items():
        assert app.conf[key] == value, key


async def test_the_web_and_the_worker_see_one_celery_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.isupper() and not k.startswith("COV")}
    env.update(
        {
            "DATA_DIR": str(tmp_path),
            "REDIS_URL": os.environ["REDIS_URL"],
            "GENERATION_TIME_LIMIT_S": "123",
            "LOG_JSON": "true",
            "PYTHONPATH": str(ROOT),
        }
    )
    # From tmp_path, so that no developer's .env file is read.
    worker = subprocess.run(
        [sys.executable, "-c", WORKER_CONFIG],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen_by_worker = json.loads(worker.stdout)
    settings = Settings.model_validate(seen_by_worker["settings"])
    assert settings.generation_time_limit_s == 123

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        web_celery = app.state.chatbot.celery
        seen_by_web = {key: web_celery.conf[key] for key in seen_by_worker["conf"]}

    assert as_json(seen_by_web) == seen_by_worker["conf"] == as_json(celery_config(settings))
    assert seen_by_worker["conf"]["task_time_limit"] == 243
    assert len(seen_by_worker["conf"]) == len(celery_config(settings)) > 10


def test_enqueue_is_one_publish_with_no_sent_event(tmp_path: Path) -> None:
    # On the way to every first token: the job goes to the queue's list and no "task-sent"
    # event is published beside it (Flower sees the task once a worker receives it).
    import redis

    settings = make_settings(tmp_path)
    client = redis.Redis.from_url(settings.redis_url)
    app = make_celery(settings, "test-enqueue")
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev/task.sent")  # kombu's channel for the event
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    client.delete("inference")
    try:
        enqueue_generation(app, generation_id="g-1", request_id="r-1")
        [job] = client.lrange("inference", 0, -1)
        assert json.loads(job)["headers"]["task"] == GENERATE_TASK
        assert pubsub.get_message(timeout=0.5) is None
    finally:
        client.delete("inference")
        pubsub.close()
