"""``sendq mock-provider``: a real HTTP server on loopback serving the ``providers.http`` contract, with faults.

With a webhook secret it also plays the provider's callback side: every newly accepted message that carries a
``callback_url`` gets signed delivery receipts POSTed there (``delivered``, or ``failed`` for the fail prefix,
then ``read`` on WhatsApp and web chat), from background threads that never hold up an answer.
"""

import argparse
import contextlib
import heapq
import hmac
import http.client
import itertools
import json
import math
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TextIO, cast
from urllib.parse import urlsplit

from providers.http import secret_key, webhook_headers

#: fault kinds ``fail_kinds`` may draw from
FAIL_KINDS = ("500", "429", "timeout", "400")
MESSAGES_PATH = "/v1/messages"
#: largest accepted request body
MAX_BODY_BYTES = 64 * 1024
#: a refused body up to this size is read and dropped, so the connection stays usable and the client sees the answer
_DISCARD_LIMIT = 1024 * 1024
_ROUTES: dict[str, tuple[str, ...]] = {MESSAGES_PATH: ("POST",), "/healthz": ("GET", "HEAD"), "/stats": ("GET", "HEAD")}
_REQUIRED_FIELDS = ("message_id", "to", "channel")
#: channels whose messages also get a read receipt
READ_CHANNELS = frozenset({"whatsapp", "webchat"})
#: the code of the ``failed`` receipt of a recipient starting with ``fail_prefix``
UNDELIVERABLE = "undeliverable"
#: POSTs of one receipt before it is given up (connection errors, 429 and 5xx are tried again)
RECEIPT_ATTEMPTS = 4
#: seconds before the 2nd, 3rd, ... attempt
RECEIPT_BACKOFF_S = (0.25, 0.5, 1.0)
#: connect and read timeout of one receipt POST
RECEIPT_TIMEOUT_S = 5.0
#: receipts POSTed at the same time (one slow callback URL does not hold up the others)
RECEIPT_WORKERS = 4
#: how long stop() waits for receipt threads after cutting their connections
_RECEIPT_JOIN_S = 1.0


