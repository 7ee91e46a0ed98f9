"""Picking the sentence that answers, and the lead an answer opens with."""

from __future__ import annotations

from pathlib import Path

import pytest
from picking import hand_set_best

from shared.settings import Settings
from worker.internet.answer_kind import expected_answer
from worker.internet.lead import (
    LEAD_MAX_CHARS,
    MIN_LEAD_SCORE,
    estimate_parameters,
    lead_enabled,
    lead_text,
    model_parameters,
)
from worker.internet.measure import unit_kinds
from worker.internet.quote import Quote, QuotedPassage, choose_quotes, pick_quotes
from worker.internet.sentences import split_sentences


def test_sentences_are_split_at_their_ends_and_table_rows_are_one() -> None:
    text = "The bridge opened in 1999. It is 1,482 metres long! Tolls? None.\n| Length | 1,482 m |"
    assert split_sentences(text) == [
        "The bridge opened in 1999.",
        "It is 1,482 metres long!",
        "Length 1,482 m.",
    ]


def test_a_table_row_whose_cell_holds_two_sentences_stays_one_with_its_label() -> None:
    # Split at the cell's sentence end, "Default: 7433 |" would lose the row's label.
    text = "| port | TCP port for client connections. Default: 7433 |"
    assert split_sentences(text) == ["port TCP port for client connections. Default: 7433."]


def test_table_rows_joined_into_a_passage_line_are_sentences_of_their_own() -> None:
    text = "Tarrow is an island republic. | Capital | Porsk | | Currency | Tarrow dellin |"
    assert split_sentences(text) == [
        "Tarrow is an island republic.",
        "Capital Porsk.",
        "Currency Tarrow dellin.",
    ]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many floors does the tower have?", "number"),
        ("When did the railway open?", "date"),
        ("In which month is the festival held?", "date"),
        ("Who invented the quillon engine?", "person"),
        ("What is the capital of Kelbrin?", "place"),  # "Saltmere" as good as "Port Arden"
        ("In which town was the treaty signed?", "place"),
        ("Which architect designed the Vantry Concert Hall?", "name"),
        ("What share of Lundria's electricity comes from wind?", "number"),
        ("What percentage of adults smoke?", "number"),
        ("What time does the market open on Saturdays?", "number"),
        ("What colour is the male ember finch?", "colour"),
        ("Which colour are the trams?", "colour"),
        ("What is the main ingredient of skellan?", "material"),
        ("What is the bell made of?", "material"),
        ("Which of the two bridges is older?", None),
        ("What is the currency of Tarrow?", "currency"),  # "the dellin": lower case
        ("Which currency do they use in Tarrow?", "currency"),
        ("Which fruit goes into a Vellan tart?", "fruit"),  # not a capitalised name
        ("What kind of animal is the club's mascot?", "animal"),
        ("What is the name of the ship in the novel?", "name"),
        ("What is the name of the author of The Gull Road?", "person"),
        ("What is the roof made of?", "material"),
        ("Why is the sky blue?", None),
    ],
)
def test_the_kind_of_answer_a_question_asks_for(question: str, kind: str | None) -> None:
    assert expected_answer(question) == kind


def test_the_sentence_with_the_asked_number_wins_over_a_look_alike() -> None:
    passages = [
        QuotedPassage(
            source_index=1,
            text="The Corvid Tower opened in 2016. The tower has 97 floors above ground and "
            "four basement levels. Offices fill the lower floors.",
            score=2.0,
            title="Corvid Tower",
        ),
        QuotedPassage(
            source_index=2,
            text="The Meridian Tower has 64 floors. It was the tallest in the city.",
            score=2.2,
            title="The tallest buildings in Port Elsa",
        ),
    ]

    quotes = pick_quotes("How many floors does the Corvid Tower have?", passages)

    assert quotes[0] == Quote(
        source_index=1,
        text="The tower has 97 floors above ground and four basement levels.",
        score=quotes[0].score,
    )
    assert [quote.source_index for quote in quotes] == [1, 2]


