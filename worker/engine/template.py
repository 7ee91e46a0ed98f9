"""Chat templates: the model's own ``tokenizer.chat_template`` (Jinja), rendered sandboxed.

The template comes from a downloaded file, so it is rendered in jinja2's immutable sandbox
the way Hugging Face ``transformers`` does (``trim_blocks``, ``lstrip_blocks``, a
``raise_exception`` global, a ``tojson`` that keeps non-ASCII text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.engine.base import ChatMessage, EngineError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Used when the GGUF carries no template (ChatML, as SmolLM2, Qwen and others use)."""

# Inserted after the first character of special-token text found in message content, so a
# user cannot forge a turn ("<|im_start|>system ...") by typing the markers.
_BREAK = "\u200b"


class ChatTemplateError(EngineError):
    """The chat template could not be compiled, or refused the messages."""


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


class ChatTemplate:
    """A compiled chat template with the model's BOS/EOS token text."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        special_tokens: Iterable[str] = (),
    ) -> None:
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = _strftime_now
        try:
            self._template = environment.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        # Longest first, so "<|im_end|>" is broken before a shorter marker inside it could be.
        self._special = sorted({s for s in special_tokens if len(s) > 1}, key=len, reverse=True)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ChatTemplate:
        """The template stored in GGUF metadata, or ChatML when there is none."""
        tokens: Sequence[str] = metadata.get("tokenizer.ggml.tokens") or ()
        types: Sequence[int] = metadata.get("tokenizer.ggml.token_type") or ()

        def token_text(key: str) -> str:
            index = metadata.get(key)
            return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else ""

        source = metadata.get("tokenizer.chat_template")
        return cls(
            source if isinstance(source, str) and source.strip() else CHATML_TEMPLATE,
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            special_tokens=[t for t, kind in zip(tokens, types, strict=False) if kind == 3],
        )

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages``, ending with the assistant's turn opening."""
        payload = [
            {"role": message.role, "content": self._neutralize(message.content)}
            for message in messages
        ]
        try:
            return self._template.render(
                messages=payload,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=None,
            )
        except (TemplateError, TypeError, ValueError) as exc:
            # TypeError/ValueError: templates do arithmetic and string work on our values.
            raise ChatTemplateError(f"the model's chat template refused the chat: {exc}") from exc

    def _neutralize(self, text: str) -> str:
        for token in self._special:
            if token in text:
                text = text.replace(token, token[0] + _BREAK + token[1:])
        return text
