"""Picking the sentence that answers: the fifth round's general rules (answer kinds of
measured shares, prices, opening hours and breeds; the question's own year, time words,
subject and role), each on made-up sentences."""

from __future__ import annotations

import pytest
from picking import best, hand_set_best, lead

from worker.internet.answer_kind import expected_answer
from worker.internet.measure import counted_thing, is_number_answer, unit_kinds
from worker.internet.quote import QuotedPassage
from worker.internet.rank import analyse_question, stem
from worker.internet.sentences import Sentence, sentences_with_referents


@pytest.mark.parametrize(
    ("question", "kind", "units"),
    [
        ("What's the ABV of Marrow Ale?", "number", {"share"}),
        ("How much is a ticket to the Osk Museum?", "number", {"money"}),
        ("How much is admission to the lido?", "number", {"money"}),
        ("When does the Pell Street cafe open in the morning?", "number", {"clock"}),
        ("When does the library close on Fridays?", "number", {"clock"}),
        ("When did the library close?", "date", set()),  # once, in a year
        ("What breed of dog is Biscuit in the film?", "breed", set()),
        ("What water temp does Ovenbird recommend for brewing?", "number", {"temperature"}),
    ],
)
def test_the_kind_of_answer_of_shares_prices_opening_hours_and_breeds(
    question: str, kind: str, units: set[str]
) -> None:
    assert expected_answer(question) == kind
    assert unit_kinds(question) == units


@pytest.mark.parametrize(
    ("question", "text", "answer"),
    [
        (
            "What's the ABV of Orrin Cider?",
            "A dry farmhouse cider from the Orrin valley. Strength: 6.4% ABV. Serve chilled.",
            "6.4%",
        ),
        (
            "How much is a ticket to the Osk Museum?",
            "The Osk Museum's nearest tram stop is Quay Road, 4 minutes away. Adults pay £9 "
            "at the door, and under-fives go free.",
            "£9",
        ),
        (
            "When does the Pell Street cafe open in the morning?",
            "Dalia Venn took over the Pell Street cafe in 2019. The shutters go up at 7.15 am "
            "and the first loaves are out soon after.",
            "7.15 am",
        ),
        (
            "What breed of dog is Biscuit in the film?",
            "The film follows Biscuit across three counties. Biscuit, a wiry Jack Russell "
            "terrier, was played by two dogs. The director is Ana Pell.",
            "terrier",
        ),
    ],
)
def test_a_measured_share_price_time_of_day_and_breed_answer(
    question: str, text: str, answer: str
) -> None:
    assert answer in best(question, text, titles=(question.split(" the ")[-1],))


def test_a_sentence_about_another_year_loses_to_the_asked_year() -> None:
    # Both say how many centuries Ravi Okafor made; one in another year.
    text = (
        "Ravi Okafor made four centuries for Wexcombe in 2019, his first season. "
        "His best year came in 2021, when he made seven centuries and took 30 wickets."
    )
    question = "How many centuries did Ravi Okafor make in 2021?"
    assert "seven" in best(question, text, titles=("Ravi Okafor",))


def test_last_year_s_winner_loses_to_this_year_s() -> None:
    # "this year's" says when: the sentence needs no "year", and "last year's" is wrong.
    text = (
        "Last year's champion, Petra Dunmore, did not defend her title. The Orlen Cup "
        "went to Sana Ilves, who beat the favourite in the final round."
    )
    assert "Sana Ilves" in best("Who won this year's Orlen Cup?", text, titles=("Orlen Cup",))
    older = "The Orlen Cup went to Sana Ilves. Last year's winner was Petra Dunmore."
    # The hand-set score's cue; the learned choice (eleventh round) opens with Sana Ilves
    # here and no longer quotes Petra Dunmore beside it (a known cost,
    # bench/retrieval/README.md), so the cue is checked on the hand-set scores.
    passages = [QuotedPassage(1, older, 1.0, title="Orlen Cup")]
    assert "Petra Dunmore" in hand_set_best("Who won last year's Orlen Cup?", passages)


@pytest.mark.parametrize(
    ("question", "text", "answer"),
    [
        (
            # A page says "ceased" or "shut" where the question says "close".
            "What year did the Ashby Press close?",
            "The Ashby Press was at its busiest in 1952, with 300 printers. "
            "Printing ceased in 1988 after the last contract was lost.",
            "1988",
        ),
        (
            "How much is a ticket to the Pell Lido?",
            "The Pell Lido is 50 metres long and 2 metres deep. Admission is 6 pounds, "
            "and swimmers under 16 go free.",
            "6 pounds",
        ),
    ],
)
def test_the_words_pages_use_for_the_asked_attribute_count(
    question: str, text: str, answer: str
) -> None:
    subject = question.split(" the ")[-1].removesuffix("?").removesuffix(" close").rstrip("?")
    assert answer in best(question, text, titles=(subject,))


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("When was the Velt Chalice stolen?", ["theft", "took", "thieves"]),
        ("What is the capital of Orrland?", ["seat"]),
        ("When did the Bell Inn close?", ["shut", "ceased", "stopped"]),
        ("Who founded Harl Ropes?", ["established", "set"]),
        ("Who won the Dunn Medal?", ["winner"]),
    ],
)
def test_the_asked_attribute_s_other_words(question: str, words: list[str]) -> None:
    assert {stem(word) for word in words} <= set(analyse_question(question).related)


