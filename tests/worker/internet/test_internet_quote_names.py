"""Picking the sentence that answers: the sixth round's general rules, each on made-up
sentences: a sentence must offer a candidate the question does not already hold, a name
given by a naming cue answers "what is it called", and what a page asks is no answer."""

from __future__ import annotations

import re

import pytest
from picking import best, hand_set_best, lead

from worker.internet.agreement import OTHER_MODEL_FACTOR, asked_models, model_factor
from worker.internet.answer_kind import (
    expected_answer,
    naming_positions,
    place_kinds_of,
    version_positions,
    versions_in,
)
from worker.internet.measure import counted_thing
from worker.internet.quote import QuotedPassage, pick_quotes
from worker.internet.rank import analyse_question, stem
from worker.internet.sentences import sentences_with_referents


@pytest.mark.parametrize(
    "question",
    [
        "What is the ferry to Osk called?",
        "What do fans call the Pellmoor stand?",
        "What was the old mill called before 1900?",
    ],
)
def test_what_something_is_called_asks_for_a_name(question: str) -> None:
    assert expected_answer(question) == "name"


def test_a_naming_cue_marks_the_name_a_sentence_gives() -> None:
    assert _named("Keepers named her Juniper and the visitors call her June") == {3}
    assert _named("It is known as the Salt Arch") == {5, 6}
    assert _named("Dorrit Hall is called little") == set()


def _named(sentence: str) -> set[int]:
    return naming_positions(sentence.split(" "))


def test_a_possessive_of_the_question_s_own_name_is_no_new_name() -> None:
    # "Tamsby Museum's" restates the question's name; the answer names the dog.
    text = (
        "Tamsby Museum's guard dog has been given a medal by the town council. "
        "Keepers named him Pilot when he arrived as a puppy."
    )
    question = "What is the name of the dog at Tamsby Museum?"
    assert "Pilot" in best(question, text, titles=("Tamsby Museum",))


def test_a_name_given_by_a_naming_cue_answers_what_it_is_called() -> None:
    text = (
        "The Orrin footbridge, opened by Mayor Hal Tesk in 2004, links the two quays. "
        "Its swaying deck soon earned it the nickname the Jelly Bridge."
    )
    question = "What do people call the Orrin footbridge?"
    assert "Jelly Bridge" in best(question, text, titles=("Orrin footbridge",))


def test_a_table_row_of_another_attribute_is_no_answer() -> None:
    # "Navy Blue" is a name, but the row says the club's colours, not who founded it.
    # It scores under half what a sentence naming the founder does (before the ninth
    # round it scored under the lead's threshold; that is 0.3 now, a known cost).
    text = "The Brennock Chess Club meets in the town hall. | Colours | Navy Blue and White |"
    founded = "The Brennock Chess Club was founded in 1921 by the vicar, Edwin Pask."
    question = "Who founded the Brennock Chess Club?"
    row = pick_quotes(question, [QuotedPassage(1, text, 1.0, title="Brennock Chess Club")])
    answer = pick_quotes(question, [QuotedPassage(1, founded, 1.0, title="Brennock Chess Club")])
    assert "Edwin Pask" in answer[0].text
    assert all(quote.score < answer[0].score / 2 for quote in row)


def test_a_two_word_row_of_the_asked_attribute_answers() -> None:
    # A page says "Completed" where the question says "finished".
    rows = "The Harl Aqueduct carries the canal. | Started | 1801 | | Completed | 1811 |"
    repaired = "The Harl Aqueduct was repaired in 1990 by the canal trust."
    question = "What year was the Harl Aqueduct finished?"
    assert "1811" in best(question, rows, repaired, titles=("Harl Aqueduct", "Harl Aqueduct"))


def test_text_after_a_table_s_last_bar_is_a_sentence_of_its_own() -> None:
    found = sentences_with_referents("| Built | 1905 | | Floors | 9 | It was a hotel until 1950.")
    assert [sentence.text for sentence in found] == [
        "Built 1905.",
        "Floors 9.",
        "It was a hotel until 1950.",
    ]
    assert [sentence.label for sentence in found] == ["Built", "Floors", ""]


