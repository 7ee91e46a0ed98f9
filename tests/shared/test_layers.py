"""The layers the file tree shows: ``shared`` imports neither ``web`` nor ``worker``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_shared_imports_neither_web_nor_worker() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "shared").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in ("web", "worker")
    }
    assert not offenders


def test_the_model_store_writes_no_engine_specific_file() -> None:
    # The ctransformers rewrite lives with its adapter (worker/engine/ctransformers_gguf.py).
    for path in (ROOT / "shared" / "modelstore").glob("*.py"):
        assert "GGUFWriter" not in path.read_text(encoding="utf-8"), path.name
