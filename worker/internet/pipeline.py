"""The internet retrieval pipeline: search (cached) → fetch (cached per page) → extract →
passages → rank → numbered sources and the passages that quote them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import serpapi
from redis import Redis

from shared.settings import Settings
from worker import metrics
from worker.internet.cache import DEFAULT_NAMESPACE, WebCache
from worker.internet.extract import Document, extract_document, split_passages
from worker.internet.fetch import FetchedPage, fetch_pages
from worker.internet.quote import Quote, QuotedPassage, choose_quotes
from worker.internet.rank import Candidate, RankedPassage, rank_passages, score_passages
from worker.internet.search import (
    SEARCH_TIMEOUT_S,
    SearchError,
    SearchResult,
    search,
    search_params,
)

log = logging.getLogger(__name__)

# The search page's own evidence (answer box, knowledge panel) is usually on point: a
# modest prior puts it ahead of a page passage with a similar BM25 score.
FACT_PRIOR = 1.3
# A result snippet stands in for a page that could not be read; it is thin evidence.
SNIPPET_PRIOR = 0.8
# Earlier search results are slightly more trustworthy: prior = 1 + RANK_PRIOR / position.
RANK_PRIOR = 0.1
MAX_PASSAGES_PER_SOURCE = 3
LEAD_POOL_PASSAGES = 20
"""How many of the best-ranked passages the quotes and the answer's lead are chosen from:
more than the prompt quotes, since the ranker's cut often leaves out the passage whose
sentence states the fact (issue 12: on the dev questions, the fact is in some sentence
of the prompt's passages in 339 of 350 questions, of this pool's in 349)."""
PROMPT_QUOTES = 3
"""The passages of the learned model's best this many quotes (and of the lead's second
sentence) are in the prompt, first, even when the ranker's cut left them out (thirteenth
round, 510 dev questions, leave-one-file-out: recall@3 481 of 510 against 479 with the
lead's passage alone, on the eight files written without the code 292 against 290 of
320; recall@1 and the lead unchanged)."""
_NO_BUDGET = 1 << 40
_CHARS_PER_TOKEN = 3.5
_SNIPPET_CHARS = 300


@dataclass(frozen=True)
class Source:
    """A numbered source as the model cites it ([index]) and the user sees it; ``quote``
    is its sentence that best answers the question ("" when none does)."""

    index: int
    title: str
    url: str
    snippet: str
    quote: str = ""


@dataclass(frozen=True)
class Passage:
    """Quoted text from source number ``source_index``; ``score`` is its rank score."""

    source_index: int
    text: str
    score: float


@dataclass(frozen=True)
class SourceInfo:
    """What a source is called and where it lives, before it gets a number."""

    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class Evidence:
    """What the answer may use. ``passages`` are best first; ``best`` is the sentence that
    best answers the question (None when no sentence matches it), ``runners`` the
    sentences the lead may quote after it, best first: close learned runners-up (one or
    two), else the best sentence of another source (none when there is none). ``degraded``
    means no
    page could be read and the passages are search snippets; ``notes`` say, in words,
    what went wrong along the way."""

    sources: list[Source] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    degraded: bool = False
    best: Quote | None = None
    runners: tuple[Quote, ...] = ()

    @property
    def runner_up(self) -> Quote | None:
        return self.runners[0] if self.runners else None

    @property
    def third(self) -> Quote | None:
        return self.runners[1] if len(self.runners) > 1 else None


def passage_budget_chars(settings: Settings) -> int:
    """How many characters of quoted passages fit the model's window with room left for
    the instructions, the question and the answer."""
    prompt_tokens = settings.context_length - settings.max_new_tokens
    # About two thirds of the prompt for the passages, at ~3.5 characters per token.
    return max(800, int(prompt_tokens * _CHARS_PER_TOKEN * 2 / 3))


def gather_evidence(
    question: str,
    *,
    settings: Settings,
    redis: Redis | None,
    search_client: serpapi.Client | None = None,
    budget_chars: int | None = None,
    cache_namespace: str = DEFAULT_NAMESPACE,
) -> Evidence:
    """Search the web for ``question`` and pick the passages to answer from.

    Searches and read pages are cached in ``redis`` (None: no cache) for
    ``settings.web_cache_ttl_s``. Pages that fail are skipped (and named in ``notes``);
    when none can be read, the search snippets, answer box and knowledge panel are the
    passages and ``degraded`` is set. At most ``settings.context_passages`` passages,
    ``budget_chars`` characters together (default :func:`passage_budget_chars`).
    Raises :class:`~worker.internet.search.SearchError` when the search itself fails.
    Takes at most about the search timeout plus ``settings.fetch_total_timeout_s``.
    """
    started = time.monotonic()
    cache = None
    if redis is not None:
        cache = WebCache(redis, ttl_s=settings.web_cache_ttl_s, namespace=cache_namespace)
    result = _cached_search(question, settings=settings, cache=cache, client=search_client)
    notes: list[str] = []
    if not result.hits and not result.facts:
        return Evidence(notes=["The web search found nothing for this question."], degraded=True)

    to_read = result.hits[: settings.fetch_max_pages]
    documents, failures = _read_pages([hit.url for hit in to_read], settings=settings, cache=cache)
    if failures:
        listed = "; ".join(f"{url} ({reason})" for url, reason in failures.items())
        notes.append(f"Could not read {len(failures)} of {len(to_read)} pages: {listed}")

    degraded = not documents
    if degraded and to_read:
        notes.append("None of the result pages could be read; answering from search snippets.")
    elif degraded:
        notes.append("The search listed no pages; answering from the search page's own answer.")
    evidence = select_evidence(
        question, result, documents, settings=settings, budget_chars=budget_chars
    )
    log.info(
        "evidence gathered",
        extra={
            "pages_read": len(documents),
            "pages_failed": len(failures),
            "passages": len(evidence.passages),
            "degraded": degraded,
            "elapsed_ms": round((time.monotonic() - started) * 1000),
        },
    )
    return dataclasses.replace(evidence, notes=notes, degraded=degraded)


def select_evidence(
    question: str,
    result: SearchResult,
    documents: Mapping[str, Document],
    *,
    settings: Settings,
    budget_chars: int | None = None,
) -> Evidence:
    """Rank the passages of the read ``documents`` (and the search page's own evidence)
    for ``question``, and number their sources best first (see :func:`number_sources`).

    The sentences are weighed among a wider pool than the prompt quotes
    (:func:`lead_pool`): the passages of the lead's sentence, of its close second and of
    the next best quotes (:data:`PROMPT_QUOTES` in all) take the first places in the
    prompt, and the lowest-ranked passages make room for those the ranker's cut left
    out."""
    candidates, infos = build_candidates(result, documents)
    budget = budget_chars if budget_chars is not None else passage_budget_chars(settings)
    scores = score_passages(question, candidates)  # once, for the prompt and the pool
    ranked = rank_passages(
        question,
        candidates,
        limit=settings.context_passages,
        budget_chars=budget,
        max_per_source=MAX_PASSAGES_PER_SOURCE,
        scores=scores,
    )
    pool = lead_pool(question, candidates, scores=scores)
    picked = choose_quotes(question, quoted_passages(pool))
    first = [*picked.quotes[:1], *picked.runners]
    ranked = _with_passages(
        ranked,
        [pool[quote.source_index] for quote in (*first, *picked.quotes[1:PROMPT_QUOTES])],
        limit=settings.context_passages,
        budget=budget,
    )
    sources, passages, best, close = number_sources(
        ranked,
        infos,
        _quotes_in(ranked, pool, picked.quotes),
        _quotes_in(ranked, pool, picked.runners),
    )
    return Evidence(sources=sources, passages=passages, best=best, runners=tuple(close))


def lead_pool(
    question: str, candidates: Sequence[Candidate], *, scores: Sequence[float] | None = None
) -> list[RankedPassage]:
    """The :data:`LEAD_POOL_PASSAGES` best passages, from any source and without the
    prompt's character budget, whose sentences the quotes (and the lead) are chosen from
    (``scores``: as :func:`~worker.internet.rank.rank_passages` takes them)."""
    return rank_passages(
        question, candidates, limit=LEAD_POOL_PASSAGES, budget_chars=_NO_BUDGET, scores=scores
    )


def number_sources(
    ranked: list[RankedPassage],
    infos: Mapping[str, SourceInfo],
    quotes: Sequence[Quote],
    runners: Sequence[Quote] = (),
) -> tuple[list[Source], list[Passage], Quote | None, list[Quote]]:
    """Order the ranked passages as their ``quotes`` are (best first, one per passage at
    most, ``source_index`` its position in ``ranked``; passages without one keep their
    rank order, after them), number their sources in that order, and quote each source by
    its best sentence. Also returned: the best sentence, and the runners-up: ``runners``
    (the lead's further sentences, ``source_index`` likewise) when given, else the best
    sentence of another source (none when there is none)."""
    quote_of = {quote.source_index: quote for quote in quotes}
    order = [quote.source_index for quote in quotes]
    order += [number for number in range(len(ranked)) if number not in quote_of]
    numbers: dict[str, int] = {}
    sources: list[Source] = []
    passages: list[Passage] = []
    best: Quote | None = None
    runner_up: Quote | None = None
    for position in order:
        item = ranked[position]
        key = item.candidate.source
        quote = quote_of.get(position)
        if key not in numbers:
            numbers[key] = len(sources) + 1
            info = infos[key]
            sources.append(
                Source(
                    index=numbers[key],
                    title=info.title,
                    url=info.url,
                    snippet=_shorten(info.snippet, _SNIPPET_CHARS),
                    quote=quote.text if quote is not None else "",
                )
            )
        if quote is not None:
            numbered = Quote(source_index=numbers[key], text=quote.text, score=quote.score)
            if best is None:
                best = numbered
            elif runner_up is None and numbered.source_index != best.source_index:
                runner_up = numbered
        passages.append(
            Passage(source_index=numbers[key], text=item.candidate.text, score=item.score)
        )
    if runners:
        return (
            sources,
            passages,
            best,
            [
                dataclasses.replace(
                    quote, source_index=numbers[ranked[quote.source_index].candidate.source]
                )
                for quote in runners
            ],
        )
    return sources, passages, best, [runner_up] if runner_up else []


def quoted_passages(ranked: Sequence[RankedPassage]) -> list[QuotedPassage]:
    """``ranked`` as the quote picker reads them, each numbered by its position."""
    return [
        QuotedPassage(
            number, item.candidate.text, item.score, item.candidate.heading, item.candidate.title
        )
        for number, item in enumerate(ranked)
    ]


def _with_passages(
    ranked: list[RankedPassage], items: Sequence[RankedPassage], *, limit: int, budget: int
) -> list[RankedPassage]:
    """``ranked`` with ``items`` first (in order; those already there move up), then as
    many of the others, in rank order, as keep within ``limit`` passages, ``budget``
    characters and :data:`MAX_PASSAGES_PER_SOURCE` per source. ``ranked`` itself when
    every item is there already; an item that does not fit is left out."""
    present = {_key(other) for other in ranked}
    if all(_key(item) in present for item in items):
        return ranked
    kept: list[RankedPassage] = []
    used = 0
    per_source: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for other in [*items, *ranked]:
        source, size = other.candidate.source, len(other.candidate.text)
        if len(kept) >= limit:
            break
        if _key(other) in seen or per_source.get(source, 0) >= MAX_PASSAGES_PER_SOURCE:
            continue
        if used + size > budget:
            continue
        kept.append(other)
        seen.add(_key(other))
        used += size
        per_source[source] = per_source.get(source, 0) + 1
    return kept


def _quotes_in(
    ranked: list[RankedPassage], pool: list[RankedPassage], quotes: Sequence[Quote]
) -> list[Quote]:
    """The pool's ``quotes`` (best first) of the passages in ``ranked``, renumbered to
    their positions there. A first passage longer than the budget is cut in ``ranked``:
    its quote stays when the cut kept the sentence."""
    position = {_key(item): number for number, item in enumerate(ranked)}
    out: list[Quote] = []
    for quote in quotes:
        candidate = pool[quote.source_index].candidate
        number = position.get(_key(pool[quote.source_index]))
        if number is None:
            number = next(
                (
                    n
                    for n, item in enumerate(ranked)
                    if item.candidate.source == candidate.source
                    and candidate.text.startswith(item.candidate.text)
                    and quote.text in item.candidate.text
                ),
                None,
            )
        if number is not None:
            out.append(dataclasses.replace(quote, source_index=number))
    return out


def _key(item: RankedPassage) -> tuple[str, str]:
    return item.candidate.source, item.candidate.text


def build_candidates(
    result: SearchResult, documents: Mapping[str, Document]
) -> tuple[list[Candidate], dict[str, SourceInfo]]:
    """The passages to rank, and what each candidate's ``source`` key refers to.

    Answer box and knowledge panel first (with :data:`FACT_PRIOR`), then, per search
    hit in rank order, the passages of its page when it was read, else its snippet.
    """
    candidates: list[Candidate] = []
    infos: dict[str, SourceInfo] = {}
    for number, fact in enumerate(result.facts):
        key = f"{fact.kind}#{number}"
        infos[key] = SourceInfo(title=fact.title, url=fact.url, snippet=fact.text)
        candidates.append(Candidate(text=fact.text, source=key, title=fact.title, prior=FACT_PRIOR))
    for hit in result.hits:
        infos[hit.url] = SourceInfo(title=hit.title, url=hit.url, snippet=hit.snippet)
        prior = 1.0 + RANK_PRIOR / max(1, hit.position)
        document = documents.get(hit.url)
        if document is not None:
            for piece in split_passages(document.text):
                candidates.append(
                    Candidate(
                        text=piece.text,
                        source=hit.url,
                        heading=piece.heading,
                        title=document.title or hit.title,
                        prior=prior,
                    )
                )
        elif hit.snippet:
            candidates.append(
                Candidate(
                    text=hit.snippet, source=hit.url, title=hit.title, prior=prior * SNIPPET_PRIOR
                )
            )
    return candidates, infos


def _cached_search(
    question: str,
    *,
    settings: Settings,
    cache: WebCache | None,
    client: serpapi.Client | None,
) -> SearchResult:
    params = search_params(question, settings=settings)
    keyed = {**params, "base_url": settings.serpapi_base_url}
    if cache is not None and (cached := cache.get_search(keyed)) is not None:
        try:
            found = SearchResult.from_json(cached)
            metrics.web_search(outcome="cached")
            return found
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed cached search")
    started = time.perf_counter()
    try:
        result = search(question, settings=settings, client=client, timeout_s=SEARCH_TIMEOUT_S)
    except SearchError:
        metrics.web_search(outcome="error", seconds=time.perf_counter() - started)
        raise
    metrics.web_search(outcome="ok", seconds=time.perf_counter() - started)
    if cache is not None:
        cache.put_search(keyed, result.to_json())
    return result


def _read_pages(
    urls: list[str], *, settings: Settings, cache: WebCache | None
) -> tuple[dict[str, Document], dict[str, str]]:
    """Readable documents by URL (from the cache or fetched and extracted now), and the
    reasons the others failed."""
    documents: dict[str, Document] = {}
    failures: dict[str, str] = {}
    if cache is not None:
        for url, value in cache.get_pages(urls).items():
            try:
                documents[url] = Document(
                    url=str(value["url"]), title=str(value["title"]), text=str(value["text"])
                )
            except KeyError:
                continue
    missing = [url for url in urls if url not in documents]
    started = time.perf_counter()
    fetched: list[FetchedPage] = fetch_pages(missing, settings=settings) if missing else []
    fetch_seconds = time.perf_counter() - started if missing else None
    new_documents: dict[str, Document] = {}
    for page in fetched:
        if not page.ok or page.text is None:
            failures[page.url] = page.error or "no content"
            continue
        document = extract_document(page.text, url=page.final_url, content_type=page.content_type)
        if not document.text.strip():
            failures[page.url] = "no readable text"
            continue
        new_documents[page.url] = document
    if cache is not None and new_documents:
        cache.put_pages({url: asdict(document) for url, document in new_documents.items()})
    metrics.web_pages(
        ok=len(new_documents), cached=len(documents), failed=len(failures), seconds=fetch_seconds
    )
    documents.update(new_documents)
    return documents, failures


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip() + "…"
