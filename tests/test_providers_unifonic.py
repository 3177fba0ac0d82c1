"""The Unifonic WhatsApp adapter against a loopback server that follows Unifonic's documented contract:
request fields and headers, the error table, delivery events (seed 002), inbound events, basic-auth callback
verification and the status API lookups."""

import base64
import copy
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from providers.base import Inbound, Lookup, Receipt, StatusLookup, WebhookParser, WebhookRequest
from providers.unifonic import ERRORS, NAME, STATUS_BY_REF_PATH, STATUS_PATH, UnifonicProvider, payload
from sendq.channel import Channel
from sendq.errors import (
    BadWebhook,
    ConfigurationError,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    WebhookRejected,
)
from sendq.message import Message, new_message_id
from sendq.provider_settings import UnifonicSettings
from sendq.status import MessageStatus
from tests.contract_server import ContractServer, Recorded, Reply
from tests.redis_server import free_port

PUBLIC_ID = "7d0dd3we-2da0-4a1b-82a1-public"
SECRET = "s3cr3t-key"
SENDER = "+966112345678"
CONTACT = "+966501234567"
HOOK_USER, HOOK_PASSWORD = "unifonic-hooks", "hook-pass"
RECEIPTS_URL = "https://sendq.example.com/v1/receipts/unifonic"
# Every AsyncClient would otherwise load the CA bundle again; these requests are plain HTTP anyway.
_TLS = ssl.create_default_context()


def make_settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> UnifonicSettings:
    data: dict[str, Any] = {
        "base_url": base_url,
        "public_id": PUBLIC_ID,
        "secret": SECRET,
        "sender": SENDER,
        "webhook_user": HOOK_USER,
        "webhook_password": HOOK_PASSWORD,
    }
    data.update(overrides)
    return UnifonicSettings(**data)


def make_message(**overrides: Any) -> Message:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "id": new_message_id(),
        "subaccount": "acme",
        "channel": Channel.WHATSAPP,
        "to": CONTACT,
        "body": "Your order #0021 is confirmed",
        "created_at": now,
        "valid_until": now + timedelta(hours=1),
        "status": MessageStatus.SENDING,
        "status_at": now,
        "due_at": now,
    }
    data.update(overrides)
    return Message(**data)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, verify=_TLS) as c:
        yield c


def provider_for(server: ContractServer, client: httpx.AsyncClient, **overrides: Any) -> UnifonicProvider:
    return UnifonicProvider(make_settings(server.url, **overrides), client)


# --- the documented send contract, served -------------------------------------------------------------------

#: error bodies as docs.unifonic.com "API error codes" lists them
DOCUMENTED_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "Invalid request sent.", "errors": {"recipient.contact": ["must be a valid phone number"]}},
    401: {"message": "Unauthorized"},
    402: {"message": "Application with ID: 7d0dd3we belongs to an account which has no balance available."},
    403: {"message": "User is not authorized to access this resource with an explicit deny"},
    500: {"message": "Sending messages is temporarily unavailable."},
}


def unifonic_send(recorded: Recorded) -> Reply:
    """POST /v1/messages as documented: credential headers, a JSON recipient and content, a messageId back."""
    if recorded.method != "POST" or recorded.path != "/v1/messages":
        return Reply(404, {"message": "Not Found"})
    if "publicid" not in recorded.headers or "secret" not in recorded.headers:
        return Reply(401, DOCUMENTED_ERRORS[401])
    if recorded.headers["publicid"] != PUBLIC_ID or recorded.headers["secret"] != SECRET:
        return Reply(403, DOCUMENTED_ERRORS[403])
    if not recorded.headers.get("content-type", "").startswith("application/json"):
        return Reply(400, DOCUMENTED_ERRORS[400])
    body = recorded.json()
    recipient, content = body.get("recipient", {}), body.get("content", {})
    valid = (
        recipient.get("channel") == "whatsapp"
        and str(recipient.get("contact", "")).startswith("+")
        and (
            (content.get("type") == "text" and content.get("text"))
            or (content.get("type") == "template" and content.get("name") and content["language"].get("code"))
        )
    )
    if not valid:
        return Reply(400, DOCUMENTED_ERRORS[400])
    reference = body.get("referenceId")
    return Reply(200, {"messageId": issued_id(reference), "status": "QUEUED", "referenceId": reference})


