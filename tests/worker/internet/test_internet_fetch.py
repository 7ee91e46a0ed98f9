"""The page fetcher over real local HTTP: limits, content types, redirects, SSRF guard."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from internet_fakes import LocalServer, Reply, SeenRequest

from shared.settings import Settings
from worker.internet.fetch import USER_AGENT, IPAddress, fetch_pages, is_public_address

HTML = "<html><head><title>T</title></head><body><p>Hello pages.</p></body></html>"


@pytest.fixture
def public_stand_in() -> Iterator[LocalServer]:
    """A server on 127.0.0.2, which the tests' address policy treats as "the internet"."""
    server = LocalServer(host="127.0.0.2")
    yield server
    server.close()


def only_stand_in(ip: IPAddress) -> bool:
    """Address policy for redirect tests: 127.0.0.2 plays a public address."""
    return ip == ipaddress.ip_address("127.0.0.2")


class RecordingTransport(httpx.AsyncBaseTransport):
    """Stands in for the network where a broken guard would reach a non-loopback address:
    it records every request and sends nothing anywhere."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/html"}, content=b"leaked")


def test_fetches_pages_concurrently_in_order(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    # Each page answers only once all four requests are in: fetched one after another,
    # the first would wait alone until the barrier gives up, and fail.
    together = threading.Barrier(4)

    def when_all_arrived(_seen: SeenRequest) -> Reply:
        try:
            together.wait(timeout=20)
        except threading.BrokenBarrierError:
            return Reply(status=503, body=b"fetched alone")
        return Reply(body=HTML.encode())

    urls = []
    for i in range(4):
        web.routes[f"/p{i}"] = when_all_arrived
        urls.append(web.url(f"/p{i}"))
    urls.append(web.page("/plain", "just text", content_type="text/plain"))

    pages = fetch_pages(
        urls, settings=make_settings(fetch_timeout_s=30.0, fetch_total_timeout_s=40.0)
    )

    assert [page.url for page in pages] == urls
    assert all(page.ok for page in pages), [page.error for page in pages]
    assert pages[0].text == HTML and pages[0].content_type == "text/html"
    assert pages[-1].text == "just text" and pages[-1].content_type == "text/plain"
    assert {seen.headers["user-agent"] for seen in web.requests} == {USER_AGENT}


def test_bad_pages_fail_alone(web: LocalServer, make_settings: Callable[..., Settings]) -> None:
    big = "<p>" + "x" * 5000 + "</p>"
    urls = {
        "ok": web.page("/ok", HTML),
        "missing": web.url("/missing"),
        "slow": web.page("/slow", HTML, delay_s=3),
        "pdf": web.page("/doc.pdf", "%PDF-1.4", content_type="application/pdf"),
        "no_type": web.page("/no-type", HTML, content_type=None),
        "big_declared": web.page("/big", big * 20),
        "big_streamed": web.page("/big-stream", big * 20, send_length=False),
        "error": web.page("/boom", "oops", status=500),
    }
    settings = make_settings(fetch_timeout_s=0.5, fetch_max_bytes=50_000)

    pages = dict(zip(urls, fetch_pages(list(urls.values()), settings=settings), strict=True))

    assert pages["ok"].ok
    assert pages["missing"].error == "HTTP 404"
    assert pages["slow"].error is not None and "timed out" in pages["slow"].error
    assert pages["pdf"].error == "unsupported content type (application/pdf)"
    assert pages["no_type"].error == "unsupported content type (none)"
    assert pages["big_declared"].error is not None and "too large" in pages["big_declared"].error
    assert pages["big_streamed"].error is not None and "too large" in pages["big_streamed"].error
    assert pages["error"].error == "HTTP 500"
    assert all(page.text is None for name, page in pages.items() if name != "ok")


def test_total_timeout_bounds_all_pages(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    urls = [web.page(f"/slow{i}", HTML, delay_s=15) for i in range(3)]
    settings = make_settings(fetch_timeout_s=20.0, fetch_total_timeout_s=0.5)

    pages = fetch_pages(urls, settings=settings)

    # The total timeout ended them (not each page's 20 s timeout, nor the pages' answers).
    assert all(page.error and "all pages together" in page.error for page in pages)


def test_redirects_are_followed_up_to_five(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    web.page("/final", HTML)
    web.routes["/r1"] = Reply(status=301, headers={"Location": "/r2"})
    web.routes["/r2"] = Reply(status=302, headers={"Location": web.url("/final")})
    for hop in range(7):
        web.routes[f"/loop{hop}"] = Reply(status=307, headers={"Location": f"/loop{hop + 1}"})

    moved, looping = fetch_pages([web.url("/r1"), web.url("/loop0")], settings=make_settings())

    assert moved.ok and moved.final_url == web.url("/final")
    assert looping.error == "refused: more than 5 redirects"
    assert web.hits["/loop5"] == 1 and web.hits["/loop6"] == 0


def test_charset_from_header_and_meta(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    text = "<html><head><meta charset='iso-8859-1'></head><body><p>Café crème</p></body></html>"
    web.routes["/meta"] = Reply(body=text.encode("latin-1"), content_type="text/html")
    web.routes["/header"] = Reply(
        body="Straße".encode("cp1252"), content_type="text/plain; charset=windows-1252"
    )

    meta, header = fetch_pages([web.url("/meta"), web.url("/header")], settings=make_settings())

    assert meta.text is not None and "Café crème" in meta.text
    assert header.text == "Straße"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::",
    ],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_ssrf_guard_refuses_loopback_urls_before_any_request(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    web.page("/secret", HTML)
    urls = [
        web.url("/secret"),
        f"http://localhost:{web.port}/secret",
        f"http://[::1]:{web.port}/secret",
        f"http://2130706433:{web.port}/secret",  # 127.0.0.1 as one number
        f"http://[::ffff:127.0.0.1]:{web.port}/secret",
    ]

    pages = fetch_pages(urls, settings=make_settings(fetch_allow_private=False))

    for page in pages:
        assert page.error is not None and page.error.startswith("refused:"), page
        assert "non-public address" in page.error
    assert web.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "https://intranet.example/",  # resolves to 10.1.2.3 (patched below)
        "http://mixed.example/",  # one public and one private address
    ],
)
def test_ssrf_guard_refuses_private_targets_without_connecting(
    url: str, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns = {
        "intranet.example": ["10.1.2.3"],
        "mixed.example": ["93.184.216.34", "10.0.0.5"],
    }
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host in fake_dns:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in fake_dns[host]
            ]
        return list(real_getaddrinfo(host, port, *args, **kwargs))

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    transport = RecordingTransport()

    (page,) = fetch_pages(
        [url], settings=make_settings(fetch_allow_private=False), transport=transport
    )

    assert page.error is not None and "non-public address" in page.error
    assert transport.requests == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "http:///nohost"])
def test_only_http_urls_are_fetched(url: str, make_settings: Callable[..., Settings]) -> None:
    transport = RecordingTransport()
    (page,) = fetch_pages([url], settings=make_settings(), transport=transport)
    assert page.error is not None and page.error.startswith("refused:")
    assert transport.requests == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/secret", "http://localhost:{port}/x"])
def test_redirect_to_private_address_is_refused(
    target: str,
    web: LocalServer,
    public_stand_in: LocalServer,
    make_settings: Callable[..., Settings],
) -> None:
    web.page("/secret", HTML)
    web.page("/x", HTML)
    location = target.format(port=web.port)
    public_stand_in.routes["/go"] = Reply(status=302, headers={"Location": location})

    (page,) = fetch_pages(
        [public_stand_in.url("/go")],
        settings=make_settings(fetch_allow_private=False),
        address_allowed=only_stand_in,
    )

    assert public_stand_in.hits["/go"] == 1
    assert page.error is not None and "non-public address (127.0.0.1)" in page.error
    assert web.requests == []


def test_connection_is_pinned_to_the_checked_address(
    web: LocalServer, public_stand_in: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    """DNS rebinding: the name resolves to an allowed address when checked and to a
    private one afterwards; the request must still go to the checked address, with the
    real name in the Host header."""
    public_stand_in.page("/page", HTML)
    web.page("/page", "<html><body>internal</body></html>")
    answers = iter([["127.0.0.2"]])

    def rebinding_resolver(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    (page,) = fetch_pages(
        [f"http://rebind.example:{public_stand_in.port}/page"],
        settings=make_settings(fetch_allow_private=False),
        address_allowed=only_stand_in,
        resolver=rebinding_resolver,
    )

    assert page.ok and page.text == HTML
    assert page.final_url == f"http://rebind.example:{public_stand_in.port}/page"
    (seen,) = public_stand_in.requests
    assert seen.headers["host"] == f"rebind.example:{public_stand_in.port}"
    assert web.requests == []


def test_allow_private_lets_local_pages_through(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    url = f"http://localhost:{web.port}/local"
    web.page("/local", HTML)
    (page,) = fetch_pages([url], settings=make_settings(fetch_allow_private=True))
    assert page.ok


def test_cookies_are_not_kept_between_requests(
    web: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    web.routes["/login"] = Reply(
        status=302, headers={"Set-Cookie": "sid=secret; Path=/", "Location": "/final"}
    )
    web.page("/final", HTML)

    (page,) = fetch_pages([web.url("/login")], settings=make_settings())

    assert page.ok and web.hits["/final"] == 1
    assert all("cookie" not in seen.headers for seen in web.requests)


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A throwaway certificate and key for ``name`` (made with the openssl CLI)."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("certificate_name", ["pinned.example", "other.example"])
def test_https_is_pinned_and_still_verifies_the_hostname(
    certificate_name: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """The request goes to the checked IP, yet TLS uses the real name for SNI and for
    certificate verification: a certificate for another name is refused."""
    cert, key = self_signed(tmp_path, certificate_name)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = LocalServer(host="127.0.0.2", tls=server_tls)
    try:
        server.page("/page", HTML)
        trust = ssl.create_default_context(cafile=str(cert))

        (page,) = fetch_pages(
            [f"https://pinned.example:{server.port}/page"],
            settings=make_settings(fetch_allow_private=False),
            address_allowed=only_stand_in,
            resolver=lambda host, port: ["127.0.0.2"],
            transport=httpx.AsyncHTTPTransport(verify=trust),
        )
    finally:
        server.close()

    if certificate_name == "pinned.example":
        assert page.ok and page.text == HTML
        assert server.requests[0].headers["host"] == f"pinned.example:{server.port}"
    else:
        assert page.error is not None and "CERTIFICATE_VERIFY_FAILED" in page.error
        assert server.requests == []
