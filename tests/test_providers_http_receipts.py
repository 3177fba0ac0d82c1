"""The http provider's callbacks: Standard Webhooks signatures, the receipt and inbound formats, and the mock
provider POSTing signed receipts to a loopback receiver that the adapter verifies and parses."""

import argparse
import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from pydantic import SecretStr

from providers import build_provider
from providers.base import WebhookParser, WebhookRequest
from providers.http import (
    INBOUND_PATH,
    RECEIPTS_PATH,
    HttpProvider,
    payload,
    secret_key,
    sign,
    verify_signature,
    webhook_headers,
)
from providers.mock_server import (
    RECEIPT_ATTEMPTS,
    MockProviderServer,
    MockServerConfig,
    add_arguments,
    config_from_args,
    read_log,
)
from sendq.channel import Channel
from sendq.errors import BadWebhook, ConfigurationError, WebhookRejected
from sendq.message import Message, new_message_id
from sendq.reports import Inbound, Receipt
from sendq.settings import HttpProviderSettings, Settings
from sendq.status import MessageStatus
from tests.contract_server import ContractServer, Recorded, Reply
from tests.test_providers_mock_server import StartServer, start_mock_server

SECRET = "test-secret-with-enough-bytes-0123456789"
PUBLIC = "https://sendq.example.com"
_TLS = ssl.create_default_context()
#: the adapters below only verify and parse: their client never sends
_CLIENT = httpx.AsyncClient(verify=_TLS)


def make_provider(secret: str | None = SECRET, public_url: str | None = PUBLIC) -> HttpProvider:
    return HttpProvider(
        "http://127.0.0.1:9/v1/messages",
        _CLIENT,
        public_url=public_url,
        webhook_secret=secret,
    )