def issued_id(reference: str | None) -> str:
    """The server's new message id: a UUID, derived from the reference so a test can predict it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, reference or "none"))


async def test_text_message_request_and_the_id_it_returns(client: httpx.AsyncClient) -> None:
    message = make_message()
    with ContractServer(unifonic_send) as server:
        result = await provider_for(server, client).send(message, idempotency_key="k-1")

    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["publicid"] == PUBLIC_ID
    assert sent.headers["secret"] == SECRET
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "recipient": {"contact": CONTACT, "channel": "whatsapp"},
        "content": {"type": "text", "text": "Your order #0021 is confirmed"},
        "referenceId": message.id,
    }
    # The receipts and the status API name the message by this id.
    assert result.provider_message_id == issued_id(message.id)
    assert result.repeat is False


async def test_template_variables_become_positional_body_parameters(client: httpx.AsyncClient) -> None:
    message = make_message(body=None, template="order_is_ready", variables={"2": "Acme Café", "1": "0021"})
    with ContractServer(unifonic_send) as server:
        await provider_for(server, client, template_language="ar").send(message, idempotency_key="k")

    assert server.requests[0].json()["content"] == {
        "type": "template",
        "name": "order_is_ready",
        "language": {"code": "ar"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "0021"}, {"type": "text", "text": "Acme Café"}]}
        ],
    }


def test_template_without_variables_has_no_components_and_defaults_to_english() -> None:
    body = payload(make_message(body=None, template="hello_world"), language=make_settings().template_language)
    assert body["content"] == {"type": "template", "name": "hello_world", "language": {"code": "en"}, "components": []}


@pytest.mark.parametrize("variables", [{"name": "Ali"}, {"1": "a", "3": "c"}, {"0": "x"}])
async def test_template_variables_not_keyed_1_to_n_are_refused_before_any_call(
    client: httpx.AsyncClient, variables: dict[str, str]
) -> None:
    message = make_message(body=None, template="order_is_ready", variables=variables)
    with ContractServer(unifonic_send) as server, pytest.raises(PermanentProviderError) as caught:
        await provider_for(server, client).send(message, idempotency_key="k")
    assert caught.value.code == "template_variables"
    assert server.requests == []


@pytest.mark.parametrize("channel,to", [(Channel.SMS, CONTACT), (Channel.EMAIL, "bob@example.com")])
async def test_channels_other_than_whatsapp_are_unsupported(
    client: httpx.AsyncClient, channel: Channel, to: str
) -> None:
    with ContractServer(unifonic_send) as server, pytest.raises(PermanentProviderError) as caught:
        await provider_for(server, client).send(make_message(channel=channel, to=to), idempotency_key="k")
    assert caught.value.code == "channel_unsupported"
    assert server.requests == []


@pytest.mark.parametrize("missing", [{"public_id": None}, {"secret": None}, {"secret": ""}, {"public_id": ""}])
async def test_missing_credentials_stop_construction(client: httpx.AsyncClient, missing: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="SENDQ_UNIFONIC__PUBLIC_ID and SENDQ_UNIFONIC__SECRET"):
        UnifonicProvider(make_settings(**missing), client)


async def test_the_route_sender_overrides_the_default_and_idempotency_is_not_claimed(
    client: httpx.AsyncClient,
) -> None:
    assert UnifonicProvider(make_settings(), client).sender == SENDER
    routed = UnifonicProvider(make_settings(), client, sender="+966118765432", public_url="https://x.example")
    assert routed.sender == "+966118765432"
    assert routed.supports_idempotency is False
    assert routed.name == NAME == "unifonic"
    assert isinstance(routed, WebhookParser)
    assert isinstance(routed, StatusLookup)


async def test_wrong_secret_is_the_documented_403(client: httpx.AsyncClient) -> None:
    with ContractServer(unifonic_send) as server, pytest.raises(PermanentProviderError) as caught:
        await provider_for(server, client, secret="stale").send(make_message(), idempotency_key="k")
    assert (caught.value.code, caught.value.status_code, caught.value.reason) == ("403", 403, "unauthorized")
    assert "explicit deny" in caught.value.detail


# --- the error table ----------------------------------------------------------------------------------------

SEND_CODES = sorted(code for code in ERRORS if code.isdigit())


def test_every_documented_send_error_is_in_the_table() -> None:
    assert sorted(str(status) for status in DOCUMENTED_ERRORS) == SEND_CODES


@pytest.mark.parametrize("code", SEND_CODES)
async def test_send_errors_are_classified_by_the_table(client: httpx.AsyncClient, code: str) -> None:
    status, rule = int(code), ERRORS[code]
    server = ContractServer(lambda r: Reply(status, DOCUMENTED_ERRORS[status]))
    with server, pytest.raises((PermanentProviderError, RetryableProviderError)) as caught:
        await provider_for(server, client).send(make_message(), idempotency_key="k")

    error = caught.value
    assert isinstance(error, RetryableProviderError if rule.retryable else PermanentProviderError)
    assert not isinstance(error, RateLimited)
    assert (error.code, error.status_code, error.reason, error.suppress) == (code, status, rule.reason, rule.suppress)
    assert error.detail == DOCUMENTED_ERRORS[status]["message"]
    assert error.ambiguous is False


def test_the_table_says_what_each_send_status_means() -> None:
    assert not ERRORS["400"].retryable
    assert ERRORS["402"].retryable  # a top-up lets the next attempt through
    assert ERRORS["500"].retryable
    assert not any(rule.suppress for code, rule in ERRORS.items() if code.isdigit())


@pytest.mark.parametrize(
    "status,reply_body,expected",
    [
        (404, {"message": "Not Found"}, PermanentProviderError),
        (422, "unprocessable", PermanentProviderError),
        (503, {"message": "Service Unavailable"}, RetryableProviderError),
        (408, None, RetryableProviderError),
    ],
)
async def test_unlisted_statuses_fall_back_to_the_http_class(
    client: httpx.AsyncClient, status: int, reply_body: Any, expected: type[ProviderError]
) -> None:
    with ContractServer(lambda r: Reply(status, reply_body)) as server, pytest.raises(expected) as caught:
        await provider_for(server, client).send(make_message(), idempotency_key="k")
    assert caught.value.code == str(status)
    assert caught.value.status_code == status


async def test_429_with_retry_after_is_rate_limited(client: httpx.AsyncClient) -> None:
    reply = Reply(429, {"message": "Too Many Requests"}, headers={"Retry-After": "7"})
    with ContractServer(lambda r: reply) as server, pytest.raises(RateLimited) as caught:
        await provider_for(server, client).send(make_message(), idempotency_key="k")
    assert caught.value.retry_after_s == 7.0
    assert caught.value.status_code == 429


@pytest.mark.parametrize("reply_body", [{"status": "QUEUED"}, {"messageId": ""}, [], "OK"])
async def test_2xx_without_a_message_id_is_ambiguous(client: httpx.AsyncClient, reply_body: Any) -> None:
    server = ContractServer(lambda r: Reply(200, reply_body))
    with server, pytest.raises(RetryableProviderError) as caught:
        await provider_for(server, client).send(make_message(), idempotency_key="k")
    assert caught.value.code == "bad_response"
    assert caught.value.ambiguous is True


async def test_read_timeout_is_ambiguous() -> None:
    slow = Reply(200, {"messageId": "late"}, delay_s=1.0)
    async with httpx.AsyncClient(verify=_TLS) as client:
        with ContractServer(lambda r: slow) as server:
            provider = provider_for(server, client, timeout_s=0.1)
            with pytest.raises(RetryableProviderError) as caught:
                await provider.send(make_message(), idempotency_key="k")
    assert caught.value.code == "timeout"
    assert caught.value.ambiguous is True
    assert len(server.requests) == 1


async def test_connection_refused_is_retryable_and_not_ambiguous(client: httpx.AsyncClient) -> None:
    provider = UnifonicProvider(make_settings(f"http://127.0.0.1:{free_port()}"), client)
    with pytest.raises(RetryableProviderError) as caught:
        await provider.send(make_message(), idempotency_key="k")
    assert caught.value.code == "connect"
    assert caught.value.ambiguous is False


# --- delivery events (seed 002 samples) ---------------------------------------------------------------------

MESSAGE_ID = "b322a549-0b12-48e8-9f1a-5c3d2e1f0a9b"
SAMPLE_EVENT: dict[str, Any] = {
    "messageId": MESSAGE_ID,
    "eventId": "34ab2adc-c166-4f0e-8348-c67d1e2f3ae9",
    "eventType": "message.sent",
    "applicationId": "7d0dd3we-2da0-4a1b-82A1-0c9e8f7f019",
    "conversationId": "dc223gs5-3b10-4701-9aeb-1a2b38gsdl6",
    "recipient": {"channel": "whatsapp", "contact": CONTACT},
    "timestamp": "2023-05-02T11:36:51.000Z",
    "receivedAt": "2023-05-02T11:36:51.626Z",
}
EVENT_AT = datetime(2023, 5, 2, 11, 36, 51, tzinfo=UTC)


def event(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE_EVENT)
    data.update(changes)
    return data


def callback(body: Any, *, url: str = RECEIPTS_URL, headers: dict[str, str] | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(url=url, headers={"content-type": "application/json", **(headers or {})}, body=raw)


@pytest.fixture
def provider(client: httpx.AsyncClient) -> UnifonicProvider:
    return UnifonicProvider(make_settings(), client)


@pytest.mark.parametrize(
    "event_type,status",
    [
        ("message.sent", MessageStatus.SENT),
        ("message.delivered", MessageStatus.DELIVERED),
        # read may come without delivered: it implies delivered
        ("message.read", MessageStatus.READ),
    ],
)
def test_delivery_events_become_receipts(provider: UnifonicProvider, event_type: str, status: MessageStatus) -> None:
    assert provider.parse_receipts(callback(event(eventType=event_type))) == [
        Receipt(
            provider_message_id=MESSAGE_ID,
            status=status,
            at=EVENT_AT,
            event_id="34ab2adc-c166-4f0e-8348-c67d1e2f3ae9",
        )
    ]


def test_rejected_invalid_contact_is_failed_without_suppression(provider: UnifonicProvider) -> None:
    body = event(eventType="message.rejected", failReason="invalid_contact")
    [receipt] = provider.parse_receipts(callback(body))
    assert receipt.status is MessageStatus.FAILED
    assert (receipt.code, receipt.reason, receipt.suppress) == ("invalid_contact", "invalid_recipient", False)
    assert receipt.at == EVENT_AT
    assert receipt.provider_message_id == MESSAGE_ID


@pytest.mark.parametrize("fail_reason,reason", [("user_blocked", "blocked"), ("opted_out", "opt_out")])
def test_block_and_opt_out_fail_reasons_suppress_the_contact(
    provider: UnifonicProvider, fail_reason: str, reason: str
) -> None:
    [receipt] = provider.parse_receipts(callback(event(eventType="message.rejected", failReason=fail_reason)))
    assert (receipt.status, receipt.code, receipt.reason, receipt.suppress) == (
        MessageStatus.FAILED,
        fail_reason,
        reason,
        True,
    )


@pytest.mark.parametrize("fail_reason", sorted(code for code in ERRORS if not code.isdigit()))
def test_every_fail_reason_in_the_table_is_applied(provider: UnifonicProvider, fail_reason: str) -> None:
    [receipt] = provider.parse_receipts(callback(event(eventType="message.rejected", failReason=fail_reason)))
    rule = ERRORS[fail_reason]
    assert (receipt.code, receipt.reason, receipt.suppress) == (fail_reason, rule.reason, rule.suppress)


def test_an_unlisted_fail_reason_is_kept_as_code_and_reason(provider: UnifonicProvider) -> None:
    [receipt] = provider.parse_receipts(callback(event(eventType="message.rejected", failReason="media_too_large")))
    assert (receipt.status, receipt.code, receipt.reason, receipt.suppress) == (
        MessageStatus.FAILED,
        "media_too_large",
        "media_too_large",
        False,
    )


def test_rejected_without_a_fail_reason_is_still_failed(provider: UnifonicProvider) -> None:
    [receipt] = provider.parse_receipts(callback(event(eventType="message.rejected")))
    assert (receipt.status, receipt.code, receipt.suppress) == (MessageStatus.FAILED, None, False)


def test_daily_limit_hit_fails_the_message(provider: UnifonicProvider) -> None:
    body = event(eventType="message.daily_limit_hit", timestamp="2023-06-14T14:23:04.000Z")
    [receipt] = provider.parse_receipts(callback(body))
    assert (receipt.status, receipt.code, receipt.reason) == (MessageStatus.FAILED, "daily_limit_hit", "daily_limit")
    assert receipt.at == datetime(2023, 6, 14, 14, 23, 4, tzinfo=UTC)


@pytest.mark.parametrize("event_type", ["message.sent_successfully_to_provider", "message.received", "template.x"])
def test_intermediate_and_other_events_make_no_receipt(provider: UnifonicProvider, event_type: str) -> None:
    assert provider.parse_receipts(callback(event(eventType=event_type))) == []


def test_receipt_time_falls_back_to_received_at_and_converts_offsets_to_utc(provider: UnifonicProvider) -> None:
    without_timestamp = event(eventType="message.delivered")
    del without_timestamp["timestamp"]
    [receipt] = provider.parse_receipts(callback(without_timestamp))
    assert receipt.at == datetime(2023, 5, 2, 11, 36, 51, 626000, tzinfo=UTC)

    [receipt] = provider.parse_receipts(callback(event(timestamp="2023-05-02T14:36:51+03:00")))
    assert receipt.at == EVENT_AT
    assert receipt.at.tzinfo is UTC

    no_times = event()
    del no_times["timestamp"], no_times["receivedAt"]
    [receipt] = provider.parse_receipts(callback(no_times))
    assert receipt.at is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        json.dumps([SAMPLE_EVENT]).encode(),
        json.dumps({"messageId": MESSAGE_ID}).encode(),
        json.dumps({**SAMPLE_EVENT, "eventType": 3}).encode(),
        json.dumps({k: v for k, v in SAMPLE_EVENT.items() if k != "messageId"}).encode(),
        json.dumps({**SAMPLE_EVENT, "messageId": 42}).encode(),
        json.dumps({**SAMPLE_EVENT, "timestamp": "yesterday"}).encode(),
        json.dumps({**SAMPLE_EVENT, "timestamp": 1683027411}).encode(),
    ],
)
def test_malformed_delivery_callbacks_are_bad_webhooks(provider: UnifonicProvider, body: bytes) -> None:
    with pytest.raises(BadWebhook):
        provider.parse_receipts(callback(body))


# --- callback verification (no signature scheme: basic auth) ------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_valid_basic_auth_is_accepted(provider: UnifonicProvider) -> None:
    provider.verify(callback(SAMPLE_EVENT, headers=basic(HOOK_USER, HOOK_PASSWORD)))


@pytest.mark.parametrize(
    "headers",
    [
        basic(HOOK_USER, HOOK_PASSWORD + "x"),
        basic(HOOK_USER.upper(), HOOK_PASSWORD),
        {},
        {"authorization": "Bearer " + HOOK_PASSWORD},
        {"authorization": "Basic not-base64!"},
        # the secret as a bare custom header is not basic auth
        {"x-webhook-secret": HOOK_PASSWORD},
    ],
    ids=["wrong-password", "wrong-user", "missing", "bearer", "malformed", "other-header"],
)
def test_callbacks_without_the_right_credentials_are_rejected(
    provider: UnifonicProvider, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRejected):
        provider.verify(callback(SAMPLE_EVENT, headers=headers))


def test_credentials_only_in_the_url_are_not_accepted(provider: UnifonicProvider) -> None:
    # A client turns user:password@ into the header; a URL still carrying them means no header was sent.
    url = f"https://{HOOK_USER}:{HOOK_PASSWORD}@sendq.example.com/v1/receipts/unifonic"
    with pytest.raises(WebhookRejected):
        provider.verify(callback(SAMPLE_EVENT, url=url))


async def test_user_and_password_in_the_configured_url_arrive_as_basic_auth(
    provider: UnifonicProvider, client: httpx.AsyncClient
) -> None:
    """Unifonic's console takes the callback URL; credentials in it reach sendq as the Authorization header."""
    with ContractServer(lambda r: Reply(200)) as server:
        host = server.url.removeprefix("http://")
        await client.post(f"http://{HOOK_USER}:{HOOK_PASSWORD}@{host}/v1/receipts/unifonic", json=SAMPLE_EVENT)
    [received] = server.requests
    request = WebhookRequest(url=server.url + received.path, headers=received.headers, body=received.body)
    provider.verify(request)
    assert provider.parse_receipts(request)[0].status is MessageStatus.SENT


