"""The lead of an internet answer: the sentence that best answers the question, cited,
streamed before the model's own words.

Models well under 7B parameters, given a passage that holds the answer, mostly ignore or
garble it; the default 135M model states the fact in a small share of answers. So for
small models (``EVIDENCE_LEAD=auto``) the answer opens with the best evidence sentence
and its citation, and the model goes on from there. When the evidence is ambiguous (the
learned choice finds a second sentence nearly as likely to answer, or, by the hand-set
scores, another source's best sentence scores nearly as well), the lead quotes it too,
cited, so the answer states the fact when the best guess is a look-alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shared import modelstore
from shared.settings import Settings
from worker.internet.quote import Quote

log = logging.getLogger(__name__)
_PARAMETERS: dict[tuple[str, Path], int | None] = {}

SMALL_MODEL_PARAMETERS = 3_000_000_000
"""``EVIDENCE_LEAD=auto`` turns the lead on for models with fewer parameters than this."""
MIN_LEAD_SCORE = 0.3
"""A best sentence scored lower than this answers the question too weakly to lead with
(0.5 until the ninth round: on the 350 dev questions then, leave-one-file-out, with the
ninth round's lead, the fact in 294 leads at 0.5, 303 at 0.3, 306 with no threshold)."""
RUNNER_UP_RATIO = 0.8
"""The lead also quotes the runner-up when it scores at least this share of the best
one's score (a learned runner-up stands at the best one's score)."""
LEAD_MAX_CHARS = 400
"""Longest lead of several sentences: a runner-up that would make it longer is left out
(and any after it)."""


def lead_text(best: Quote | None, *runners: Quote | None) -> str:
    """``best`` as the answer's opening sentence, its citation before the full stop, then
    each of ``runners`` (the runner-up, then a third) likewise, in turn, while it is
    another sentence, scores close to ``best`` (:data:`RUNNER_UP_RATIO`) and the lead
    stays within :data:`LEAD_MAX_CHARS`; "" when there is no sentence good enough to lead
    with."""
    if best is None or best.score < MIN_LEAD_SCORE:
        return ""
    first = _cited(best)
    if not first:
        return ""
    parts, texts = [first], {best.text}
    for runner in runners:
        if (
            runner is None
            or runner.text in texts
            or runner.score < max(MIN_LEAD_SCORE, RUNNER_UP_RATIO * best.score)
        ):
            break
        cited = _cited(runner)
        if not cited or len(" ".join([*parts, cited])) > LEAD_MAX_CHARS:
            break
        parts.append(cited)
        texts.add(runner.text)
    return " ".join(parts)


def _cited(quote: Quote) -> str:
    sentence = " ".join(quote.text.split()).rstrip(" .")
    return f"{sentence} [{quote.source_index}]." if sentence else ""


def lead_enabled(settings: Settings) -> bool:
    """Whether internet answers open with a lead (``settings.evidence_lead``)."""
    if settings.evidence_lead != "auto":
        return settings.evidence_lead == "on"
    parameters = model_parameters(settings)
    # A model whose size cannot be read is treated as small: the lead states the fact.
    return parameters is None or parameters < SMALL_MODEL_PARAMETERS


def model_parameters(settings: Settings) -> int | None:
    """About how many parameters the pulled ``settings.model`` has, from its GGUF
    metadata (read once per model and process). None when that cannot be read."""
    key = (settings.model, settings.models_dir)
    if key not in _PARAMETERS:
        try:
            metadata = modelstore.read_metadata(modelstore.resolve(settings))
        except Exception:  # any failure only means "size unknown"
            log.warning("could not read the model's metadata to size it", exc_info=True)
            metadata = {}
        _PARAMETERS[key] = estimate_parameters(metadata)
    return _PARAMETERS[key]


def estimate_parameters(metadata: dict[str, Any]) -> int | None:
    """Parameters from GGUF keys: blocks * (4 d^2 + 3 d ff) + vocab * d."""
    architecture = str(metadata.get("general.architecture", "llama"))
    blocks = metadata.get(f"{architecture}.block_count")
    width = metadata.get(f"{architecture}.embedding_length")
    feed_forward = metadata.get(f"{architecture}.feed_forward_length")
    if not isinstance(blocks, int) or not isinstance(width, int):
        return None
    if not isinstance(feed_forward, int):
        feed_forward = 4 * width
    vocab = metadata.get(f"{architecture}.vocab_size")
    if not isinstance(vocab, int):
        tokens = metadata.get("tokenizer.ggml.tokens")
        vocab = len(tokens) if isinstance(tokens, list) else 32_000
    return blocks * (4 * width * width + 3 * width * feed_forward) + vocab * width