def hook(
    body: Any, headers: dict[str, str] | None = None, *, secret: str = SECRET, path: str = RECEIPTS_PATH
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signed = webhook_headers(secret, raw) if headers is None else headers
    return WebhookRequest(url=PUBLIC + path, headers=signed, body=raw)


def make_message(to: str = "+14155552671", channel: Channel = Channel.SMS) -> Message:
    now = datetime.now(UTC)
    return Message(
        id=new_message_id(),
        subaccount="acme",
        channel=channel,
        to=to,
        body="hello",
        created_at=now,
        valid_until=now + timedelta(hours=1),
        status=MessageStatus.SENDING,
        status_at=now,
        due_at=now,
    )


# -- signatures -------------------------------------------------------------------------------------------------


def test_sign_matches_the_standard_webhooks_vector() -> None:
    """The spec's published vector: a whsec_ secret keys the HMAC with its base64-decoded bytes."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330"}
    verify_signature(secret_key(secret), {**headers, "webhook-signature": signature}, body, now=1614265330)
    with pytest.raises(WebhookRejected, match="too old"):
        verify_signature(secret_key(secret), {**headers, "webhook-signature": signature}, body)


def test_valid_signature_is_accepted() -> None:
    """Headers made by webhook_headers (the mock server's) verify; so does a list with one good v1 entry."""
    provider = make_provider()
    request = hook({"receipts": []})
    provider.verify(request)
    good = request.headers["webhook-signature"]
    rotated = {**request.headers, "webhook-signature": f"v1,AAAA v1a,{good[3:]} {good}"}
    provider.verify(WebhookRequest(request.url, rotated, request.body))


def test_changed_body_is_rejected() -> None:
    provider = make_provider()
    request = hook({"receipts": []})
    with pytest.raises(WebhookRejected, match="does not match"):
        provider.verify(WebhookRequest(request.url, request.headers, request.body + b" "))


def test_wrong_secret_is_rejected() -> None:
    provider = make_provider()
    with pytest.raises(WebhookRejected, match="does not match"):
        provider.verify(hook({"receipts": []}, secret="another-secret"))


def test_changed_id_or_timestamp_is_rejected() -> None:
    """The id and timestamp are signed too."""
    provider = make_provider()
    request = hook({"receipts": []})
    for name, value in (("webhook-id", "msg_other"), ("webhook-timestamp", str(int(time.time()) - 1))):
        with pytest.raises(WebhookRejected):
            provider.verify(WebhookRequest(request.url, {**request.headers, name: value}, request.body))


def test_other_signature_versions_do_not_count() -> None:
    provider = make_provider()
    request = hook({"receipts": []})
    good = request.headers["webhook-signature"].removeprefix("v1,")
    for value in (f"v2,{good}", good, f"v1a,{good}"):
        with pytest.raises(WebhookRejected):
            provider.verify(WebhookRequest(request.url, {**request.headers, "webhook-signature": value}, request.body))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    provider = make_provider()
    request = hook({"receipts": []})
    headers = {k: v for k, v in request.headers.items() if k != missing}
    with pytest.raises(WebhookRejected, match="missing"):
        provider.verify(WebhookRequest(request.url, headers, request.body))
    with pytest.raises(WebhookRejected, match="missing"):
        provider.verify(WebhookRequest(request.url, {**headers, missing: " "}, request.body))


@pytest.mark.parametrize(("offset", "fragment"), [(-301, "too old"), (301, "too new"), (-3600, "too old")])
def test_timestamp_outside_five_minutes_is_rejected(offset: int, fragment: str) -> None:
    """A correctly signed callback is refused when its timestamp is more than 5 minutes away (replays)."""
    provider = make_provider()
    body = b'{"receipts": []}'
    headers = webhook_headers(SECRET, body, timestamp=int(time.time()) + offset)
    with pytest.raises(WebhookRejected, match=fragment):
        provider.verify(WebhookRequest(PUBLIC + RECEIPTS_PATH, headers, body))


def test_timestamp_within_tolerance_is_accepted() -> None:
    provider = make_provider()
    body = b'{"receipts": []}'
    for offset in (-290, 290):
        provider.verify(
            WebhookRequest(PUBLIC, webhook_headers(SECRET, body, timestamp=int(time.time()) + offset), body)
        )


@pytest.mark.parametrize("value", ["soon", "1.5", "-5", "１６１４２６５３３０"])
def test_unreadable_timestamp_is_rejected(value: str) -> None:
    provider = make_provider()
    request = hook({"receipts": []})
    with pytest.raises(WebhookRejected, match="Unix seconds"):
        provider.verify(WebhookRequest(request.url, {**request.headers, "webhook-timestamp": value}, request.body))


def test_no_secret_fails_closed() -> None:
    """Without a configured secret every callback is refused, however it is signed."""
    provider = make_provider(secret=None)
    assert isinstance(provider, WebhookParser)
    with pytest.raises(WebhookRejected, match="SENDQ_HTTP__WEBHOOK_SECRET"):
        provider.verify(hook({"receipts": []}))
    with pytest.raises(WebhookRejected):
        make_provider(secret="").verify(hook({"receipts": []}))


def test_malformed_whsec_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        make_provider(secret="whsec_not base64!")


def test_build_provider_passes_public_url_and_secret() -> None:
    """build_provider's http branch: callback_url from SENDQ_PUBLIC_URL, callbacks verified with the secret."""
    settings = Settings(
        provider="http",
        public_url=PUBLIC + "/",
        http=HttpProviderSettings(url="http://127.0.0.1:9/v1/messages", webhook_secret=SecretStr(SECRET)),
    )
    provider = build_provider("http", settings, _CLIENT)
    assert isinstance(provider, HttpProvider)
    assert provider.callback_url == PUBLIC + RECEIPTS_PATH
    provider.verify(hook({"receipts": []}))
    bare = build_provider("http", Settings(http=HttpProviderSettings(url="http://p")), _CLIENT)
    assert isinstance(bare, HttpProvider) and bare.callback_url is None
    with pytest.raises(WebhookRejected):
        bare.verify(hook({"receipts": []}))


async def test_send_carries_the_callback_url() -> None:
    """With a public URL every message payload names the receipts URL; without one the payload is unchanged."""
    message = make_message()
    assert "callback_url" not in payload(message)
    with ContractServer(lambda r: Reply(201, {"id": "p-1"})) as server:
        async with httpx.AsyncClient(verify=_TLS) as client:
            with_url = HttpProvider(server.url, client, public_url=PUBLIC + "/")
            without = HttpProvider(server.url, client)
            await with_url.send(message, idempotency_key="a")
            await without.send(message, idempotency_key="b")
    first, second = (r.json() for r in server.requests)
    assert first == {**payload(message), "callback_url": f"{PUBLIC}/v1/receipts/http"}
    assert second == payload(message)


# -- receipts and inbound -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
    ],
)
def test_receipt_statuses(status: str, expected: MessageStatus) -> None:
    """Every success status maps; code, reason and suppress only count for failed."""
    request = hook(
        {
            "receipts": [
                {"id": "mp-1", "status": status, "at": "2025-03-01T10:00:00.250Z", "code": "x", "suppress": True}
            ]
        }
    )
    assert make_provider().parse_receipts(request) == [
        Receipt(
            "mp-1",
            expected,
            at=datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC),
            event_id=request.headers["webhook-id"],
        )
    ]


