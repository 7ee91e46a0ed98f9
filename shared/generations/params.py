"""Per-generation overrides: what one request may change about one answer.

Stored as JSON in ``generations.params`` (None: the server's settings apply). The OpenAI
API fills it from ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed`` and the
request's system messages; the worker reads it back with ``sampling_overrides`` and
``system_prompt``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SAMPLING_FIELDS = ("max_new_tokens", "temperature", "top_p", "seed", "stop")


class GenerationParams(BaseModel):
    """Overrides for one generation; a field left None keeps the server's setting."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = None
    system: str | None = Field(
        default=None, description="Replaces the server's SYSTEM_PROMPT for this answer."
    )

    def to_column(self) -> dict[str, Any] | None:
        """The JSON stored in ``generations.params`` (None when nothing is overridden)."""
        data = self.model_dump(exclude_none=True)
        return data or None


def sampling_overrides(stored: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword overrides for ``SamplingParams.from_settings`` from a stored column."""
    params = GenerationParams.model_validate(stored or {})
    overrides: dict[str, Any] = {
        name: getattr(params, name)
        for name in SAMPLING_FIELDS
        if name != "stop" and getattr(params, name) is not None
    }
    if params.stop:
        overrides["stop"] = tuple(params.stop)
    return overrides


def system_prompt(stored: dict[str, Any] | None, *, default: str) -> str:
    """The system message for a generation: the request's own, else the server's."""
    system = GenerationParams.model_validate(stored or {}).system
    return default if system is None else system
