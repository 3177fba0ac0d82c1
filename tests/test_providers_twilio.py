"""Twilio adapter against a loopback server that follows Twilio's Message create contract, plus its callbacks."""

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from providers.base import StatusLookup, WebhookParser, WebhookRequest
from providers.twilio import (
    ERRORS,
    MAX_VALIDITY_PERIOD_S,
    NAME,
    TwilioProvider,
    compute_signature,
    payload,
    status_callback_url,
)
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
from sendq.message import Message
from sendq.provider_settings import TwilioSettings
from sendq.status import MessageStatus
from tests.contract_server import ContractServer, Recorded, Reply

ACCOUNT = "AC" + "a1" * 16
TOKEN = "test-auth-token"
SMS_FROM = "+12065550123"
WA_FROM = "+14155238886"
SERVICE = "MG" + "b2" * 16
SID = "SM" + "c3" * 16
PUBLIC = "https://sendq.example.com"
CALLBACK = f"{PUBLIC}/v1/receipts/twilio"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def message(**overrides: Any) -> Message:
    data: dict[str, Any] = {
        "id": "01jabcdefghjkmnpqrstvwxyz0",
        "subaccount": "acme",
        "channel": Channel.SMS,
        "to": "+14155552671",
        "body": "hello",
        "created_at": NOW,
        # send() measures validity against the real clock
        "valid_until": datetime.now(UTC) + timedelta(hours=48),
        "status": MessageStatus.SENDING,
        "status_at": NOW,
        "due_at": NOW,
    }
    data.update(overrides)
    return Message(**data)


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> TwilioSettings:
    data: dict[str, Any] = {
        "base_url": base_url,
        "account_sid": ACCOUNT,
        "auth_token": SecretStr(TOKEN),
        "sms_from": SMS_FROM,
        "whatsapp_from": WA_FROM,
    }
    data.update(overrides)
    return TwilioSettings(**data)


def twilio_error(code: int, text: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": text, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def twilio_api(req: Recorded) -> Reply:
    """Twilio's Message create as documented: basic auth, form body, 201 with the Message resource."""
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    if req.headers.get("authorization") != expected_auth:
        return Reply(401, twilio_error(20003, "Authenticate", 401))
    if req.method != "POST" or req.path != f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json":
        return Reply(404, twilio_error(20404, "The requested resource was not found", 404))
    if not req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return Reply(400, twilio_error(21602, "Message body is required.", 400))
    form = {k: v[0] for k, v in req.form().items()}
    if "To" not in form:
        return Reply(400, twilio_error(21604, "A 'To' phone number is required.", 400))
    if "From" not in form and "MessagingServiceSid" not in form:
        return Reply(400, twilio_error(21603, "A 'From' or 'MessagingServiceSid' parameter is required", 400))
    if "Body" not in form and "ContentSid" not in form:
        return Reply(400, twilio_error(21619, "A text message body or media urls must be specified.", 400))
    resource = {
        "account_sid": ACCOUNT,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": "Sun, 01 Mar 2026 12:00:00 +0000",
        "date_sent": None,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "sid": SID,
        "status": "accepted" if "MessagingServiceSid" in form else "queued",
        "to": form["To"],
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json",
    }
    return Reply(201, resource)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ContractServer]:
    # One server for the module: starting and stopping one per test costs half a second each.
    with ContractServer(twilio_api) as server:
        yield server


@pytest.fixture
def server(shared_server: ContractServer) -> ContractServer:
    """The Twilio contract server, reset to the documented behaviour with no requests recorded."""
    shared_server.handler = twilio_api
    shared_server.requests.clear()
    return shared_server


def only_form(server: ContractServer) -> dict[str, str]:
    (req,) = server.requests
    form = req.form()
    assert all(len(values) == 1 for values in form.values()), form
    return {k: v[0] for k, v in form.items()}


# --- sending -----------------------------------------------------------------------------------------------------