def test_failed_receipt_carries_code_reason_and_suppress() -> None:
    request = hook(
        {
            "receipts": [
                {
                    "id": "mp-2",
                    "status": "failed",
                    "at": "2025-03-01T12:00:00+02:00",
                    "code": "undeliverable",
                    "reason": "recipient unreachable",
                    "suppress": False,
                },
                {"id": "mp-3", "status": "failed", "code": "opt_out", "reason": "opt_out", "suppress": True},
                {"id": "mp-4", "status": "failed"},
            ]
        }
    )
    event = request.headers["webhook-id"]
    assert make_provider().parse_receipts(request) == [
        Receipt(
            "mp-2",
            MessageStatus.FAILED,
            at=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
            code="undeliverable",
            reason="recipient unreachable",
            event_id=event,
        ),
        Receipt("mp-3", MessageStatus.FAILED, code="opt_out", reason="opt_out", suppress=True, event_id=event),
        Receipt("mp-4", MessageStatus.FAILED, event_id=event),
    ]


def test_receipt_times() -> None:
    """An offset is converted to UTC, a bare time is read as UTC, null or absent is unknown."""
    entries = [
        {"id": "a", "status": "delivered", "at": "2025-03-01T10:00:00-05:00"},
        {"id": "b", "status": "delivered", "at": "2025-03-01T10:00:00"},
        {"id": "c", "status": "delivered", "at": None},
        {"id": "d", "status": "delivered"},
    ]
    times = [r.at for r in make_provider().parse_receipts(hook({"receipts": entries}))]
    assert times == [datetime(2025, 3, 1, 15, tzinfo=UTC), datetime(2025, 3, 1, 10, tzinfo=UTC), None, None]
    assert all(t is None or t.tzinfo is UTC for t in times)


def test_empty_receipt_list_is_fine() -> None:
    assert make_provider().parse_receipts(hook({"receipts": []})) == []


def test_inbound_messages() -> None:
    """SMS and WhatsApp senders are canonical E.164; web chat ids pass; ``at`` defaults to arrival."""
    body = {
        "inbound": [
            {
                "from": "+14155552671",
                "to": "+15005550006",
                "channel": "sms",
                "at": "2025-03-01T10:00:00Z",
                "id": "in-1",
            },
            {"from": "+447911123456", "to": "wa-sender", "channel": "whatsapp", "at": "2025-03-01T11:00:00Z"},
            {"from": "session-42", "channel": "webchat", "to": None, "id": None},
        ]
    }
    before = datetime.now(UTC)
    first, second, third = make_provider().parse_inbound(hook(body, path=INBOUND_PATH))
    assert first == Inbound("+14155552671", Channel.SMS, "+15005550006", datetime(2025, 3, 1, 10, tzinfo=UTC), "in-1")
    assert second == Inbound("+447911123456", Channel.WHATSAPP, "wa-sender", datetime(2025, 3, 1, 11, tzinfo=UTC))
    assert (third.contact, third.channel, third.to, third.provider_message_id) == (
        "session-42",
        Channel.WEBCHAT,
        None,
        None,
    )
    assert before <= third.at <= datetime.now(UTC)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"inbound": []}',
        b'{"receipts": {"id": "x"}}',
        b'{"receipts": ["mp-1"]}',
        b'{"receipts": [{"status": "delivered"}]}',
        b'{"receipts": [{"id": "", "status": "delivered"}]}',
        b'{"receipts": [{"id": 7, "status": "delivered"}]}',
        b'{"receipts": [{"id": "mp-1"}]}',
        b'{"receipts": [{"id": "mp-1", "status": "DELIVERED"}]}',
        b'{"receipts": [{"id": "mp-1", "status": "queued"}]}',
        b'{"receipts": [{"id": "mp-1", "status": "delivered", "at": "yesterday"}]}',
        b'{"receipts": [{"id": "mp-1", "status": "delivered", "at": 1700000000}]}',
        b'{"receipts": [{"id": "mp-1", "status": "failed", "code": 30003}]}',
        b'{"receipts": [{"id": "mp-1", "status": "failed", "reason": ["x"]}]}',
        b'{"receipts": [{"id": "mp-1", "status": "failed", "suppress": "yes"}]}',
    ],
)
def test_malformed_receipts_are_bad_webhooks(body: bytes) -> None:
    with pytest.raises(BadWebhook):
        make_provider().parse_receipts(hook(body))


