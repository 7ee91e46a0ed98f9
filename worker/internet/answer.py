"""The internet generation kind: gather evidence, announce the sources, build the prompt."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from shared.chats.models import Conversation
from shared.errors import ChatbotError
from shared.generations.models import Generation
from shared.settings import Settings
from shared.tokenbus import TokenWriter
from worker.engine import ChatMessage, Engine
from worker.generate import PREPARERS, Prepared
from worker.internet.lead import lead_enabled, lead_text
from worker.internet.pipeline import Evidence, gather_evidence
from worker.internet.prompt import build_messages
from worker.internet.search import SearchError
from worker.runtime import Runtime

log = logging.getLogger(__name__)


class SearchFailed(ChatbotError):
    """The web search failed; sent as the stream's ``error`` event."""

    code = "search_failed"

    def __init__(self, error: SearchError) -> None:
        super().__init__(f"web search failed: {error.reason}")
        self.code = error.code  # type: ignore[misc]


def prepare_internet(
    runtime: Runtime, writer: TokenWriter, generation: Generation, history: list[Conversation]
) -> Prepared:
    settings = runtime.settings
    question = history[-1].message
    started = time.perf_counter()
    try:
        evidence = gather_evidence(question, settings=settings, redis=runtime.redis)
    except SearchError as exc:
        raise SearchFailed(exc) from exc
    log.info(
        "evidence gathered",
        extra={
            "sources": len(evidence.sources),
            "degraded": evidence.degraded,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    sources = [asdict(source) for source in evidence.sources]
    writer.append(
        "sources", {"sources": sources, "degraded": evidence.degraded, "notes": evidence.notes}
    )
    messages, lead = internet_prompt(question, evidence, engine=runtime.engine, settings=settings)
    return Prepared(messages=messages, sources=sources, notes=evidence.notes, lead=lead)


def internet_prompt(
    question: str, evidence: Evidence, *, engine: Engine, settings: Settings
) -> tuple[list[ChatMessage], str]:
    """The chat for an answer from ``evidence`` (its quotes within
    ``settings.evidence_tokens`` of ``engine``'s tokens) and the lead the answer opens
    with ("" when the lead is off or no sentence answers well enough)."""
    messages = build_messages(
        question,
        evidence,
        system_prompt=settings.system_prompt,
        budget_tokens=settings.evidence_tokens,
        count_tokens=lambda text: len(engine.tokenize(text)),
        order=settings.evidence_order,
    )
    chat = [ChatMessage(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
    lead = lead_text(evidence.best, *evidence.runners) if lead_enabled(settings) else ""
    return chat, lead


PREPARERS["internet"] = prepare_internet