async def test_sms_send_posts_the_documented_request_and_returns_the_sid(
    server: ContractServer, client: httpx.AsyncClient
) -> None:
    provider = TwilioProvider(settings(server.url), client, public_url=PUBLIC)
    result = await provider.send(message(), idempotency_key="k1")
    assert result.provider_message_id == SID
    assert result.repeat is False
    (req,) = server.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "idempotency-key" not in req.headers
    assert only_form(server) == {"To": "+14155552671", "From": SMS_FROM, "Body": "hello", "StatusCallback": CALLBACK}


async def test_whatsapp_template_uses_prefixed_addresses_and_content_sid(
    server: ContractServer, client: httpx.AsyncClient
) -> None:
    msg = message(channel=Channel.WHATSAPP, body=None, template="HX" + "d4" * 16, variables={"1": "Ana", "2": "9:30"})
    result = await TwilioProvider(settings(server.url), client).send(msg, idempotency_key="k")
    assert result.provider_message_id == SID
    form = only_form(server)
    assert form == {
        "To": "whatsapp:+14155552671",
        "From": f"whatsapp:{WA_FROM}",
        "ContentSid": "HX" + "d4" * 16,
        "ContentVariables": '{"1":"Ana","2":"9:30"}',
    }
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "9:30"}


async def test_whatsapp_free_form_body(server: ContractServer, client: httpx.AsyncClient) -> None:
    await TwilioProvider(settings(server.url), client).send(
        message(channel=Channel.WHATSAPP, body="hi"), idempotency_key="k"
    )
    assert only_form(server) == {"To": "whatsapp:+14155552671", "From": f"whatsapp:{WA_FROM}", "Body": "hi"}


async def test_messaging_service_replaces_the_default_from(server: ContractServer, client: httpx.AsyncClient) -> None:
    provider = TwilioProvider(settings(server.url, messaging_service_sid=SERVICE), client)
    await provider.send(message(), idempotency_key="k")
    assert only_form(server) == {"To": "+14155552671", "MessagingServiceSid": SERVICE, "Body": "hello"}


async def test_route_sender_overrides_defaults_and_goes_with_the_service(
    server: ContractServer, client: httpx.AsyncClient
) -> None:
    provider = TwilioProvider(
        settings(server.url, messaging_service_sid=SERVICE), client, sender="+14155550199", public_url=PUBLIC + "/"
    )
    await provider.send(message(channel=Channel.WHATSAPP, body="hi"), idempotency_key="k")
    form = only_form(server)
    assert form["From"] == "whatsapp:+14155550199"
    assert form["MessagingServiceSid"] == SERVICE
    assert form["StatusCallback"] == CALLBACK  # no double slash from a trailing one


async def test_short_validity_goes_as_validity_period(server: ContractServer, client: httpx.AsyncClient) -> None:
    msg = message(valid_until=datetime.now(UTC) + timedelta(minutes=10), template="HX" + "d4" * 16, body=None)
    await TwilioProvider(settings(server.url), client).send(msg, idempotency_key="k")
    form = only_form(server)
    assert 590 <= int(form["ValidityPeriod"]) <= 600
    assert form["ContentSid"] == "HX" + "d4" * 16  # SMS templates go as ContentSid too
    assert "ContentVariables" not in form
    assert "Body" not in form


def test_status_callback_url() -> None:
    assert status_callback_url("https://x.example/") == "https://x.example/v1/receipts/twilio"


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(seconds=600.7), "600"),  # rounded down: never past valid_until
        (timedelta(seconds=MAX_VALIDITY_PERIOD_S - 1), str(MAX_VALIDITY_PERIOD_S - 1)),
        (timedelta(milliseconds=300), "1"),  # Twilio's minimum
        (timedelta(seconds=-5), "1"),
        (timedelta(seconds=MAX_VALIDITY_PERIOD_S), None),  # Twilio's own limit applies anyway
        (timedelta(hours=48), None),
    ],
)
def test_validity_period_follows_valid_until(left: timedelta, expected: str | None) -> None:
    data = payload(
        message(valid_until=NOW + left), from_=SMS_FROM, messaging_service_sid=None, status_callback=None, now=NOW
    )
    assert data.get("ValidityPeriod") == expected


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.WEBCHAT])
async def test_unsupported_channel_is_permanent_and_sends_nothing(
    server: ContractServer, client: httpx.AsyncClient, channel: Channel
) -> None:
    to = "bob@example.com" if channel is Channel.EMAIL else "chat-1"
    with pytest.raises(PermanentProviderError) as info:
        await TwilioProvider(settings(server.url), client).send(message(channel=channel, to=to), idempotency_key="k")
    assert info.value.code == "channel_unsupported"
    assert server.requests == []