@pytest.mark.parametrize(
    "entry",
    [
        {"to": "+15005550006", "channel": "sms"},
        {"from": "", "channel": "sms"},
        {"from": "+14155552671"},
        {"from": "+14155552671", "channel": "fax"},
        {"from": "0044 7911", "channel": "sms"},
        {"from": "+14155552671", "channel": "whatsapp", "to": 5},
        {"from": "+14155552671", "channel": "sms", "at": "noon"},
        {"from": "+14155552671", "channel": "sms", "id": 12},
    ],
)
def test_malformed_inbound_is_a_bad_webhook(entry: dict[str, Any]) -> None:
    with pytest.raises(BadWebhook):
        make_provider().parse_inbound(hook({"inbound": [entry]}, path=INBOUND_PATH))
    with pytest.raises(BadWebhook):
        make_provider().parse_inbound(hook({"receipts": []}, path=INBOUND_PATH))


def test_non_json_content_type_is_a_bad_webhook() -> None:
    request = hook({"receipts": []})
    form = WebhookRequest(
        request.url, {**request.headers, "content-type": "application/x-www-form-urlencoded"}, request.body
    )
    with pytest.raises(BadWebhook, match="JSON"):
        make_provider().parse_receipts(form)


# -- the mock provider's receipts -----------------------------------------------------------------------------------


