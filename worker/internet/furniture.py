"""Page furniture that main-text extraction keeps: bylines and post meta ("By Staff Writer
· Updated 12 March 2024 · 6 min read", "Posted on 14 February 2023 by Sam · 4 comments"),
encyclopedia taglines and hatnotes, category lists, newsletter pleas, star ratings, and
footers' legal and shop lines ("Prices include VAT. © 2024 Explore More Ltd.", "Free
shipping on orders over $50").

Left in, a byline is glued to the first sentence of its passage, and its capitalised
words and date then look like the name or date a question asks for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    rf"(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    r"|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}"
    r"|(?:an?|\d+)\s+(?:minute|hour|day|week|month|year)s?\s+ago|yesterday|today)"
)
# Words that start a sentence, so they end a byline's name ("By Sam The lake is ...").
_NOT_NAME = r"(?!(?:The|A|An|This|That|These|It|Its|In|On|At|Our|We|Most|Some)\b)"
_CAPITALISED = r"(?-i:[A-Z])[\w.'\u2019-]*"  # case-sensitive inside the re.I patterns
_NAME = rf"{_NOT_NAME}{_CAPITALISED}(?:\s+{_NOT_NAME}{_CAPITALISED}){{0,3}}"
# A piece of post meta that never starts a sentence of content.
_STRONG_PIECE = (
    rf"(?:by\s+{_NAME}"
    rf"|(?:posted|published|updated|last\s+updated|modified|edited)(?:\s+on)?:?\s+{_DATE}"
    r"|\d+\s+min(?:ute)?s?\s+read|(?:reading|read)\s+time:?\s+\d+\s+min(?:ute)?s?"
    r"|\d+\s+comments?|no\s+comments|\d+\s+shares?)"
)
_PIECE = rf"(?:{_STRONG_PIECE}|{_DATE})"
_SEPARATORS = r"[\s\u00b7\u2022|\u2013\u2014,;-]*"
_LONE_BYLINE = re.compile(rf"by\s+{_NAME}\s*", re.I)  # "By Monday the river ..." is content
_LEADING_META = re.compile(
    rf"^(?:{_PIECE}{_SEPARATORS})*{_STRONG_PIECE}{_SEPARATORS}(?:{_PIECE}{_SEPARATORS})*",
    re.I,
)

_FURNITURE_LINES = [
    re.compile(pattern, re.I)
    for pattern in (
        r"^from [^,]{1,60}, the free encyclopedia\.?$",
        r"^this article is about\b",
        r"^for other uses, see\b",
        r"^\S.{0,80}\(disambiguation\)\.?$",
        r"^categories?:",
        r"^(?:sign up|subscribe)\b.{0,100}$",
        r"^.{0,80}\b(?:our|free) newsletter\b.{0,60}$",
        r"^.{0,60}\bin your inbox\b.{0,60}$",
        r"^[\u2605\u2606\s]*\d(?:\.\d)? out of 5(?: stars)?$",
        r"^[\u2605\u2606]+.{0,30}$",
        r"^\(?[\d,]+ (?:reviews?|ratings?)\)?$",
        r"^(?:advertisement|skip to (?:main )?content|jump to navigation|share this article"
        r"|read more|related (?:articles|stories|posts))$",
        # Footers: a short line with a copyright notice, and shops' terms of sale.
        r"^(?=.{0,160}$).*(?:\u00a9|\(c\)\s*\d{4}|\bcopyright\b\s*\d{4}|\ball rights reserved\b)",
        r"^(?:all\s+)?prices?\s+(?:include|exclude|incl\.?|excl\.?)\s+(?:vat|sales\s+tax|tax(?:es)?)\b"
        r".{0,100}$",
        r"^free\s+(?:shipping|delivery|returns?)\b.{0,80}$",
        r"^.{0,40}\b(?:free\s+)?(?:returns?|refunds?)\s+within\s+\d+\s+days\b.{0,60}$",
    )
]

# A footer's row of links: a few capitalised words, no sentence, no number.
_LINK_ROW = re.compile(r"(?:(?-i:[A-Z])[\w'&-]*[\s\u00b7|/\u2022-]*){1,8}")


def is_furniture(line: str) -> bool:
    """Whether ``line`` (one extracted paragraph) is page furniture rather than content."""
    line = line.strip()
    if any(pattern.search(line) for pattern in _FURNITURE_LINES):
        return True
    return strip_meta(line) == "" and line != ""


def strip_meta(line: str) -> str:
    """``line`` without the byline or post meta at its front ("By Staff Writer · 6 min
    read The lake …" → "The lake …"). A bare date is only dropped next to other meta: a
    sentence may well start with one."""
    match = _LEADING_META.match(line)
    if match is None or not match.group(0).strip():
        return line
    if match.end() < len(line) and _LONE_BYLINE.fullmatch(match.group(0)):
        return line  # a lone "By X" before text, with no separator: maybe a sentence
    return line[match.end() :].lstrip()


def drop_furniture(lines: Sequence[str], *, title: str = "") -> list[str]:
    """``lines`` without furniture lines, bylines and meta cut from the front of the
    others (and a page title that extraction glued to a byline). Everything from a
    "Categories:" line to the end of the page goes when no sentence follows it, and so do
    the footer's link rows that end it ("About Careers Press")."""
    kept: list[str] = []
    for index, line in enumerate(lines):
        if line.casefold().startswith("categories:") and not any(
            rest.rstrip().endswith((".", "!", "?")) for rest in lines[index + 1 :]
        ):
            break
        if is_furniture(line):
            continue
        if title and line.casefold().startswith(title.casefold() + " "):
            rest = line[len(title) :].lstrip()
            stripped = strip_meta(rest)
            if stripped != rest:
                line = stripped
        line = strip_meta(line)
        if line:
            kept.append(line)
    while kept and _LINK_ROW.fullmatch(kept[-1]):
        kept.pop()
    return kept