async def test_channel_without_sender_is_permanent(server: ContractServer, client: httpx.AsyncClient) -> None:
    provider = TwilioProvider(settings(server.url, whatsapp_from=None), client)
    with pytest.raises(PermanentProviderError) as info:
        await provider.send(message(channel=Channel.WHATSAPP), idempotency_key="k")
    assert info.value.code == "no_sender"
    assert "SENDQ_TWILIO__WHATSAPP_FROM" in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"account_sid": None}, "SENDQ_TWILIO__ACCOUNT_SID"),
        ({"auth_token": None}, "SENDQ_TWILIO__AUTH_TOKEN"),
        ({"auth_token": SecretStr("")}, "SENDQ_TWILIO__AUTH_TOKEN"),
        ({"sms_from": None, "whatsapp_from": None}, "SENDQ_TWILIO__MESSAGING_SERVICE_SID"),
    ],
)
def test_missing_configuration_is_refused(client: httpx.AsyncClient, overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        TwilioProvider(settings(**overrides), client)


def test_a_route_sender_alone_is_enough(client: httpx.AsyncClient) -> None:
    provider = TwilioProvider(settings(sms_from=None, whatsapp_from=None), client, sender="+14155550199")
    assert provider.name == NAME
    assert provider.supports_idempotency is False
    assert isinstance(provider, WebhookParser)
    assert not isinstance(provider, StatusLookup)  # Twilio cannot be asked by our reference


# --- error answers -----------------------------------------------------------------------------------------------


def _http_status(code: str) -> int:
    return {"20003": 401, "20429": 429}.get(code, 400)


async def failed_send(server: ContractServer, client: httpx.AsyncClient, reply: Reply) -> ProviderError:
    """Send once against the server answering ``reply``; the error the adapter raised."""
    server.handler = lambda _req: reply
    with pytest.raises(ProviderError) as info:
        await TwilioProvider(settings(server.url), client).send(message(), idempotency_key="k")
    assert len(server.requests) == 1  # the adapter itself never retries
    return info.value


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_every_listed_code_is_classified(server: ContractServer, client: httpx.AsyncClient, code: str) -> None:
    status = _http_status(code)
    error = await failed_send(server, client, Reply(status, twilio_error(int(code), f"Twilio error {code}", status)))
    rule = ERRORS[code]
    assert isinstance(error, RetryableProviderError if rule.retryable else PermanentProviderError)
    assert isinstance(error, RateLimited) is (rule.reason == "rate_limited")
    assert error.code == code
    assert error.status_code == status
    assert error.suppress is rule.suppress
    assert error.reason == rule.reason
    assert error.ambiguous is False  # Twilio answered with an error: nothing was created
    assert error.detail == f"Twilio error {code}"


@pytest.mark.parametrize(
    ("code", "cls", "suppress", "reason"),
    [
        ("21610", PermanentProviderError, True, "opt_out"),
        ("63014", PermanentProviderError, True, "blocked"),
        ("30004", PermanentProviderError, True, "blocked"),
        ("63016", PermanentProviderError, False, "outside_window"),
        ("21211", PermanentProviderError, False, "invalid_recipient"),
        ("20003", PermanentProviderError, False, "auth_failed"),
        ("30001", RetryableProviderError, False, "queue_overflow"),
        ("63018", RateLimited, False, "rate_limited"),
    ],
)
def test_key_codes_have_the_documented_meaning(code: str, cls: type, suppress: bool, reason: str) -> None:
    rule = ERRORS[code]
    assert rule.retryable is issubclass(cls, RetryableProviderError)
    assert rule.suppress is suppress
    assert rule.reason == reason


async def test_rate_limit_carries_retry_after(server: ContractServer, client: httpx.AsyncClient) -> None:
    reply = Reply(429, twilio_error(20429, "Too Many Requests", 429), headers={"Retry-After": "7"})
    error = await failed_send(server, client, reply)
    assert isinstance(error, RateLimited)
    assert error.retry_after_s == 7.0
    assert error.code == "20429"


async def test_unlisted_4xx_is_permanent(server: ContractServer, client: httpx.AsyncClient) -> None:
    body = twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
    error = await failed_send(server, client, Reply(400, body))
    assert isinstance(error, PermanentProviderError)
    assert (error.code, error.status_code, error.suppress, error.reason) == ("21617", 400, False, None)
    assert "1600" in error.detail


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, twilio_error(20500, "Internal Server Error", 500)), (503, "Service Unavailable")],
)
async def test_5xx_is_retryable_and_ambiguous(
    server: ContractServer, client: httpx.AsyncClient, status: int, body: Any
) -> None:
    error = await failed_send(server, client, Reply(status, body))
    assert isinstance(error, RetryableProviderError)
    assert not isinstance(error, RateLimited)
    assert error.status_code == status
    # Twilio (error 20500): a 5xx on a message POST may still have sent it
    assert error.ambiguous is True


