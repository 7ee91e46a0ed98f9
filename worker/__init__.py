"""Celery worker: the app, its tasks, the model engine and the internet retrieval pipeline."""
