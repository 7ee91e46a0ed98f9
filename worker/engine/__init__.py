"""The inference engine: load a model once per worker process, build prompts, stream text.

``load_engine(settings)`` returns the ``Engine`` that ``settings.engine`` names, from the
registry ``ENGINES`` (name -> loader); ``fit_messages`` builds a prompt that fits its
context window. A second engine is one more entry here (``register_engine``), an adapter
module that is imported only when it is chosen, never a branch in the callers.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.settings import Settings
from worker.engine.base import (
    OFFLOADED_THREADS,
    ChatMessage,
    Engine,
    EngineError,
    FinishReason,
    GenerationStream,
    PromptTooLongError,
    Role,
    SamplingParams,
)
from worker.engine.prompt import FittedPrompt, fit_messages

EngineLoader = Callable[[Settings], Engine]


def _load_ctransformers(settings: Settings) -> Engine:
    # Imported on demand so that choosing another engine never loads ctransformers' library.
    from worker.engine.ctransformers_engine import CTransformersEngine

    return CTransformersEngine.load(settings)


ENGINES: dict[str, EngineLoader] = {"ctransformers": _load_ctransformers}
"""Engine loaders by the name the ``ENGINE`` setting uses."""


def register_engine(name: str, loader: EngineLoader) -> None:
    """Make ``loader`` the engine that ``ENGINE=name`` selects (a plug-in calls this)."""
    if not name or name != name.strip():
        raise ValueError(f"engine name {name!r} must be a non-empty word")
    ENGINES[name] = loader


def load_engine(settings: Settings) -> Engine:
    """Load the engine that ``settings.engine`` names, with the configured (pulled) model.

    Raises ``EngineError`` for a name no adapter registered (the message lists the
    registered ones), ``shared.modelstore.ModelNotFoundError`` when the model has not
    been pulled.
    """
    try:
        loader = ENGINES[settings.engine]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise EngineError(
            f"unknown engine {settings.engine!r} (ENGINE setting); registered engines: {known}"
        ) from None
    return loader(settings)


__all__ = [
    "ENGINES",
    "OFFLOADED_THREADS",
    "ChatMessage",
    "Engine",
    "EngineError",
    "EngineLoader",
    "FinishReason",
    "FittedPrompt",
    "GenerationStream",
    "PromptTooLongError",
    "Role",
    "SamplingParams",
    "fit_messages",
    "load_engine",
    "register_engine",
]
