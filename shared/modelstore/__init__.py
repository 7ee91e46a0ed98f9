"""The model store: fetch GGUF models and find them again (see ``store`` for the layout).

The store knows no engine: an engine adapter that needs the file in another shape derives
it on first load (``worker/engine/ctransformers_gguf.py``) and caches it in the model's
folder. Modules: ``sources`` (the ``MODEL`` setting), ``fetch`` (downloads), ``metadata``
(GGUF key/values), ``files`` (atomic writes, locks), ``store`` (pull and resolve).
"""

from shared.modelstore.files import (
    ModelFiles,
    ModelNotFoundError,
    ModelStoreError,
    atomic_path,
    locked,
)
from shared.modelstore.metadata import open_gguf, read_gguf_metadata, read_metadata
from shared.modelstore.sources import (
    DEFAULT_MODEL,
    HF_BASE_URL,
    SMOLLM2_SHA256,
    ModelSource,
    parse_source,
)
from shared.modelstore.store import pull, resolve

__all__ = [
    "DEFAULT_MODEL",
    "HF_BASE_URL",
    "SMOLLM2_SHA256",
    "ModelFiles",
    "ModelNotFoundError",
    "ModelSource",
    "ModelStoreError",
    "atomic_path",
    "locked",
    "open_gguf",
    "parse_source",
    "pull",
    "read_gguf_metadata",
    "read_metadata",
    "resolve",
]