class Receiver:
    """sendq's side on loopback: records each callback and answers like the callbacks API would."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.parser = make_provider()
        self._lock = threading.Lock()

    def __call__(self, recorded: Recorded) -> Reply:
        with self._lock:
            status = self.answers.pop(0) if self.answers else 200
        return Reply(status, {"applied": 1})

    def callbacks(self, server: ContractServer) -> list[WebhookRequest]:
        return [WebhookRequest(server.url + r.path, r.headers, r.body) for r in list(server.requests)]

    def receipts(self, server: ContractServer) -> list[Receipt]:
        """Every callback verified and parsed, in arrival order (raises if one is not signed right)."""
        found: list[Receipt] = []
        for request in self.callbacks(server):
            self.parser.verify(request)
            found.extend(self.parser.parse_receipts(request))
        return found


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """The mock server fixture of its own tests, with receipts on and short delays."""
    with start_mock_server(tmp_path) as base:

        def start(**overrides: Any) -> MockProviderServer:
            overrides.setdefault("webhook_secret", SECRET)
            overrides.setdefault("deliver_after_ms", 20)
            overrides.setdefault("read_after_ms", 60)
            return base(**overrides)

        yield start


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, verify=_TLS) as http:
        yield http


def receipt_events(server: MockProviderServer) -> list[dict[str, Any]]:
    assert server.config.log_path is not None
    return [e for e in read_log(server.config.log_path) if e["event"] == "receipt"]


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def send(server: MockProviderServer, client: httpx.AsyncClient, public: str, message: Message, key: str) -> str:
    provider = HttpProvider(server.url, client, public_url=public)
    return (await provider.send(message, idempotency_key=key)).provider_message_id


async def test_sms_gets_a_signed_delivered_receipt(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """An SMS gets one delivered receipt at the callback URL, signed so that the adapter accepts it; a repeated
    send of the same key gets none; the log shows the receipt with the status the receiver answered."""
    server = start_server()
    receiver = Receiver()
    with ContractServer(receiver) as sendq_api:
        message = make_message()
        provider_id = await send(server, client, sendq_api.url, message, "k-sms")
        await send(server, client, sendq_api.url, message, "k-sms")
        await eventually(lambda: len(receipt_events(server)) == 1)
        await asyncio.sleep(0.1)  # nothing else follows
        [receipt] = receiver.receipts(sendq_api)
    [request] = sendq_api.requests
    assert (request.method, request.path) == ("POST", RECEIPTS_PATH)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert (receipt.provider_message_id, receipt.status, receipt.code, receipt.suppress) == (
        provider_id,
        MessageStatus.DELIVERED,
        None,
        False,
    )
    assert receipt.at is not None and abs(datetime.now(UTC) - receipt.at) < timedelta(seconds=5)
    [event] = receipt_events(server)
    assert event == {
        "event": "receipt",
        "provider_id": provider_id,
        "message_id": message.id,
        "status": "delivered",
        "webhook_id": request.headers["webhook-id"],
        "url": sendq_api.url + RECEIPTS_PATH,
        "http_status": 200,
        "attempts": 1,
        "ok": True,
    }


@pytest.mark.parametrize("channel", [Channel.WHATSAPP, Channel.WEBCHAT])
async def test_whatsapp_gets_delivered_then_read(
    start_server: StartServer, client: httpx.AsyncClient, channel: Channel
) -> None:
    """WhatsApp and web chat messages get delivered, then read, in that order and with ordered times."""
    server = start_server(deliver_after_ms=50, read_after_ms=150)
    receiver = Receiver()
    to = "+14155552671" if channel is Channel.WHATSAPP else "session-1"
    with ContractServer(receiver) as sendq_api:
        started = time.monotonic()
        provider_id = await send(server, client, sendq_api.url, make_message(to, channel), "k-wa")
        await eventually(lambda: len(receipt_events(server)) == 2)
        elapsed = time.monotonic() - started
        delivered, read = receiver.receipts(sendq_api)
    assert elapsed >= 0.14
    assert (delivered.provider_message_id, delivered.status) == (provider_id, MessageStatus.DELIVERED)
    assert (read.provider_message_id, read.status) == (provider_id, MessageStatus.READ)
    assert delivered.at is not None and read.at is not None
    assert read.at - delivered.at == timedelta(milliseconds=100)
    assert delivered.event_id != read.event_id
    assert [(e["status"], e["http_status"]) for e in receipt_events(server)] == [("delivered", 200), ("read", 200)]


async def test_read_never_goes_before_delivered(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A read delay shorter than the delivery delay still sends delivered first."""
    server = start_server(deliver_after_ms=80, read_after_ms=0)
    receiver = Receiver()
    with ContractServer(receiver) as sendq_api:
        await send(server, client, sendq_api.url, make_message(channel=Channel.WHATSAPP), "k")
        await eventually(lambda: len(receipt_events(server)) == 2)
        statuses = [r.status for r in receiver.receipts(sendq_api)]
    assert statuses == [MessageStatus.DELIVERED, MessageStatus.READ]


