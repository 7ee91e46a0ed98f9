"""Request parsing and response helpers: every bad input becomes a clear JSON error."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from web.state import app_state

ModelT = TypeVar("ModelT", bound=BaseModel)


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``[{"field", "message", "type"}]``."""
    details = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        details.append({"field": field, "message": item["msg"], "type": item["type"]})
    return details


def _summary(details: list[dict[str, Any]]) -> str:
    return "; ".join(f"{d['field']}: {d['message']}" for d in details)


ECHO_MAX = 200


def clip(text: str, limit: int = ECHO_MAX) -> str:
    """At most ``limit`` characters of client input, for error messages and logs."""
    return text if len(text) <= limit else text[:limit] + "…"


def tenant_of(request: Request) -> str:
    """The tenant of the request (the API key's name), set by ``ApiKeyMiddleware``."""
    tenant: str | None = request.scope.get("state", {}).get("tenant")
    if tenant is None:  # a route outside the middleware's care: refuse, never guess
        raise Unauthorized("this route needs an API key")
    return tenant


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data``, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return deepest


async def _read_body(request: Request, *, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    return bytes(body)


async def parse_body(
    request: Request,
    model: type[ModelT],
    *,
    max_bytes: int,
    max_depth: int = 32,
    timeout_s: float = 15.0,
) -> ModelT:
    """Read a JSON body into ``model`` or raise 400/408/413/415/422 with a clear message.

    A body slower than ``timeout_s`` (or shorter than its Content-Length) gets 408, so a
    client cannot hold a connection open by not sending what it announced.
    """
    if not _is_json(request.headers.get("content-type", "")):
        # Also what keeps other sites' plain form posts out (they cannot send JSON
        # without a CORS preflight).
        raise UnsupportedMediaType(
            "request bodies must be JSON: send Content-Type: application/json"
        )
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read_body(request, max_bytes=max_bytes)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    if not body.strip():
        raise BadRequest("request body is empty: send a JSON object")
    too_deep = BadRequest(f"request body nests JSON deeper than {max_depth} levels")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {clip(str(exc))}") from None
    except RecursionError:  # nested past the parser's own limit (about 1,000 levels)
        raise too_deep from None
    if json_depth(data) > max_depth:
        raise too_deep
    if not isinstance(data, dict):
        raise ValidationFailed(
            "request body must be a JSON object",
            details=[{"field": "body", "message": "must be a JSON object", "type": "type"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ValidationFailed(_summary(details), details=details) from None


async def parse_json(request: Request, model: type[ModelT]) -> ModelT:
    """``parse_body`` with the app's limits (body size, nesting depth, read timeout)."""
    settings = app_state(request).settings
    return await parse_body(
        request,
        model,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        timeout_s=settings.body_timeout_s,
    )


def path_uuid(request: Request, name: str, *, what: str) -> uuid.UUID:
    """A UUID path parameter. One that is not a UUID names nothing: 404, like an absent one."""
    raw = request.path_params[name]
    if isinstance(raw, uuid.UUID):  # a route with a {name:uuid} convertor
        return raw
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} {clip(raw)} does not exist") from None


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        message = f"must be an integer from {low} to {high}"
        raise ValidationFailed(
            f"{name}: {message}", details=[{"field": name, "message": message, "type": "range"}]
        )
    return value


def query_uuid(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        message = "must be a UUID"
        raise ValidationFailed(
            f"{name}: {message}", details=[{"field": name, "message": message, "type": "uuid"}]
        ) from None


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    raw = raw.lower()
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    message = "must be true or false"
    raise ValidationFailed(
        f"{name}: {message}", details=[{"field": name, "message": message, "type": "bool"}]
    )


def pagination(request: Request, *, page_max: int) -> tuple[int, int]:
    limit = query_int(request, "limit", default=min(50, page_max), low=1, high=page_max)
    offset = query_int(request, "offset", default=0, low=0, high=2**31 - 1)
    return limit, offset


def json_response(
    data: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(data, status_code=status_code, headers=headers)


def page_headers(*, total: int, limit: int, offset: int) -> dict[str, str]:
    return {"X-Total-Count": str(total), "X-Limit": str(limit), "X-Offset": str(offset)}


# Route metadata read by the OpenAPI generator.
def api(**spec: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach OpenAPI metadata (summary, body, response, status, errors, query) to an endpoint."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.__dict__["openapi"] = spec
        return endpoint

    return mark
