"""Tokenizers built from a GGUF file's own vocabulary.

The BPE tokenizer in ctransformers' 2023 llama.cpp does not do byte-level BPE (GPT-2 style,
as in SmolLM2, Llama 3, Qwen...): it mangles spaces, newlines and non-ASCII text. For such
vocabularies (``tokenizer.ggml.model == "gpt2"``) we build a ``tokenizers.Tokenizer`` from the
vocabulary and merges in the GGUF metadata and decode incrementally with ``DecodeStream``.
Other vocabularies (SentencePiece ``llama``) use the engine's own tokenizer.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from tokenizers.decoders import DecodeStream

from worker.engine.base import EngineError

logger = logging.getLogger(__name__)

# GGUF token types (gguf.TokenType): 3 is a control token (<|im_end|>), 4 user-defined.
_CONTROL = 3
_USER_DEFINED = 4

_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PATTERN = _LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")

# Pre-tokenization by ``tokenizer.ggml.pre``, after llama.cpp's table (llama-vocab.cpp) and
# the models' tokenizer.json files: (split digits one by one, split regex or None for
# GPT-2's own, ignore_merges).
_PRE_TOKENIZERS: dict[str, tuple[bool, str | None, bool]] = {
    **dict.fromkeys(("default", "gpt-2", "gpt2", "mpt", "olmo", "jais"), (False, None, False)),
    **dict.fromkeys(
        ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"),
        (True, None, False),
    ),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3"), (False, _LLAMA3_PATTERN, True)),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2"), (False, _QWEN2_PATTERN, False)),
}

# Decoded and compared after building, so a wrong pre-tokenizer or vocabulary fails at load.
_ROUND_TRIP_SAMPLE = "Hello, world!\n\n  Café naïve 12345 日本語 🎉👍🏽\tdone"


class IncrementalDecoder(Protocol):
    """Turns generated token ids into text, one at a time, without splitting characters."""

    def step(self, token_id: int) -> str:
        """Text completed by ``token_id``; empty while a character is still incomplete."""
        ...


class TextTokenizer(Protocol):
    """Text to token ids and back, for one model."""

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Control tokens by text (``<|im_end|>``...): they end turns or mark roles."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; the text of a special token becomes that token."""
        ...

    def decode(self, tokens: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``tokens``."""
        ...

    def incremental_decoder(self) -> IncrementalDecoder:
        """A fresh decoder for one generation; it drops special tokens."""
        ...


def build_tokenizer(metadata: Mapping[str, Any], *, llm: Any = None) -> TextTokenizer:
    """The tokenizer for a model: byte-level BPE from the metadata, else ``llm``'s own."""
    if metadata.get("tokenizer.ggml.model") == "gpt2":
        return ByteLevelBPETokenizer(metadata)
    if llm is None:
        raise EngineError(
            f"no tokenizer for vocabulary type {metadata.get('tokenizer.ggml.model')!r}"
        )
    return EngineTokenizer(llm, metadata)


class ByteLevelBPETokenizer:
    """Byte-level BPE (``tokenizer.ggml.model == "gpt2"``) with the ``tokenizers`` library."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        tokens: list[str] = list(metadata["tokenizer.ggml.tokens"])
        types: list[int] = list(metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens))
        merges = [_split_merge(merge) for merge in metadata["tokenizer.ggml.merges"]]
        pre = str(metadata.get("tokenizer.ggml.pre", "default"))
        if pre not in _PRE_TOKENIZERS:
            logger.warning("unknown pre-tokenizer %r: using GPT-2's; text may split oddly", pre)
        digits, pattern, ignore_merges = _PRE_TOKENIZERS.get(pre, (False, None, False))

        tokenizer = Tokenizer(
            models.BPE(
                vocab={token: index for index, token in enumerate(tokens)},
                merges=merges,
                ignore_merges=ignore_merges,
            )
        )
        steps: list[pre_tokenizers.PreTokenizer] = []
        if digits:
            steps.append(pre_tokenizers.Digits(individual_digits=True))
        if pattern is not None:
            steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pattern is None))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
        tokenizer.decoder = decoders.ByteLevel()
        # Control and user-defined tokens are matched whole in text, before BPE; only control
        # tokens are "special" (skipped when decoding an answer).
        tokenizer.add_tokens(
            [
                AddedToken(token, special=kind == _CONTROL, normalized=False)
                for token, kind in zip(tokens, types, strict=False)
                if kind in (_CONTROL, _USER_DEFINED)
            ]
        )
        self._tokenizer = tokenizer
        self._special = {
            token: index
            for index, (token, kind) in enumerate(zip(tokens, types, strict=False))
            if kind == _CONTROL
        }
        if self.decode(self.encode(_ROUND_TRIP_SAMPLE)) != _ROUND_TRIP_SAMPLE:
            raise EngineError(f"the {pre!r} tokenizer built from the GGUF does not round-trip")

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Control tokens by text."""
        return self._special

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token text becomes the special token."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, tokens: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``tokens``."""
        return str(self._tokenizer.decode(list(tokens), skip_special_tokens=skip_special))

    def incremental_decoder(self) -> IncrementalDecoder:
        """A ``DecodeStream`` decoder that never splits a UTF-8 character."""
        return _StreamDecoder(self._tokenizer)


def _split_merge(merge: str) -> tuple[str, str]:
    left, _, right = merge.partition(" ")
    return left, right


class _StreamDecoder:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True)

    def step(self, token_id: int) -> str:
        return self._stream.step(self._tokenizer, token_id) or ""


class EngineTokenizer:
    """The ctransformers model's own tokenizer, for vocabularies it handles (SentencePiece).

    Its 2023 tokenizer does not look for special-token text inside a string, so prompts for
    such models carry role markers as plain text.
    """

    def __init__(self, llm: Any, metadata: Mapping[str, Any]) -> None:
        self._llm = llm
        tokens: list[str] = list(metadata.get("tokenizer.ggml.tokens") or [])
        types: list[int] = list(metadata.get("tokenizer.ggml.token_type") or [])
        self._special = {
            token: index
            for index, (token, kind) in enumerate(zip(tokens, types, strict=False))
            if kind == _CONTROL
        }
        self._special_ids = frozenset(self._special.values())

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Control tokens by text."""
        return self._special

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS: the prompt builder adds it)."""
        return list(self._llm.tokenize(text, add_bos_token=False))

    def decode(self, tokens: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``tokens``; broken UTF-8 becomes U+FFFD."""
        ids = [t for t in tokens if not (skip_special and t in self._special_ids)]
        return bytes(self._llm.detokenize(ids, decode=False)).decode(errors="replace")

    def incremental_decoder(self) -> IncrementalDecoder:
        """A decoder that holds bytes back until they complete a character."""
        return _BytesDecoder(self._llm, self._special_ids)


class _BytesDecoder:
    def __init__(self, llm: Any, special_ids: frozenset[int]) -> None:
        self._llm = llm
        self._special_ids = special_ids
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def step(self, token_id: int) -> str:
        if token_id in self._special_ids:
            return ""
        return self._utf8.decode(bytes(self._llm.detokenize([token_id], decode=False)))
