"""The model store, on the real default model and a real local HTTP server."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared import modelstore
from shared.modelstore import ModelFiles, ModelNotFoundError, ModelStoreError
from shared.settings import Settings


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class HubServer:
    """A local stand-in for huggingface.co serving one file at /<repo>/resolve/main/<file>."""

    def __init__(self, repo: str, file: str, source: Path) -> None:
        self.path = f"/{repo}/resolve/main/{file}"
        self.source = source
        self.hits = 0
        self.cut_after: int | None = None  # bytes sent before dropping the connection
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != hub.path:
                    self.send_error(404)
                    return
                hub.hits += 1
                size = hub.source.stat().st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with hub.source.open("rb") as data:
                    if hub.cut_after is None:
                        shutil.copyfileobj(data, self.wfile)
                    else:
                        self.wfile.write(data.read(hub.cut_after))
                        self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hub(model_settings: Settings) -> Iterator[HubServer]:
    original = modelstore.resolve(model_settings).original_path
    server = HubServer("acme/tiny", "tiny.gguf", original)
    yield server
    server.close()


def test_pull_is_idempotent_and_writes_a_manifest(model_settings: Settings) -> None:
    files = modelstore.resolve(model_settings)
    manifest_path = files.directory / "manifest.json"
    manifest_mtime = manifest_path.stat().st_mtime_ns

    again = modelstore.pull(settings=model_settings, progress=False)

    assert again == files
    assert files.name == "smollm2"
    assert manifest_path.stat().st_mtime_ns == manifest_mtime
    assert files.sha256 == modelstore.SMOLLM2_SHA256 == sha256(files.original_path)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == 2
    assert manifest["source"] == "smollm2"
    assert manifest["original"] == {
        "path": "model.gguf",
        "sha256": files.sha256,
        "size": files.original_path.stat().st_size,
    }
    assert set(manifest["files"]) == {"model.gguf", "metadata.json", "manifest.json"}
    assert not list(files.directory.glob("*.part"))


def test_the_metadata_copy_holds_the_originals_key_values(model_settings: Settings) -> None:
    files = modelstore.resolve(model_settings)
    copied = modelstore.read_metadata(files)
    assert copied == modelstore.read_gguf_metadata(files.original_path)
    assert copied["general.architecture"] == "llama"
    assert "tokenizer.chat_template" in copied


def test_resolve_says_to_pull_a_missing_model(
    tmp_path: Path, settings_in: Callable[..., Settings]
) -> None:
    settings = settings_in(tmp_path)
    with pytest.raises(ModelNotFoundError, match="chatbot models pull"):
        modelstore.resolve(settings)


def test_hf_source_downloads_and_re_pulls_on_checksum_mismatch(
    tmp_path: Path, hub: HubServer, settings_in: Callable[..., Settings]
) -> None:
    settings = settings_in(tmp_path, model="hf:acme/tiny/tiny.gguf")
    files = modelstore.pull(settings=settings, progress=False, hf_base_url=hub.url)
    assert files.name == "hf--acme--tiny--tiny"
    assert files.sha256 == modelstore.SMOLLM2_SHA256
    assert modelstore.resolve(settings) == files
    assert hub.hits == 1

    modelstore.pull(settings=settings, progress=False, hf_base_url=hub.url)
    assert hub.hits == 1  # intact: reused

    # Same size, one byte changed: only the checksum can tell.
    with files.original_path.open("r+b") as damaged:
        damaged.seek(1_000_000)
        byte = damaged.read(1)
        damaged.seek(1_000_000)
        damaged.write(bytes([byte[0] ^ 0xFF]))
    again = modelstore.pull(settings=settings, progress=False, hf_base_url=hub.url)
    assert hub.hits == 2
    assert again == files
    assert sha256(files.original_path) == modelstore.SMOLLM2_SHA256


def test_an_interrupted_download_leaves_nothing_that_looks_done(
    tmp_path: Path, hub: HubServer, settings_in: Callable[..., Settings]
) -> None:
    settings = settings_in(tmp_path, model="hf:acme/tiny/tiny.gguf")
    hub.cut_after = 5_000_000
    with pytest.raises(ModelStoreError, match="could not download"):
        modelstore.pull(settings=settings, progress=False, hf_base_url=hub.url)
    model_dir = tmp_path / "models" / "hf--acme--tiny--tiny"
    assert sorted(p.name for p in model_dir.iterdir()) == [".lock"]
    with pytest.raises(ModelNotFoundError):
        modelstore.resolve(settings)


def test_offline_hf_pull_says_so(tmp_path: Path, settings_in: Callable[..., Settings]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_in(tmp_path)
    with pytest.raises(ModelStoreError, match=r"could not download .*are you offline\?"):
        modelstore.pull(
            "hf:acme/tiny/tiny.gguf",
            settings=settings,
            progress=False,
            hf_base_url=f"http://127.0.0.1:{port}",
        )


def test_missing_hf_file_is_an_http_error(
    tmp_path: Path, hub: HubServer, settings_in: Callable[..., Settings]
) -> None:
    settings = settings_in(tmp_path)
    with pytest.raises(ModelStoreError, match="HTTP 404"):
        modelstore.pull(
            "hf:acme/tiny/other.gguf", settings=settings, progress=False, hf_base_url=hub.url
        )


@pytest.mark.parametrize(
    ("source", "kind", "name"),
    [
        ("smollm2", "wheel", "smollm2"),
        ("", "wheel", "smollm2"),
        (
            "hf:Qwen/Qwen2-0.5B-GGUF/qwen2-0_5b-q4_0.gguf",
            "hf",
            "hf--Qwen--Qwen2-0.5B-GGUF--qwen2-0_5b-q4_0",
        ),
        ("hf:o/r/sub dir/m.gguf", "hf", "hf--o--r--m"),
    ],
)
def test_sources_parse(source: str, kind: str, name: str) -> None:
    parsed = modelstore.parse_source(source)
    assert (parsed.kind, parsed.name) == (kind, name)


def test_a_local_path_is_used_in_place(model_settings: Settings) -> None:
    original = modelstore.resolve(model_settings).original_path
    parsed = modelstore.parse_source(str(original))
    assert parsed.kind == "path"
    assert parsed.path == original
    assert parsed.name.startswith("model-")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("hf:just-a-repo", "hf:<owner>/<repo>/<file.gguf>"),
        ("hf:o/r/weights.bin", "hf:<owner>/<repo>/<file.gguf>"),
        ("/nowhere/model.gguf", "does not exist"),
        ("llama-9000", "unknown model"),
    ],
)
def test_bad_sources_are_refused_clearly(source: str, message: str) -> None:
    with pytest.raises(ModelStoreError, match=message.replace("+", r"\+")):
        modelstore.parse_source(source)


def test_model_files_is_frozen() -> None:
    files = ModelFiles("m", Path("a"), Path("b"), "0" * 64)
    with pytest.raises(AttributeError):
        files.name = "other"  # type: ignore[misc]
    assert files.metadata_path == Path("b/metadata.json")