async def test_unlisted_429_with_retry_after_is_rate_limited(server: ContractServer, client: httpx.AsyncClient) -> None:
    error = await failed_send(server, client, Reply(429, "slow down", headers={"Retry-After": "3"}))
    assert isinstance(error, RateLimited)
    assert error.retry_after_s == 3.0
    assert error.ambiguous is False


@pytest.mark.parametrize("body", [{"status": "queued"}, {"sid": ""}, {"sid": 17}, "created", [SID]])
async def test_2xx_without_sid_is_ambiguous(server: ContractServer, client: httpx.AsyncClient, body: Any) -> None:
    error = await failed_send(server, client, Reply(201, body))
    assert isinstance(error, RetryableProviderError)
    assert error.code == "bad_response"
    assert error.ambiguous is True


async def test_read_timeout_is_ambiguous(server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda _req: Reply(201, {"sid": SID}, delay_s=1.0)
    provider = TwilioProvider(settings(server.url, timeout_s=0.2), client)
    with pytest.raises(RetryableProviderError) as info:
        await provider.send(message(), idempotency_key="k")
    assert info.value.code == "timeout"
    assert info.value.ambiguous is True
    assert len(server.requests) == 1


async def test_connection_refused_is_retryable_not_ambiguous(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RetryableProviderError) as info:
        await TwilioProvider(settings(f"http://127.0.0.1:{port}"), client).send(message(), idempotency_key="k")
    assert info.value.code == "connect"
    assert info.value.ambiguous is False


async def test_aclose_leaves_the_shared_client_open(client: httpx.AsyncClient) -> None:
    await TwilioProvider(settings(), client).aclose()
    assert not client.is_closed


# --- status callbacks --------------------------------------------------------------------------------------------


def callback(params: dict[str, str], *, url: str = CALLBACK, token: str = TOKEN, sign: bool = True) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    if sign:
        headers["x-twilio-signature"] = compute_signature(token, url, params.items())
    return WebhookRequest(url=url, headers=headers, body=urlencode(params).encode())


def status_params(status: str, **extra: str) -> dict[str, str]:
    """A status callback as Twilio posts it (documented standard parameters plus MessageStatus)."""
    return {
        "SmsSid": SID,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": "+14155552671",
        "MessageSid": SID,
        "AccountSid": ACCOUNT,
        "From": SMS_FROM,
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.fixture
def provider(client: httpx.AsyncClient) -> TwilioProvider:
    return TwilioProvider(settings(), client, public_url=PUBLIC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("sent", MessageStatus.SENT), ("delivered", MessageStatus.DELIVERED), ("read", MessageStatus.READ)],
)
def test_success_statuses_map_to_receipts(provider: TwilioProvider, status: str, expected: MessageStatus) -> None:
    # RawDlrDoneDate has no time zone (Twilio changelog 2023-02-14): it must not become ``at``
    request = callback(status_params(status, RawDlrDoneDate="2603011201"))
    provider.verify(request)
    (receipt,) = provider.parse_receipts(request)
    assert receipt.provider_message_id == SID
    assert receipt.status is expected
    assert receipt.at is None
    assert receipt.code is None
    assert receipt.suppress is False


def test_whatsapp_read_receipt(provider: TwilioProvider) -> None:
    params = status_params("read", To="whatsapp:+14155552671", From=f"whatsapp:{WA_FROM}", ChannelPrefix="whatsapp")
    params["MessageSid"] = params["SmsSid"] = "MM" + "e5" * 16
    (receipt,) = provider.parse_receipts(callback(params))
    assert receipt == receipt.__class__(provider_message_id="MM" + "e5" * 16, status=MessageStatus.READ)


@pytest.mark.parametrize(
    ("status", "code", "reason", "suppress"),
    [
        ("undelivered", "30003", "unreachable", False),
        ("undelivered", "30004", "blocked", True),
        ("undelivered", "30006", "landline", False),
        ("failed", "21610", "opt_out", True),
        ("failed", "63016", "outside_window", False),
        ("failed", "63014", "blocked", True),
        ("failed", "30036", "expired", False),
    ],
)
def test_failures_carry_code_reason_and_suppress(
    provider: TwilioProvider, status: str, code: str, reason: str, suppress: bool
) -> None:
    request = callback(status_params(status, ErrorCode=code))
    provider.verify(request)
    (receipt,) = provider.parse_receipts(request)
    assert receipt.status is MessageStatus.FAILED
    assert (receipt.code, receipt.reason, receipt.suppress) == (code, reason, suppress)


def test_unlisted_failure_code_keeps_twilio_message(provider: TwilioProvider) -> None:
    params = status_params("undelivered", ErrorCode="30009", ErrorMessage="Missing inbound segment")
    (receipt,) = provider.parse_receipts(callback(params))
    assert (receipt.code, receipt.reason, receipt.suppress) == ("30009", "Missing inbound segment", False)


def test_failure_without_code(provider: TwilioProvider) -> None:
    (receipt,) = provider.parse_receipts(callback(status_params("failed", ErrorCode="")))
    assert (receipt.status, receipt.code, receipt.reason) == (MessageStatus.FAILED, None, None)


@pytest.mark.parametrize(
    "status", ["queued", "accepted", "scheduled", "sending", "canceled", "partially_delivered", "new_status"]
)
def test_intermediate_statuses_give_no_receipt(provider: TwilioProvider, status: str) -> None:
    assert provider.parse_receipts(callback(status_params(status))) == []


def test_legacy_sms_fields_are_enough(provider: TwilioProvider) -> None:
    params = {"SmsSid": SID, "SmsStatus": "delivered", "AccountSid": ACCOUNT}
    (receipt,) = provider.parse_receipts(callback(params))
    assert (receipt.provider_message_id, receipt.status) == (SID, MessageStatus.DELIVERED)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", urlencode({"MessageStatus": "delivered", "AccountSid": ACCOUNT})),
        ("application/x-www-form-urlencoded", urlencode({"MessageSid": SID, "AccountSid": ACCOUNT})),
        ("application/x-www-form-urlencoded", "MessageSid"),
        ("application/x-www-form-urlencoded", b"MessageSid=%FF%FE&MessageStatus=sent"),
        ("application/x-www-form-urlencoded", b"MessageSid=\xff"),
        ("application/json", json.dumps({"MessageSid": SID, "MessageStatus": "delivered"})),
        ("", urlencode({"MessageSid": SID, "MessageStatus": "delivered"})),
    ],
)
def test_malformed_callbacks_are_bad_webhooks(provider: TwilioProvider, content_type: str, body: str | bytes) -> None:
    raw = body.encode() if isinstance(body, str) else body
    request = WebhookRequest(url=CALLBACK, headers={"content-type": content_type} if content_type else {}, body=raw)
    with pytest.raises(BadWebhook):
        provider.parse_receipts(request)
    with pytest.raises(BadWebhook):
        provider.parse_inbound(request)