def test_a_question_on_the_page_is_no_answer() -> None:
    asked = "Who designed the Pellow Footbridge, with its Art Deco lamps? We asked around."
    told = "The Pellow Footbridge is one of the works of Ines Harrow, an engineer."
    question = "Who designed the Pellow Footbridge?"
    titles = ("Pellow Footbridge", "Pellow Footbridge")
    assert "Ines Harrow" in best(question, asked, told, titles=titles)


def test_a_name_said_to_be_another_kind_of_place_is_no_answer() -> None:
    # "the river Lenn" is a river, not the country asked for.
    text = (
        "The Osterby Keep is a tower house on a crag above the river Lenn. "
        "The keep stands in the far north of Marrow, near the coast."
    )
    question = "In which country is the Osterby Keep?"
    assert "Marrow" in best(question, text, titles=("Osterby Keep",))


def test_a_name_said_to_be_the_asked_kind_of_place_is_a_full_answer() -> None:
    text = (
        "The Dunhallow Canal, dug in 1790, skirts the edge of the valley. "
        "The town grew up at a ford on the River Seln."
    )
    question = "Which river runs through Dunhallow?"
    assert "River Seln" in best(question, text, titles=("Dunhallow",))


def test_how_often_asks_for_a_frequency() -> None:
    assert expected_answer("How often does the Kelby book club meet?") == "frequency"
    text = (
        "The Kelby book club was started in 2011 by 4 friends and now has 40 members. "
        "It meets every third Thursday, in the back room of the Swan."
    )
    question = "How often does the Kelby book club meet?"
    assert "every third Thursday" in best(question, text, titles=("Kelby book club",))


def test_a_number_after_every_says_how_often_not_how_long() -> None:
    text = (
        "The harbour ferry to Skerrin leaves every 40 minutes from the north pier. "
        "The crossing takes 25 minutes in calm weather."
    )
    question = "How long is the ferry crossing to Skerrin?"
    assert "25 minutes" in best(question, text, titles=("Skerrin ferry",))


def test_a_name_after_another_role_and_an_article_is_not_the_asked_role_s() -> None:
    # "developed by the Orley Group": the developer, not the designer.
    text = (
        "The Varn Library was developed by the Orley Group for Varn Council. "
        "It was designed by Rhea Quill, whose studio had built only houses before."
    )
    question = "Who designed the Varn Library?"
    assert "Rhea Quill" in best(question, text, titles=("Varn Library",))


def test_a_page_says_we_work_from_where_the_question_says_based() -> None:
    texts = (
        "The Tansy Soap Company has won a prize at the Northern Craft Fair for its lavender bar.",
        "Our shop in Dunmere stocks every soap we make.",
        "We work from a converted barn in Orrick, where all our soap is made.",
    )
    passages = [
        QuotedPassage(n, text, 1.0, title="Tansy Soap Company") for n, text in enumerate(texts)
    ]
    question = "Where is the Tansy Soap Company based?"
    assert "Orrick" in pick_quotes(question, passages)[0].text


def test_a_model_number_alone_names_another_model_of_the_series() -> None:
    models = asked_models("What is the range of the Holm X4 drone?")
    assert model_factor("The X3 manages 8 km on one battery.", models) == OTHER_MODEL_FACTOR
    assert model_factor("Unlike the X3, the X4 manages 12 km.", models) == 1.0
    assert model_factor("It manages 12 km on a 4K setting.", models) == 1.0


def test_a_lower_case_query_asks_for_a_model_and_a_release_keeps_its_point() -> None:
    assert asked_models("how much vram does the kovar rx 760 have") == {"rx": "760"}
    assert asked_models("when did nimbussync 7 come out") == {"nimbussync": "7"}
    assert asked_models("bake it at 180 for 2 hours") == {}  # a stopword names nothing
    models = asked_models("what python version do i need for ventrix cli 4.2")
    assert models == {"cli": "4.2"}
    assert model_factor("Ventrix CLI 4.1 released", models) == OTHER_MODEL_FACTOR
    assert model_factor("Ventrix CLI 4.2 released", models) == 1.0
    seven = asked_models("when did nimbussync 7 come out")
    assert model_factor("NimbusSync 7.1 was released in February.", seven) == OTHER_MODEL_FACTOR
    assert model_factor("NimbusSync 7 was released in September.", seven) == 1.0
    # A sentence's full stop is no point of a release.
    assert model_factor("That is the Ventra K3.", asked_models("Ventra K3 weight")) == 1.0


