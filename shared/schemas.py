"""Pieces shared by the pydantic schemas of every domain."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema


def _as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is taken to be UTC, as the seed's examples are.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, the seed's format."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]


YEARS = (1970, 9999)
# An ISO 8601 date-time whose year, as written, is 1970 to 9999.
DATE_TIME_PATTERN = r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}"
_DATE_TIME = re.compile(DATE_TIME_PATTERN)
_OUT_OF_RANGE = f"must be a date-time in the years {YEARS[0]} to {YEARS[1]}"


def _date_time_text(value: object) -> object:
    # Only ISO 8601 text: pydantic would read numbers (and numeric strings) as Unix time.
    if not isinstance(value, str) or not re.match(r"^[0-9]{4}-", value):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-01-31T12:00:00Z")
    if not _DATE_TIME.match(value):
        raise ValueError(_OUT_OF_RANGE)
    return value


def _bounded_utc(value: datetime) -> datetime:
    try:
        return _as_utc(value)
    except OverflowError:  # 9999-12-31 with an offset that pushes it into year 10000
        raise ValueError(_OUT_OF_RANGE) from None


TimestampIn = Annotated[
    datetime,
    BeforeValidator(_date_time_text),
    AfterValidator(_bounded_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": DATE_TIME_PATTERN,
            "description": "ISO 8601, years 1970 to 9999; no offset means UTC.",
        }
    ),
]
"""A timestamp in a request body: an ISO 8601 string in the years 1970-9999, stored in UTC."""