# --- signature verification --------------------------------------------------------------------------------------


def test_signature_matches_twilios_published_vector() -> None:
    # twilio-python tests/unit/test_request_validator.py
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert compute_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_valid_signature_is_accepted(provider: TwilioProvider) -> None:
    provider.verify(callback(status_params("delivered")))


def test_repeated_parameters_are_signed_in_sorted_order(provider: TwilioProvider) -> None:
    pairs = [
        *status_params("delivered").items(),
        ("MediaUrl", "https://b.example/2"),
        ("MediaUrl", "https://a.example"),
    ]
    signature = compute_signature(TOKEN, CALLBACK, pairs)
    request = WebhookRequest(
        url=CALLBACK,
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        body=urlencode(pairs).encode(),
    )
    provider.verify(request)


@pytest.mark.parametrize(
    ("field", "value"),
    [("MessageStatus", "failed"), ("MessageSid", "SM" + "00" * 16), ("ErrorCode", "30003")],
)
def test_one_changed_parameter_is_rejected(provider: TwilioProvider, field: str, value: str) -> None:
    signed = callback(status_params("delivered"))
    tampered = dict(status_params("delivered"), **{field: value})
    request = WebhookRequest(url=signed.url, headers=signed.headers, body=urlencode(tampered).encode())
    with pytest.raises(WebhookRejected):
        provider.verify(request)