def test_callbacks_are_refused_when_no_credentials_are_configured(client: httpx.AsyncClient) -> None:
    unconfigured = UnifonicProvider(make_settings(webhook_user=None, webhook_password=None), client)
    with pytest.raises(WebhookRejected, match="not configured"):
        unconfigured.verify(callback(SAMPLE_EVENT, headers=basic(HOOK_USER, HOOK_PASSWORD)))


# --- inbound messages ("Incoming Messages" samples) ---------------------------------------------------------

INBOUND_TEXT: dict[str, Any] = {
    "messageId": "4ac6890b-1756-4d6d-8a3c-2b1e0f9d8c7b",
    "eventId": "23d47231-5e6f-4371-bf3c-9a8b7c6d5e4f",
    "eventType": "message.received",
    "applicationId": "5d1234ee-2da0-4c5d-82c1-7245abcdef01",
    "parentMessageId": "278abcd-663b-4b12-97dc-295ef01d9ab",
    "conversationId": "dc12cf75-ab34-4701-9c0b-3ee0fedcba06",
    "sender": {"channel": "whatsapp", "contact": CONTACT, "name": "Sara"},
    "content": {"text": "Hello", "type": "text"},
    "timestamp": "2023-05-02T11:36:48.000Z",
    "receivedAt": "2023-05-02T11:36:48.768Z",
}
INBOUND_BUTTON: dict[str, Any] = {
    **INBOUND_TEXT,
    "content": {
        "text": "Attending",
        "type": "option",
        "attachments": [{"type": "option", "option": {"text": "Attending", "value": "test replies|"}}],
    },
    "timestamp": "2023-05-02T11:33:20.000Z",
}


