"""The terminal chat's SSE reading (the whole client: tests/e2e/test_cli_chat.py)."""

from __future__ import annotations

from shared.chat_client import SseEvent, parse_sse
from shared.cli import build_parser


def test_parse_sse_joins_data_lines_and_skips_comments() -> None:
    lines = [
        ": keep-alive",
        "",
        "id: g:1-0",
        "event: generation",
        'data: {"status": "queued"}',
        "",
        "id: g:2-0",
        "data: two",
        "data: lines",
        "",
        "data:no space",
        "",
    ]
    assert list(parse_sse(iter(lines))) == [
        SseEvent(event="generation", data='{"status": "queued"}', id="g:1-0"),
        SseEvent(event="message", data="two\nlines", id="g:2-0"),
        SseEvent(event="message", data="no space", id=""),
    ]


def test_chat_command_line() -> None:
    args = build_parser().parse_args(["chat", "abc", "--internet", "--url", "http://h:1"])
    assert (args.chat_id, args.internet, args.url) == ("abc", True, "http://h:1")
    assert args.api_key is None
    args = build_parser().parse_args(["chat"])
    assert args.chat_id is None and not args.internet
