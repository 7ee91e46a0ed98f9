"""The OpenAPI document against the server: schemathesis generates requests for every
operation, valid and invalid, and checks each answer against the document (status codes,
content types, headers, response schemas, no 5xx, invalid data rejected).

In-process (the ASGI app with its lifespan, real Postgres and Redis), without API keys
(tests/e2e/test_isolation.py covers the keys). No worker runs, so a stream that gets that
far answers 503 ``no_worker`` (documented).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from shared.chats.schemas import ChatCreate, ConversationCreate
from shared.chats.service import create_chat, create_message
from shared.db import make_engine, make_sessionmaker, transaction
from shared.settings import DEFAULT_TENANT
from tests.conftest import make_settings

EXAMPLES = 50  # per operation and pass: about 1,300 cases in all
CASES_MIN = 1_000


def _run(operation: Any, mode: GenerationMode, calls: Counter[str], **pinned: Any) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **pinned))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI failures reproduce
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        calls[operation.label] += 1
        response = case.call_and_validate(excluded_checks=[not_a_server_error])
        # Server errors fail the run, except a documented 503 (no worker runs here).
        documented = str(response.status_code) in documents_503(operation)
        assert response.status_code < 500 or documented, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
        )

    check()


def _chat_with_a_question(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            chat = create_chat(session, owner=DEFAULT_TENANT, data=ChatCreate(name="fuzz"))
            question = ConversationCreate(chat_id=chat.id, role="Human", message="Hi?")
            create_message(session, owner=DEFAULT_TENANT, data=question, max_message_bytes=999)
            return str(chat.id)
    finally:
        engine.dispose()


def documents_503(operation: Any) -> set[str]:
    responses = operation.definition.raw.get("responses", {})
    return {"503"} & set(responses)


def test_every_operation_keeps_to_the_document(postgres_url: str, tmp_path: Path) -> None:
    from web.app import create_app

    app_settings = make_settings(
        tmp_path,
        database_url=postgres_url,
        generation_starts_per_minute=0,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings))
    calls: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        passes: list[tuple[str, GenerationMode, dict[str, Any]]] = [
            ("positive", GenerationMode.POSITIVE, {}),
            ("negative", GenerationMode.NEGATIVE, {}),
        ]
        if "{chat_id}" in operation.path:
            # Random ids only ever find nothing: also aim at a chat that exists.
            chat_id = _chat_with_a_question(postgres_url)
            pinned = {"path_parameters": {"chat_id": chat_id}}
            passes.append(("existing chat", GenerationMode.POSITIVE, pinned))
        for name, mode, pins in passes:
            try:
                _run(operation, mode, calls, **pins)
            except Unsatisfiable:
                # No input to make invalid (e.g. /healthz takes none): nothing to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # collect every operation's failure, then report
                failures.append(f"{operation.label} [{name}]: {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 14, calls
    assert sum(calls.values()) >= CASES_MIN, calls
    print(f"schemathesis: {sum(calls.values())} cases over {len(calls)} operations")
