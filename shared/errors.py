"""The one exception tree of the product. Each class knows its HTTP status and error code."""

from __future__ import annotations

from typing import Any, ClassVar


class ChatbotError(Exception):
    """Base of every error that is shown to a client as ``{"error": {"code", "message"}}``."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class BadRequest(ChatbotError):
    status_code = 400
    code = "bad_request"


class Unauthorized(ChatbotError):
    status_code = 401
    code = "unauthorized"


class NotFound(ChatbotError):
    status_code = 404
    code = "not_found"


class Conflict(ChatbotError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ChatbotError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(ChatbotError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailable(ChatbotError):
    status_code = 503
    code = "unavailable"


class NoWorker(ServiceUnavailable):
    code = "no_worker"


class SearchUnavailable(ServiceUnavailable):
    code = "search_unavailable"


class GenerationFailed(ChatbotError):
    """A generation cannot go on: sent to clients as an SSE ``error`` event (the status is
    never an HTTP response's: the stream's headers are sent by then)."""

    status_code = 500
    code = "generation_failed"
