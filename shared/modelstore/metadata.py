"""GGUF metadata: the key/values of a model file as plain Python values, and their JSON copy.

Workers build the tokenizer and the chat template from these; the JSON copy spares them
parsing 100 MB of GGUF at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.modelstore.files import METADATA_NAME, ModelFiles, ModelStoreError, atomic_path


def read_metadata(files: ModelFiles) -> dict[str, Any]:
    """The original file's GGUF key/values, from the JSON copy (fast) or the file itself."""
    try:
        data = json.loads(files.metadata_path.read_text(encoding="utf-8"))
        fields = data["fields"]
        if isinstance(fields, dict):
            return fields
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a missing or damaged copy only costs time: read the GGUF itself
    return read_gguf_metadata(files.original_path)


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Every key/value of a GGUF file (tensor data left out), as plain Python values."""
    return reader_metadata(open_gguf(path))


def write_metadata_copy(original: Path, model_dir: Path) -> None:
    """Write the JSON copy of ``original``'s key/values into ``model_dir``."""
    with atomic_path(model_dir / METADATA_NAME) as tmp:
        payload = {"format": 1, "fields": read_gguf_metadata(original)}
        tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")


def open_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path``. Raises ``ModelStoreError`` for an unreadable file."""
    from gguf import GGUFReader  # imported here: only pulls and first loads need it

    try:
        return GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"{path} is not a readable GGUF file: {exc}") from exc


def reader_metadata(reader: Any) -> dict[str, Any]:
    """The key/values a ``GGUFReader`` holds (its ``GGUF.*`` header view left out)."""
    from gguf import GGUFValueType

    metadata: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            metadata[name] = field.contents()
        except UnicodeDecodeError:
            # Some vocabularies hold byte strings that are not UTF-8 on their own.
            if field.types[-1] != GGUFValueType.STRING:
                raise
            parts = [bytes(field.parts[i]).decode(errors="replace") for i in field.data]
            metadata[name] = parts if field.types[0] == GGUFValueType.ARRAY else parts[0]
    return metadata