@pytest.mark.parametrize(
    "body,at",
    [
        (INBOUND_TEXT, datetime(2023, 5, 2, 11, 36, 48, tzinfo=UTC)),
        (INBOUND_BUTTON, datetime(2023, 5, 2, 11, 33, 20, tzinfo=UTC)),
    ],
)
def test_received_messages_become_inbound(provider: UnifonicProvider, body: dict[str, Any], at: datetime) -> None:
    assert provider.parse_inbound(callback(body)) == [
        Inbound(
            contact=CONTACT,
            channel=Channel.WHATSAPP,
            to=SENDER,
            at=at,
            provider_message_id="4ac6890b-1756-4d6d-8a3c-2b1e0f9d8c7b",
        )
    ]


def test_inbound_to_is_the_route_sender_or_none(client: httpx.AsyncClient) -> None:
    routed = UnifonicProvider(make_settings(), client, sender="+966118765432")
    assert routed.parse_inbound(callback(INBOUND_TEXT))[0].to == "+966118765432"
    unnamed = UnifonicProvider(make_settings(sender=None), client)
    assert unnamed.parse_inbound(callback(INBOUND_TEXT))[0].to is None


def test_inbound_ignores_delivery_events_and_other_channels(provider: UnifonicProvider) -> None:
    assert provider.parse_inbound(callback(SAMPLE_EVENT)) == []
    messenger = {**INBOUND_TEXT, "sender": {"channel": "messenger", "contact": "6421981234", "name": "Sara"}}
    assert provider.parse_inbound(callback(messenger)) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"sender": None},
        {"sender": {"channel": "whatsapp", "name": "Sara"}},
        {"sender": {"channel": "whatsapp", "contact": "0501234567"}},
        {"sender": {"channel": "whatsapp", "contact": "+15550001111"}},
        {"sender": {"channel": "whatsapp", "contact": 966501234567}},
        {"timestamp": None, "receivedAt": None},
        {"timestamp": "02/05/2023"},
    ],
)
def test_malformed_inbound_callbacks_are_bad_webhooks(provider: UnifonicProvider, changes: dict[str, Any]) -> None:
    with pytest.raises(BadWebhook):
        provider.parse_inbound(callback({**INBOUND_TEXT, **changes}))


