"""Main text of a fetched page (trafilatura, with a plain lxml fallback), cut into passages
of about a paragraph that the ranker scores one by one."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import lxml.html
import trafilatura
from lxml import etree

from worker.internet.furniture import drop_furniture

log = logging.getLogger(__name__)

MAX_WORDS = 110
"""Longest passage, in words; longer paragraphs are cut at sentence ends."""
MIN_WORDS = 40
"""Short paragraphs in a row are merged until a passage has this many words."""

# Below this many words trafilatura probably missed the content (or the page has none).
_MIN_MAIN_TEXT_WORDS = 25
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_TABLE_RULE = re.compile(r"^[|:\s-]+$")  # trafilatura's "|---|---|" header separator
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_BOILERPLATE_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "button",
    "select",
)
_BLOCK_XPATH = (
    "//h1|//h2|//h3|//h4|//h5|//h6|//p|//li|//tr|//pre|//blockquote|//dt|//dd|//figcaption"
)


@dataclass(frozen=True)
class Document:
    """A page's title and main text (one paragraph, heading or table row per line)."""

    url: str
    title: str
    text: str


@dataclass(frozen=True)
class PassageText:
    """A piece of a document: ``heading`` is the nearest heading above it, ``position``
    its order in the document."""

    text: str
    heading: str
    position: int


def extract_document(content: str, *, url: str, content_type: str = "text/html") -> Document:
    """The title and main text of a page.

    HTML goes through trafilatura (boilerplate removed, tables kept); when that finds
    little or nothing, a simpler block-by-block extraction with lxml is used instead.
    Plain text is kept as it is, one paragraph per line.
    """
    if content_type == "text/plain":
        paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", content)]
        paragraphs = [paragraph for paragraph in paragraphs if paragraph]
        title = paragraphs[0] if paragraphs and len(paragraphs[0].split()) <= 15 else ""
        return Document(url=url, title=title, text="\n".join(paragraphs))

    html = _XML_DECLARATION.sub("", content, count=1)
    title = ""
    text = ""
    try:
        extracted = trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_tables=True,
            include_comments=False,
            favor_recall=True,
        )
    except Exception:  # trafilatura can fail on odd markup; the fallback handles the page.
        log.warning("trafilatura failed on %s", url, exc_info=True)
        extracted = None
    if extracted is not None and not isinstance(extracted, dict):
        title = _clean_line(extracted.title or "")
        text = _clean_text(extracted.text or "")
    if not title or len(text.split()) < _MIN_MAIN_TEXT_WORDS:
        fallback_title, fallback_text = _lxml_extract(html)
        title = title or fallback_title
        if len(fallback_text.split()) > len(text.split()):
            text = fallback_text
    first_line, _, rest = text.partition("\n")
    if title and first_line.casefold() == title.casefold():
        text = rest  # the page's <h1> repeats its title, which Document.title already holds
    # Bylines and meta glued to a passage's first sentence pass for a name or date answer.
    text = "\n".join(drop_furniture(text.split("\n"), title=title))
    return Document(url=url, title=title, text=text)


def _lxml_extract(html: str) -> tuple[str, str]:
    """(``<title>``, block texts) from the raw HTML, boilerplate elements dropped."""
    try:
        tree = lxml.html.fromstring(html)
    except (etree.ParserError, ValueError):
        return "", ""
    title = ""
    found = tree.xpath("//title")
    if found:
        title = _clean_line(found[0].text_content())
    for element in tree.xpath("|".join(f"//{tag}" for tag in _BOILERPLATE_TAGS)):
        if element.getparent() is not None:
            element.drop_tree()
    lines: list[str] = []
    seen: set[str] = set()
    for block in tree.xpath(_BLOCK_XPATH):
        if block.tag == "tr":
            cells = [_clean_line(cell.text_content()) for cell in block.xpath("./td|./th")]
            line = "| " + " | ".join(cells) + " |" if cells else ""
        else:
            line = _clean_line(block.text_content())
        if line and line not in seen:
            seen.add(line)
            lines.append(line)
    if not lines:
        body = tree.xpath("//body")
        root = body[0] if body else tree
        lines = [_clean_line(part) for part in root.text_content().split("\n")]
        lines = [line for line in lines if line]
    return title, "\n".join(lines)


def _clean_line(text: str) -> str:
    return " ".join(text.split())


def _clean_text(text: str) -> str:
    lines = (_clean_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line and not _TABLE_RULE.match(line))


def _is_heading(line: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= 10
        and line[-1] not in ".!:;,|"
        and not line.startswith(("|", "- ", "* ", "•"))
    )


def split_passages(
    text: str, *, max_words: int = MAX_WORDS, min_words: int = MIN_WORDS
) -> list[PassageText]:
    """Cut a document's text (one paragraph per line) into passages.

    Short paragraphs in a row are merged up to ``min_words``; a paragraph over
    ``max_words`` is cut at sentence ends into pieces that overlap by one sentence.
    Headings start a new passage and are remembered as the passages' ``heading``.
    """
    passages: list[PassageText] = []
    heading = ""
    buffer: list[str] = []
    buffered_words = 0

    def emit(piece: str) -> None:
        passages.append(PassageText(text=piece, heading=heading, position=len(passages)))

    def flush() -> None:
        nonlocal buffer, buffered_words
        if buffer:
            emit(" ".join(buffer))
        buffer = []
        buffered_words = 0

    lines = [line for line in (_clean_line(raw) for raw in text.split("\n")) if line]
    for index, line in enumerate(lines):
        words = len(line.split())
        if _is_heading(line) and index + 1 < len(lines):
            flush()
            heading = line
            continue
        if words > max_words:
            flush()
            for piece in _split_long(line, max_words=max_words):
                emit(piece)
            continue
        if buffered_words + words > max_words:
            flush()
        buffer.append(line)
        buffered_words += words
        if buffered_words >= min_words:
            flush()
    flush()
    return passages


def _split_long(paragraph: str, *, max_words: int) -> list[str]:
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        # A "sentence" longer than a passage (lists, run-ons): cut it by words.
        for start in range(0, len(words), max_words):
            sentences.append(" ".join(words[start : start + max_words]))
    pieces: list[str] = []
    current: list[str] = []
    current_words = 0
    for sentence in sentences:
        words = len(sentence.split())
        if current and current_words + words > max_words:
            pieces.append(" ".join(current))
            last = current[-1]
            # Carry the last sentence over so a fact split across the cut stays whole.
            if len(last.split()) <= max_words // 3:
                current, current_words = [last], len(last.split())
            else:
                current, current_words = [], 0
        current.append(sentence)
        current_words += words
    if current:
        pieces.append(" ".join(current))
    return pieces