def test_missing_signature_is_rejected(provider: TwilioProvider) -> None:
    with pytest.raises(WebhookRejected, match="missing"):
        provider.verify(callback(status_params("delivered"), sign=False))


def test_wrong_auth_token_is_rejected(provider: TwilioProvider) -> None:
    with pytest.raises(WebhookRejected):
        provider.verify(callback(status_params("delivered"), token="another-token"))


def test_callback_for_another_account_is_rejected(provider: TwilioProvider) -> None:
    params = status_params("delivered", AccountSid="AC" + "ff" * 16)
    with pytest.raises(WebhookRejected, match="another Twilio account"):
        provider.verify(callback(params))  # correctly signed with our token, yet not ours
    del params["AccountSid"]
    with pytest.raises(WebhookRejected):
        provider.verify(callback(params))


@pytest.mark.parametrize(
    "signed_url",
    [
        "http://sendq.example.com/v1/receipts/twilio",
        "https://sendq.example.com:8443/v1/receipts/twilio",
        "https://sendq.example.com/v1/receipts/twilio/",
        "https://sendq.example.com/v1/receipts/twilio?x=1",
        "https://other.example.com/v1/receipts/twilio",
    ],
)
def test_signature_over_another_url_form_is_rejected(provider: TwilioProvider, signed_url: str) -> None:
    params = status_params("delivered")
    signature = compute_signature(TOKEN, signed_url, params.items())
    request = WebhookRequest(
        url=CALLBACK,
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        body=urlencode(params).encode(),
    )
    with pytest.raises(WebhookRejected):
        provider.verify(request)


@pytest.mark.parametrize(
    ("configured", "signed"),
    [
        (CALLBACK, "https://sendq.example.com:443/v1/receipts/twilio"),
        ("https://sendq.example.com:443/v1/receipts/twilio", CALLBACK),
        ("https://sendq.example.com:8443/v1/receipts/twilio", CALLBACK),
        ("http://127.0.0.1/v1/receipts/twilio", "http://127.0.0.1:80/v1/receipts/twilio"),
    ],
)
def test_port_forms_twilio_itself_accepts(provider: TwilioProvider, configured: str, signed: str) -> None:
    # Twilio's validators try the URL with and without its port: Twilio's signing is inconsistent about it
    params = status_params("delivered")
    signature = compute_signature(TOKEN, signed, params.items())
    request = WebhookRequest(
        url=configured,
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        body=urlencode(params).encode(),
    )
    provider.verify(request)


