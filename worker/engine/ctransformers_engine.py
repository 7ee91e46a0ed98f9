"""The ctransformers engine: GGUF models on ctransformers' bundled llama.cpp (CPU or CUDA).

Prompts are tokenized here (see ``tokenizer``) and fed to ``llm.generate`` as token ids;
generated ids are decoded incrementally. ``llm.generate`` evaluates one token per step of
its generator, so closing our generator stops the computation at once.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from shared import modelstore
from shared.modelstore import ModelFiles
from shared.settings import Settings
from worker.engine.base import (
    OFFLOADED_THREADS,
    ChatMessage,
    EngineError,
    GenerationStats,
    GenerationStream,
    PromptTooLongError,
    SamplingParams,
    StopStringFilter,
)
from worker.engine.ctransformers_gguf import ensure_prepared
from worker.engine.template import ChatTemplate
from worker.engine.tokenizer import TextTokenizer, build_tokenizer
from worker.hostload import available_cpus

logger = logging.getLogger(__name__)

# Texts of tokens that end a turn in common chat formats; whichever the vocabulary has stop
# generation, besides the GGUF's EOS (a model can emit <|endoftext|> where <|im_end|> was due).
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
)
# ctransformers evaluates a prompt in batches of this many tokens; its default of 8 is
# measurably slower on long prompts (1,000 tokens: 9.3 s at 8, 8.2 s at 128 on 2 cores).
PROMPT_BATCH_SIZE = 128


def every_layer_offloaded(metadata: dict[str, Any], architecture: str, gpu_layers: int) -> bool:
    """Whether ``gpu_layers`` covers every layer of the model ``metadata`` describes."""
    layers = metadata.get(f"{architecture}.block_count")
    return isinstance(layers, int) and 0 < layers <= gpu_layers


class CTransformersEngine:
    """A GGUF model loaded with ctransformers. Create it with ``load``."""

    def __init__(
        self,
        *,
        llm: Any,
        tokenizer: TextTokenizer,
        template: ChatTemplate,
        model_name: str,
        context_length: int,
        stop_token_ids: frozenset[int],
        bos_token_id: int | None,
        threads: int,
        offloaded: bool = False,
    ) -> None:
        self._llm = llm
        self._tokenizer = tokenizer
        self._template = template
        self._model_name = model_name
        self._context_length = context_length
        self._stop_token_ids = stop_token_ids
        self._bos_token_id = bos_token_id
        self._threads = threads
        self._offloaded = offloaded
        self._active: weakref.ref[GenerationStream] | None = None
        self.load_seconds = 0.0

    @classmethod
    def load(cls, settings: Settings, files: ModelFiles | None = None) -> CTransformersEngine:
        """Load ``files`` (default: the pulled ``settings.model``) with ctransformers.

        The file ctransformers reads is prepared from the original on the first load
        (``ctransformers_gguf``). Raises ``shared.modelstore.ModelNotFoundError`` if the
        model was never pulled and ``EngineError`` if ctransformers cannot load it.
        """
        from ctransformers import AutoModelForCausalLM

        started = time.perf_counter()
        files = files or modelstore.resolve(settings)
        metadata = modelstore.read_metadata(files)
        engine_path = ensure_prepared(files)
        architecture = str(metadata.get("general.architecture", "llama"))
        trained = metadata.get(f"{architecture}.context_length")
        # Past the trained length a model's output degrades: never ask for more than that.
        context_length = settings.context_length
        if isinstance(trained, int) and trained > 0:
            context_length = min(context_length, trained)
        offloaded = every_layer_offloaded(metadata, architecture, settings.gpu_layers)
        threads = settings.threads or (OFFLOADED_THREADS if offloaded else available_cpus())
        try:
            llm = AutoModelForCausalLM.from_pretrained(
                str(engine_path),
                model_type=architecture,
                context_length=context_length,
                gpu_layers=settings.gpu_layers,
                threads=threads,
                batch_size=PROMPT_BATCH_SIZE,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            hint = ""
            if settings.gpu_layers > 0:
                hint = " (GPU_LAYERS > 0 needs the CUDA 12 runtime: ctransformers[cuda])"
            raise EngineError(
                f"ctransformers could not load {engine_path} "
                f"(architecture {architecture!r}): {exc}{hint}"
            ) from exc
        tokenizer = build_tokenizer(metadata, llm=llm)
        engine = cls(
            llm=llm,
            tokenizer=tokenizer,
            template=ChatTemplate.from_metadata(metadata),
            model_name=files.name,
            context_length=context_length,
            stop_token_ids=_stop_token_ids(metadata, tokenizer, llm),
            bos_token_id=_bos_to_add(metadata),
            threads=threads,
            offloaded=offloaded,
        )
        engine.load_seconds = time.perf_counter() - started
        logger.info(
            "loaded %s in %.2f s (context %d, threads %d, gpu layers %d)",
            files.name,
            engine.load_seconds,
            context_length,
            threads,
            settings.gpu_layers,
        )
        return engine

    @property
    def model_name(self) -> str:
        """The model's name in the store."""
        return self._model_name

    @property
    def context_length(self) -> int:
        """Prompt plus answer, in tokens."""
        return self._context_length

    @property
    def offloaded(self) -> bool:
        """Every layer runs on a GPU (``GPU_LAYERS`` at least the model's layers)."""
        return self._offloaded

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token text becomes the special token."""
        return self._tokenizer.encode(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of ``tokens``, special tokens included."""
        return self._tokenizer.decode(tokens)

    def render_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Prompt tokens for ``messages`` with the model's chat template."""
        tokens = self._tokenizer.encode(self._template.render(messages))
        if self._bos_token_id is not None and tokens[:1] != [self._bos_token_id]:
            tokens.insert(0, self._bos_token_id)
        return tokens

    def stream(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        *,
        threads: Callable[[], int] | None = None,
    ) -> GenerationStream:
        """Generate text pieces for ``prompt_tokens``; see ``Engine.stream``.

        ``threads``, when given, is asked before each evaluation how many CPU threads to use
        (the host's threads budget, ``worker.threads``); else the count chosen at load.
        """
        prompt = list(prompt_tokens)
        if not prompt:
            raise EngineError("the prompt is empty")
        room = self._context_length - len(prompt)
        if room <= 0:
            raise PromptTooLongError(
                f"the prompt has {len(prompt)} tokens; the context window holds "
                f"{self._context_length}"
            )
        # One llama.cpp context per engine: a new generation ends the previous one.
        previous = self._active() if self._active is not None else None
        if previous is not None:
            previous.close()
        stats = GenerationStats(prompt_tokens=len(prompt))
        limit = min(params.max_new_tokens, room)
        pieces = self._generate(prompt, params, limit, stats, threads or self._load_threads)
        stream = GenerationStream(pieces, stats)
        self._active = weakref.ref(stream)
        return stream

    def _load_threads(self) -> int:
        return self._threads

    def _generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        limit: int,
        stats: GenerationStats,
        threads: Callable[[], int],
    ) -> Generator[str, None, None]:
        if params.greedy:
            # ctransformers divides logits by the temperature: 0 would give NaNs.
            top_k, top_p, temperature = 1, 1.0, 1.0
        else:
            top_k, top_p, temperature = params.top_k, params.top_p, params.temperature
        decoder = self._tokenizer.incremental_decoder()
        stops = StopStringFilter(params.stop)
        tokens = self._tokens(
            prompt,
            threads,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            repetition_penalty=params.repetition_penalty,
            seed=params.seed,
        )
        hit_stop_string = False
        try:
            for token in tokens:
                if token in self._stop_token_ids:
                    stats.finish_reason = "stop"
                    break
                stats.completion_tokens += 1
                stats.token_ids.append(token)
                text, hit_stop_string = stops.push(decoder.step(token))
                if text:
                    yield text
                if hit_stop_string:
                    stats.finish_reason = "stop"
                    break
                if stats.completion_tokens >= limit:
                    stats.finish_reason = "length"
                    break
            else:
                stats.finish_reason = "stop"  # ctransformers saw its own EOS token
            if not hit_stop_string and (tail := stops.flush()):
                yield tail
        except GeneratorExit:
            if stats.finish_reason is None:
                stats.finish_reason = "cancelled"
            raise
        finally:
            tokens.close()

    def _tokens(
        self, prompt: list[int], threads: Callable[[], int], **sampling: Any
    ) -> Generator[int, None, None]:
        """``llm.generate`` with the threads asked per evaluation instead of per generation."""
        llm = self._llm
        # reset=True keeps the KV cache for the prompt prefix shared with the last generation.
        todo = llm.prepare_inputs_for_generation(prompt, reset=True)
        # A batch per call, as ``eval`` would cut it: a long prompt (seconds on a CPU) takes
        # the host's share anew for each batch, so a worker that starts meanwhile does not
        # find this one's threads on its cores.
        for start in range(0, len(todo), PROMPT_BATCH_SIZE):
            batch = todo[start : start + PROMPT_BATCH_SIZE]
            llm.eval(batch, batch_size=PROMPT_BATCH_SIZE, threads=threads())
        while True:
            token = llm.sample(**sampling)
            if llm.is_eos_token(token):
                return
            # Out before it is evaluated (ctransformers evaluates first): a token reaches
            # the client one evaluation sooner, and the answer's last one, where the caller
            # stops, is never evaluated.
            yield token
            llm.eval([token], batch_size=PROMPT_BATCH_SIZE, threads=threads())


def _stop_token_ids(
    metadata: Mapping[str, Any], tokenizer: TextTokenizer, llm: Any
) -> frozenset[int]:
    ids = {int(llm.eos_token_id)}
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        if isinstance(metadata.get(key), int):
            ids.add(metadata[key])
    special = tokenizer.special_tokens
    ids.update(special[text] for text in END_OF_TURN_TOKENS if text in special)
    return frozenset(ids)


def _bos_to_add(metadata: Mapping[str, Any]) -> int | None:
    """The BOS id if the model wants one in front of every prompt (SentencePiece ones do)."""
    bos = metadata.get("tokenizer.ggml.bos_token_id")
    is_sentencepiece = metadata.get("tokenizer.ggml.model") == "llama"
    wanted = metadata.get("tokenizer.ggml.add_bos_token", is_sentencepiece)
    return bos if isinstance(bos, int) and wanted else None
