"""``sendq dev``: everything in one process for a first try.

Without ``SENDQ_REDIS_URL`` it embeds fakeredis's Redis-compatible TCP server (in memory, not durable: for
trying sendq, never for production), runs a worker against it with the mock provider (a loopback HTTP server
that sends signed delivery and read receipts back to the API) unless a provider is configured, serves the API,
and prints how to send a message to it from another terminal.
"""

import secrets
import socket
import threading
from typing import Any

import arq.worker
from pydantic import SecretStr

from providers.mock_server import MockProviderServer, MockServerConfig
from sendq.errors import ConfigurationError
from sendq.settings import HttpProviderSettings, Settings
from worker.app import run_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _no_redis_info(*_: Any, **__: Any) -> None:
    # fakeredis has no INFO command, which arq calls once at start-up only to log the server version.
    return None


def start_embedded_redis(port: int) -> Any:
    """Start fakeredis's TCP server on loopback in a daemon thread; returns the server."""
    from fakeredis import TcpFakeServer
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler

    # The stock handler writes each reply without TCP_NODELAY: ~20 ops/s instead of hundreds.
    TCPFakeRequestHandler.disable_nagle_algorithm = True
    try:
        server = TcpFakeServer(("127.0.0.1", port))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True).start()
    return server


def serve_api_in_thread(settings: Settings, host: str, port: int) -> None:
    """The HTTP API on its own event loop in a daemon thread (uvicorn leaves signals to the main thread)."""
    import uvicorn

    from sendq.api.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="api", daemon=True).start()


def run_dev(
    settings: Settings, *, port: int | None = None, latency_ms: float = 50.0, api_port: int | None = None
) -> None:
    """Run the embedded default (or the configured Redis) with a worker, the mock provider and the HTTP API."""
    embedded = settings.redis_url is None
    if embedded:
        port = 6399 if port is None else port
        start_embedded_redis(port)
        settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0", "require_noeviction": False})
        setattr(arq.worker, "log_redis_info", _no_redis_info)  # noqa: B010 (arq does not export it)
    url = settings.redis_url
    api_port = settings.api_port if api_port is None else api_port
    api = f"http://{settings.api_host}:{api_port}"
    # With no provider configured, the mock provider runs as a real HTTP server that calls the API back with
    # signed receipts, so a first try shows the whole life of a message: sent, then delivered (and read).
    simulated = settings.provider == "mock" and not settings.routes
    if simulated:
        secret = secrets.token_urlsafe(24)
        mock = MockProviderServer(
            MockServerConfig(latency_ms=latency_ms, webhook_secret=secret, deliver_after_ms=1000, read_after_ms=3000)
        )
        mock.start()
        settings = settings.model_copy(
            update={
                "provider": "http",
                "http": HttpProviderSettings(url=mock.url, webhook_secret=SecretStr(secret)),
                "public_url": api,
            }
        )
    serve_api_in_thread(settings, settings.api_host, api_port)
    where = "embedded, in memory: for trying sendq, not durable" if embedded else "from SENDQ_REDIS_URL"
    providers = "the mock provider (receipts after 1 s, read after 3 s)" if simulated else "the configured providers"
    print(
        f"sendq dev: Redis at {url} ({where}); worker running with {providers}.\n"
        "In another terminal:\n"
        f"  export SENDQ_REDIS_URL={url}\n"
        '  sendq send --subaccount demo --channel sms --to +14155552671 --body "Hello from sendq"\n'
        "  sendq status <the id it printed>\n"
        f'  sendq send --subaccount demo --channel sms --to +14155552671 --body "later" --at <ISO time with offset>\n'
        "  sendq cancel <id>\n"
        f"HTTP API at {api} (docs at {api}/docs); a key for it:\n"
        "  sendq keys create --subaccount demo\n"
        f"  curl -H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' {api}/v1/messages \\\n"
        '       -d \'{"channel": "sms", "to": "+14155552671", "body": "Hello over HTTP"}\'\n'
        "Ctrl-C stops.",
        flush=True,
    )
    run_worker(settings)
