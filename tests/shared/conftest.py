"""Fixtures of the model store tests: the default model, pulled once into a reused folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import modelstore
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Outside tmp so repeated runs reuse the ~100 MB download; pulling again is then a checksum.
MODEL_DATA_DIR = Path(os.environ.get("CHATBOT_TEST_DATA_DIR", ROOT / ".pytest-data"))


def _settings_in(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings_in() -> Callable[..., Settings]:
    """Makes settings for a data folder, ignoring any .env file of the developer's."""
    return _settings_in


@pytest.fixture(scope="session")
def model_settings() -> Settings:
    """Settings whose data folder holds the pulled default model."""
    settings = _settings_in(MODEL_DATA_DIR, model="smollm2")
    modelstore.pull(settings=settings, progress=False)
    return settings
