"""What the sentence-picker tests share: the sentence an answer would open with, the
lead it opens with, and the hand-set score's own best sentence."""

from __future__ import annotations

from collections.abc import Sequence

from worker.internet.lead import MIN_LEAD_SCORE, lead_text
from worker.internet.quote import QuotedPassage, choose_quotes, pick_quotes, score_sentences


def best(question: str, *texts: str, titles: tuple[str, ...] = ()) -> str:
    """The picker's best sentence among ``texts`` (one passage each, titled by ``titles``);
    it must score enough to open an answer."""
    passages = [
        QuotedPassage(n, text, 1.0, title=titles[n - 1] if titles else "")
        for n, text in enumerate(texts, start=1)
    ]
    quote = pick_quotes(question, passages)[0]
    assert quote.score >= MIN_LEAD_SCORE
    return quote.text


def lead(question: str, passages: Sequence[QuotedPassage]) -> str:
    """The lead an answer opens with: the first quote, and the learned runner-up beside it
    when it is close."""
    picked = choose_quotes(question, passages)
    return lead_text(picked.quotes[0], *picked.runners)


def hand_set_best(question: str, passages: Sequence[QuotedPassage]) -> str:
    """The sentence with the best hand-set score (the picker's cues, before the learned
    choice reorders them)."""
    scored = score_sentences(question, passages)
    return max((quote for _, quote in scored), key=lambda quote: quote.score).text
