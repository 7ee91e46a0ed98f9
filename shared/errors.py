"""The one exception tree of the product. Each class knows its HTTP status and error code."""

from __future__ import annotations

from typing import Any, ClassVar


class ChatbotError(Exception):
    """Base of every error that is shown to a client as ``{"error": {"code", "message"}}``."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers  # response headers, e.g. Retry-After

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


class MethodNotAllowed(ChatbotError):
    status_code = 405
    code = "method_not_allowed"


class RequestTimeout(ChatbotError):
    status_code = 408
    code = "request_timeout"


class Conflict(ChatbotError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ChatbotError):
    status_code = 413
    code = "payload_too_large"


class UriTooLong(ChatbotError):
    status_code = 414
    code = "uri_too_long"


class UnsupportedMediaType(ChatbotError):
    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(ChatbotError):
    status_code = 422
    code = "validation_error"


class TooManyRequests(ChatbotError):
    status_code = 429
    code = "rate_limited"


class QueueFull(ChatbotError):
    """``MAX_QUEUED`` generations already wait: try again after ``retry_after_s``."""

    status_code = 429
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class HeadersTooLarge(ChatbotError):
    status_code = 431
    code = "headers_too_large"


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
