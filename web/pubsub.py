"""A lean Redis subscriber connection for the token hub.

The web relays every event of every answer it streams, on the cores the model decodes on.
redis-py's ``PubSub.get_message`` spent ~0.5 ms of CPU on each (a retry wrapper, a read
timeout, health checks and metrics hooks around a ``StreamReader`` read, then a dict per
message). Here replies are parsed by hiredis as the bytes arrive and each message is handed
on inside the same callback: no await, no timer, no task per message.

It speaks only what a subscriber needs (AUTH, SUBSCRIBE, UNSUBSCRIBE, PING) over TCP, TLS
(``rediss://``, with the client's certificate settings) or a Unix socket, taking the
address from the redis-py client the rest of the web uses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError, ConnectionError

log = logging.getLogger(__name__)

#: A quiet connection is pinged after this long, and dropped when the ping goes unanswered
#: as long again (a peer that vanished without a reset: a failover, a dead network path).
PING_AFTER_S = 10.0

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

OnMessage = Callable[[bytes, bytes], None]
OnSubscribed = Callable[[bytes], None]


class Subscriber(asyncio.Protocol):
    """One subscribed connection. ``on_message(channel, data)`` runs for each published
    message, ``on_subscribed(channel)`` for each subscription the server confirms, both in
    the event loop's thread, in the order Redis sent them."""

    def __init__(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[Any] | None = None  # a command reply being waited for
        self._last_data = loop.time()
        self._ping_sent: float | None = None
        #: Done when the connection is gone, for whatever reason.
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        self._ping_sent = None
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                self._dispatch(reply)
        except hiredis.ProtocolError as exc:  # the stream is unreadable from here on
            log.warning("token hub got a malformed reply from Redis: %s", exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(ConnectionError("Redis closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    # commands

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, *args: str | bytes) -> None:
        """Write one command; its reply (a confirmation) comes through the callbacks."""
        if self.connected:
            assert self._transport is not None
            # hiredis's stub types the argument as a 1-tuple; it takes any length
            self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]

    async def call(self, *args: str | bytes) -> Any:
        """A command whose reply is waited for (before subscribing: AUTH)."""
        self._reply = self._loop.create_future()
        self.send(*args)
        try:
            return await self._reply
        finally:
            self._reply = None

    def keep_alive(self) -> None:
        """Called every few seconds: pings a quiet connection, drops one that stopped
        answering (its loss then reads as any other: reconnect, re-read the streams)."""
        now = self._loop.time()
        if self._ping_sent is not None:
            if now - self._ping_sent > PING_AFTER_S:
                log.warning("token hub's Redis connection stopped answering: reconnecting")
                self.close()
        elif now - self._last_data > PING_AFTER_S:
            self._ping_sent = now
            self.send("PING")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _dispatch(self, reply: Any) -> None:
        if type(reply) is list and reply:
            kind = reply[0]
            if kind == b"message":
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:  # one bad message must not end every stream
                    log.exception("token hub could not relay a message on %r", reply[1])
                return
            if kind == b"subscribe":
                self._on_subscribed(reply[1])
                return
            if kind in (b"unsubscribe", b"pong"):
                return
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(reply)
        elif isinstance(reply, hiredis.ReplyError):
            log.warning("Redis refused a token hub command: %s", reply)


async def connect(
    client: aioredis.Redis, *, name: str, on_message: OnMessage, on_subscribed: OnSubscribed
) -> Subscriber:
    """A subscriber connection to the server ``client`` talks to, authenticated and named
    ``name`` (what ``CLIENT LIST`` shows)."""
    pool = client.connection_pool
    options = pool.connection_kwargs
    loop = asyncio.get_running_loop()

    def protocol() -> Subscriber:
        return Subscriber(on_message, on_subscribed)

    async with asyncio.timeout(options.get("socket_connect_timeout") or 5.0):
        if options.get("path"):
            _, subscriber = await loop.create_unix_connection(protocol, options["path"])
        else:
            tls = (
                _tls_context(options) if issubclass(pool.connection_class, SSLConnection) else None
            )
            host = options.get("host") or "localhost"
            _, subscriber = await loop.create_connection(
                protocol, host, options.get("port") or 6379, ssl=tls
            )
        password = options.get("password")
        if password:
            username = options.get("username")
            args = ("AUTH", username, password) if username else ("AUTH", password)
            reply = await subscriber.call(*args)
            if isinstance(reply, hiredis.ReplyError):
                subscriber.close()
                raise AuthenticationError(str(reply))
    subscriber.send("CLIENT", "SETNAME", name)  # its reply, or a refusal, is only logged
    return subscriber


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS as redis-py's own connections do it, from the same options (``ssl_cert_reqs``:
    ``none`` for a self-signed certificate, as on Heroku)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    required = options.get("ssl_cert_reqs", "required")
    required = _CERT_REQS[required] if isinstance(required, str) else required
    context.check_hostname = required != ssl.CERT_NONE and bool(
        options.get("ssl_check_hostname", True)
    )
    context.verify_mode = required
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context