def test_inbound_non_json_is_a_bad_webhook(provider: UnifonicProvider) -> None:
    with pytest.raises(BadWebhook):
        provider.parse_inbound(callback(b"eventType=message.received"))


# --- status lookup (seed 002 samples) -----------------------------------------------------------------------


def status_row(message: Message, status: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "messageId": "5239834734f-9000-231b-23a5-4b340difkl54",
        "referenceId": message.id,
        "sentAt": "2023-07-13T15:00:22.012+00:00",
        "status": status,
        "senderApplicationId": "ecwewee97-7w4b-sdsd-44e5-e333333333c",
        "channel": "whatsapp",
        "contact": CONTACT,
        "statuses": [{"status": "QUEUED", "createdAt": "2023-07-13T15:00:22.007+00:00"}],
    }
    row.update(changes)
    return row


def status_api(by_ref: list[dict[str, Any]], by_id: list[dict[str, Any]] | None = None) -> Callable[[Recorded], Reply]:
    """The two documented GET endpoints; answers only callers with the right credential headers."""

    def handle(recorded: Recorded) -> Reply:
        if recorded.headers.get("publicid") != PUBLIC_ID or recorded.headers.get("secret") != SECRET:
            return Reply(401, {"message": "Unauthorized"})
        if recorded.method == "GET" and recorded.path == STATUS_BY_REF_PATH and "referenceIds" in recorded.query:
            return Reply(200, by_ref)
        if recorded.method == "GET" and recorded.path == STATUS_PATH and "messageIds" in recorded.query:
            return Reply(200, by_id or [])
        return Reply(404, {"message": "Not Found"})

    return handle


