"""Message routes: create and list ("conversations" in the seed's words)."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.chats import service
from shared.chats.schemas import ConversationCreate, ConversationOut, dump
from web.http import api, json_response, page_headers, pagination, parse_json, query_uuid, tenant_of
from web.state import app_state, run_db


@api(
    summary="Add a message to a chat",
    body=ConversationCreate,
    response=ConversationOut,
    status=201,
    errors=[400, 404, 413, 422],
)
async def create_message(request: Request) -> JSONResponse:
    settings = app_state(request).settings
    owner = tenant_of(request)
    body = await parse_json(request, ConversationCreate)

    def work(session: Session) -> dict[str, object]:
        message = service.create_message(
            session, owner=owner, data=body, max_message_bytes=settings.max_message_bytes
        )
        return dump(ConversationOut.model_validate(message))

    return json_response(await run_db(request, work), status_code=201)


@api(
    summary="List messages, oldest first (filter with chat_id)",
    response=ConversationOut,
    many=True,
    paginated=True,
    query={
        "chat_id": {
            "description": "Only this chat's messages.",
            "schema": {"type": "string", "format": "uuid"},
        }
    },
    errors=[404, 422],
)
async def list_messages(request: Request) -> JSONResponse:
    chat_id = query_uuid(request, "chat_id")
    limit, offset = pagination(request, page_max=app_state(request).settings.page_max)
    owner = tenant_of(request)

    def work(session: Session) -> tuple[list[dict[str, object]], int]:
        page = service.list_messages(
            session, owner=owner, chat_id=chat_id, limit=limit, offset=offset
        )
        return [dump(ConversationOut.model_validate(m)) for m in page.items], page.total

    items, total = await run_db(request, work)
    return json_response(items, headers=page_headers(total=total, limit=limit, offset=offset))


routes = [
    Route("/conversations/", list_messages, methods=["GET"]),
    Route("/conversations/create", create_message, methods=["POST"]),
]
