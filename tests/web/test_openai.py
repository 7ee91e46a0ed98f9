"""The OpenAI-compatible API in-process: models, validation and error objects, and the
queued generation a request leaves (the answers themselves: tests/e2e/test_openai_sdk.py)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from shared.chats.models import Chat, Conversation
from shared.db import make_engine, make_sessionmaker
from shared.generations.models import Generation
from shared.generations.params import GenerationParams, sampling_overrides, system_prompt
from shared.settings import Settings
from shared.tokenbus import read_events
from shared.workers import WORKER_STALE_S, WORKERS_KEY, gone, heartbeat
from tests.conftest import app_client, make_settings
from web.openai_format import CompletionRequest

MODEL = "smollm2-test"


@pytest.fixture
def worker() -> Iterator[str]:
    """A live worker as the web tier sees it: a heartbeat naming its model."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker_id = f"test-worker-{uuid.uuid4().hex[:8]}"
    heartbeat(
        client, worker_id=worker_id, info={"model": MODEL}, generation_id=None, owner_ttl_s=60
    )
    yield worker_id
    gone(client, worker_id=worker_id)
    client.close()


def fading_worker(seconds: float) -> str:
    """A worker that beat long enough ago to count as alive for ``seconds`` more."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker_id = f"test-worker-{uuid.uuid4().hex[:8]}"
    heartbeat(
        client, worker_id=worker_id, info={"model": MODEL}, generation_id=None, owner_ttl_s=60
    )
    client.zadd(WORKERS_KEY, {worker_id: time.time() - WORKER_STALE_S + seconds})
    client.close()
    return worker_id


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}


async def test_models_lists_what_live_workers_serve(client: httpx.AsyncClient, worker: str) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list"
    assert {"id": MODEL, "object": "model", "created": 0, "owned_by": "chatbot"} in data["data"]


async def test_unknown_model_is_404(client: httpx.AsyncClient, worker: str) -> None:
    response = await client.post("/v1/chat/completions", json=body(model="gpt-17"))
    error = openai_error(response, 404)
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert MODEL in error["message"]


async def test_no_worker_is_503(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=body(model="nobody-serves-this"))
    assert response.status_code in (503, 404)  # another test's worker may beat meanwhile
    if response.status_code == 503:
        assert openai_error(response, 503)["type"] == "server_error"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": [{"role": "user", "content": "Hi"}]}, "model"),
        (body(messages=[]), "messages"),
        (body(temperature=3), "temperature"),
        (body(top_p=0), "top_p"),
        (body(max_tokens=0), "max_tokens"),
        (body(n=2), "n"),
        (body(seed=2**40), "seed"),
        (body(stop=["a", "b", "c", "d", "e"]), "stop"),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages.0.role"),
    ],
)
async def test_invalid_fields_are_400_naming_the_param(
    client: httpx.AsyncClient, worker: str, payload: dict[str, Any], param: str
) -> None:
    response = await client.post("/v1/chat/completions", json=payload)
    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_bad_bodies_are_openai_errors(client: httpx.AsyncClient, worker: str) -> None:
    json_type = {"Content-Type": "application/json"}
    response = await client.post("/v1/chat/completions", content=b"{nope", headers=json_type)
    assert openai_error(response, 400)["code"] == "bad_request"
    untyped = await client.post("/v1/chat/completions", content=b'{"model": "x"}')
    assert openai_error(untyped, 415)["code"] == "unsupported_media_type"
    last_is_assistant = body(
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    )
    response = await client.post("/v1/chat/completions", json=last_is_assistant)
    assert openai_error(response, 400)["param"] == "messages"
    only_system = body(messages=[{"role": "system", "content": "Be brief."}])
    response = await client.post("/v1/chat/completions", json=only_system)
    assert openai_error(response, 400)["param"] == "messages"
    for content in ("nul \u0000 here", "lone \ud800 surrogate", "   "):
        for role in ("system", "user"):
            if role == "system" and not content.strip():
                continue  # an empty system message is allowed (it empties the prompt)
            messages = [{"role": role, "content": content}, {"role": "user", "content": "Hi"}]
            response = await client.post(
                "/v1/chat/completions",
                content=json.dumps(body(messages=messages)).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert openai_error(response, 400)["param"] == "messages.0.content", content
    huge = body(messages=[{"role": "user", "content": "x" * 40_000}])
    response = await client.post("/v1/chat/completions", json=huge)
    assert openai_error(response, 413)["param"] == "messages.0.content"


async def test_request_becomes_a_chat_and_a_queued_generation(settings: Settings) -> None:
    """Messages are saved as a chat, system messages and sampling fields as the
    generation's params (max_tokens capped at MAX_NEW_TOKENS), and the job is queued."""
    # The worker is gone before it takes the job: once no worker has lived for
    # QUEUE_TIMEOUT_S, the sweep ends the answer and the stream ends with an error chunk.
    settings = settings.model_copy(update={"max_new_tokens": 64, "queue_timeout_s": 1.0})
    payload = body(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]},
        ],
        temperature=0,
        top_p=0.5,
        max_tokens=4096,
        stop="\n\n",
        seed=7,
        stream=True,
    )
    async with app_client(settings) as client:
        fading_worker(seconds=2.0)
        response = await client.post("/v1/chat/completions", json=payload)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e for e in response.text.split("\n\n") if e.startswith("id: ")]
        first_id, first_data = events[0].split("\n")
        generation_id = first_id.removeprefix("id: ").split(":", 1)[0]
        chunk = json.loads(first_data.removeprefix("data: "))
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == f"chatcmpl-{generation_id}"
        assert chunk["model"] == MODEL
        assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        failure = json.loads(events[-1].split("\n")[1].removeprefix("data: "))
        assert failure["error"]["code"] == "no_worker"
        assert failure["error"]["type"] == "server_error"
        assert "data: [DONE]" not in response.text

        # Not streamed: the same failure is the response's status and error object.
        response = await client.post("/v1/chat/completions", json=body())
        assert openai_error(response, 503)["code"] == "no_worker"

    engine = make_engine(settings.sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        generation = session.get(Generation, uuid.UUID(generation_id))
        assert generation is not None
        chat = session.get(Chat, generation.chat_id)
        assert chat is not None
        assert chat.name == "openai: And of Italy?"
        messages = session.scalars(
            select(Conversation)
            .where(Conversation.chat_id == chat.id)
            .order_by(Conversation.created_at, Conversation.id)
        ).all()
        assert [(m.role, m.message) for m in messages] == [
            ("Human", "What is the capital of France?"),
            ("Assistant", "Paris."),
            ("Human", "And of Italy?"),
        ]
        assert generation.question_id == messages[-1].id
        assert generation.params == {
            "max_new_tokens": 64,
            "temperature": 0.0,
            "top_p": 0.5,
            "seed": 7,
            "stop": ["\n\n"],
            "system": "You are terse.\n\nAnswer in English.",
        }
    engine.dispose()
    client_redis = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    bus = await read_events(client_redis, generation_id)
    await client_redis.aclose()
    assert [e.type for e in bus] == ["queue", "error"]


async def test_unknown_last_event_id_is_404(client: httpx.AsyncClient, worker: str) -> None:
    headers = {"Last-Event-ID": f"{uuid.uuid4()}:1-0"}
    response = await client.post("/v1/chat/completions", json=body(stream=True), headers=headers)
    assert openai_error(response, 404)["code"] == "not_found"


async def test_api_keys_give_openai_401_on_v1_only(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, api_keys="k1")
    async with app_client(settings) as client:
        error = openai_error(await client.get("/v1/models"), 401)
        assert error["code"] == "invalid_api_key"
        assert error["type"] == "authentication_error"
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer k1"})
        assert ok.status_code == 200
        # The rest of the API keeps its own error shape.
        other = await client.get("/chats/")
        assert other.status_code == 401
        assert set(other.json()["error"]) == {"code", "message"}


def test_generation_params_reach_sampling_and_system_prompt() -> None:
    request = CompletionRequest.model_validate(
        body(temperature=0.2, max_completion_tokens=10, stop=["x"], seed=3)
    )
    params = request.params(max_new_tokens=512)
    stored = params.to_column()
    assert sampling_overrides(stored) == {
        "max_new_tokens": 10,
        "temperature": 0.2,
        "seed": 3,
        "stop": ("x",),
    }
    assert system_prompt(stored, default="server prompt") == "server prompt"
    assert system_prompt({"system": ""}, default="server prompt") == ""
    assert sampling_overrides(None) == {}
    assert GenerationParams().to_column() is None


async def test_a_full_queue_is_429_and_leaves_no_chat(settings: Settings, worker: str) -> None:
    settings = settings.model_copy(update={"max_queued": 1})
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:  # one answer already waits for a worker
        chat = Chat(name="waiting")
        session.add(chat)
        session.flush()
        session.add(Generation(chat_id=chat.id, status="queued", kind="chat"))
    async with app_client(settings) as client:
        response = await client.post("/v1/chat/completions", json=body(stream=True))
        error = openai_error(response, 429)
        assert error["code"] == "queue_full"
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["retry-after"]) >= 1
    with sessions() as session:
        names = session.scalars(select(Chat.name)).all()
    engine.dispose()
    assert names == ["waiting"]
