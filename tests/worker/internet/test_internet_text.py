"""Main-text extraction, passage splitting and ranking."""

from __future__ import annotations

import itertools

import pytest
import trafilatura

from worker.internet.extract import extract_document, split_passages
from worker.internet.furniture import drop_furniture, is_furniture, strip_meta
from worker.internet.rank import (
    Candidate,
    analyse_question,
    rank_passages,
    score_passages,
    stem,
    tokenize,
)

PAGE = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html><html><head><title>Lake Baikal facts | Lakes of the World</title></head>
<body>
<nav><a href="/">Home</a> <a href="/lakes">All lakes</a> <a href="/shop">Shop</a></nav>
<div class="cookie"><p>We use cookies. Accept all cookies to continue browsing.</p></div>
<article>
<h1>Lake Baikal facts</h1>
<p>Lake Baikal is a rift lake in Siberia, Russia, and the deepest lake in the world.</p>
<h2>Depth</h2>
<p>The lake reaches a maximum depth of 1,642 metres, and its average depth is 744 metres,
which makes it deeper than any other lake on Earth by a wide margin.</p>
<h2>Wildlife</h2>
<p>Baikal is home to the nerpa, one of the only freshwater seals. It lives nowhere else and
feeds mostly on golomyanka, a translucent oily fish found only in the lake.</p>
<table><tr><th>Area</th><td>31,722 km2</td></tr><tr><th>Age</th><td>25 million years</td></tr>
</table>
</article>
<footer><p>Copyright 2024 Lakes of the World. All rights reserved. Privacy. Terms.</p></footer>
</body></html>"""


def test_extract_keeps_the_article_and_drops_the_clutter() -> None:
    document = extract_document(PAGE, url="https://lakes.example/baikal")

    assert document.title == "Lake Baikal facts"
    assert "maximum depth of 1,642 metres" in document.text
    assert "| Area | 31,722 km2 |" in document.text
    assert "Lake Baikal facts" not in document.text.split("\n")[0]  # title line dropped
    for clutter in ("All lakes", "cookies", "Copyright", "|---"):
        assert clutter not in document.text


def test_extract_falls_back_when_trafilatura_finds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *args, **kwargs: None)

    document = extract_document(PAGE, url="https://lakes.example/baikal")

    assert document.title == "Lake Baikal facts | Lakes of the World"
    assert "maximum depth of 1,642 metres" in document.text
    assert "| Age | 25 million years |" in document.text
    assert "All lakes" not in document.text and "Copyright" not in document.text


NEWS_PAGE = """<!DOCTYPE html><html><head><title>The Meridian Tower</title></head><body>
<main><article><h1>The Meridian Tower</h1>
<p class='byline'>By Staff Writer · Updated 12 March 2024 · 6 min read</p>
<p>The Meridian Tower has 64 floors and was the tallest building in Port Elsa for a decade.
It was designed by the architect Hanna Berg and opened to the public in 2009.</p>
<p>Its observation deck on the 62nd floor is open daily from nine in the morning.</p>
<div class='newsletter'><p>Get the best explainers in your inbox every Friday.</p></div>
</article></main></body></html>"""


def test_extract_drops_the_byline_that_would_pass_for_an_answer() -> None:
    document = extract_document(NEWS_PAGE, url="https://news.example/meridian")

    assert document.text.startswith("The Meridian Tower has 64 floors")
    for furniture in ("Staff Writer", "min read", "in your inbox"):
        assert furniture not in document.text


@pytest.mark.parametrize(
    "line",
    [
        "By Staff Writer · Updated 12 March 2024 · 6 min read",
        "Posted on 14 February 2023 by Sam 4 comments",
        "Updated: March 3, 2021",
        "From Peakpedia, the free encyclopedia",
        "This article is about the subject. For other uses, see",
        "Korrigan Peak (disambiguation).",
        "Sign up for our free newsletter.",
        "★★★★☆ 4.6 out of 5",
        "(1,284 reviews)",
        "Prices include VAT. © 2024 Explore More Ltd.",
        "© 2024 The Daily Explainer. All rights reserved.",
        "Site design / logo © 2024. User contributions licensed under CC BY-SA.",
        "Free shipping on orders over $50",
        "Free returns within 30 days.",
    ],
)
def test_furniture_lines(line: str) -> None:
    assert is_furniture(line)


@pytest.mark.parametrize(
    "line",
    [
        "By 1990 the town had grown to 40,000 people.",
        "By Monday the river had risen by two metres.",
        "14 June 1784 is the day the treaty was signed.",
        "The bridge was opened on 3 March 1911 by Queen Anne.",
        "The newsletter of the society first appeared in 1887 and ran for forty years.",
        "The price includes VAT of 20 percent, which was introduced in 1973.",
        "Free entry for children under five.",
    ],
)
def test_content_is_not_furniture(line: str) -> None:
    assert not is_furniture(line)
    assert strip_meta(line) == line


def test_meta_glued_to_the_first_sentence_is_cut_off() -> None:
    glued = "By Staff Writer · 6 min read The rotary engine was invented by Felix Wankel."
    assert strip_meta(glued) == "The rotary engine was invented by Felix Wankel."
    # A blog's title, date, author and comment count in one line with its first paragraph.
    lines = [
        "Mayors of the valley Posted on 14 February 2023 by Sam 4 comments Ashford's mayor "
        "Colin Dray met the council.",
        "Categories: Towns",
        "Pages using infobox",
    ]
    assert drop_furniture(lines, title="Mayors of the valley") == [
        "Ashford's mayor Colin Dray met the council."
    ]


def test_a_footer_s_link_row_at_the_end_of_a_page_goes() -> None:
    # A shop page's extracted text ends with its footer: links, then legal small print.
    lines = [
        "The dam is 90 metres high.",
        "About Careers Press",
        "Prices include VAT. © 2024 Explore More Ltd.",
    ]
    assert drop_furniture(lines) == ["The dam is 90 metres high."]
    # A table row or a sentence that ends a page stays.
    assert drop_furniture(["Specs", "| Weight | 21.5 kg |"]) == ["Specs", "| Weight | 21.5 kg |"]
    assert drop_furniture(["Tours run daily.", "Thanks so much, see you there"]) == [
        "Tours run daily.",
        "Thanks so much, see you there",
    ]


def test_extract_plain_text() -> None:
    text = "Baikal notes\n\nThe lake is deep.\nVery deep.\n\n\nIt is old."
    document = extract_document(text, url="https://x.example/a.txt", content_type="text/plain")
    assert document.title == "Baikal notes"
    assert document.text.split("\n") == [
        "Baikal notes",
        "The lake is deep. Very deep.",
        "It is old.",
    ]


def test_passages_follow_headings_and_merge_short_paragraphs() -> None:
    text = "\n".join(
        [
            "History",
            "Short one.",
            "Another short paragraph here.",
            "Climate",
            " ".join(["word"] * 45) + ".",
            "Tail.",
        ]
    )
    passages = split_passages(text, max_words=100, min_words=10)
    assert [(p.heading, p.text) for p in passages] == [
        ("History", "Short one. Another short paragraph here."),
        ("Climate", " ".join(["word"] * 45) + "."),
        ("Climate", "Tail."),
    ]
    assert [p.position for p in passages] == [0, 1, 2]


def test_long_paragraphs_are_cut_at_sentences_with_overlap() -> None:
    sentences = [
        f"Sentence number {n} says something about the lake and its fish." for n in range(30)
    ]
    passages = split_passages(" ".join(sentences), max_words=60, min_words=20)

    assert len(passages) > 3
    for passage in passages:
        assert len(passage.text.split()) <= 60
        assert passage.text.endswith(".")
    for before, after in itertools.pairwise(passages):
        last_sentence = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last_sentence.rstrip("."))


def test_stemming_and_tokens() -> None:
    assert {stem(w) for w in ("boil", "boils", "boiling", "boiled")} == {"boil"}
    assert stem("running") == "run" and stem("cities") == "city" and stem("boxes") == "box"
    assert stem("string") == "string" and stem("speed") == "speed" and stem("glass") == "glass"
    # A silent e goes with -ing and -es, so the bare word drops it too.
    assert {stem(w) for w in ("cruise", "cruises", "cruising", "cruised")} == {"cruis"}
    assert {stem(w) for w in ("close", "closes", "closing")} == {"clos"}
    assert stem("free") == "free" and stem("degree") == "degree"
    assert stem("women") == stem("woman") and stem("children") == stem("child")
    assert tokenize("What is the height of the Eiffel Tower?") == ["height", "eiffel", "tower"]


@pytest.mark.parametrize(
    ("question", "expects"),
    [
        ("How many moons does Jupiter have?", "number"),
        ("What is the population of Iceland?", "number"),
        ("At what temperature does seawater freeze?", "number"),
        ("When did the Berlin Wall fall?", "date"),
        ("In which year was the Eiffel Tower built?", "date"),
        ("Who discovered penicillin?", None),
        # The measured attribute after a word or two of its own ("top speed").
        ("What's the top speed of the Halvard Express?", "number"),
        ("What is the surface area of Lake Imbry?", "number"),
        ("What is the wingspan of the azure hollow-hawk?", "number"),
        ("What is the national flower of Auradia?", None),
    ],
)
def test_question_shapes(question: str, expects: str | None) -> None:
    assert analyse_question(question).expects == expects


def test_attribute_words_expand_the_question() -> None:
    shape = analyse_question("How tall is Mount Everest?")
    assert shape.terms == ["tall", "mount", "everest"]
    assert {"height", "elevation"} <= set(shape.related)
    # Pages say "the summit rises to", "the fastest land animal", "went on sale".
    assert set(tokenize("The summit rises")) & set(analyse_question("How high?").related)
    assert "fastest" in analyse_question("How fast can a cheetah run?").related
    assert stem("sale") in analyse_question("When was the first iPhone released?").related
    assert "resident" in analyse_question("How many people live in Yarrowby?").related


def candidates(*texts: str, source: str = "https://a.example/") -> list[Candidate]:
    return [Candidate(text=text, source=source) for text in texts]


def test_relevant_passage_beats_keyword_sharing_distractors() -> None:
    pool = [
        Candidate(
            text="Boiling water at high altitude takes longer to cook pasta.",
            source="https://cooking.example/",
            title="Cooking pasta in the mountains",
        ),
        Candidate(
            text="Pure water boils at 100 °C, or 212 °F, at sea-level pressure.",
            source="https://units.example/",
            title="Boiling point of water",
            heading="Boiling point",
        ),
        Candidate(
            text="Ethanol boils at 78 °C, lower than water.",
            source="https://chem.example/",
            title="Ethanol",
        ),
    ]
    ranked = rank_passages(
        "At what temperature does water boil?", pool, limit=3, budget_chars=10_000
    )
    assert ranked[0].candidate.source == "https://units.example/"
    assert ranked[0].score > ranked[1].score


def test_near_duplicates_are_kept_once() -> None:
    text = (
        "The Nile is about 6,650 km long and flows north through eleven countries before it "
        "reaches the Mediterranean Sea through a wide delta north of Cairo, where most of "
        "Egypt's farms and cities lie along its banks."
    )
    pool = [
        Candidate(text=text, source="https://a.example/"),
        Candidate(text=text.replace("about", "roughly"), source="https://b.example/"),
        Candidate(text=f"Quoted: {text}", source="https://c.example/"),
        Candidate(text="The Nile delta is in Egypt, where the Nile meets the sea.", source="d"),
    ]
    ranked = rank_passages("How long is the Nile?", pool, limit=4, budget_chars=10_000)
    texts = [item.candidate.text for item in ranked]
    assert sum("6,650" in t for t in texts) == 1
    assert len(texts) == 2


def test_budget_limit_and_sources_cap() -> None:
    pool = candidates(*(f"Paris fact {n}: the Eiffel Tower is in Paris, France." for n in range(6)))
    pool.append(Candidate(text="Eiffel Tower tickets in Paris.", source="https://b.example/"))

    ranked = rank_passages("Eiffel Tower Paris", pool, limit=10, budget_chars=120)
    assert sum(len(item.candidate.text) for item in ranked) <= 120

    capped = rank_passages(
        "Eiffel Tower Paris", pool, limit=10, budget_chars=10_000, max_per_source=2
    )
    assert [item.candidate.source for item in capped].count("https://a.example/") == 2
    assert len(capped) == 3

    assert len(rank_passages("Eiffel Tower Paris", pool, limit=2, budget_chars=10_000)) == 2


def test_a_first_passage_longer_than_the_budget_is_cut() -> None:
    pool = candidates("Everest " + "very " * 100 + "high.")
    (only,) = rank_passages("Everest", pool, limit=3, budget_chars=50)
    assert len(only.candidate.text) <= 50
    assert only.candidate.text.endswith("…")


def test_no_useful_question_words_keeps_search_order() -> None:
    pool = candidates("first", "second", "third")
    assert score_passages("what is it?", pool) == [0.0, 0.0, 0.0]
    ranked = rank_passages("what is it?", pool, limit=3, budget_chars=1000)
    assert [item.candidate.text for item in ranked] == ["first", "second", "third"]