def test_a_full_date_and_a_full_name_are_preferred() -> None:
    dated = [
        QuotedPassage(1, "The treaty was signed in 1784. Talks began in 1783.", 1.0),
        QuotedPassage(2, "The treaty was signed on 14 June 1784 in the abbey.", 1.0),
    ]
    assert "14 June 1784" in pick_quotes("When was the treaty signed?", dated)[0].text

    named = [QuotedPassage(1, "The engine was invented by Edda Varnsworth of Leeds.", 1.0)]
    assert pick_quotes("Who invented the engine?", named)[0].text.startswith("The engine")


def test_a_sentence_about_another_subject_loses_to_one_about_the_asked_one() -> None:
    # "quillon" is in most titles: the subject. The rotary sentence, on a page that only
    # mentions the quillon engine further on, ranks higher but is not about it.
    passages = [
        QuotedPassage(
            1,
            "The rotary engine was invented by Felix Wankel. Unlike the quillon engine, it "
            "uses a triangular rotor.",
            2.0,
            title="Who invented the rotary engine",
        ),
        QuotedPassage(
            2,
            "The quillon engine was invented by Edda Varnsworth, a mechanic from Leeds.",
            1.2,
            title="The quillon engine: history",
        ),
        QuotedPassage(
            3, "The quillon engine uses a sleeve.", 0.5, title="How a quillon engine works"
        ),
    ]

    quotes = pick_quotes("Who invented the quillon engine?", passages)

    assert quotes[0].source_index == 2 and "Edda Varnsworth" in quotes[0].text


def test_the_question_s_words_side_by_side_count() -> None:
    # Both hold "Apollo", "11", "land", "Moon" and a date; one says "Apollo 11".
    passages = [
        QuotedPassage(1, "Apollo 13 launched on April 11, 1970, to land on the Moon.", 1.0),
        QuotedPassage(2, "Apollo 11 landed on the Moon on 20 July 1969.", 1.0),
    ]

    quotes = pick_quotes("When did Apollo 11 land on the Moon?", passages)

    assert "20 July 1969" in quotes[0].text


def test_a_number_with_its_unit_beats_a_bare_count() -> None:
    passages = [
        QuotedPassage(
            1, "Like cheetahs, greyhounds run fast with all four feet off the ground.", 1.0
        ),
        QuotedPassage(2, "A cheetah can run at 112 km/h in short bursts.", 1.0),
    ]

    quotes = pick_quotes("How fast can a cheetah run?", passages)

    assert "112 km/h" in quotes[0].text


def test_the_asked_kind_of_unit_beats_another_kind() -> None:
    assert unit_kinds("How much did it cost to build the dam?") == {"money"}
    assert unit_kinds("How long does the beetle live?") == {"length", "time"}
    assert unit_kinds("What is the surface area of the lake?") == {"area"}
    assert unit_kinds("How many people live in Yarrowby?") == set()
    # Both hold the dam and a number with a unit; only one is a cost.
    passages = [
        QuotedPassage(
            1, "The walk round the reservoir behind the Ulverstone Dam is 14 miles.", 1.0
        ),
        QuotedPassage(
            2, "The final bill came to 640 million dollars.", 1.0, title="Ulverstone Dam"
        ),
    ]

    quotes = pick_quotes("How much did it cost to build the Ulverstone Dam?", passages)

    assert "640 million dollars" in quotes[0].text


def test_a_number_without_the_asked_unit_is_a_weak_answer() -> None:
    # The look-alike's page ranks higher and asks the question in its title; its only
    # number is a count, not a speed.
    passages = [
        QuotedPassage(
            1,
            "Like cheetahs, they use a double gallop in which all four feet leave the ground.",
            1.0,
            title="How fast can a greyhound run?",
        ),
        QuotedPassage(
            2,
            "The cheetah is the fastest land animal: it can reach 112 km/h in short bursts.",
            0.8,
            title="Cheetah",
        ),
    ]

    quotes = pick_quotes("How fast can a cheetah run?", passages)

    assert "112 km/h" in quotes[0].text


