"""Fetch result pages concurrently, safely: timeouts, a size cap, text types only, and an
SSRF guard that checks every address a hostname resolves to, on every redirect hop.

How the guard holds against DNS rebinding: each hop's hostname is resolved here once,
every address is checked, and the request is sent to the checked address itself (the
URL's host is swapped for the IP, the ``Host`` header and, for HTTPS, the TLS server
name via httpx's ``sni_hostname`` extension keep the real name, so certificates are still
verified against it). The HTTP library never resolves the name a second time.
Environment proxies are ignored (``trust_env=False``) because a proxy would resolve the
name itself.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import http.cookiejar
import ipaddress
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from shared.settings import Settings

USER_AGENT = "chatbot/0.1 (+self-hosted; answering a user question)"
MAX_REDIRECTS = 5
ALLOWED_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]
"""Says whether the fetcher may connect to an address."""
Resolver = Callable[[str, int], Sequence[str]]
"""Maps (hostname, port) to the IP addresses to connect to (blocking; run in a thread)."""

T = TypeVar("T")

# 100.64.0.0/10 (carrier-grade NAT) and 64:ff9b::/96 (NAT64, which embeds an IPv4 address)
# are not all covered by ``is_private`` on Python 3.11.
_SHARED_V4 = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchedPage:
    """The outcome for one URL: ``text`` when it was read, else ``error`` says why."""

    url: str
    final_url: str
    status: int | None = None
    content_type: str = ""
    text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the page was read."""
        return self.text is not None and self.error is None


