"""Chat routes: list, get, create, update, delete, and a chat's messages."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.chats import service
from shared.chats.schemas import ChatCreate, ChatOut, ChatUpdate, ConversationOut, dump
from web.http import api, json_response, page_headers, pagination, parse_json, path_uuid, tenant_of
from web.state import app_state, run_db


@api(summary="List chats, newest first", response=ChatOut, many=True, paginated=True, errors=[422])
async def list_chats(request: Request) -> JSONResponse:
    limit, offset = pagination(request, page_max=app_state(request).settings.page_max)
    owner = tenant_of(request)

    def work(session: Session) -> tuple[list[dict[str, object]], int]:
        page = service.list_chats(session, owner=owner, limit=limit, offset=offset)
        return [dump(ChatOut.model_validate(c)) for c in page.items], page.total

    items, total = await run_db(request, work)
    return json_response(items, headers=page_headers(total=total, limit=limit, offset=offset))


@api(summary="Get one chat", response=ChatOut, errors=[404])
async def get_chat(request: Request) -> JSONResponse:
    chat_id = path_uuid(request, "chat_id", what="chat")
    owner = tenant_of(request)
    data = await run_db(
        request,
        lambda s: dump(ChatOut.model_validate(service.get_chat(s, chat_id=chat_id, owner=owner))),
    )
    return json_response(data)


@api(summary="Create a chat", body=ChatCreate, response=ChatOut, status=201, errors=[400, 413, 422])
async def create_chat(request: Request) -> JSONResponse:
    owner = tenant_of(request)
    body = await parse_json(request, ChatCreate)
    data = await run_db(
        request,
        lambda s: dump(ChatOut.model_validate(service.create_chat(s, owner=owner, data=body))),
    )
    return json_response(data, status_code=201)


@api(summary="Rename a chat", body=ChatUpdate, response=ChatOut, errors=[400, 404, 413, 422])
async def update_chat(request: Request) -> JSONResponse:
    chat_id = path_uuid(request, "chat_id", what="chat")
    owner = tenant_of(request)
    body = await parse_json(request, ChatUpdate)

    def work(session: Session) -> dict[str, object]:
        chat = service.update_chat(session, chat_id=chat_id, owner=owner, data=body)
        return dump(ChatOut.model_validate(chat))

    data = await run_db(request, work)
    return json_response(data)


@api(summary="Delete a chat and all its messages", response=ChatOut, errors=[404])
async def delete_chat(request: Request) -> JSONResponse:
    chat_id = path_uuid(request, "chat_id", what="chat")
    owner = tenant_of(request)
    data = await run_db(
        request,
        lambda s: dump(
            ChatOut.model_validate(service.delete_chat(s, chat_id=chat_id, owner=owner))
        ),
    )
    return json_response(data)


@api(
    summary="A chat's messages, oldest first",
    response=ConversationOut,
    many=True,
    paginated=True,
    errors=[404, 422],
)
async def chat_messages(request: Request) -> JSONResponse:
    chat_id = path_uuid(request, "chat_id", what="chat")
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
    Route("/chats/", list_chats, methods=["GET"]),
    Route("/chats/create", create_chat, methods=["POST"]),
    Route("/chats/update/{chat_id}", update_chat, methods=["PUT"]),
    Route("/chats/delete/{chat_id}", delete_chat, methods=["DELETE"]),
    Route("/chats/{chat_id}/conversations", chat_messages, methods=["GET"]),
    # ':uuid': GET /chats/create must not match here (it answers 405, not "no chat 'create'").
    Route("/chats/{chat_id:uuid}", get_chat, methods=["GET"]),
]