def test_a_name_can_open_a_sentence() -> None:
    passages = [
        QuotedPassage(
            1,
            "The squad kept its best players, including captain Jamie Ruddock. Delphine "
            "Wakeham, who won two titles, took over as head coach in the summer.",
            1.0,
            title="Harrowgate Herons season preview",
        )
    ]

    quotes = pick_quotes("Who coaches the Harrowgate Herons?", passages)

    assert quotes[0].text.startswith("Delphine Wakeham")
    # A capitalised word before the question's own name is no name ("Join Trellis ...").
    careers = [
        QuotedPassage(1, "Join Trellis Robotics and build robots for farms.", 1.0),
        QuotedPassage(2, "Trellis Robotics has its headquarters in Norrhaven.", 1.0),
    ]
    assert "Norrhaven" in pick_quotes("Where is Trellis Robotics based?", careers)[0].text


def test_a_share_is_a_number_in_percent() -> None:
    passages = [
        QuotedPassage(
            1,
            "Lundria's wind farms had another record year. Wind turbines now make 62 percent "
            "of the country's electricity, up from 48 percent.",
            1.0,
            title="Lundria wind power",
        )
    ]
    quotes = pick_quotes("What share of Lundria's electricity comes from wind?", passages)
    assert "62 percent" in quotes[0].text
    assert unit_kinds("What percentage of Lundria's power is wind?") == {"share"}


def test_a_time_of_day_answers_what_time() -> None:
    passages = [
        QuotedPassage(
            1,
            "There are sixty stalls at the Pellham night market, three of them open all day. "
            "On Saturdays the stalls open at 5.30 pm, and on Fridays an hour later.",
            1.0,
            title="The Pellham night market",
        )
    ]
    question = "What time does the Pellham night market open on Saturdays?"
    assert unit_kinds(question) == {"clock"}
    assert "5.30 pm" in pick_quotes(question, passages)[0].text


def test_a_colour_word_answers_what_colour() -> None:
    passages = [
        QuotedPassage(
            1,
            "The ember finch is a small finch of the northern moors. The breeding male is "
            "copper red on the head and breast.",
            1.0,
            title="Ember finch",
        )
    ]
    quotes = pick_quotes("What colour is the male ember finch?", passages)
    assert "copper red" in quotes[0].text
    assert quotes[0].score >= MIN_LEAD_SCORE


def test_what_a_thing_is_mostly_made_of_answers_its_main_ingredient() -> None:
    passages = [
        QuotedPassage(
            1,
            "Skellan is eaten all over Brendis. It's mostly smoked eel, mashed into potato "
            "with butter and dill.",
            1.0,
            title="Skellan",
        )
    ]
    quotes = pick_quotes("What is the main ingredient of skellan?", passages)
    assert "smoked eel" in quotes[0].text


def test_a_street_is_no_person() -> None:
    passages = [
        QuotedPassage(
            1,
            "The Quillby Pottery on Mill Lane is celebrating its 200th birthday. The "
            "business was started in 1824 by Ambrose Fetterley, a farm labourer's son.",
            1.0,
            title="Quillby Pottery celebrates 200 years",
        )
    ]
    assert "Ambrose Fetterley" in pick_quotes("Who founded the Quillby Pottery?", passages)[0].text


def test_a_he_or_she_sentence_comes_with_the_sentence_that_names_the_person() -> None:
    passages = [
        QuotedPassage(
            1,
            "I met Tomasz Wirell in a cafe by the river. He still seems surprised that in "
            "2011 his third collection won the Harlan Prize for poetry. He writes every day.",
            1.0,
            title="An afternoon with a prize-winning poet",
        )
    ]
    quote = pick_quotes("Who won the 2011 Harlan Prize for poetry?", passages)[0]
    assert quote.text.startswith("I met Tomasz Wirell")
    assert "Harlan Prize" in quote.text