async def test_lookup_finds_a_queued_message_by_reference(client: httpx.AsyncClient) -> None:
    message = make_message()
    with ContractServer(status_api([status_row(message, "QUEUED")])) as server:
        result = await provider_for(server, client).lookup(message)

    [asked] = server.requests
    assert (asked.method, asked.path, asked.query) == (
        "GET",
        "/v1/messages/status_by_ref_id",
        {"referenceIds": [message.id]},
    )
    assert asked.headers["publicid"] == PUBLIC_ID
    assert asked.headers["secret"] == SECRET
    # queued there means accepted: it must not be sent again
    assert result == Lookup(
        found=True,
        provider_message_id="5239834734f-9000-231b-23a5-4b340difkl54",
        status=MessageStatus.SENT,
        at=datetime(2023, 7, 13, 15, 0, 22, 7000, tzinfo=UTC),
    )


async def test_lookup_asks_by_message_id_when_the_reference_finds_nothing(client: httpx.AsyncClient) -> None:
    message = make_message(provider_message_id="SD92380djf-83fe-4230-8ssc-59wlvpoka124")
    rejected = status_row(
        message,
        "REJECTED",
        messageId="SD92380djf-83fe-4230-8ssc-59wlvpoka124",
        referenceId=None,
        statuses=[
            {"status": "QUEUED", "createdAt": "2023-07-22T20:02:02.729Z"},
            {"status": "REJECTED", "createdAt": "2023-07-22T20:02:05.000Z"},
        ],
    )
    with ContractServer(status_api([], [rejected])) as server:
        result = await provider_for(server, client).lookup(message)

    assert [r.path for r in server.requests] == [STATUS_BY_REF_PATH, STATUS_PATH]
    assert server.requests[1].query == {"messageIds": ["SD92380djf-83fe-4230-8ssc-59wlvpoka124"]}
    assert result == Lookup(
        found=True,
        provider_message_id="SD92380djf-83fe-4230-8ssc-59wlvpoka124",
        status=MessageStatus.FAILED,
        at=datetime(2023, 7, 22, 20, 2, 5, tzinfo=UTC),
        code="REJECTED",
    )


