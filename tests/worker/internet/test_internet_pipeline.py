"""gather_evidence end to end: fake SerpApi, real local pages, real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from internet_fakes import FakeSerpApi, LocalServer
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.settings import Settings
from worker.internet.pipeline import Evidence, gather_evidence, passage_budget_chars
from worker.internet.search import SearchError

QUESTION = "How tall is Mount Everest?"
ANSWER = "8,848.86 metres"


def article(title: str, paragraphs: list[str]) -> str:
    """A page with the usual clutter around its article."""
    body = "\n".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return f"""<!doctype html><html><head><title>{title}</title></head><body>
<header><a href="/">Home</a> <a href="/peaks">Peaks</a> <a href="/login">Sign in</a></header>
<nav><ul><li><a href="/asia">Asia</a></li><li><a href="/europe">Europe</a></li></ul></nav>
<main><article><h1>{title}</h1>{body}</article></main>
<aside><h3>Popular</h3><ul><li>Ten best hikes</li><li>Packing lists</li></ul></aside>
<footer>© 2024 Mountain Facts. <a href="/privacy">Privacy</a> <a href="/terms">Terms</a></footer>
</body></html>"""


EVEREST = article(
    "Mount Everest: the complete guide",
    [
        "Mount Everest sits on the border between Nepal and the Tibet Autonomous Region of "
        "China, in the Mahalangur Himal sub-range of the Himalayas.",
        "The mountain was named in 1865 after George Everest, a former Surveyor General of "
        "India, although local names such as Chomolungma are far older.",
        "The most recent survey, announced jointly by China and Nepal in December 2020, put "
        f"the summit's elevation at {ANSWER} above sea level, making it the tallest peak on "
        "Earth.",
        "Climbing seasons are short: most expeditions reach the summit in a narrow window in "
        "May, before the monsoon brings heavy snow to the range.",
    ],
)
K2 = article(
    "K2, the savage mountain",
    [
        "K2 is the second-highest mountain on Earth, after Mount Everest, and stands on the "
        "China-Pakistan border in the Karakoram range.",
        "At 8,611 metres, K2 is about 237 metres lower than its Himalayan rival, but it is "
        "far more dangerous to climb.",
        "The first ascent of K2 was made by an Italian expedition in 1954.",
    ],
)
CLIMBING = article(
    "Everest base camp trek",
    [
        "The trek to Everest base camp takes about twelve days from Lukla and does not "
        "require mountaineering skills.",
        "Base camp lies at 5,364 metres, far below the summit of Mount Everest, and trekkers "
        "should plan rest days to adjust to the altitude.",
    ],
)


def serp_for(web: LocalServer, pages: dict[str, str], **extra: object) -> dict[str, object]:
    """SerpApi JSON listing ``pages`` (path -> title) in order."""
    results = [
        {"position": rank, "title": title, "link": web.url(path), "snippet": f"About {title}."}
        for rank, (path, title) in enumerate(pages.items(), start=1)
    ]
    return {"organic_results": results, **extra}


def texts_of(evidence: Evidence, index: int) -> list[str]:
    return [passage.text for passage in evidence.passages if passage.source_index == index]


def test_best_page_is_source_one_and_passages_cite_it(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    web.page("/k2", K2)
    web.page("/everest", EVEREST)
    web.page("/trek", CLIMBING)
    serpapi_fake.respond(serp_for(web, {"/k2": "K2", "/everest": "Everest", "/trek": "Trek"}))

    evidence = gather_evidence(QUESTION, settings=make_settings(context_passages=3), redis=None)

    assert not evidence.degraded
    assert evidence.sources[0].url == web.url("/everest")
    assert evidence.sources[0].title == "Everest"
    assert [source.index for source in evidence.sources] == list(
        range(1, len(evidence.sources) + 1)
    )
    assert any(ANSWER in text for text in texts_of(evidence, 1))
    assert len(evidence.passages) <= 3
    assert not any("Sign in" in p.text or "Privacy" in p.text for p in evidence.passages)
    assert {p.source_index for p in evidence.passages} <= {s.index for s in evidence.sources}
    assert web.hits["/k2"] == web.hits["/everest"] == web.hits["/trek"] == 1
    # The sentence that answers is the best quote, from source 1, and that source's quote.
    assert evidence.best is not None and evidence.best.source_index == 1
    assert ANSWER in evidence.best.text and "Climbing seasons" not in evidence.best.text
    assert evidence.sources[0].quote == evidence.best.text
    assert all(source.quote for source in evidence.sources)
    # The runner-up is another source's best sentence (what a two-source lead quotes).
    runner_up = evidence.runner_up
    assert runner_up is not None and runner_up.source_index != 1
    assert runner_up.text == evidence.sources[runner_up.source_index - 1].quote
    assert runner_up.score <= evidence.best.score


def test_answer_box_and_knowledge_graph_are_evidence(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    web.page("/trek", CLIMBING)
    serpapi_fake.respond(
        serp_for(
            web,
            {"/trek": "Trek"},
            answer_box={
                "title": "Mount Everest height",
                "answer": "8,849 m",
                "snippet": "Mount Everest is 8,849 metres tall, the tallest mountain on Earth.",
                "link": "https://box.example/everest",
            },
            knowledge_graph={
                "title": "Mount Everest",
                "type": "Mountain",
                "description": "Mount Everest is Earth's highest mountain above sea level.",
                "elevation": "8,849 m",
                "source": {"name": "Wikipedia", "link": "https://kg.example/Everest"},
            },
        )
    )

    evidence = gather_evidence(QUESTION, settings=make_settings(), redis=None)

    urls = [source.url for source in evidence.sources]
    assert "https://box.example/everest" in urls
    assert "https://kg.example/Everest" in urls
    box = urls.index("https://box.example/everest") + 1
    assert any("8,849 metres tall" in text for text in texts_of(evidence, box))


def test_second_call_is_served_from_redis(
    web: LocalServer,
    serpapi_fake: FakeSerpApi,
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    cache_namespace: str,
) -> None:
    web.page("/everest", EVEREST)
    web.page("/k2", K2)
    serpapi_fake.respond(serp_for(web, {"/everest": "Everest", "/k2": "K2"}))
    settings = make_settings(web_cache_ttl_s=120)

    first = gather_evidence(
        QUESTION, settings=settings, redis=redis_client, cache_namespace=cache_namespace
    )
    second = gather_evidence(
        QUESTION, settings=settings, redis=redis_client, cache_namespace=cache_namespace
    )

    assert second == first
    assert serpapi_fake.searches == 1
    assert web.hits["/everest"] == 1 and web.hits["/k2"] == 1
    keys = sorted(key.decode() for key in redis_client.scan_iter(match=f"{cache_namespace}:*"))
    assert len(keys) == 3
    assert sum(":search:" in key for key in keys) == 1
    assert sum(":page:" in key for key in keys) == 2
    assert all(0 < redis_client.ttl(key) <= 120 for key in keys)


def test_cache_ttl_zero_disables_cache(
    web: LocalServer,
    serpapi_fake: FakeSerpApi,
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    cache_namespace: str,
) -> None:
    web.page("/everest", EVEREST)
    serpapi_fake.respond(serp_for(web, {"/everest": "Everest"}))
    settings = make_settings(web_cache_ttl_s=0)
    for _ in range(2):
        gather_evidence(
            QUESTION, settings=settings, redis=redis_client, cache_namespace=cache_namespace
        )
    assert serpapi_fake.searches == 2 and web.hits["/everest"] == 2
    assert list(redis_client.scan_iter(match=f"{cache_namespace}:*")) == []


def test_broken_redis_does_not_break_answers(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    web.page("/everest", EVEREST)
    serpapi_fake.respond(serp_for(web, {"/everest": "Everest"}))
    dead = redis.Redis(
        host="127.0.0.1", port=9, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    try:
        evidence = gather_evidence(QUESTION, settings=make_settings(), redis=dead)
    finally:
        dead.close()
    assert evidence.sources[0].url == web.url("/everest")


def test_failed_pages_are_skipped_and_noted(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    web.page("/slow", EVEREST, delay_s=3)
    web.page("/report.pdf", "%PDF-1.7", content_type="application/pdf")
    web.page("/huge", K2 + "<p>" + "filler " * 20_000 + "</p>")
    web.page("/everest", EVEREST)
    pages = {
        "/gone": "Gone",
        "/slow": "Slow",
        "/report.pdf": "Report",
        "/huge": "Huge",
        "/everest": "Everest",
    }
    serpapi_fake.respond(serp_for(web, pages))
    settings = make_settings(fetch_timeout_s=0.5, fetch_max_bytes=50_000, fetch_max_pages=5)

    evidence = gather_evidence(QUESTION, settings=settings, redis=None)

    assert not evidence.degraded
    assert evidence.sources[0].url == web.url("/everest")
    assert any(ANSWER in text for text in texts_of(evidence, 1))
    (note,) = evidence.notes
    assert note.startswith("Could not read 4 of 5 pages")
    for reason in ("HTTP 404", "timed out", "application/pdf", "too large"):
        assert reason in note


def test_all_pages_failing_degrades_to_snippets(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond(
        {
            "organic_results": [
                {
                    "position": 1,
                    "title": "Everest facts",
                    "link": web.url("/gone1"),
                    "snippet": f"Mount Everest is {ANSWER} tall according to the 2020 survey.",
                },
                {
                    "position": 2,
                    "title": "K2",
                    "link": web.url("/gone2"),
                    "snippet": "K2 is the second highest mountain.",
                },
            ],
            "answer_box": {"answer": "8,849 m", "title": "Mount Everest height"},
        }
    )

    evidence = gather_evidence(QUESTION, settings=make_settings(), redis=None)

    assert evidence.degraded
    assert any("None of the result pages could be read" in note for note in evidence.notes)
    texts = [passage.text for passage in evidence.passages]
    assert any(ANSWER in text for text in texts)
    assert "8,849 m" in texts
    assert web.url("/gone1") in [source.url for source in evidence.sources]


def test_answer_box_alone_is_degraded_evidence(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond({"answer_box": {"result": "8,849 m", "title": "Everest height"}})

    evidence = gather_evidence(QUESTION, settings=make_settings(), redis=None)

    assert evidence.degraded
    assert [passage.text for passage in evidence.passages] == ["8,849 m"]
    assert evidence.sources[0].title == "Everest height"
    assert evidence.notes == [
        "The search listed no pages; answering from the search page's own answer."
    ]


def test_search_failure_raises(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond({"error": "Invalid API key."}, status=401)
    with pytest.raises(SearchError) as caught:
        gather_evidence(QUESTION, settings=make_settings(), redis=None)
    assert caught.value.code == "search_auth"


def test_search_with_no_results_gives_empty_evidence(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond({"error": "Google hasn't returned any results for this query."})
    evidence = gather_evidence("qzxv wprt", settings=make_settings(), redis=None)
    assert evidence.sources == [] and evidence.passages == []
    assert evidence.degraded and evidence.notes


def test_pipeline_time_is_bounded_by_fetch_total_timeout(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    for i in range(3):
        web.page(f"/slow{i}", EVEREST, delay_s=15)
    serpapi_fake.respond(serp_for(web, {f"/slow{i}": f"Slow {i}" for i in range(3)}))
    settings = make_settings(fetch_timeout_s=20.0, fetch_total_timeout_s=0.6)

    evidence = gather_evidence(QUESTION, settings=settings, redis=None)

    # The total timeout ended the fetches, not the pages' answers nor each page's timeout.
    assert evidence.degraded
    assert "all pages together" in " ".join(evidence.notes), evidence.notes


def test_passages_fit_the_budget(
    web: LocalServer, serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    web.page("/everest", EVEREST)
    web.page("/k2", K2)
    web.page("/trek", CLIMBING)
    serpapi_fake.respond(serp_for(web, {"/everest": "E", "/k2": "K", "/trek": "T"}))
    settings = make_settings(context_passages=20)

    evidence = gather_evidence(QUESTION, settings=settings, redis=None, budget_chars=400)

    assert sum(len(passage.text) for passage in evidence.passages) <= 400
    assert passage_budget_chars(settings) > 1000
