"""Request and response bodies of the chat and message routes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from shared.schemas import Timestamp, TimestampIn


def _storable_text(value: str) -> str:
    # Postgres text cannot hold NUL, and no database can store a lone surrogate.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


Text = AfterValidator(_storable_text)
# The patterns tell API clients (and schemathesis) what the validators enforce.
NAME_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"  # no NUL, not only blanks
TEXT_PATTERN = r"^[^\u0000]+$"  # no NUL
ChatName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    Text,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255, "pattern": NAME_PATTERN}),
]


class ChatCreate(BaseModel):
    """Body of ``POST /chats/create``."""

    model_config = ConfigDict(extra="forbid")

    name: ChatName = Field(description="Name of the chat, 1 to 255 characters.")


class ChatUpdate(BaseModel):
    """Body of ``PUT /chats/update/{id}``."""

    model_config = ConfigDict(extra="forbid")

    name: ChatName = Field(description="New name of the chat, 1 to 255 characters.")
    updated_at: TimestampIn | None = Field(
        default=None, description="Time of the change (defaults to now; no offset means UTC)."
    )


class ChatOut(BaseModel):
    """A chat as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class ConversationCreate(BaseModel):
    """Body of ``POST /conversations/create``."""

    model_config = ConfigDict(extra="forbid")

    chat_id: uuid.UUID = Field(description="The chat the message belongs to.")
    role: Literal["Human", "Assistant"] = Field(description="Who wrote it.")
    message: Annotated[
        str,
        StringConstraints(min_length=1),
        Text,
        WithJsonSchema({"type": "string", "minLength": 1, "pattern": TEXT_PATTERN}),
    ] = Field(description="The message text (at most MAX_MESSAGE_BYTES bytes of UTF-8).")


class SourceOut(BaseModel):
    """A web page an internet answer cites as ``[index]``."""

    index: int
    title: str
    url: str
    snippet: str = ""
    quote: str = Field(default="", description="The source's sentence that best answers.")


class ConversationOut(BaseModel):
    """A message as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    chat_id: uuid.UUID
    role: Literal["Human", "Assistant"]
    message: str
    created_at: Timestamp
    updated_at: Timestamp
    generation_id: uuid.UUID | None = Field(
        default=None, description="The generation that wrote this answer, if a model did."
    )
    status: Literal["done", "cancelled"] | None = Field(
        default=None, description="How a generated answer ended; 'cancelled' means partial."
    )
    sources: list[SourceOut] | None = Field(
        default=None, description="Web sources of an internet answer, cited as [index]."
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as JSON-ready data."""
    return model.model_dump(mode="json")