def test_unreadable_body_is_rejected_not_crashing(provider: TwilioProvider) -> None:
    request = WebhookRequest(
        url=CALLBACK,
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "abc="},
        body=b"\xff\xfe",
    )
    with pytest.raises(WebhookRejected):
        provider.verify(request)


JSON_URL = (
    "https://mycompany.com/myapp.php?foo=1&bar=2"
    "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
)
JSON_BODY = b'{"property": "value", "boolean": true}'


def json_provider(client: httpx.AsyncClient) -> TwilioProvider:
    return TwilioProvider(settings(auth_token=SecretStr("12345")), client)


def test_json_body_signed_with_body_sha256_is_accepted(client: httpx.AsyncClient) -> None:
    # twilio-python's published vector for JSON bodies
    headers = {"content-type": "application/json", "x-twilio-signature": "a9nBmqA0ju/hNViExpshrM61xv4="}
    json_provider(client).verify(WebhookRequest(url=JSON_URL, headers=headers, body=JSON_BODY))


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (JSON_URL, b'{"property": "value", "boolean": false}'),  # body changed
        (JSON_URL.split("&bodySHA256")[0], JSON_BODY),  # no bodySHA256
        (JSON_URL.replace("foo=1", "foo=2"), JSON_BODY),  # URL changed
    ],
)
def test_json_body_tampering_is_rejected(client: httpx.AsyncClient, url: str, body: bytes) -> None:
    headers = {"content-type": "application/json", "x-twilio-signature": "a9nBmqA0ju/hNViExpshrM61xv4="}
    with pytest.raises(WebhookRejected):
        json_provider(client).verify(WebhookRequest(url=url, headers=headers, body=body))


# --- inbound -----------------------------------------------------------------------------------------------------


def inbound_params(sender: str, to: str, **extra: str) -> dict[str, str]:
    """An incoming-message webhook as Twilio posts it."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": SID,
        "NumMedia": "0",
        "SmsSid": SID,
        "SmsStatus": "received",
        "Body": "STOP asking, yes please",
        "To": to,
        "NumSegments": "1",
        "MessageSid": SID,
        "AccountSid": ACCOUNT,
        "From": sender,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def test_whatsapp_inbound(provider: TwilioProvider) -> None:
    params = inbound_params(
        "whatsapp:+14155552671", f"whatsapp:{WA_FROM}", ProfileName="Ana", WaId="14155552671", MessageType="text"
    )
    request = callback(params, url=f"{PUBLIC}/v1/inbound/twilio")
    provider.verify(request)
    before = datetime.now(UTC)
    (inbound,) = provider.parse_inbound(request)
    after = datetime.now(UTC)
    assert inbound.contact == "+14155552671"
    assert inbound.channel is Channel.WHATSAPP
    assert inbound.to == WA_FROM
    assert inbound.provider_message_id == SID
    assert inbound.at.tzinfo is UTC
    assert before <= inbound.at <= after


def test_sms_inbound(provider: TwilioProvider) -> None:
    (inbound,) = provider.parse_inbound(callback(inbound_params("+447911123456", SMS_FROM, FromCountry="GB")))
    assert (inbound.contact, inbound.channel, inbound.to) == ("+447911123456", Channel.SMS, SMS_FROM)


@pytest.mark.parametrize("sender", ["whatsapp:+15555550100", "+1 415 555 2671", "TWILIO", "messenger:123456", ""])
def test_inbound_from_that_is_not_e164_is_bad(provider: TwilioProvider, sender: str) -> None:
    with pytest.raises(BadWebhook):
        provider.parse_inbound(callback(inbound_params(sender, SMS_FROM)))
