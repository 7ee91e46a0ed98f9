"""The inference engine: load a model once per worker process, build prompts, stream text.

``load_engine(settings)`` returns an ``Engine``; ``fit_messages`` builds a prompt that fits
its context window. Adapters (``ctransformers_engine``) are loaded on demand.
"""

from worker.engine.base import (
    ENGINES,
    ChatMessage,
    Engine,
    EngineError,
    FinishReason,
    GenerationStream,
    PromptTooLongError,
    Role,
    SamplingParams,
    load_engine,
)
from worker.engine.prompt import FittedPrompt, fit_messages

__all__ = [
    "ENGINES",
    "ChatMessage",
    "Engine",
    "EngineError",
    "FinishReason",
    "FittedPrompt",
    "GenerationStream",
    "PromptTooLongError",
    "Role",
    "SamplingParams",
    "fit_messages",
    "load_engine",
]
