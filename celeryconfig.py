"""Celery settings for ``celery -A worker.app``: ``shared.queue.celery_config`` applied to
the process's settings (``shared.settings``), and nothing else. The web tier's client
applies the same function to its app's settings (``shared.queue.make_celery``)."""

from __future__ import annotations

from shared.queue import celery_config
from shared.settings import get_settings

globals().update(celery_config(get_settings()))