@pytest.mark.parametrize(
    ("question", "text", "answer"),
    [
        (
            "Who founded the Tarn Cheese Company?",
            "Chief executive Omar Bisset runs the Tarn Cheese Company from Kelby. "
            "Wyn Hollis set it up in 1979 with six cows.",
            "Wyn Hollis",
        ),
        (
            "Who wrote the novel Glass Meadows?",
            "Director Rosa Thane will film the novel Glass Meadows next spring. "
            "The author, Kit Maddow, grew up on a farm.",
            "Kit Maddow",
        ),
        (
            "Who directed the film Glass Meadows?",
            "Writer Kit Maddow adapted the film Glass Meadows from her novel. "
            "It was directed by Rosa Thane.",
            "Rosa Thane",
        ),
    ],
)
def test_a_name_by_another_role_word_is_not_the_asked_role_s(
    question: str, text: str, answer: str
) -> None:
    assert answer in best(question, text, titles=(question.split(" the ")[-1].rstrip("?"),))


def test_a_winner_named_by_another_role_still_answers_who_won() -> None:
    # Winning is no role: the winner is often named by another one ("its author").
    text = "A first novel has won the Farrow Prize. Its author, Lina Groot, is a nurse."
    assert "Lina Groot" in best("Who won the Farrow Prize?", text, titles=("Farrow Prize",))


def test_a_count_of_the_counted_thing_beats_a_measure() -> None:
    # "how many arches": a number of arches, not "18 metres" beside the word "arches".
    text = (
        "The Tilly Bridge carries the old mineral line over the Esk. Its arches rise "
        "18 metres above the water. There are 9 arches in all."
    )
    # The lead states it: the learned choice (thirteenth round's weights) opens with the
    # height's sentence (16.1 against 15.9) and quotes the count beside it (a known cost,
    # bench/retrieval/README.md); the hand-set score puts the count first.
    question = "How many arches does the Tilly Bridge have?"
    assert "9 arches" in lead(question, [QuotedPassage(1, text, 1.0)])
    assert "9 arches" in hand_set_best(question, [QuotedPassage(1, text, 1.0)])
    assert counted_thing("How many league goals did Ivo Marr score?") == "goals"
    assert counted_thing("How many people live in Tarrow?") == "people"


def test_a_pronoun_sentence_answers_for_the_subject_before_it() -> None:
    # "She" stands for Tova Lind, the subject of the sentence before; the other page
    # names her but says nothing of where she was born.
    question = "Where was Tova Lind born?"
    born = "Tova Lind was the best known of the northern school. She was born in Harrowby."
    other = "Tova Lind and Piet Aro carved driftwood at Selby Ness."
    # The hand-set score's cue; the learned choice fitted on the 13 dev files (eighth
    # round) opens with the other page's sentence here (a known cost, bench/retrieval/
    # README.md), so the cue is checked on the hand-set scores.
    passages = [
        QuotedPassage(1, born, 1.0, title="Northern sculptors"),
        QuotedPassage(2, other, 1.0, title="Driftwood"),
    ]
    assert "Harrowby" in hand_set_best(question, passages)
    assert sentences_with_referents(
        "Proxima Centauri is a red dwarf near the Sun. Its light takes 4.2 years to reach us."
    )[1] == Sentence("Its light takes 4.2 years to reach us.", "Proxima Centauri")


def test_a_sentence_about_another_model_loses() -> None:
    # "Corvo T3" is another model than the asked "Corvo T4".
    text = (
        "I paid 40 euros for the Corvo T3 kettle back in 2019. The new kettle sells "
        "for 55 euros and boils a litre in two minutes."
    )
    question = "How much does the Corvo T4 kettle cost?"
    assert "55 euros" in best(question, text, titles=("Corvo T4 kettle review",))


def test_a_day_of_the_month_is_no_count() -> None:
    # "How many countries signed": "3" of "3 May 1973" counts nothing; "seven" does.
    sentence = "It was signed on 3 May 1973 by seven nations, and on May 21st by 12 more."
    words = [word.strip(".,") for word in sentence.split(" ")]
    counts = [word for index, word in enumerate(words) if is_number_answer(words, index)]
    assert counts == ["seven", "12"]
    assert "seven nations" in best(
        "How many countries signed the Treaty of Vellstrand?",
        "Signed 3 May 1973.",
        "It was signed in Vellstrand on 3 May 1973 by seven nations bordering the sea.",
        titles=("Treaty of Vellstrand", "Treaty of Vellstrand"),
    )
