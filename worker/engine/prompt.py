"""Fit a chat into the model's context window, leaving room for the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from worker.engine.base import ChatMessage, Engine, PromptTooLongError


class FittedPrompt(NamedTuple):
    """Prompt tokens for a chat, and what had to go to make them fit."""

    tokens: list[int]
    dropped: int
    """Oldest non-system messages left out."""
    truncated: bool
    """Whether the newest message itself was cut (its beginning dropped, its end kept)."""


def fit_messages(
    engine: Engine, messages: Sequence[ChatMessage], *, max_new_tokens: int
) -> FittedPrompt:
    """Render ``messages`` so that prompt plus ``max_new_tokens`` fits the context window.

    Drops the oldest messages first, but never a system message or the newest message. If
    system messages and the newest message alone are too long, the newest message loses the
    beginning of its text (its end, usually the question, stays). Raises
    ``PromptTooLongError`` when even that cannot fit, and ``ValueError`` for no messages.
    """
    if not messages:
        raise ValueError("no messages to fit")
    budget = engine.context_length - max_new_tokens
    if budget <= 0:
        raise PromptTooLongError(
            f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the "
            f"{engine.context_length}-token context window"
        )
    newest = messages[-1]
    systems = [m for m in messages[:-1] if m.role == "system"]
    history = [m for m in messages[:-1] if m.role != "system"]

    def render(first_kept: int, last: ChatMessage = newest) -> list[int]:
        return engine.render_prompt([*systems, *history[first_kept:], last])

    tokens = render(0)
    if len(tokens) <= budget:
        return FittedPrompt(tokens, 0, False)

    # Fewer messages never render longer, so the fewest drops that fit can be bisected.
    low, high = 1, len(history)
    while low < high:
        middle = (low + high) // 2
        if len(render(middle)) <= budget:
            high = middle
        else:
            low = middle + 1
    dropped = low
    # Templates that insist on alternating roles want the history to open with the user.
    if dropped < len(history) and history[dropped].role == "assistant":
        dropped += 1
    tokens = render(dropped)
    if len(tokens) <= budget:
        return FittedPrompt(tokens, dropped, False)

    # Even system + newest is too long: keep the longest end of the newest message that fits.
    text = newest.content

    def render_tail(start: int) -> list[int]:
        return render(len(history), ChatMessage(newest.role, text[start:]))

    if len(render_tail(len(text))) > budget:
        raise PromptTooLongError(
            "the system prompt alone does not leave room for the message and "
            f"{max_new_tokens} new tokens in the {engine.context_length}-token context window"
        )
    low, high = 1, len(text)
    while low < high:
        middle = (low + high) // 2
        if len(render_tail(middle)) <= budget:
            high = middle
        else:
            low = middle + 1
    return FittedPrompt(render_tail(low), len(history), True)
