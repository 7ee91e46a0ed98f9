"""What the sentence-picker tests share: the sentence an answer would open with."""

from __future__ import annotations

from worker.internet.lead import MIN_LEAD_SCORE
from worker.internet.quote import QuotedPassage, pick_quotes


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