class FetchRefused(Exception):
    """A URL or address the fetcher will not touch (scheme, SSRF guard, redirects)."""


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address.

    Refuses loopback, private, link-local (so 169.254.169.254), multicast, reserved,
    unspecified, carrier-grade NAT, documentation ranges, and IPv6 forms that embed
    such an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo).
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(not is_public_address(inner) for inner in embedded):
            return False
    elif ip in _SHARED_V4:
        return False
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _allow_any(ip: IPAddress) -> bool:
    return True


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses ``socket.getaddrinfo`` gives for ``host``, in its order, deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def fetch_pages(
    urls: Sequence[str],
    *,
    settings: Settings,
    address_allowed: AddressPolicy | None = None,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[FetchedPage]:
    """Fetch ``urls`` concurrently and return one :class:`FetchedPage` per URL, in order.

    Never raises for a bad page. Each page gets ``settings.fetch_timeout_s``; all of them
    together ``settings.fetch_total_timeout_s``. Bodies over ``settings.fetch_max_bytes``,
    content types other than HTML, XHTML and plain text, HTTP errors and more than
    :data:`MAX_REDIRECTS` redirects are errors. ``address_allowed`` defaults to
    :func:`is_public_address` (or to allowing everything when
    ``settings.fetch_allow_private``); ``resolver`` to :func:`system_resolver`;
    ``transport`` (tests) to a real network transport.
    """
    return run_sync(
        lambda: fetch_pages_async(
            urls,
            settings=settings,
            address_allowed=address_allowed,
            resolver=resolver,
            transport=transport,
        )
    )


async def fetch_pages_async(
    urls: Sequence[str],
    *,
    settings: Settings,
    address_allowed: AddressPolicy | None = None,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[FetchedPage]:
    """The coroutine behind :func:`fetch_pages` (same arguments and result)."""
    if not urls:
        return []
    policy = address_allowed or (_allow_any if settings.fetch_allow_private else is_public_address)
    # A private pool, shut down without waiting: a hung DNS lookup must not hold us up.
    dns_pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(8, len(urls)), thread_name_prefix="fetch-dns"
    )
    fetcher = _Fetcher(
        settings=settings,
        policy=policy,
        resolver=resolver or system_resolver,
        dns_pool=dns_pool,
    )
    try:
        async with httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.fetch_timeout_s),
            # No keep-alive: the pool is keyed by the pinned IP, so a kept TLS connection
            # made for one hostname could otherwise carry a request for another.
            limits=httpx.Limits(max_keepalive_connections=0),
            # Nor cookies: they would be keyed by IP too, and no page needs them here.
            cookies=http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            ),
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9",
            },
        ) as client:
            tasks = [asyncio.ensure_future(fetcher.fetch(client, url)) for url in urls]
            _, pending = await asyncio.wait(tasks, timeout=settings.fetch_total_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            results: list[FetchedPage] = []
            for url, task in zip(urls, tasks, strict=True):
                if task.cancelled():
                    results.append(
                        FetchedPage(
                            url=url,
                            final_url=url,
                            error=(
                                "timed out (all pages together took over "
                                f"{settings.fetch_total_timeout_s:g} s)"
                            ),
                        )
                    )
                else:
                    results.append(task.result())
            return results
    finally:
        dns_pool.shutdown(wait=False, cancel_futures=True)


class _Fetcher:
    def __init__(
        self,
        *,
        settings: Settings,
        policy: AddressPolicy,
        resolver: Resolver,
        dns_pool: concurrent.futures.Executor,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._resolver = resolver
        self._dns_pool = dns_pool

    async def fetch(self, client: httpx.AsyncClient, url: str) -> FetchedPage:
        try:
            async with asyncio.timeout(self._settings.fetch_timeout_s):
                return await self._follow(client, url)
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self._settings.fetch_timeout_s:g} s"
        except FetchRefused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"request failed: {type(exc).__name__}: {exc}".rstrip(": ")
        except (OSError, ValueError, UnicodeError) as exc:
            error = f"request failed: {type(exc).__name__}: {exc}".rstrip(": ")
        return FetchedPage(url=url, final_url=url, error=error)

    async def _follow(self, client: httpx.AsyncClient, url: str) -> FetchedPage:
        current = _parse_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            addresses = await self._checked_addresses(current)
            response = await self._request(client, current, addresses)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        return _failed(url, current, response, "redirect without a Location")
                    current = _parse_url(str(current.join(location.strip())))
                    continue
                return await self._read(url, current, response)
            finally:
                await response.aclose()
        raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")

    async def _checked_addresses(self, url: httpx.URL) -> list[str]:
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(self._dns_pool, self._resolver, host, port)
        except OSError as exc:
            raise FetchRefused(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise FetchRefused(f"cannot resolve {host}")
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if not self._policy(ip):
                raise FetchRefused(f"{host} resolves to a non-public address ({ip})")
        return list(addresses)

    async def _request(
        self, client: httpx.AsyncClient, url: httpx.URL, addresses: Sequence[str]
    ) -> httpx.Response:
        headers = {"Host": url.netloc.decode("ascii")}
        extensions: dict[str, Any] = {}
        if url.scheme == "https":
            extensions["sni_hostname"] = url.raw_host.decode("ascii")
        last_error: httpx.ConnectError | None = None
        # Try each checked address in the resolver's order, as a browser would.
        for address in addresses:
            pinned = url.copy_with(host=address)
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _read(self, url: str, current: httpx.URL, response: httpx.Response) -> FetchedPage:
        if response.status_code not in (200, 203):
            return _failed(url, current, response, f"HTTP {response.status_code}")
        media_type, _, params = response.headers.get("content-type", "").partition(";")
        media_type = media_type.strip().lower()
        if media_type not in ALLOWED_CONTENT_TYPES:
            shown = media_type or "none"
            return _failed(url, current, response, f"unsupported content type ({shown})")
        cap = self._settings.fetch_max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return _failed(url, current, response, f"too large ({declared} bytes > {cap})")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > cap:
                return _failed(url, current, response, f"too large (over {cap} bytes)")
        text = _decode(bytes(body), params, html=media_type != "text/plain")
        return FetchedPage(
            url=url,
            final_url=str(current),
            status=response.status_code,
            content_type=media_type,
            text=text,
        )


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"invalid URL ({exc})") from exc
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused(f"unsupported scheme {parsed.scheme or 'none'!r}")
    if not parsed.raw_host:
        raise FetchRefused("URL without a host")
    return parsed


def _failed(url: str, current: httpx.URL, response: httpx.Response, error: str) -> FetchedPage:
    return FetchedPage(
        url=url,
        final_url=str(current),
        status=response.status_code,
        content_type=response.headers.get("content-type", ""),
        error=error,
    )


def _decode(body: bytes, content_type_params: str, *, html: bool) -> str:
    charset = ""
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type_params, re.I)
    if match:
        charset = match.group(1)
    elif html and (meta := _META_CHARSET.search(body[:4096])):
        charset = meta.group(1).decode("ascii", "replace")
    try:
        codecs.lookup(charset or "utf-8")
    except LookupError:
        charset = "utf-8"
    return body.decode(charset or "utf-8", errors="replace")


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T] | Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already runs
    an event loop (then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coroutine(make_coroutine))

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(_as_coroutine(make_coroutine))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="fetch-loop")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


async def _as_coroutine(make_coroutine: Callable[[], Coroutine[Any, Any, T] | Awaitable[T]]) -> T:
    return await make_coroutine()