async def test_fail_prefix_gets_a_failed_receipt(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A recipient with the fail prefix is accepted, then gets failed (undeliverable) and no read receipt."""
    server = start_server(fail_prefix="+1999")
    receiver = Receiver()
    with ContractServer(receiver) as sendq_api:
        provider_id = await send(server, client, sendq_api.url, make_message("+19995550100", Channel.WHATSAPP), "k")
        await eventually(lambda: len(receipt_events(server)) == 1)
        await asyncio.sleep(0.15)
        [receipt] = receiver.receipts(sendq_api)
    assert (receipt.provider_message_id, receipt.status, receipt.code, receipt.suppress) == (
        provider_id,
        MessageStatus.FAILED,
        "undeliverable",
        False,
    )
    assert receipt.reason
    [event] = receipt_events(server)
    assert (event["status"], event["code"], event["ok"]) == ("failed", "undeliverable", True)


async def test_5xx_is_retried_under_the_same_webhook_id(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A 503 then a 500 from the receiver are tried again; every attempt is signed and shares its webhook-id."""
    server = start_server()
    receiver = Receiver(answers=[503, 500])
    with ContractServer(receiver) as sendq_api:
        await send(server, client, sendq_api.url, make_message(), "k")
        await eventually(lambda: len(receipt_events(server)) == 1)
        receipts = receiver.receipts(sendq_api)
    assert len(receipts) == 3 and len({r.event_id for r in receipts}) == 1
    assert len({r.body for r in sendq_api.requests}) == 1
    [event] = receipt_events(server)
    assert (event["http_status"], event["attempts"], event["ok"]) == (200, 3, True)


async def test_4xx_is_not_retried(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A 401 (sendq refused the signature) is final: logged with its status, not tried again."""
    server = start_server()
    with ContractServer(Receiver(answers=[401])) as sendq_api:
        await send(server, client, sendq_api.url, make_message(), "k")
        await eventually(lambda: len(receipt_events(server)) == 1)
        await asyncio.sleep(0.4)
        assert len(sendq_api.requests) == 1
    [event] = receipt_events(server)
    assert (event["http_status"], event["attempts"], event["ok"]) == (401, 1, False)


async def test_connection_refused_is_retried_then_given_up(
    start_server: StartServer, client: httpx.AsyncClient
) -> None:
    """A callback URL where nothing listens is tried RECEIPT_ATTEMPTS times, then logged as failed."""
    server = start_server(deliver_after_ms=0)
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await send(server, client, f"http://127.0.0.1:{port}", make_message(), "k")
    await eventually(lambda: len(receipt_events(server)) == 1, within_s=10)
    [event] = receipt_events(server)
    assert (event["http_status"], event["attempts"], event["ok"]) == (None, RECEIPT_ATTEMPTS, False)
    assert "error" in event


async def test_no_secret_means_no_receipts(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """Without a webhook secret the mock provider ignores callback_url."""
    server = start_server(webhook_secret=None, deliver_after_ms=0)
    with ContractServer(Receiver()) as sendq_api:
        await send(server, client, sendq_api.url, make_message(), "k")
        await asyncio.sleep(0.2)
        assert sendq_api.requests == []
    assert receipt_events(server) == []


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://", 5, "http://h:99999/x"])
async def test_bad_callback_url_is_400(start_server: StartServer, client: httpx.AsyncClient, url: Any) -> None:
    server = start_server()
    data = {"message_id": "m1", "channel": "sms", "to": "+14155552671", "callback_url": url}
    response = await client.post(server.url, json=data, headers={"Idempotency-Key": "k"})
    assert response.status_code == 400
    assert response.json()["field"] == "callback_url"


async def test_stop_is_prompt_with_receipts_pending(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """stop() returns promptly while receipt POSTs hang on a URL that accepts connections but never answers,
    and while more receipts are still scheduled."""
    server = start_server(deliver_after_ms=0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the backlog; nothing ever reads or answers
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for number in range(6):
            await send(server, client, silent_url, make_message(), f"hang-{number}")
        later = start_server(deliver_after_ms=60_000)
        await send(later, client, silent_url, make_message(), "later")
        silent.settimeout(5)
        connection, _ = silent.accept()  # at least one receipt POST is in flight
        connection.close()
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(later.stop)
        assert time.monotonic() - started < 2
    assert not any(e["ok"] for e in receipt_events(server))


# -- the command line ---------------------------------------------------------------------------------------------


def _raise(message: str) -> NoReturn:
    raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mock-provider")
    parser.error = _raise  # type: ignore[method-assign]
    add_arguments(parser)
    return parser


def test_receipt_arguments_build_the_config() -> None:
    defaults = config_from_args(_parser().parse_args([]))
    assert (defaults.webhook_secret, defaults.deliver_after_ms, defaults.read_after_ms, defaults.fail_prefix) == (
        None,
        200.0,
        500.0,
        None,
    )
    argv = ["--webhook-secret", "s3cret", "--deliver-after-ms", "10", "--read-after-ms", "30", "--fail-prefix", "+1999"]
    config = config_from_args(_parser().parse_args(argv))
    assert config == MockServerConfig(
        webhook_secret="s3cret", deliver_after_ms=10, read_after_ms=30, fail_prefix="+1999"
    )
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    "argv",
    [
        ["--webhook-secret", ""],
        ["--webhook-secret", "whsec_%%%"],
        ["--deliver-after-ms", "-1"],
        ["--read-after-ms", "inf"],
        ["--fail-prefix", ""],
    ],
)
def test_invalid_receipt_arguments_are_one_line_errors(argv: list[str]) -> None:
    with pytest.raises(ValueError, match=f"^argument {argv[0]}") as caught:
        _parser().parse_args(argv)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"webhook_secret": ""},
        {"webhook_secret": "whsec_!"},
        {"deliver_after_ms": -1.0},
        {"read_after_ms": float("nan")},
    ],
)
def test_receipt_config_validates(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MockServerConfig(**overrides)