def test_how_many_counts_the_word_after_many() -> None:
    assert counted_thing("How many lifts serve the Orlen Tower?") == "lifts"


def test_one_of_and_a_count_of_another_thing_lose_to_the_counted_thing() -> None:
    texts = (
        "One of the best views of Harrow is from the Orlen Tower, and two guards keep the door.",
        "Altogether six lifts run from the lobby to the viewing deck.",
    )
    passages = [
        QuotedPassage(n, text, 1.0 if n == 0 else 0.6, title=title)
        for n, (text, title) in enumerate(zip(texts, ("Orlen Tower", "Harrow towers"), strict=True))
    ]
    question = "How many lifts serve the Orlen Tower?"
    # The hand-set score's cue; the learned choice (since the twelfth round's weights)
    # opens with the tower's own page here (a known cost, bench/retrieval/README.md), so the cue is
    # checked on the hand-set scores.
    assert "six lifts" in hand_set_best(question, passages)


def test_a_page_says_joined_where_the_question_says_plays_for() -> None:
    texts = (
        "Tomas Reyne grew up in Ostley and came through the academy at Ostley Rovers.",
        "Reyne, 21, joined Harl United from Ostley Rovers in May for a small fee.",
    )
    passages = [QuotedPassage(n, text, 1.0, title="Tomas Reyne") for n, text in enumerate(texts)]
    question = "Which team does Tomas Reyne play for?"
    assert "Harl United" in pick_quotes(question, passages)[0].text


def test_a_sentence_about_a_model_of_the_thing_loses() -> None:
    texts = (
        "A 30 cm replica of the Harrow Lion statue in Dunmere, cast in pewter.",
        "It is carved from Portland stone and stands four metres high.",
    )
    passages = [
        QuotedPassage(n, text, 1.0 if n == 0 else 0.8, title=title)
        for n, (text, title) in enumerate(zip(texts, ("Gift shop", "Harrow Lion"), strict=True))
    ]
    question = "What is the Harrow Lion statue in Dunmere made of?"
    assert "Portland stone" in pick_quotes(question, passages)[0].text


def test_a_postcode_question_asks_for_a_postcode() -> None:
    assert expected_answer("What's the postcode of Tarn Chapel?") == "postcode"
    texts = (
        "Tarn Chapel has reopened after a new organ was fitted.",
        "Tarn Chapel is available for weddings, concerts and meetings.",
        "Write to Tarn Chapel, Mill Road, Tarn, HB4 9TQ, or call the warden.",
    )
    passages = [QuotedPassage(n, text, 1.0, title="Tarn Chapel") for n, text in enumerate(texts)]
    assert "HB4 9TQ" in pick_quotes("What's the postcode of Tarn Chapel?", passages)[0].text


def test_a_place_named_as_where_something_is_beats_another_capitalised_word() -> None:
    # "Gaelic" is capitalised but says where nothing is; "in Kilbride" does.
    texts = (
        "Ansel Morrow (born 1941) is a poet known for his Gaelic sonnets and his elegies.",
        "He was born in Kilbride, a mining town, and left it at sixteen.",
    )
    passages = [QuotedPassage(n, text, 1.0, title="Ansel Morrow") for n, text in enumerate(texts)]
    question = "Where was the poet Ansel Morrow born?"
    # The lead states it: the learned choice (thirteenth round's weights) opens with the
    # poet's first sentence (17.9 against 17.8) and quotes the birthplace beside it (a
    # known cost, bench/retrieval/README.md); the hand-set score puts "Kilbride" first.
    assert "Kilbride" in lead(question, passages)
    assert "Kilbride" in hand_set_best(question, passages)


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("What's the fastest time anyone has run the Kelso 10K in?", ["record"]),
        ("What do fans call the Pellmoor stand?", ["nickname", "named", "known"]),
        ("What year was the Harl Aqueduct finished?", ["completed"]),
        ("Where is Osk Pottery based?", ["located", "headquarters", "work"]),
        ("Which team does Ana Pell play for?", ["joined", "signed"]),
    ],
)
def test_the_asked_attribute_s_other_words(question: str, words: list[str]) -> None:
    assert {stem(word) for word in words} <= set(analyse_question(question).related)


