"""The GGUF file as ctransformers' 2023 llama.cpp can load it, derived once per model.

That loader cannot read modern GGUF files as published (see DESIGN.md, "Engine"). On its
first load of a model, the ctransformers adapter writes a rewritten copy into the model's
folder of the store, named after the rewrite's version and the original's checksum, so a
newer rewrite or another original never reuses a stale copy. The copy is written to a
temporary file and renamed into place under the model folder's lock: two worker processes
that load at once rewrite it once, and neither ever reads a partial file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from shared.modelstore import ModelFiles, ModelStoreError, atomic_path, locked, open_gguf
from worker.engine.base import EngineError

log = logging.getLogger(__name__)

# Bump whenever the rewrite changes, so copies written by older code are written again.
PREPARE_VERSION = 1
PREFIX = "model.ctransformers"
# GPT-2's byte-to-unicode table maps the byte 0x0A to U+010A "Ċ".
_BYTE_LEVEL_NEWLINE = "\u010a".encode()


def prepared_path(files: ModelFiles) -> Path:
    """Where the ctransformers copy of ``files`` lives (whether or not it exists yet)."""
    return files.directory / f"{PREFIX}-v{PREPARE_VERSION}-{files.sha256[:16]}.gguf"


def ensure_prepared(files: ModelFiles) -> Path:
    """The ctransformers copy of ``files``, written first if it is not there yet.

    Raises ``EngineError`` when the copy cannot be written (a read-only store, a full
    disk) or the original is not a GGUF file this rewrite understands.
    """
    dest = prepared_path(files)
    if dest.is_file():  # renamed into place only once complete: its presence means done
        return dest
    try:
        with locked(files.directory):
            if not dest.is_file():  # another process may have written it while we waited
                started = time.perf_counter()
                with atomic_path(dest) as tmp:
                    write_ctransformers_copy(open_gguf(files.original_path), tmp)
                log.info(
                    "prepared %s for ctransformers in %.1f s: %s",
                    files.name,
                    time.perf_counter() - started,
                    dest.name,
                )
                _remove_stale_copies(files.directory, keep=dest)
    except ModelStoreError as exc:
        raise EngineError(f"cannot prepare {files.original_path} for ctransformers: {exc}") from exc
    except OSError as exc:
        raise EngineError(
            f"cannot write the ctransformers copy of {files.name} in {files.directory}: {exc}"
        ) from exc
    return dest


def _remove_stale_copies(directory: Path, *, keep: Path) -> None:
    """Delete copies written by other rewrite versions or for an older original."""
    for stale in directory.glob(f"{PREFIX}*.gguf"):
        if stale != keep:
            stale.unlink(missing_ok=True)


def write_ctransformers_copy(reader: Any, dest: Path) -> None:
    """Rewrite a GGUF so that the llama.cpp bundled with ctransformers 0.2.27 (2023) loads it.

    That loader (1) requires ``tokenizer.ggml.scores`` even for BPE vocabularies, (2) has no
    tied embeddings, so it needs ``output.weight``, and (3) tokenizes "\\n" at start-up
    without GPT-2's byte-to-unicode mapping: with no token whose text is literally "\\n" it
    aborts ("byte not found in vocab"). The byte-level newline token "Ċ" is renamed to "\\n"
    in place (the vocabulary size must stay equal to the embedding rows). Prompts are
    tokenized from the original file's vocabulary, so the renamed entry is never used there.
    """
    from gguf import GGUFValueType, GGUFWriter

    fields = reader.fields
    arch = fields["general.architecture"].contents()
    writer = GGUFWriter(dest, arch=arch, endianess=reader.endianess)
    if "general.alignment" in fields:
        writer.data_alignment = fields["general.alignment"].contents()
    tokens: list[bytes] = []
    if "tokenizer.ggml.tokens" in fields:
        field = fields["tokenizer.ggml.tokens"]
        tokens = [bytes(field.parts[index]) for index in field.data]
    is_byte_level = "tokenizer.ggml.model" in fields and (
        fields["tokenizer.ggml.model"].contents() == "gpt2"
    )
    if is_byte_level and b"\n" not in tokens:
        if _BYTE_LEVEL_NEWLINE not in tokens:
            raise ModelStoreError("the vocabulary has no newline token; cannot prepare it")
        tokens[tokens.index(_BYTE_LEVEL_NEWLINE)] = b"\n"

    for name, field in fields.items():
        # GGUF.* are the reader's view of the header; the writer adds the architecture itself.
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        if name == "tokenizer.ggml.tokens":
            value: Any = tokens
        elif sub_type == GGUFValueType.STRING:
            value = [bytes(field.parts[index]) for index in field.data]  # exact bytes
        elif value_type == GGUFValueType.STRING:
            value = bytes(field.parts[-1])
        else:
            value = field.contents()
        writer.add_key_value(name, value, value_type, sub_type=sub_type)
    if tokens and "tokenizer.ggml.scores" not in fields:
        writer.add_key_value(
            "tokenizer.ggml.scores",
            [0.0] * len(tokens),
            GGUFValueType.ARRAY,
            sub_type=GGUFValueType.FLOAT32,
        )

    tensors = list(reader.tensors)
    names = {tensor.name for tensor in tensors}
    if "output.weight" not in names and "token_embd.weight" in names:
        embeddings = next(t for t in tensors if t.name == "token_embd.weight")
        tensors.append(embeddings._replace(name="output.weight"))
    for tensor in tensors:
        data = tensor.data
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in tensors:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        assert writer.fout is not None
        for out in writer.fout:
            out.flush()
            os.fsync(out.fileno())
    finally:
        writer.close()
