"""The OpenAI wire format: request bodies, response objects and error objects.

Only the shapes live here; ``web.routes.openai`` runs the requests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.responses import JSONResponse

from shared.errors import ChatbotError
from shared.generations.params import GenerationParams

MAX_STOP_STRINGS = 4


class TextPart(BaseModel):
    """A content part; only text parts are understood."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One message of a request. ``developer`` is the newer name of ``system``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class CompletionRequest(BaseModel):
    """Body of ``POST /v1/chat/completions``. Fields this server does not implement
    (``presence_penalty``, ``user``, ``logit_bias``...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = Field(
        default=None,
        # What the validator below holds to, said in the document: no empty stop string.
        json_schema_extra={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "maxItems": MAX_STOP_STRINGS,
                },
                {"type": "null"},
            ]
        },
    )
    seed: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported.")

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        strings = [value] if isinstance(value, str) else value
        if len(strings) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
        if any(not s for s in strings):
            raise ValueError("stop strings must not be empty")
        return strings or None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def params(self, *, max_new_tokens: int) -> GenerationParams:
        """The generation's overrides; ``max_tokens`` is capped at the server's limit."""
        wanted = self.max_completion_tokens or self.max_tokens
        systems = [m.text for m in self.messages if m.role in ("system", "developer")]
        stop = self.stop if isinstance(self.stop, list) else None
        return GenerationParams(
            max_new_tokens=min(wanted, max_new_tokens) if wanted else None,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
            system="\n\n".join(systems) if systems else None,
        )


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(*, status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """An OpenAI error object. It also has the house's ``code`` and ``message``."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: ChatbotError, headers: dict[str, str] | None = None) -> JSONResponse:
    """``exc`` as OpenAI clients expect it: validation failures are 400, as OpenAI's are."""
    status = 400 if exc.status_code == 422 else exc.status_code
    param = None
    if isinstance(exc.details, list) and exc.details and isinstance(exc.details[0], dict):
        param = exc.details[0].get("field")
    body = error_body(status=status, code=exc.code, message=exc.message, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


FINISH_REASONS = {"stop": "stop", "length": "length", "deadline": "length"}


def finish_reason(done: dict[str, Any]) -> str:
    """OpenAI's ``finish_reason`` for a ``done`` event: stop or length (a stopped or
    abandoned answer ended early on purpose: ``stop``)."""
    return FINISH_REASONS.get(str(done.get("finish_reason")), "stop")


def chunk(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta`` None with ``usage`` makes the usage chunk."""
    data: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
    }
    if delta is not None:
        data["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    if include_usage:
        data["usage"] = usage
    return data


def completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish: str,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """A non-streamed ``chat.completion``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def model_list(names: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "chatbot"} for n in names],
    }
