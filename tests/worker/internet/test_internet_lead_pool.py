"""select_evidence weighs the sentences of more passages than the prompt quotes: the
lead's passage joins the prompt when the ranker cut it, so do those of the learned
model's next best quotes, and a close learned runner-up (even from the same page) is the
lead's second sentence (and a third close one its third)."""

from __future__ import annotations

from shared.settings import Settings
from worker.internet.extract import Document
from worker.internet.lead import lead_text
from worker.internet.pipeline import LEAD_POOL_PASSAGES, build_candidates, select_evidence
from worker.internet.rank import rank_passages
from worker.internet.search import SearchHit, SearchResult

SETTINGS = Settings(_env_file=None, context_passages=1)  # type: ignore[call-arg]


def inputs(
    question: str, pages: dict[str, tuple[str, str]]
) -> tuple[SearchResult, dict[str, Document]]:
    """A search result listing ``pages`` (url: (title, text)) in order, and their documents."""
    hits = [
        SearchHit(position=n, title=title, url=url, snippet="")
        for n, (url, (title, _)) in enumerate(pages.items(), start=1)
    ]
    documents = {
        url: Document(url=url, title=title, text=text) for url, (title, text) in pages.items()
    }
    return SearchResult(query=question, hits=hits), documents


def evidence_for(question: str, pages: dict[str, tuple[str, str]], **overrides: object):  # type: ignore[no-untyped-def]
    settings = SETTINGS.model_copy(update=overrides)
    return select_evidence(question, *inputs(question, pages), settings=settings)


def test_the_lead_s_passage_joins_the_prompt_when_the_ranker_cut_it() -> None:
    question = "How long is the wait between the two Nerivax jabs?"
    pages = {
        "https://forum.example/jabs": (
            "Nerivax jabs: the wait",
            "Nerivax jabs again: the wait for Nerivax jabs at my clinic was awful, the "
            "queue for the jabs went round the block. The wait between Nerivax jabs at "
            "the clinic, never again.",
        ),
        "https://wiki.example/Nerivax": (
            "Nerivax",
            "Nerivax is an inactivated vaccine. The primary course is two doses. The "
            "second is given 4 to 6 weeks after the first.",
        ),
    }
    # The prompt has room for one passage; the ranker puts the forum's first.
    evidence = evidence_for(question, pages)
    assert len(evidence.passages) == 1
    assert evidence.best is not None and "4 to 6 weeks" in evidence.best.text
    assert "4 to 6 weeks" in evidence.passages[0].text
    assert evidence.sources[0].url == "https://wiki.example/Nerivax"
    assert evidence.passages[0].source_index == evidence.best.source_index == 1
    # With room for both, both are quoted, the lead's first.
    roomy = evidence_for(question, pages, context_passages=5)
    assert roomy.sources[0].url == "https://wiki.example/Nerivax"
    assert len(roomy.passages) == 2
    assert LEAD_POOL_PASSAGES > 5


def test_a_close_learned_runner_up_is_the_lead_s_second_sentence() -> None:
    question = "Which fruit is used in a Dallow pie?"
    text = (
        "Dallow is a small island with 9,000 people.\nDallow Town play at the Quay ground; "
        "their mascot is an otter called Pip.\nA Dallow pie is baked for the harvest. The "
        "filling is damsons, stewed in honey."
    )
    evidence = evidence_for(question, {"https://dallow.example/": ("Dallow", text)})
    assert evidence.best is not None and evidence.runner_up is not None
    assert evidence.runner_up.text != evidence.best.text
    assert evidence.runner_up.source_index == evidence.best.source_index == 1
    # The sixteenth round's weights put the filling third, close enough to be quoted too
    # (a known cost, bench/retrieval/README.md): the lead still states it.
    lead = lead_text(evidence.best, evidence.runner_up, evidence.third)
    assert "damsons" in lead and lead.count("[1]") >= 2


def test_three_near_equal_rows_are_all_quoted_in_the_lead() -> None:
    # The rows of one price table, each a price of a membership: the learned odds cannot
    # tell the asked one from its neighbours, so the lead quotes all three.
    question = "how much is a yearly membership for orrin botanic gardens for one adult"
    text = (
        "Orrin Botanic Gardens are open every day except Christmas Day.\n"
        "## Annual membership\n"
        "| Joint (two adults at one address) | £98 |\n"
        "| Family (two adults and up to four children) | £119 |\n"
        "| Individual adult | £64 |\n| Concession | £52 |"
    )
    pages = {"https://orrin.example/membership": ("Membership | Orrin Botanic Gardens", text)}
    evidence = evidence_for(question, pages)
    assert evidence.best is not None and evidence.runner_up is not None
    assert evidence.third is not None
    lead = lead_text(evidence.best, evidence.runner_up, evidence.third)
    assert "Individual adult £64 [1]." in lead and lead.count("[1]") == 3
    assert "£52" not in lead  # never a fourth


def test_the_passages_of_the_best_three_quotes_join_the_prompt() -> None:
    question = "How long is the wait between the two Nerivax jabs?"
    answering = {
        "https://clinic.example/harrow": (
            "Harrow clinic",
            "At the Harrow clinic the two Nerivax doses are usually given 28 days apart.",
        ),
        "https://travel.example/nerivax": (
            "Travel vaccines",
            "Where travel is imminent, the two Nerivax doses may be given 14 days apart.",
        ),
        "https://wiki.example/Nerivax": (
            "Nerivax",
            "Nerivax is an inactivated vaccine. The primary course is two doses. The "
            "second is given 4 to 6 weeks after the first.",
        ),
    }
    chatter = {  # the question's words again and again, and no answer
        "https://news.example/jabs": (
            "Nerivax jabs wait times",
            "Wait times for Nerivax jabs: the wait at clinics for Nerivax jabs grew, and "
            "the wait for jabs is long.",
        ),
        "https://blog.example/jabs": (
            "The wait for Nerivax jabs",
            "The wait for Nerivax jabs, the wait for the clinic, the wait for the jabs to "
            "stop hurting: Nerivax jabs and the wait, a diary.",
        ),
        "https://forum.example/jabs": (
            "Nerivax jabs: the wait",
            "Nerivax jabs again: the wait for Nerivax jabs at my clinic was awful, the "
            "queue for the jabs went round the block.",
        ),
    }
    pages = {**chatter, **answering}
    evidence = evidence_for(question, pages, context_passages=3)
    # The ranker's own cut of three holds only the chatter ...
    candidates, _ = build_candidates(*inputs(question, pages))
    cut = rank_passages(question, candidates, limit=3, budget_chars=10_000)
    assert {item.candidate.source for item in cut} == set(chatter)
    # ... the prompt holds the pages of the learned best three quotes (PROMPT_QUOTES), the
    # three that answer, each quoted, "4 to 6 weeks" among them.
    assert {source.url for source in evidence.sources} == set(answering)
    assert all(source.quote for source in evidence.sources)
    assert any("4 to 6 weeks" in passage.text for passage in evidence.passages)
