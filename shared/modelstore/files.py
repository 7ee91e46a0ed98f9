"""The files of the model store: what a pulled model is, and how files are written safely.

Every file is written to a temporary name and renamed into place (``atomic_path``), so an
interrupted write never leaves a half file that looks done; ``locked`` serializes the
writers of one model folder across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORIGINAL_NAME = "model.gguf"
METADATA_NAME = "metadata.json"
MANIFEST_NAME = "manifest.json"
CHUNK = 1 << 20


class ModelStoreError(Exception):
    """A model could not be fetched, prepared or found; the message says why, for people."""


class ModelNotFoundError(ModelStoreError):
    """The configured model has not been pulled yet."""


@dataclass(frozen=True)
class ModelFiles:
    """The files of one pulled model.

    ``directory`` is the model's folder in the store: it holds the metadata copy and the
    manifest, and it is where an engine caches files it derives from the original (the
    original itself lies elsewhere when the model is a local path used in place).
    """

    name: str
    original_path: Path
    directory: Path
    sha256: str

    @property
    def metadata_path(self) -> Path:
        """JSON copy of the original file's GGUF key/values (tokenizer, chat template...)."""
        return self.directory / METADATA_NAME


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: Path, recorded: dict[str, Any], *, check_hash: bool = True) -> bool:
    """Whether ``path`` has the recorded size (and, with ``check_hash``, checksum)."""
    try:
        if path.stat().st_size != recorded.get("size"):
            return False
    except OSError:
        return False
    return not check_hash or sha256_of(path) == recorded.get("sha256")


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    Two processes writing the same ``dest`` at once each write their own temporary file;
    whichever renames last wins, and a reader never sees a partial file.
    """
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes 0600 files; other users (a worker) read models
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(model_dir: Path) -> Iterator[None]:
    """Serialize writers of one model folder across processes (a pull, workers loading)."""
    with (model_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
