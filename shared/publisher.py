"""Token publishing off the decode loop: the model never waits for Redis.

The decode loop hands each token to ``TokenPublisher.put_token`` (a list append) and reads
``stop_flag`` (a field). A thread sends what is pending in one round trip, as one ``token``
event, so tokens that arrive faster than a round trip are coalesced; after a send it waits
at least ``window_s`` before the next one, so a fast engine makes few, larger events while
the first token after a pause goes out at once. Each send is one call of the token bus's
append script, which also returns the cancel/abandoned flag; the thread keeps the newest
in ``stop_flag``.

Redis that is slow or briefly unreachable delays delivery, never decoding: a failed send
is retried with backoff, with the same batch (tokens that arrived meanwhile wait behind
it), so order holds. Each batch carries a mark, so a retry after a lost reply does not
append it twice; each also names the previous mark, so a Redis that restarted empty (and
lost the earlier tokens) is noticed: the publisher then sends ``restart`` and the whole
text again, so clients end with exactly the saved answer. ``flush`` waits until everything
pending is sent: call it before the terminal ``done``/``error`` event, so that event comes
after every token.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType

import redis

from shared.tokenbus import TokenWriter

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0


class PublishError(Exception):
    """Tokens could not be delivered to Redis within the flush timeout."""


class TokenPublisher:
    """Sends a generation's tokens from a background thread; see the module docstring."""

    def __init__(
        self, writer: TokenWriter, *, window_s: float = 0.025, abandon_grace_s: float = 10.0
    ) -> None:
        self.writer = writer
        self.window_s = window_s
        self.abandon_grace_s = abandon_grace_s
        self.stop_flag = ""
        """Newest stop flag from Redis: "cancelled", "abandoned" or "" (read without I/O)."""
        self._trust_abandoned_after = 0.0
        self.sent_events = 0
        self.sent_tokens = 0
        self._sender = uuid.uuid4().hex[:12]
        self._pending: list[str] = []
        self._sent: list[str] = []  # every token sent, to send again if Redis loses them
        self._batch: list[str] = []  # taken from pending, not yet acknowledged by Redis
        self._cond = threading.Condition()
        self._closed = False
        self._idle = False  # the thread waits for tokens (not out a window)
        self._last_send = 0.0
        self._hurry = False  # flush: send what is pending without waiting out the window
        self._thread = threading.Thread(target=self._run, name="token-publisher", daemon=True)
        self._thread.start()

    def put_token(self, text: str) -> None:
        """Queue a token for sending; never blocks on Redis."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            self._pending.append(text)
            # Wake the thread when it waits for tokens, or once its window has passed: the
            # send then starts at a token boundary, between two steps of the engine,
            # rather than on a timer in the middle of one (spinning engine threads lose
            # far more than the send's own time when it takes a core from them).
            if self._idle or time.monotonic() - self._last_send >= self.window_s:
                self._cond.notify()

    @property
    def idle(self) -> bool:
        """Whether every token put so far has been sent."""
        with self._cond:
            return not self._pending and not self._batch

    def flush(self, timeout: float) -> None:
        """Wait until every token put so far is in Redis; ``PublishError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            while self._pending or self._batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise PublishError(
                        f"{len(self._pending) + len(self._batch)} tokens not delivered to "
                        f"Redis within {timeout:g} s"
                    )
                self._cond.wait(min(left, 0.1))

    def delivered(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until every token put so far is in Redis (no hurry: the
        coalescing window stays); whether they are."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 0.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the thread, dropping what is left
        (a generation that failed to deliver ends with an error anyway)."""
        try:
            if timeout > 0:
                self.flush(timeout)
        except PublishError as exc:
            log.warning("dropping undelivered tokens: %s", exc)
        finally:
            with self._cond:
                self._closed = True
                self._pending.clear()
                self._cond.notify_all()
            self._thread.join(timeout=max(timeout, 1.0))

    def __enter__(self) -> TokenPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            with self._cond:
                self._idle = True
                while not self._pending and not self._batch and not self._closed:
                    self._cond.wait()
                self._idle = False
                if self._closed:
                    return
                wait = self._last_send + self.window_s - time.monotonic()
                if wait > 0 and not self._batch and not self._hurry:
                    # Coalesce: tokens keep arriving while the window passes; the first
                    # one after it (or flush, or close) wakes us, a second window at most
                    # when tokens come slowly.
                    self._cond.wait(wait + self.window_s)
                    if self._closed:
                        return
                if not self._batch:
                    self._batch, self._pending = self._pending, []
                batch = self._batch
            mark = f"{self._sender}:{self.sent_events}"
            previous = f"{self._sender}:{self.sent_events - 1}" if self.sent_events else ""
            try:
                entry_id, flag = self.writer.append(
                    "token", "".join(batch), mark=mark, previous=previous
                )
                if entry_id == "lost":
                    # Redis restarted empty: the text clients had may be gone with it.
                    # They drop what they have and get the whole text again.
                    log.warning("the token bus lost this answer's tokens; sending them again")
                    self.writer.append("restart", {"reason": "the token bus restarted"})
                    _, flag = self.writer.append("token", "".join([*self._sent, *batch]), mark=mark)
            except redis.RedisError as exc:
                log.warning("token publish failed, retrying in %.2f s: %s", backoff, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                # A Redis that comes back may have lost the listeners' heartbeat (it
                # restarted empty): they announce themselves again within the grace.
                self._trust_abandoned_after = float("inf")
                continue
            backoff = BACKOFF_FIRST_S
            last_send = self._last_send = time.monotonic()
            if self._trust_abandoned_after == float("inf"):
                self._trust_abandoned_after = last_send + self.abandon_grace_s
            if flag == "abandoned" and last_send < self._trust_abandoned_after:
                flag = ""
            self.stop_flag = flag
            with self._cond:
                self._sent.extend(batch)
                self.sent_events += 1
                self.sent_tokens += len(batch)
                self._batch = []
                self._cond.notify_all()