def test_a_street_s_name_carries_a_street_word() -> None:
    texts = (
        "Owner Mina Roth said the Pell Bakery would soon open on Sundays too.",
        "The Pell Bakery is at the top of Cobble Row, opposite the church.",
    )
    passages = [QuotedPassage(n, text, 1.0, title="Pell Bakery") for n, text in enumerate(texts)]
    assert "Cobble Row" in pick_quotes("Which street is the Pell Bakery on?", passages)[0].text
    # The question's own "street" still marks a street's name ("Quay Street").
    assert place_kinds_of(["a", "shop", "on", "Quay", "Street"], [3]) == {"street"}


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Which release of tarnlib fixed the memory leak in the streaming parser?", "version"),
        ("which version of TesslaDB turned write-ahead logging on by default", "version"),
        ("what is the minimum Node version for glimmerpack 5", "version"),
        ("Which Python version does libfennec 3 need?", "version"),
        ("which firmware fixed the WPA3 disconnect bug on the Kestrel AX58", "version"),
        ("When was the first Harrow phone released?", "date"),  # a day, not a version
        ("How long is the director's version of the film?", "number"),
    ],
)
def test_a_version_question_asks_for_a_version(question: str, kind: str) -> None:
    assert expected_answer(question) == kind


def test_a_changelog_entry_answers_with_the_version_of_its_heading() -> None:
    # The version is only in the section's heading ("## v3.8.2"); the entry under it,
    # quoted with that version, answers; a version the question names ("3.8") does not.
    entries = (
        ("v3.8.2", "- Fixed a memory leak in the streaming parser when a member was skipped."),
        ("v3.8.1", "- Fixed a crash when reading empty archives in the streaming reader."),
        ("", "The parser rewrite planned for 4.0 should remove a whole class of leaks."),
    )
    passages = [
        QuotedPassage(n, text, 1.0, context=heading, title="tarnlib changelog")
        for n, (heading, text) in enumerate(entries)
    ]
    question = "Which release of tarnlib fixed the memory leak in the streaming parser?"
    assert pick_quotes(question, passages)[0].text.startswith("v3.8.2: - Fixed a memory leak")
    # A heading that is not a version is not quoted; nor is one for another kind of question.
    assert all(
        not quote.text.startswith("v3.8")
        for quote in pick_quotes("What did tarnlib fix in the streaming parser?", passages)
    )
    # A heading may name the kind of release ("Firmware 4.2.17").
    firmware = [
        QuotedPassage(0, "- Fixed WPA3 clients disconnecting.", 1.0, context="Firmware 4.2.17"),
        QuotedPassage(1, "- Added WPA3 Personal support.", 1.0, context="Firmware 4.2.11"),
    ]
    fixed = pick_quotes("Which firmware fixed the WPA3 disconnects on the AX58?", firmware)
    assert fixed[0].text == "Firmware 4.2.17: - Fixed WPA3 clients disconnecting."
    plain = [QuotedPassage(0, entries[0][1], 1.0, context="Bug fixes", title="tarnlib")]
    assert pick_quotes(question, plain)[0].text == entries[0][1]


def test_a_version_the_question_names_is_no_answer() -> None:
    sentence = "Release v3.9 dropped Python 3.8 and 3.7."
    starts = [match.start() for match in re.finditer(r"[\w'\u2019-]+", sentence)]
    named = versions_in("Which release of tarnlib dropped Python 3.8?")
    assert named == {"3.8"}
    assert version_positions(sentence, named, starts) == [1, 8]  # "v3" of "v3.9", "3" of "3.7"
