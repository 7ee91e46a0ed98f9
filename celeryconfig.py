"""Celery settings, read from ``shared.settings`` (and nothing else).

Workers take one generation at a time (prefetch 1) and acknowledge a job only when it is
finished, so a job whose worker dies is delivered again; the broker's visibility timeout
is longer than any generation may run, so a live job is never handed out twice.
"""

from __future__ import annotations

import ssl

from shared.settings import get_settings

_settings = get_settings()

broker_url = _settings.redis_url
result_backend = None
task_ignore_result = True

task_default_queue = "inference"
task_routes = {"chatbot.*": {"queue": "inference"}}
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True  # a task that raises is not run again
task_acks_on_timeout = True
task_serializer = "json"
accept_content = ["json"]
task_time_limit = int(_settings.generation_time_limit_s + 120)
task_soft_time_limit = int(_settings.generation_time_limit_s + 60)

worker_prefetch_multiplier = 1
worker_max_tasks_per_child = None
worker_hijack_root_logger = False
worker_send_task_events = True
task_send_sent_event = True

broker_connection_retry_on_startup = True
broker_transport_options = {
    # Above the task's hard limit: a running job is never redelivered while alive.
    "visibility_timeout": task_time_limit + 300,
    "socket_keepalive": True,
}

if _settings.redis_url.startswith("rediss://"):
    _reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    broker_use_ssl = {"ssl_cert_reqs": _reqs[_settings.redis_ssl_cert_reqs]}
