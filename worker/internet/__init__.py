"""Internet answers: search the web, read the top pages, and pick numbered passages to cite.

The worker calls :func:`gather_evidence` (raises :class:`SearchError`), sends
``Evidence.sources`` as the ``sources`` event, and builds the chat with
:func:`build_messages`.
"""

from worker.internet.pipeline import Evidence, Passage, Source, gather_evidence
from worker.internet.prompt import build_messages
from worker.internet.search import SearchError, SearchNotConfigured

__all__ = [
    "Evidence",
    "Passage",
    "SearchError",
    "SearchNotConfigured",
    "Source",
    "build_messages",
    "gather_evidence",
]
