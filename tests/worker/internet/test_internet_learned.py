"""The learned choice among the picker's best sentences (issue 12): its features, and
that ``pick_quotes`` opens with it rather than with the hand-set score's best."""

from __future__ import annotations

import pytest

from worker.internet import learned
from worker.internet.learned import FEATURES, TOP_K, candidates, choose, features
from worker.internet.quote import QuotedPassage, combine, pick_quotes, scored_sentences

PAINTING = "Who painted The Grey Harbour?"
PAGES = [
    QuotedPassage(
        1,
        "The Grey Harbour hangs in the Wenlow Gallery. It is the work of Ada Fenwick, who "
        "set up her easel on the quay every morning of the winter of 1898.",
        1.0,
        title="The Grey Harbour",
    ),
    QuotedPassage(
        2,
        "The Grey Harbour was engraved by Samuel Pike for the Wenlow Gazette.",
        0.9,
        title="Wenlow Gazette prints",
    ),
]


def test_the_factors_give_the_hand_set_score() -> None:
    scored = scored_sentences(PAINTING, PAGES)
    assert scored
    for found in scored:
        assert combine(found.factors) == found.quote.score
    assert [(found.number, found.index) for found in scored] == [(0, 0), (0, 1), (1, 0)]


def test_candidates_are_the_best_distinct_sentences_best_first() -> None:
    twice = [*PAGES, QuotedPassage(3, PAGES[1].text, 0.8, title="Wenlow Gazette prints")]
    top = candidates(scored_sentences(PAINTING, twice))
    texts = [found.quote.text for found in top]
    assert len(texts) == len(set(texts)) <= TOP_K
    scores = [found.quote.score for found in top]
    assert scores == sorted(scores, reverse=True)


def test_every_candidate_has_every_feature() -> None:
    top = candidates(scored_sentences(PAINTING, PAGES))
    rows = features(PAINTING, top)
    assert len(rows) == len(top)
    assert all(len(row) == len(FEATURES) for row in rows)
    assert set(learned.WEIGHTS) == set(FEATURES)


def test_without_weights_the_choice_is_the_hand_set_best() -> None:
    scored = scored_sentences(PAINTING, PAGES)
    chosen = choose(PAINTING, scored, weights={})
    assert chosen is not None
    assert chosen.quote == max((found.quote for found in scored), key=lambda q: q.score)
    assert choose(PAINTING, [], weights={}) is None


def test_the_answer_opens_with_the_learned_choice() -> None:
    # The hand-set score takes "the Wenlow Gallery" for the painter's name; the learned
    # weights prefer the sentence that says whose work it is.
    scored = scored_sentences(PAINTING, PAGES)
    hand = max((found.quote for found in scored), key=lambda quote: quote.score)
    assert "Wenlow Gallery" in hand.text
    quotes = pick_quotes(PAINTING, PAGES)
    assert "Ada Fenwick" in quotes[0].text
    # It takes the best hand-set score (the lead's thresholds are in those terms) and
    # the other source's best follows.
    assert quotes[0].score == hand.score
    assert [quote.source_index for quote in quotes] == [1, 2]


def test_pick_quotes_follows_whatever_weights_are_fitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(learned, "WEIGHTS", {"passage_rank": 1.0})  # the lowest-ranked page
    assert pick_quotes(PAINTING, PAGES)[0].source_index == 2
    monkeypatch.setattr(learned, "WEIGHTS", {})
    assert "Wenlow Gallery" in pick_quotes(PAINTING, PAGES)[0].text


def test_passages_follow_the_learned_order_each_quoted_by_its_learned_best(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Weights that prefer later passages and, within one, later sentences: the learned
    # order, not the hand-set scores, orders the quotes and picks each passage's quote.
    monkeypatch.setattr(learned, "WEIGHTS", {"passage_rank": 10.0, "sentence_index": 1.0})
    third = QuotedPassage(3, "The Grey Harbour was lent to Oslo in 1990.", 0.5, title="Loans")
    quotes = pick_quotes(PAINTING, [*PAGES, third])
    assert [quote.source_index for quote in quotes] == [3, 2, 1]
    assert "Ada Fenwick" in quotes[2].text  # the later sentence of the first page
    hand = max(quote.score for quote in pick_quotes(PAINTING, PAGES))
    assert quotes[0].score >= hand  # the first takes the best hand-set score
    # Without weights, the hand-set order.
    monkeypatch.setattr(learned, "WEIGHTS", {})
    assert pick_quotes(PAINTING, [*PAGES, third])[0].source_index == 1


def test_a_close_learned_runner_up_is_the_second_beyond_the_margin_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scored = scored_sentences(PAINTING, PAGES)
    monkeypatch.setattr(learned, "WEIGHTS", {"passage_rank": 1.0})
    ranked = learned.rank(PAINTING, scored)
    gap = ranked[0][1] - ranked[1][1]
    assert gap > 0
    monkeypatch.setattr(learned, "LEAD_MARGIN", gap)
    assert learned.close_second(ranked) is ranked[1][0]
    monkeypatch.setattr(learned, "LEAD_MARGIN", gap / 2)
    assert learned.close_second(ranked) is None
    assert learned.close_second(ranked, weights={}) is None