def test_a_one_word_place_beats_a_two_word_name_for_where() -> None:
    passages = [
        QuotedPassage(
            1,
            "This week marks 300 years since the Treaty of Valmont ended the Salt War. "
            "Despite its name, the treaty was not signed in Valmont: the envoys met in "
            "Kerlingen, a market town to the east, and signed in its town hall.",
            1.0,
            title="300 years since the Treaty of Valmont",
        )
    ]
    quotes = pick_quotes("In which town was the Treaty of Valmont signed?", passages)
    assert "Kerlingen" in quotes[0].text


def test_no_quote_without_a_question_term_and_long_sentences_are_cut() -> None:
    assert pick_quotes("How deep is the lake?", [QuotedPassage(1, "Cats sleep a lot.", 1.0)]) == []
    long = "Filler words go here " * 30 + "and the lake is 214 metres deep " + "more text " * 40
    (quote,) = pick_quotes("How deep is the lake?", [QuotedPassage(1, long.strip() + ".", 1.0)])
    assert "214 metres deep" in quote.text and len(quote.text) <= 330
    assert quote.text.startswith("…") and quote.text.endswith("…")


def test_the_lead_cites_the_best_sentence() -> None:
    best = Quote(source_index=2, text="The lake is 214 metres deep.", score=1.5)
    assert lead_text(best) == "The lake is 214 metres deep [2]."
    assert lead_text(Quote(source_index=1, text="Weak.", score=0.1)) == ""
    assert lead_text(None) == ""