@pytest.mark.parametrize(
    "raw,status",
    [
        ("SENT", MessageStatus.SENT),
        ("DELIVERED", MessageStatus.DELIVERED),
        ("READ", MessageStatus.READ),
        ("FAILED", MessageStatus.FAILED),
        ("SENT_TO_PROVIDER", MessageStatus.SENT),
    ],
)
async def test_lookup_maps_the_status(client: httpx.AsyncClient, raw: str, status: MessageStatus) -> None:
    message = make_message()
    row = status_row(message, raw, statuses=[])
    with ContractServer(status_api([row])) as server:
        result = await provider_for(server, client).lookup(message)
    assert result.found is True
    assert result.status is status
    # without a status history the send time is the best time there is
    assert result.at == datetime(2023, 7, 13, 15, 0, 22, 12000, tzinfo=UTC)


async def test_lookup_of_an_unknown_message_is_not_found(client: httpx.AsyncClient) -> None:
    message = make_message()
    with ContractServer(status_api([])) as server:
        result = await provider_for(server, client).lookup(message)
    assert result == Lookup(found=False)
    assert len(server.requests) == 1  # no provider id to ask by


@pytest.mark.parametrize(
    "reply,expected,code",
    [
        (Reply(500, DOCUMENTED_ERRORS[500]), RetryableProviderError, "500"),
        (Reply(503, "busy"), RetryableProviderError, "503"),
        (Reply(403, DOCUMENTED_ERRORS[403]), PermanentProviderError, "403"),
        (Reply(200, {"messages": []}), RetryableProviderError, "bad_response"),
        (Reply(200, ["not-a-row"]), RetryableProviderError, "bad_response"),
        (Reply(200, "<html>"), RetryableProviderError, "bad_response"),
    ],
)
async def test_lookup_failures_raise_provider_errors(
    client: httpx.AsyncClient, reply: Reply, expected: type[ProviderError], code: str
) -> None:
    with ContractServer(lambda r: reply) as server, pytest.raises(expected) as caught:
        await provider_for(server, client).lookup(make_message())
    assert caught.value.code == code


async def test_lookup_timeout_is_retryable() -> None:
    async with httpx.AsyncClient(verify=_TLS) as client:
        server = ContractServer(lambda r: Reply(200, [], delay_s=1.0))
        with server, pytest.raises(RetryableProviderError) as caught:
            await provider_for(server, client, timeout_s=0.1).lookup(make_message())
    assert caught.value.code == "timeout"