@dataclass(frozen=True)
class MockServerConfig:
    """How the mock provider listens and misbehaves. Invalid values raise ``ValueError``."""

    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 0
    #: JSONL event log; None keeps no log
    log_path: str | None = None
    #: probability that a valid POST meets a fault (kind drawn uniformly from ``fail_kinds``)
    fail_rate: float = 0.0
    fail_kinds: tuple[str, ...] = ("500", "429", "timeout")
    #: added before every POST answer
    latency_ms: float = 0.0
    #: how long a "timeout" fault holds back the (accepted) answer
    timeout_delay_ms: float = 5000.0
    #: Retry-After of a "429" fault, in whole seconds
    retry_after_s: int = 1
    #: recipients starting with this are refused as invalid (400 invalid_recipient), deterministically
    reject_prefix: str | None = None
    seed: int | None = None
    #: when set, POSTs need ``Authorization: Bearer <auth_token>``
    auth_token: str | None = None
    #: signs receipt callbacks (``providers.http.sign``); None: no receipts, a message's callback_url is ignored
    webhook_secret: str | None = field(default=None, repr=False)
    #: from acceptance to the ``delivered`` (or ``failed``) receipt
    deliver_after_ms: float = 200.0
    #: from acceptance to the ``read`` receipt (WhatsApp and web chat only; never before ``delivered``)
    read_after_ms: float = 500.0
    #: recipients starting with this are accepted, then get a ``failed`` receipt (code ``undeliverable``)
    fail_prefix: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {self.fail_rate}")
        # Duplicates would skew the uniform draw.
        kinds = tuple(dict.fromkeys(self.fail_kinds))
        unknown = [kind for kind in kinds if kind not in FAIL_KINDS]
        if unknown or not kinds:
            raise ValueError(f"fail_kinds must be a non-empty subset of {', '.join(FAIL_KINDS)}, got {self.fail_kinds}")
        object.__setattr__(self, "fail_kinds", kinds)
        for name in ("latency_ms", "timeout_delay_ms", "deliver_after_ms", "read_after_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        if self.webhook_secret is not None:
            secret_key(self.webhook_secret)  # raises ValueError for an empty or malformed secret


@dataclass(frozen=True, slots=True)
class _Request:
    message_id: str
    to: str
    channel: str
    body: Any
    callback_url: str | None = None


@dataclass(slots=True)
class _Answer:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to hold the answer back (a "timeout" fault)
    delay_s: float = 0.0


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _parse_message(raw: bytes) -> _Request | dict[str, Any]:
    """The request, or the error payload that names what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error("invalid_request", f"request body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _error("invalid_request", "request body must be a JSON object")
    for name in _REQUIRED_FIELDS:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            return _error("invalid_request", f"{name}: required, a non-empty string", field=name)
    callback_url = data.get("callback_url")
    if callback_url is not None and not _is_http_url(callback_url):
        return _error("invalid_request", "callback_url: an http or https URL, or null", field="callback_url")
    return _Request(data["message_id"], data["to"], data["channel"], data.get("body"), callback_url)


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(slots=True)
class _Callback:
    """One signed receipt POST, retried under the same ``webhook-id``."""

    url: str
    webhook_id: str
    body: bytes
    #: logged with the outcome
    fields: dict[str, Any]
    attempts: int = 0
    #: scheduled once this one is done (delivered, then read), not before ``then_due`` (monotonic)
    then: "_Callback | None" = None
    then_due: float = 0.0


class _ReceiptSender:
    """POSTs receipts when they fall due, from a few daemon threads sharing one schedule (a heap)."""

    def __init__(self, secret: str, log: Callable[[dict[str, Any]], None]) -> None:
        self._secret = secret
        self._log = log
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Callback]] = []
        self._order = itertools.count()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._connections: set[http.client.HTTPConnection] = set()

    def start(self) -> None:
        for number in range(RECEIPT_WORKERS):
            thread = threading.Thread(target=self._run, name=f"mock-provider-receipts-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def schedule(self, callback: _Callback, due: float) -> None:
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._due, (due, next(self._order), callback))
            self._cond.notify()

    def stop(self) -> None:
        """Drop what is pending, cut receipt POSTs in flight and wait (briefly) for the threads."""
        with self._cond:
            self._stopping = True
            self._due.clear()
            self._cond.notify_all()
            for conn in self._connections:
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)
        # A thread still connecting to an address that never answers is left behind (daemon): stop stays prompt.
        deadline = time.monotonic() + _RECEIPT_JOIN_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> _Callback | None:
        """The next due callback, or None once stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(self._due[0][0] - now if self._due else None)
            return None

    def _run(self) -> None:
        while (callback := self._next()) is not None:
            self._deliver(callback)

    def _deliver(self, callback: _Callback) -> None:
        callback.attempts += 1
        status, error = self._post(callback)
        ok = status is not None and 200 <= status < 300
        retryable = status is None or status == 429 or status >= 500
        if not ok and retryable and callback.attempts < RECEIPT_ATTEMPTS:
            backoff = RECEIPT_BACKOFF_S[min(callback.attempts, len(RECEIPT_BACKOFF_S)) - 1]
            self.schedule(callback, time.monotonic() + backoff)
            return
        event = {
            "event": "receipt",
            **callback.fields,
            "webhook_id": callback.webhook_id,
            "url": callback.url,
            "http_status": status,
            "attempts": callback.attempts,
            "ok": ok,
        }
        if error is not None:
            event["error"] = error
        self._log(event)
        if callback.then is not None:
            self.schedule(callback.then, max(time.monotonic(), callback.then_due))

    def _post(self, callback: _Callback) -> tuple[int | None, str | None]:
        """The answer's status, or None and what went wrong."""
        parts = urlsplit(callback.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=RECEIPT_TIMEOUT_S)
        with self._cond:
            if self._stopping:
                return None, "stopped"
            self._connections.add(conn)
        try:
            conn.connect()
            with self._cond:
                if self._stopping:  # stop() ran while connecting, when there was no socket to cut yet
                    return None, "stopped"
            # Signed per attempt: the timestamp is this attempt's, the webhook-id stays the same.
            headers = webhook_headers(self._secret, callback.body, webhook_id=callback.webhook_id)
            headers["user-agent"] = "sendq-mock-provider/1"
            conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), callback.body, headers)
            response = conn.getresponse()
            response.read(64 * 1024)
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        finally:
            with self._cond:
                self._connections.discard(conn)
            conn.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops SYNs under a burst of concurrent clients (1 s retransmit each).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: "MockProviderServer") -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can stall on a sandbox's DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, in the serving thread, so that after shutdown() no connection can be missed.
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def interrupt_connections(self) -> None:
        """Wake every handler blocked on its socket (idle keep-alive, slow body), so server_close can join them."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout, a closed connection) is expected here, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sendq-mock-provider/1"
    # Headers and body go out in two writes; with Nagle plus the client's delayed ACK that costs ~40 ms each.
    disable_nagle_algorithm = True
    # A vanished client's idle keep-alive connection does not hold a thread forever.
    timeout = 60

    @property
    def app(self) -> "MockProviderServer":
        return cast(_HTTPServer, self.server).app

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib answers malformed requests with HTML; the contract is JSON everywhere.
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send_json(code, _error(phrase.lower().replace(" ", "_").replace("-", "_"), message or phrase))

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _content_length(self) -> int | None:
        """The declared body length; None (and the connection marked for closing) if it cannot be framed."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return None
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            self.close_connection = True
            return None
        return int(raw)

    def _discard_body(self, length: int | None = None) -> None:
        length = self._content_length() if length is None else length
        if length is None:
            return
        if length > _DISCARD_LIMIT:
            self.close_connection = True
            return
        try:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            remaining = 1
        if remaining:
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body, or None once an error was answered (or the client went away)."""
        length = self._content_length()
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self._send_json(411, _error("length_required", "send the body with a Content-Length"))
            else:
                self._send_json(400, _error("invalid_request", "bad Content-Length header"))
            return None
        if length > MAX_BODY_BYTES:
            self._discard_body(length)
            self._send_json(413, _error("payload_too_large", f"body over {MAX_BODY_BYTES} bytes"))
            return None
        try:
            data = self.rfile.read(length)
        except OSError:
            data = b""
        if len(data) < length:
            self.close_connection = True
            return None
        return data

    def _authorized(self, token: str) -> bool:
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())

    def _post_message(self) -> None:
        app = self.app
        received_at = _utcnow_iso()
        app.count("requests")
        app.pause(app.config.latency_ms / 1000)
        raw = self._read_body()
        if raw is None:
            app.count("invalid")
            return
        answer = self._check_request(raw)
        if isinstance(answer, _Request):
            key = (self.headers.get("Idempotency-Key") or "").strip()
            answer = app.handle_message(key, answer, received_at)
        else:
            app.count("invalid")
        app.pause(answer.delay_s)
        self._send_json(answer.status, answer.payload, answer.headers)

    def _check_request(self, raw: bytes) -> _Request | _Answer:
        token = self.app.config.auth_token
        if token is not None and not self._authorized(token):
            return _Answer(401, _error("unauthorized", "missing or wrong bearer token"), {"WWW-Authenticate": "Bearer"})
        if not (self.headers.get("Idempotency-Key") or "").strip():
            return _Answer(400, _error("missing_idempotency_key", "the Idempotency-Key header is required"))
        parsed = _parse_message(raw)
        return parsed if isinstance(parsed, _Request) else _Answer(400, parsed)

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        allowed = _ROUTES.get(path)
        if path == MESSAGES_PATH and self.command == "POST":
            self._post_message()
            return
        # Any other request's body is unused, but must be read for the next request on the connection to parse.
        self._discard_body()
        if allowed is None:
            self._send_json(404, _error("not_found", f"no such path: {path}"))
        elif self.command not in allowed:
            self._send_json(
                405,
                _error("method_not_allowed", f"{self.command} not allowed on {path}"),
                {"Allow": ", ".join(allowed)},
            )
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_json(200, self.app.snapshot())

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class MockProviderServer:
    """The mock provider: binds on construction, serves after ``start()`` or ``serve_forever()``."""

    def __init__(self, config: MockServerConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random(config.seed)
        #: idempotency key -> provider id of the accepted message
        self._accepted: dict[str, str] = {}
        self._counts = {"requests": 0, "accepted": 0, "repeats": 0, "rejected": 0, "invalid": 0}
        self._faults = dict.fromkeys(FAIL_KINDS, 0)
        self._log_file: TextIO | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._receipts = _ReceiptSender(config.webhook_secret, self._log_locked) if config.webhook_secret else None
        server_cls = _HTTPServer6 if ":" in config.host else _HTTPServer
        self._httpd = server_cls((config.host, config.port), self)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{MESSAGES_PATH}"

    def banner(self) -> str:
        return f"mock provider listening on {self.url} (log: {self.config.log_path or 'none'})"

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._closed or self._thread is not None:
            raise RuntimeError("a MockProviderServer can be started once")
        try:
            if self.config.log_path is not None:
                # Line-buffered: every event is on disk as soon as it is written, for readers tailing the log.
                self._log_file = open(self.config.log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        except BaseException:
            self.stop()
            raise
        if self._receipts is not None:
            self._receipts.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-provider", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt or SIGTERM (or ``stop()`` from another thread), then shut down cleanly."""
        in_main = threading.current_thread() is threading.main_thread()
        previous: Any = None
        if in_main:
            previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self.start()
            thread = cast(threading.Thread, self._thread)
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            self.stop()

    def stop(self) -> None:
        """Stop serving, cut open connections, wait for handlers, drop pending receipts and close the log.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Wakes handlers sleeping through latency or a "timeout" fault.
        self._stopping.set()
        if self._thread is not None:
            # shutdown() waits for the serving loop to finish; never called on that thread, which only serves.
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.interrupt_connections()
        self._httpd.server_close()
        if self._receipts is not None:
            self._receipts.stop()
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def snapshot(self) -> dict[str, Any]:
        """Counters: POST requests, accepted, repeats, rejected (reject_prefix), invalid, faults by kind."""
        with self._lock:
            return {**self._counts, "faults": dict(self._faults)}

    @property
    def stats(self) -> dict[str, Any]:
        return self.snapshot()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def handle_message(self, key: str, request: _Request, received_at: str) -> _Answer:
        """Decide the answer to a valid POST, recording and logging what happened."""
        cfg = self.config
        with self._lock:
            if cfg.reject_prefix and request.to.startswith(cfg.reject_prefix):
                self._counts["rejected"] += 1
                return _Answer(400, _error("invalid_recipient", f"recipient {request.to!r} is not reachable"))
            kind = self._draw_fault()
            if kind in ("500", "429", "400"):
                self._log({"event": "fault", "kind": kind, **self._ids(key, request), "received_at": received_at})
                return self._fault_answer(kind)
            answer = self._accept(key, request, received_at)
            if kind == "timeout":
                # The ambiguous case: accepted and remembered, but the client will not hear about it in time.
                self._log({"event": "fault", "kind": kind, **self._ids(key, request), "received_at": received_at})
                answer.delay_s = cfg.timeout_delay_ms / 1000
            return answer

    def _draw_fault(self) -> str | None:
        """Called with the lock held; a zero fail_rate draws nothing, so seeded runs stay comparable."""
        cfg = self.config
        if not cfg.fail_rate or self._rng.random() >= cfg.fail_rate:
            return None
        kind = self._rng.choice(cfg.fail_kinds)
        self._faults[kind] += 1
        return kind

    @staticmethod
    def _ids(key: str, request: _Request) -> dict[str, Any]:
        return {"idempotency_key": key, "message_id": request.message_id}

    def _fault_answer(self, kind: str) -> _Answer:
        if kind == "500":
            return _Answer(500, _error("server_error", "injected fault: internal error"))
        if kind == "429":
            return _Answer(
                429,
                _error("rate_limited", "injected fault: too many requests"),
                {"Retry-After": str(self.config.retry_after_s)},
            )
        return _Answer(400, _error("invalid_recipient", "injected fault: invalid recipient"))

    def _accept(self, key: str, request: _Request, received_at: str) -> _Answer:
        """Called with the lock held."""
        provider_id = self._accepted.get(key)
        repeat = provider_id is not None
        if provider_id is None:
            provider_id = f"mp-{uuid.uuid4().hex}"
            self._accepted[key] = provider_id
            self._counts["accepted"] += 1
            if self._receipts is not None and request.callback_url is not None:
                self._schedule_receipts(self._receipts, provider_id, request)
        else:
            self._counts["repeats"] += 1
        self._log(
            {
                "event": "repeat" if repeat else "accepted",
                "provider_id": provider_id,
                **self._ids(key, request),
                "to": request.to,
                "channel": request.channel,
                "body": request.body,
                "received_at": received_at,
            }
        )
        return _Answer(200 if repeat else 201, {"id": provider_id, "status": "accepted", "repeat": repeat})

    def _schedule_receipts(self, sender: _ReceiptSender, provider_id: str, request: _Request) -> None:
        """Delivered (or failed for the fail prefix) after deliver_after_ms, then read on read channels."""
        cfg = self.config
        url = request.callback_url
        assert url is not None
        accepted_mono, accepted_at = time.monotonic(), datetime.now(UTC)
        ids = {"provider_id": provider_id, "message_id": request.message_id}

        def callback(status: str, after_ms: float, **extra: Any) -> _Callback:
            at = (accepted_at + timedelta(milliseconds=after_ms)).isoformat(timespec="milliseconds")
            receipt = {"id": provider_id, "status": status, "at": at, "code": None, "reason": None, "suppress": False}
            receipt.update(extra)
            body = json.dumps({"receipts": [receipt]}, separators=(",", ":")).encode()
            fields = {**ids, "status": status, **({"code": extra["code"]} if "code" in extra else {})}
            return _Callback(url, f"msg_{uuid.uuid4().hex}", body, fields)

        if cfg.fail_prefix and request.to.startswith(cfg.fail_prefix):
            first = callback("failed", cfg.deliver_after_ms, code=UNDELIVERABLE, reason="recipient unreachable")
        else:
            first = callback("delivered", cfg.deliver_after_ms)
            if request.channel in READ_CHANNELS:
                read_after = max(cfg.read_after_ms, cfg.deliver_after_ms)
                first.then = callback("read", read_after)
                first.then_due = accepted_mono + read_after / 1000
        sender.schedule(first, accepted_mono + cfg.deliver_after_ms / 1000)

    def _log_locked(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._log(event)

    def _log(self, event: dict[str, Any]) -> None:
        """Called with the lock held, so lines never interleave."""
        if self._log_file is not None:
            self._log_file.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The events of a JSONL log; a torn last line (the server is still writing it) is left out."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise
    return events


def _number(kind: Callable[[str], Any], check: Callable[[Any], bool], requirement: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{requirement}, got {value!r}") from None
        if not check(number):
            raise argparse.ArgumentTypeError(f"{requirement}, got {value!r}")
        return number

    return parse


def _fail_kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in FAIL_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(FAIL_KINDS)}, got {value!r}")
    return kinds


def _non_empty(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _webhook_secret(value: str) -> str:
    try:
        secret_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mock-provider`` options; bad values end in ``parser.error`` (one line)."""
    d = MockServerConfig()
    milliseconds = _number(float, lambda v: math.isfinite(v) and v >= 0, "expected milliseconds >= 0")
    parser.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    parser.add_argument(
        "--port",
        type=_number(int, lambda v: 0 <= v <= 65535, "expected a port 0..65535"),
        default=d.port,
        help="port (default 0: a free one, shown in the banner)",
    )
    parser.add_argument(
        "--log", metavar="FILE", help="append one JSON line per event (accepted, repeat, fault, receipt)"
    )
    parser.add_argument(
        "--fail-rate",
        type=_number(float, lambda v: 0 <= v <= 1, "expected a probability between 0 and 1"),
        default=d.fail_rate,
        metavar="P",
        help="probability that a valid request meets an injected fault (default 0)",
    )
    parser.add_argument(
        "--fail-kinds",
        type=_fail_kinds,
        default=d.fail_kinds,
        metavar="KINDS",
        help=f"comma list of {', '.join(FAIL_KINDS)} (default {','.join(d.fail_kinds)})",
    )
    parser.add_argument(
        "--latency-ms", type=milliseconds, default=d.latency_ms, metavar="MS", help="delay before every POST answer"
    )
    parser.add_argument(
        "--timeout-delay-ms",
        type=milliseconds,
        default=d.timeout_delay_ms,
        metavar="MS",
        help=f"how long a 'timeout' fault holds back the answer (default {d.timeout_delay_ms:g})",
    )
    parser.add_argument(
        "--retry-after",
        type=_number(int, lambda v: v >= 0, "expected whole seconds >= 0"),
        default=d.retry_after_s,
        metavar="SECONDS",
        help=f"Retry-After of a 429 fault (default {d.retry_after_s})",
    )
    parser.add_argument(
        "--reject-prefix", type=_non_empty, metavar="PREFIX", help="refuse recipients starting with this (400)"
    )
    parser.add_argument(
        "--seed", type=_number(int, lambda v: True, "expected an integer"), metavar="N", help="RNG seed for faults"
    )
    parser.add_argument("--auth-token", type=_non_empty, metavar="TOKEN", help="require Authorization: Bearer TOKEN")
    parser.add_argument(
        "--webhook-secret",
        type=_webhook_secret,
        metavar="SECRET",
        help="POST receipts signed with SECRET to each message's callback_url (default: no receipts)",
    )
    parser.add_argument(
        "--deliver-after-ms",
        type=milliseconds,
        default=d.deliver_after_ms,
        metavar="MS",
        help=f"from acceptance to the delivered (or failed) receipt (default {d.deliver_after_ms:g})",
    )
    parser.add_argument(
        "--read-after-ms",
        type=milliseconds,
        default=d.read_after_ms,
        metavar="MS",
        help=f"from acceptance to the read receipt, WhatsApp and webchat only (default {d.read_after_ms:g})",
    )
    parser.add_argument(
        "--fail-prefix",
        type=_non_empty,
        metavar="PREFIX",
        help=f"accept recipients starting with this, then send a failed receipt ({UNDELIVERABLE})",
    )


def config_from_args(ns: argparse.Namespace) -> MockServerConfig:
    return MockServerConfig(
        host=ns.host,
        port=ns.port,
        log_path=ns.log,
        fail_rate=ns.fail_rate,
        fail_kinds=tuple(ns.fail_kinds),
        latency_ms=ns.latency_ms,
        timeout_delay_ms=ns.timeout_delay_ms,
        retry_after_s=ns.retry_after,
        reject_prefix=ns.reject_prefix,
        seed=ns.seed,
        auth_token=ns.auth_token,
        webhook_secret=ns.webhook_secret,
        deliver_after_ms=ns.deliver_after_ms,
        read_after_ms=ns.read_after_ms,
        fail_prefix=ns.fail_prefix,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m providers.mock_server``: the same as ``sendq mock-provider``."""
    parser = argparse.ArgumentParser(prog="python -m providers.mock_server", description=__doc__)
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv))
    try:
        server = MockProviderServer(config)
    except OSError as exc:
        parser.error(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
    print(server.banner(), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