def test_a_close_runner_up_is_quoted_too() -> None:
    best = Quote(source_index=1, text="Apollo 13 launched on April 11, 1970.", score=2.5)
    close = Quote(source_index=2, text="Eagle touched down on July 20, 1969.", score=2.25)
    assert lead_text(best, close) == (
        "Apollo 13 launched on April 11, 1970 [1]. Eagle touched down on July 20, 1969 [2]."
    )
    # Also from the same source (the learned runner-up may be another sentence there).
    same = Quote(source_index=1, text=close.text, score=2.4)
    assert lead_text(best, same).endswith("Eagle touched down on July 20, 1969 [1].")
    # Not when it scores well below the best, is the best itself, or is too long.
    far = Quote(source_index=2, text=close.text, score=1.5)
    assert lead_text(best, far) == "Apollo 13 launched on April 11, 1970 [1]."
    itself = Quote(source_index=1, text=best.text, score=2.5)
    assert lead_text(best, itself) == "Apollo 13 launched on April 11, 1970 [1]."
    long = Quote(source_index=2, text="Eagle " + "touched " * (LEAD_MAX_CHARS // 8), score=2.4)
    assert lead_text(best, long) == "Apollo 13 launched on April 11, 1970 [1]."
    assert lead_text(None, close) == ""


def test_a_third_close_sentence_is_quoted_after_the_runner_up() -> None:
    best = Quote(source_index=1, text="Joint (two adults) £98.", score=2.5)
    second = Quote(source_index=1, text="Family (two adults, four children) £119.", score=2.5)
    third = Quote(source_index=2, text="Individual adult £64.", score=2.5)
    assert lead_text(best, second, third) == (
        "Joint (two adults) £98 [1]. Family (two adults, four children) £119 [1]. "
        "Individual adult £64 [2]."
    )
    # Not after a runner-up left out, nor past the longest lead.
    assert lead_text(best, None, third) == "Joint (two adults) £98 [1]."
    assert lead_text(best, best, third) == "Joint (two adults) £98 [1]."
    long = Quote(source_index=2, text="Individual " + "adult " * (LEAD_MAX_CHARS // 7), score=2.5)
    assert lead_text(best, second, long) == (
        "Joint (two adults) £98 [1]. Family (two adults, four children) £119 [1]."
    )


def test_the_lead_setting(tmp_path: Path) -> None:
    def settings(**values: object) -> Settings:
        return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]

    assert lead_enabled(settings(evidence_lead="on"))
    assert not lead_enabled(settings(evidence_lead="off"))
    # auto: a model whose size cannot be read (not pulled here) counts as small.
    assert model_parameters(settings(model=str(tmp_path / "missing.gguf"))) is None
    assert lead_enabled(settings(evidence_lead="auto", model=str(tmp_path / "missing.gguf")))


def test_model_size_from_gguf_metadata() -> None:
    smollm2 = {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.embedding_length": 576,
        "llama.feed_forward_length": 1536,
        "llama.vocab_size": 49152,
    }
    llama7b = {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.embedding_length": 4096,
        "llama.feed_forward_length": 11008,
    }
    assert 100e6 < (estimate_parameters(smollm2) or 0) < 200e6
    assert 6e9 < (estimate_parameters(llama7b) or 0) < 7.5e9
    assert estimate_parameters({}) is None


def test_made_in_a_year_is_no_material_and_covered_in_says_what_it_is_made_of() -> None:
    passages = [
        QuotedPassage(
            1,
            "The Kessel Gates at the north entrance were made in 1802 by the smith Anna "
            "Brook. They are of cast bronze, and are 6 metres high.",
            1.0,
            title="Kessel Park",
        ),
        QuotedPassage(
            2,
            "Its low roof is covered in Marrow stone tiles, brought from the quarry by barge.",
            1.0,
            title="Kessel Chapel",
        ),
    ]
    assert "cast bronze" in pick_quotes("What are the Kessel Gates made of?", passages)[0].text
    quote = pick_quotes("What is the roof of Kessel Chapel made of?", passages)[0]
    assert "Marrow stone" in quote.text and quote.score >= MIN_LEAD_SCORE


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Which fruit is used in a Dallow pie?", "damsons"),
        ("What currency is used in Dallow?", "Dallow crown"),
        ("What animal is the mascot of Dallow Town?", "otter"),
    ],
)
def test_a_word_of_the_asked_kind_answers_which_fruit_currency_or_animal(
    question: str, answer: str
) -> None:
    passages = [
        QuotedPassage(
            1,
            "Dallow is a small island with 9,000 people. | Capital | Hove | | Currency | "
            "Dallow crown |\nDallow Town play at the Quay ground; their mascot is an otter "
            "called Pip.\nA Dallow pie is baked for the harvest. The filling is damsons, "
            "stewed in honey.",
            1.0,
            title="Dallow",
        )
    ]
    # The lead states it: for the pie, the learned choice (ninth round) opens with the
    # mascot's sentence and quotes the filling's beside it as a close runner-up (a known
    # cost, bench/retrieval/README.md).
    picked = choose_quotes(question, passages)
    assert answer in lead_text(picked.quotes[0], *picked.runners)
    assert picked.quotes[0].score >= MIN_LEAD_SCORE


def test_the_name_of_a_thing_stands_next_to_that_thing() -> None:
    passages = [
        QuotedPassage(
            1,
            "Lena Marsh's novel The Salt Road is a sea story about grief.",
            1.0,
            title="The Salt Road to become a film",
        ),
        QuotedPassage(
            2,
            "The ship, the Grey Petrel, is almost a character in the novel.",
            1.0,
            title="Review: The Salt Road",
        ),
    ]
    quote = pick_quotes("What is the name of the ship in the novel The Salt Road?", passages)[0]
    assert "Grey Petrel" in quote.text


def test_a_weekday_s_own_hours_answer_for_that_day() -> None:
    passages = [
        QuotedPassage(
            1,
            "The Fenn Gallery is on Quay Street. From Monday to Saturday the gallery is open "
            "from 9 am to 5 pm. On Sundays it opens at noon and closes at 3 pm.",
            1.0,
            title="Visit the Fenn Gallery",
        )
    ]
    # The hand-set score's cue; the first quote is the learned choice, which on this
    # page prefers the longer weekday sentence (a known cost, bench/retrieval/README.md).
    assert "3 pm" in hand_set_best("What time does the Fenn Gallery close on Sundays?", passages)
