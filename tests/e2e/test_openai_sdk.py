"""The OpenAI-compatible API driven by the official ``openai`` SDK, against a real uvicorn
server and a real Celery worker with the real model (TEMPERATURE=0 in the stack)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

QUESTION = "List three colours of the rainbow, one per line."
KEY = "sdk-test-key"


@pytest.fixture(scope="module")
def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url()}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(sdk: openai.OpenAI) -> str:
    names = [m.id for m in sdk.models.list()]
    assert names, "the running worker's model is listed"
    return names[0]


def request(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": QUESTION},
        ],
        "temperature": 0,
        "seed": 1234,
        "max_tokens": 48,
        **extra,
    }


def test_streamed_text_equals_the_non_streamed_text(sdk: openai.OpenAI, model: str) -> None:
    full = sdk.chat.completions.create(**request(model))
    assert full.object == "chat.completion"
    assert full.model == model
    text = full.choices[0].message.content
    assert text
    assert full.choices[0].message.role == "assistant"
    assert full.choices[0].finish_reason in ("stop", "length")
    assert full.usage is not None
    assert full.usage.completion_tokens > 0
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens

    chunks = list(
        sdk.chat.completions.create(
            **request(model), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == full.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.prompt_tokens == full.usage.prompt_tokens


def test_max_tokens_ends_with_length(sdk: openai.OpenAI, model: str) -> None:
    cut = sdk.chat.completions.create(**request(model, max_tokens=3))
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 3


def test_stop_strings_end_the_answer_before_them(sdk: openai.OpenAI, model: str) -> None:
    text = sdk.chat.completions.create(**request(model)).choices[0].message.content
    assert text
    words = text.split()
    assert len(words) >= 3, text
    stop = words[len(words) // 2]
    stopped = sdk.chat.completions.create(**request(model, stop=[stop]))
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]


def test_unknown_model_raises_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(**request("no-such-model"))
    assert caught.value.code == "model_not_found"


def test_request_is_saved_as_a_chat(sdk: openai.OpenAI, model: str, stack: Stack) -> None:
    question = "Say hello to the chat list."
    answer = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=8
    )
    chats = httpx.get(f"{stack.url()}/chats/").json()
    chat = next(c for c in chats if c["name"] == f"openai: {question}")
    messages = httpx.get(f"{stack.url()}/chats/{chat['id']}/conversations").json()
    assert [m["role"] for m in messages] == ["Human", "Assistant"]
    assert messages[1]["message"] == answer.choices[0].message.content
    assert answer.id == f"chatcmpl-{messages[1]['generation_id']}"


def test_a_dropped_stream_resumes_with_last_event_id(
    sdk: openai.OpenAI, model: str, stack: Stack
) -> None:
    """Beyond OpenAI: every chunk has an SSE id; the same request with Last-Event-ID
    continues after it, so the two parts make the whole answer."""
    whole = sdk.chat.completions.create(**request(model)).choices[0].message.content
    url = f"{stack.url()}/v1/chat/completions"
    body = request(model, stream=True)

    def read(headers: dict[str, str], *, stop_after: int | None) -> tuple[str, str, bool]:
        text, last_id, ended, contents = "", "", False, 0
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            assert response.status_code == 200
            event_id = ""
            for line in response.iter_lines():
                if line.startswith("id: "):
                    event_id = line.removeprefix("id: ")
                elif line == "data: [DONE]":
                    ended = True
                    break
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    assert "error" not in data, data
                    last_id = event_id
                    if data["choices"] and data["choices"][0]["delta"].get("content"):
                        text += data["choices"][0]["delta"]["content"]
                        contents += 1
                        if stop_after is not None and contents >= stop_after:
                            break
        return text, last_id, ended

    head, last_id, ended = read({}, stop_after=2)
    assert not ended and head and last_id
    tail, _, ended = read({"Last-Event-ID": last_id}, stop_after=None)
    assert ended
    assert head + tail == whole


def test_api_keys(stack: Stack, model: str) -> None:
    base = stack.start_web("web-keys", API_KEYS=KEY)
    try:
        wrong = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(**request(model))
        right = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        assert model in [m.id for m in right.models.list()]
        answer = right.chat.completions.create(**request(model, max_tokens=4))
        assert answer.choices[0].message.content
    finally:
        stack.stop("web-keys")
