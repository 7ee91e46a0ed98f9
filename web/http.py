"""Request parsing and response helpers: every bad input becomes a clear JSON error."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.errors import BadRequest, NotFound, PayloadTooLarge, ValidationFailed

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


async def parse_body(request: Request, model: type[ModelT], *, max_bytes: int) -> ModelT:
    """Read a JSON body into ``model`` or raise 400/413/422 with a message naming the field."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    if not body.strip():
        raise BadRequest("request body is empty: send a JSON object")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
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


def path_uuid(request: Request, name: str, *, what: str) -> uuid.UUID:
    """A UUID path parameter. One that is not a UUID names nothing: 404, like an absent one."""
    raw = request.path_params[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} {raw} does not exist") from None


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
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
    if raw is None or raw == "":
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        message = "must be a UUID"
        raise ValidationFailed(
            f"{name}: {message}", details=[{"field": name, "message": message, "type": "uuid"}]
        ) from None


def query_bool(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").lower()
    if raw in ("", "0", "false", "no", "off"):
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
