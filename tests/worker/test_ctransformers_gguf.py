"""The GGUF copy the ctransformers engine loads: rewritten once per model, on first load,
atomically, beside the original in the model store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from gguf import GGUFReader

from shared import modelstore
from shared.settings import Settings
from worker.engine import EngineError
from worker.engine.ctransformers_gguf import ensure_prepared, prepared_path


def test_the_engine_copy_is_rewritten_for_the_old_loader(model_settings: Settings) -> None:
    files = modelstore.resolve(model_settings)
    assert ensure_prepared(files) == prepared_path(files)
    # The JSON copy of the original's metadata is cheap to read; GGUFReader takes seconds.
    original = modelstore.read_metadata(files)
    copy = GGUFReader(prepared_path(files))
    tokens = copy.fields["tokenizer.ggml.tokens"].contents()
    original_tokens = original["tokenizer.ggml.tokens"]

    # The byte-level newline "Ċ" is renamed to a literal "\n"; nothing else changes.
    newline = original_tokens.index("\u010a")
    assert tokens[newline] == "\n"
    assert tokens[:newline] + tokens[newline + 1 :] == (
        original_tokens[:newline] + original_tokens[newline + 1 :]
    )
    assert "tokenizer.ggml.scores" not in original
    assert copy.fields["tokenizer.ggml.scores"].contents() == [0.0] * len(tokens)
    assert copy.fields["tokenizer.chat_template"].contents() == original["tokenizer.chat_template"]
    # The tied embeddings are copied to the output projection the old loader requires.
    tensors = {tensor.name: tensor for tensor in copy.tensors}
    output, embeddings = tensors["output.weight"], tensors["token_embd.weight"]
    assert output.tensor_type == embeddings.tensor_type
    assert output.data.tobytes() == embeddings.data.tobytes()
    assert files.original_path.stat().st_size + output.n_bytes < prepared_path(files).stat().st_size
    # The copy is named after the rewrite's version and the original's checksum.
    assert prepared_path(files).parent == files.directory
    assert files.sha256[:16] in prepared_path(files).name


def test_two_loads_at_once_prepare_the_copy_once(
    model_settings: Settings,
    tmp_path: Path,
    settings_in: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A fresh store whose model is the test model used in place (a local path).
    original = modelstore.resolve(model_settings).original_path
    settings = settings_in(tmp_path, model=str(original))
    files = modelstore.pull(settings=settings, progress=False)
    legacy = files.directory / "model.ctransformers.gguf"  # written by an older version
    legacy.write_bytes(b"stale")
    results: list[Path] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(ensure_prepared(files))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    caplog.set_level("INFO", logger="worker.engine.ctransformers_gguf")
    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert results == [prepared_path(files)] * 2
    assert len([r for r in caplog.records if r.message.startswith("prepared")]) == 1
    same = ensure_prepared(modelstore.resolve(model_settings))
    assert prepared_path(files).read_bytes() == same.read_bytes()
    assert not legacy.exists()
    assert not list(files.directory.glob("*.part")) and not list(files.directory.glob(".*part"))
    # And a third load finds it done: nothing is written again.
    mtime = prepared_path(files).stat().st_mtime_ns
    assert ensure_prepared(files) == prepared_path(files)
    assert prepared_path(files).stat().st_mtime_ns == mtime


def test_an_unwritable_store_is_a_clear_engine_error(
    model_settings: Settings, tmp_path: Path
) -> None:
    files = modelstore.resolve(model_settings)
    elsewhere = replace(files, directory=tmp_path / "missing" / "smollm2")
    with pytest.raises(EngineError, match="cannot write the ctransformers copy"):
        ensure_prepared(elsewhere)
