"""The OpenAPI 3.1 document, built from the routes' ``@api`` metadata and pydantic models,
and a self-contained page that shows it to people (no CDN: it works offline)."""

from __future__ import annotations

import html
import re
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from web.middleware import PUBLIC_PATHS

ERROR_TEXT = {
    400: "Body is empty, not JSON, or nested too deeply",
    401: "Missing or wrong API key",
    404: "Not found (also another tenant's chat, or a malformed id in the path)",
    408: "The body did not arrive in time (or was shorter than its Content-Length)",
    409: "Nothing to answer, or nothing running",
    413: "Body or message too large",
    415: "The body is not application/json",
    422: "A field is missing, has the wrong type or is out of range",
    429: "Too many generation starts for this API key; see Retry-After",
    503: "A dependency (worker, model, search) is unavailable",
}
# Every operation with a JSON body can answer these, whatever the route lists.
BODY_ERRORS = (400, 408, 413, 415, 422)
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}}

PAGINATION = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
    },
]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameter(name: str, spec: str | dict[str, Any]) -> dict[str, Any]:
    # A query entry is a description, or {"description", "schema"}.
    if isinstance(spec, str):
        spec = {"description": spec}
    return {
        "name": name,
        "in": "query",
        "description": spec.get("description", ""),
        "schema": spec.get("schema", {"type": "string"}),
    }


def _error_response(error: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_TEXT.get(error, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if error in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def build_openapi(
    routes: list[BaseRoute], *, title: str, version: str, secured: bool = False
) -> dict[str, Any]:
    """An OpenAPI document describing every route with ``@api`` metadata.

    ``secured``: API keys are configured, so every route but the public ones may answer 401.
    """
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        spec: dict[str, Any] | None = getattr(route.endpoint, "openapi", None)
        if spec is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": spec.get("summary", ""),
                "operationId": route.name,
                "responses": {},
            }
            if description := spec.get("description"):
                operation["description"] = description
            parameters: list[dict[str, Any]] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
                for name in re.findall(r"{(\w+)(?::\w+)?}", route.path)
            ]
            if spec.get("paginated"):
                parameters += PAGINATION
            for name, query in spec.get("query", {}).items():
                parameters.append(_query_parameter(name, query))
            for name, text in spec.get("headers", {}).items():
                parameters.append(
                    {
                        "name": name,
                        "in": "header",
                        "description": text,
                        "schema": {"type": "string"},
                    }
                )
            if parameters:
                operation["parameters"] = parameters
            if body := spec.get("body"):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema_ref(body, components)}},
                }
            status = str(spec.get("status", 200))
            ok: dict[str, Any] = {"description": spec.get("response_text", "Success")}
            if model := spec.get("response"):
                schema: dict[str, Any] = _schema_ref(model, components)
                if spec.get("many"):
                    schema = {"type": "array", "items": schema}
                ok["content"] = {"application/json": {"schema": schema}}
            elif example := spec.get("response_example"):
                ok["content"] = {"application/json": {"example": example}}
            elif content_type := spec.get("content_type"):
                ok["content"] = {
                    content_type: {
                        "schema": {"type": "string", "description": spec.get("description", "")}
                    }
                }
            if spec.get("paginated"):
                ok["headers"] = {
                    "X-Total-Count": {
                        "schema": {"type": "integer"},
                        "description": "Items in all pages.",
                    }
                }
            operation["responses"][status] = ok
            for extra_status, extra in spec.get("extra_responses", {}).items():
                if isinstance(extra, str):
                    extra = {"description": extra}
                operation["responses"][str(extra_status)] = extra
            errors = set(spec.get("errors", []))
            if body:
                errors |= set(BODY_ERRORS)
            if secured and route.path not in PUBLIC_PATHS:
                errors.add(401)
                operation["security"] = [{"bearer": []}]
            for error in sorted(errors):
                operation["responses"][str(error)] = _error_response(error)
            path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render_docs(document: dict[str, Any]) -> str:
    """A readable HTML page of the API, generated from the OpenAPI document."""
    title = html.escape(document["info"]["title"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{title} API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}"
        ".op{border-top:1px solid #ddd;padding:.5rem 0}.m{font-weight:bold;display:inline-block;"
        "width:4.5rem}</style></head><body>",
        f"<h1>{title} API</h1>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are JSON: "
        '<code>{"error": {"code", "message"}}</code>.</p>',
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parts.append("<div class='op'>")
            parts.append(
                f"<span class='m'>{method.upper()}</span><code>{html.escape(path)}</code> "
                f"— {html.escape(operation['summary'])}"
            )
            params = operation.get("parameters", [])
            if params:
                names = ", ".join(
                    f"<code>{html.escape(p['name'])}</code> ({p['in']})" for p in params
                )
                parts.append(f"<br>Parameters: {names}")
            if body := operation.get("requestBody"):
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                schema = document["components"]["schemas"][ref]
                fields = ", ".join(
                    f"<code>{html.escape(name)}</code>"
                    + (" (required)" if name in schema.get("required", []) else "")
                    for name in schema.get("properties", {})
                )
                parts.append(f"<br>Body: {fields}")
            statuses = ", ".join(
                f"{code} {html.escape(r['description'])}"
                for code, r in operation["responses"].items()
            )
            parts.append(f"<br>Responses: {statuses}</div>")
    parts.append("</body></html>")
    return "".join(parts)
