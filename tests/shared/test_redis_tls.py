"""Heroku-style ``rediss://`` URLs with self-signed certificates: redis-py and Celery."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import tokenbus
from shared.queue import celery_config, make_celery
from shared.redisconn import async_client, sync_client
from shared.settings import Settings

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def settings_for(url: str, cert_reqs: str = "none") -> Settings:
    return Settings(redis_url=url, redis_ssl_cert_reqs=cert_reqs, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("cert_reqs", ["none", "optional", "required"])
def test_rediss_url_maps_to_both_clients(cert_reqs: str) -> None:
    url = "rediss://:secret@redis.example.com:6380/0"
    for client in (
        sync_client(settings_for(url, cert_reqs)),
        async_client(settings_for(url, cert_reqs)),
    ):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["ssl_cert_reqs"] == cert_reqs
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    config = celery_config(settings_for(url, cert_reqs))
    assert config["broker_url"] == url
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": CERT_REQS[cert_reqs]}


def test_plain_redis_url_has_no_tls_options() -> None:
    url = os.environ["REDIS_URL"]
    kwargs = sync_client(settings_for(url)).connection_pool.connection_kwargs
    assert "ssl_cert_reqs" not in kwargs
    assert "broker_use_ssl" not in celery_config(settings_for(url))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server that speaks only TLS, with a self-signed certificate (like Heroku)."""
    server, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if server is None or openssl is None:
        pytest.skip("needs redis-server and openssl")
    folder: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=redis.test",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(folder / "cert.pem"),
            "--tls-key-file",
            str(folder / "key.pem"),
            "--tls-ca-cert-file",
            str(folder / "cert.pem"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.skip(f"this redis-server has no TLS support: {output[-300:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"rediss://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


async def test_redis_clients_talk_to_a_self_signed_tls_redis(tls_redis: str) -> None:
    settings = settings_for(tls_redis, "none")
    assert sync_client(settings).ping()
    client = async_client(settings)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    # The check stays on when asked for: the self-signed certificate is refused.
    with pytest.raises(Exception, match="certificate"):
        sync_client(settings_for(tls_redis, "required")).ping()


def test_celery_broker_talks_to_a_self_signed_tls_redis(tls_redis: str) -> None:
    app = make_celery(settings_for(tls_redis, "none"), "tls-test")
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue("tls-test")
        try:
            queue.put({"hello": "tls"})
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"hello": "tls"}
        finally:
            queue.close()


async def test_both_clients_parse_replies_with_hiredis() -> None:
    # The web's token hub parses every live event of every stream it relays: in C, not in
    # redis-py's pure-Python parser (a dependency: redis[hiredis]).
    from redis._parsers import _AsyncHiredisParser, _HiredisParser

    settings = settings_for(os.environ["REDIS_URL"])
    client = sync_client(settings)
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _HiredisParser)
    finally:
        client.connection_pool.release(connection)
        client.close()
    aclient = async_client(settings)
    aconnection = await aclient.connection_pool.get_connection()
    try:
        assert isinstance(aconnection._parser, _AsyncHiredisParser)
    finally:
        await aclient.connection_pool.release(aconnection)
        await aclient.aclose()


async def test_the_token_hub_subscribes_over_tls(tls_redis: str) -> None:
    # The web's token hub opens its own subscriber connection: TLS as the clients do it.
    from web.sse import stream_generation
    from web.tokenhub import TokenHub

    settings = settings_for(tls_redis, "none")
    client = async_client(settings)
    hub = TokenHub(client, grace_s=5.0)
    await hub.start()
    gid = str(uuid.uuid4())

    async def body() -> bytes:
        chunks = [
            chunk
            async for chunk in stream_generation(
                redis=client,
                hub=hub,
                generation_id=gid,
                after=None,
                keepalive_s=30,
                shutting_down=asyncio.Event(),
            )
        ]
        return b"".join(chunks)

    try:
        reader = asyncio.create_task(body())
        deadline = time.monotonic() + 10  # a "not a hang" guard
        while hub.listener_count == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # following live
        writer = sync_client(settings)
        tokenbus.append(writer, gid, "token", "secure", ttl_s=60)
        tokenbus.append(writer, gid, "done", {"status": "done"}, ttl_s=60)
        streamed = await asyncio.wait_for(reader, timeout=30)
    finally:
        await hub.stop()
        await client.aclose()
    assert b"data: secure" in streamed and b"event: done" in streamed
