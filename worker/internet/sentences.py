"""The sentences of a passage, and what a pronoun opening one stands for.

A page names its subject once and then says "She was born in ...", "It closed in ...":
such a sentence answers for the subject of the sentence before it, for every kind of
question, so a sentence that opens with a pronoun carries that subject as its referent.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from worker.internet.answer_kind import NOT_NAMES, PRONOUNS
from worker.internet.rank import tokenize

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_TABLE_CELL = re.compile(r"\s*\|\s*")
_ROW_BREAK = re.compile(r"(?<=\|)\s+(?=\|\s)")  # "| Porsk | | Language | ..."
_TABLE_START = re.compile(r"(?<=[.!?])\s+(?=\|\s)")  # "... 240,000. | Capital | ..."
_WORD = re.compile(r"[\w'\u2019-]+")

REFERRING_PRONOUNS = PRONOUNS | {"it", "its", "them"}
"""A sentence opening with one of these is about what the sentence before it names."""


@dataclass(frozen=True)
class Sentence:
    """A sentence, and the names (``referent``) the pronoun it opens with stands for."""

    text: str
    referent: str = ""
    label: str = ""
    """For a table row ("| Completed | 1796 |"), its first cell: what the row is about."""


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (a table row counts as one)."""
    return [sentence for sentence, _ in _labelled_sentences(text)]


def _labelled_sentences(text: str) -> list[tuple[str, str]]:
    """The sentences of ``text``, each with its label when it is a table row. A row
    may be two words ("Completed 1796."); a sentence is three at least."""
    sentences: list[tuple[str, str]] = []
    for line in _table_rows(text):
        row = line.lstrip().startswith("|")  # one sentence, with its label
        for sentence in [line] if row else _SENTENCE_END.split(line):
            sentence, label = sentence.strip(), ""
            if sentence.startswith("|"):
                label = next((cell for cell in _TABLE_CELL.split(sentence) if cell), "")
                sentence = _TABLE_CELL.sub(" ", sentence.strip("| ")).strip().rstrip(".") + "."
            if len(sentence.split()) >= (2 if label else 3):
                sentences.append((sentence, label))
    return sentences


def _table_rows(text: str) -> list[str]:
    """The lines of ``text``, with a table's rows on lines of their own: a passage joins
    short lines with spaces ("... 240,000. | Capital | Porsk | | Currency | Velland mark |")."""
    lines: list[str] = []
    for line in text.split("\n"):
        rows = _ROW_BREAK.split(line)
        lead = _TABLE_START.split(rows[0], maxsplit=1)
        if len(lead) == 2 and "|" not in lead[0]:
            rows[:1] = lead
        # A row closes with "|": text after a table's last "|" is a sentence of its own
        # ("| Architect | Frank Dobie | It was the headquarters of ...").
        head, bar, tail = rows[-1].rpartition("|")
        if bar and rows[-1].lstrip().startswith("|") and tail.strip():
            rows[-1:] = [head + bar, tail]
        lines.extend(rows)
    return lines


def sentences_with_referents(text: str, join_chars: int = 0) -> list[Sentence]:
    """The sentences of ``text``, each opening with a pronoun ("She was born in ...")
    with the subject of the sentence before it (or that one's referent, when it names
    none) as its referent. With ``join_chars``, a sentence opening with a personal
    pronoun ("He still seems surprised ... won the Harlan Prize") comes with the whole
    sentence before it, which names the person, when both fit in that many characters."""
    labelled = _labelled_sentences(text)
    labels = dict(labelled)
    sentences = [sentence for sentence, _ in labelled]
    found = [Sentence(sentence, label=labels[sentence]) for sentence in sentences[:1]]
    for previous, sentence in itertools.pairwise(sentences):
        first = _WORD.match(sentence)
        opening = first.group().casefold() if first else ""
        if opening not in REFERRING_PRONOUNS:
            found.append(Sentence(sentence, label=labels[sentence]))
            continue
        pair = f"{previous} {sentence}"
        if opening in PRONOUNS and len(pair) <= join_chars:
            found.append(Sentence(pair))
            continue
        found.append(Sentence(sentence, _subject(previous) or found[-1].referent))
    return found


_SUBJECT_END = frozenset(["is", "was", "are", "were", "has", "had", "have"])
SUBJECT_MAX_WORDS = 12
"""A sentence's subject is the words before its first "is", "was", "has" ... when that
comes this early ("Proxima Centauri is a red dwarf near the Sun": Proxima Centauri)."""


def _subject(sentence: str) -> str:
    """What ``sentence`` is about: its words before its first "is", "was", "has" ...
    (within :data:`SUBJECT_MAX_WORDS`), else its names."""
    words = _WORD.findall(sentence)
    for index, word in enumerate(words[: SUBJECT_MAX_WORDS + 1]):
        if word.casefold() in _SUBJECT_END and index > 0:
            return " ".join(words[:index])
    return _names(sentence)


def _names(sentence: str) -> str:
    """The capitalised words of ``sentence`` that may be names ("Ilse Marren")."""
    words = _WORD.findall(sentence)
    return " ".join(
        word for word in words if word[:1].isupper() and word.casefold() not in NOT_NAMES
    )


def trim_sentence(sentence: str, wanted: set[str], max_chars: int) -> str:
    """``sentence``, or its part around the ``wanted`` terms (stems) when it is longer
    than ``max_chars``, with "…" where it was cut."""
    if len(sentence) <= max_chars:
        return sentence
    words = sentence.split()
    hits = [i for i, word in enumerate(words) if set(tokenize(word)) & wanted] or [0]
    middle = hits[len(hits) // 2]
    start, end = middle, middle + 1
    while end - start < len(words):
        grown = False
        if start > 0 and len(" ".join(words[start - 1 : end])) <= max_chars - 2:
            start -= 1
            grown = True
        if end < len(words) and len(" ".join(words[start : end + 1])) <= max_chars - 2:
            end += 1
            grown = True
        if not grown:
            break
    text = " ".join(words[start:end])
    return ("…" if start > 0 else "") + text + ("…" if end < len(words) else "")
