"""The benchmarks' bare SSE client reads a chunked body into lines, whatever the chunking."""

from __future__ import annotations

import asyncio

from bench.stack import _chunked_lines


def _lines(body: bytes) -> list[str]:
    async def read() -> list[str]:
        reader = asyncio.StreamReader()
        reader.feed_data(body)
        reader.feed_eof()
        return [line async for line in _chunked_lines(reader)]

    return asyncio.run(read())


def _chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_lines_split_across_chunks_are_joined() -> None:
    body = _chunked(b'event: generation\r\ndata: {"a"', b": 1}\r\n\r\ndata: Hel", b"lo\n\n")
    assert _lines(body) == ["event: generation", 'data: {"a": 1}', "", "data: Hello", ""]


def test_a_chunk_of_many_events_gives_each_line() -> None:
    body = _chunked(b"data: a\n\ndata: b\n\n", b"event: done\ndata: {}\n\n")
    assert _lines(body) == ["data: a", "", "data: b", "", "event: done", "data: {}", ""]
