"""What the sentence-picker tests share: the sentence an answer would open with."""

from __future__ import annotations

from worker.internet.lead import MIN_LEAD_SCORE, lead_text
from worker.internet.quote import QuotedPassage, choose_quotes, pick_quotes


def best(question: str, *texts: str, titles: tuple[str, ...] = ()) -> str:
    """The picker's best sentence among ``texts`` (one passage each, titled by ``titles``);
    it must score enough to open an answer."""
    quote = pick_quotes(question, _passages(texts, titles))[0]
    assert quote.score >= MIN_LEAD_SCORE
    return quote.text


def lead(question: str, *texts: str, titles: tuple[str, ...] = ()) -> str:
    """The lead an answer opens with (the choice, and the learned runner-up when it is
    close), from ``texts`` as :func:`best` reads them; it must not be empty."""
    picked = choose_quotes(question, _passages(texts, titles))
    text = lead_text(picked.quotes[0], picked.second)
    assert text
    return text


def _passages(texts: tuple[str, ...], titles: tuple[str, ...]) -> list[QuotedPassage]:
    return [
        QuotedPassage(n, text, 1.0, title=titles[n - 1] if titles else "")
        for n, text in enumerate(texts, start=1)
    ]
