"""The engine interface: what a worker needs from a model, whatever runs it.

An engine is loaded once per worker process (``worker.engine.load_engine``), turns chat
messages into prompt tokens with the model's own chat template, and streams generated
text. This module names no adapter: adapters register in ``worker.engine.ENGINES``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, get_args

from shared.settings import Settings

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]


class EngineError(Exception):
    """The engine cannot do what was asked; the message says why, for people."""


class PromptTooLongError(EngineError):
    """The prompt (with room for the answer) does not fit the context window."""


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat, in the roles chat templates understand.

    The seed API's ``Human`` and ``Assistant`` map onto ``user`` and ``assistant``.
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in get_args(Role):
            raise ValueError(f"role must be one of {get_args(Role)}, not {self.role!r}")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. ``temperature`` 0 (or ``top_k`` 1) is greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repetition_penalty: float = 1.1
    seed: int = -1
    stop: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SamplingParams:
        """The configured defaults, with ``overrides`` (any field) on top."""
        params = cls(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            repetition_penalty=settings.repetition_penalty,
            seed=settings.seed,
        )
        return replace(params, **overrides)

    @property
    def greedy(self) -> bool:
        """Whether the most likely token is always taken."""
        return self.temperature <= 0.0 or self.top_k == 1


@dataclass
class GenerationStats:
    """What a generation did, filled in while it runs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    token_ids: list[int] = field(default_factory=list)


class GenerationStream(Iterator[str]):
    """The text pieces of one generation, in order; an ``Iterator[str]``.

    Generation runs only while the stream is iterated: to cancel, stop iterating and call
    ``close()`` (or leave a ``with`` block, or drop the stream). ``finish_reason`` is
    ``"stop"`` (end of turn or a stop string), ``"length"`` (``max_new_tokens`` or the
    context window) or ``"cancelled"`` once the stream has ended.
    """

    def __init__(self, pieces: Generator[str, None, None], stats: GenerationStats) -> None:
        self._pieces = pieces
        self.stats = stats

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop the generation now; the model computes nothing more for it."""
        self._pieces.close()
        if self.stats.finish_reason is None:
            self.stats.finish_reason = "cancelled"

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def finish_reason(self) -> FinishReason | None:
        """Why the generation ended; ``None`` while it runs."""
        return self.stats.finish_reason

    @property
    def prompt_tokens(self) -> int:
        """Tokens in the prompt."""
        return self.stats.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        """Tokens generated so far (end-of-turn tokens not counted)."""
        return self.stats.completion_tokens


#: CPU threads when every layer runs on a GPU: more only spin. Measured on an H200 with
#: 16 cores and the default model (bench/gpu_check.py): 168 tok/s with 1 thread, 155 with 4,
#: 102 with 16; alternated three times, 256 tokens: median 180 (this default), 140 with 16.
OFFLOADED_THREADS = 1


class Engine(Protocol):
    """A loaded model: tokenizer, chat template and generator. One per worker process."""

    @property
    def model_name(self) -> str:
        """The model's name in the store (shown to clients)."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens the model attends to: prompt plus answer."""
        ...

    @property
    def offloaded(self) -> bool:
        """Every layer runs on a GPU: the CPU only feeds it, so one thread is enough."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token text such as ``<|im_end|>`` becomes one id."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of ``tokens`` (special tokens included, as text)."""
        ...

    def render_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Prompt tokens for ``messages``: the chat template, ending with the answer's start."""
        ...

    def stream(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        *,
        threads: Callable[[], int] | None = None,
    ) -> GenerationStream:
        """Generate an answer to ``prompt_tokens``, as text pieces.

        ``threads``: asked before each evaluation for the CPU threads to use (the host's
        budget, see ``worker.threads``); ``None``: the engine's own choice.

        Pieces never split a UTF-8 character. Generation stops at the end of the turn, at a
        stop string (not included), or after ``params.max_new_tokens`` tokens. Starting a
        stream cancels the engine's previous one: one generation at a time per engine.
        Raises ``PromptTooLongError`` if the prompt leaves no room in the context window.
        """
        ...


class StopStringFilter:
    """Cuts streamed text at the first stop string, holding back what may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""

    def push(self, piece: str) -> tuple[str, bool]:
        """Add a piece; return the text that is safe to emit and whether a stop string hit."""
        text = self._held + piece
        if not self._stops:
            self._held = ""
            return text, False
        hits = [index for stop in self._stops if (index := text.find(stop)) >= 0]
        if hits:
            self._held = ""
            return text[: min(hits)], True
        # A stop string can span pieces: keep back the longest end of the text that begins one.
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold], False

    def flush(self) -> str:
        """The held-back text, at the end of a generation that hit no stop string."""
        text, self._held = self._held, ""
        return text
