"""Sinch adapter against a loopback server that follows the Sinch India WhatsApp API (legacy) and the Sinch SMS
REST API contracts, plus their callbacks (seed 004's WhatsApp delivery report, SMS reports and inbound SMS)."""

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from providers.base import Inbound, Receipt, StatusLookup, WebhookParser, WebhookRequest
from providers.sinch import (
    ERRORS,
    FAILURE_DESCRIPTIONS,
    NAME,
    SMS_ERRORS,
    WHATSAPP_PATH,
    SinchProvider,
    failure_code,
    sms_payload,
    whatsapp_payload,
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
from sendq.provider_settings import SinchSettings
from sendq.status import MessageStatus
from tests.contract_server import ContractServer, Recorded, Reply

WA_USER, WA_PASS = "acmewts", "acmewts9"
PLAN, TOKEN = "jd63jf88477ll123ab4567cd89012ef3", "sms-api-token"
SENDER = "+918010123456"
PUBLIC = "https://sendq.example.com"
CALLBACK = f"{PUBLIC}/v1/receipts/sinch"
HOOK_USER, HOOK_PASS = "sinch-hook", "hook-pw"
BATCH_ID = "01FC66621XXXXX119Z8PMV1QPQ"
BATCHES = f"/xms/v1/{PLAN}/batches"
MESSAGE_ID = "01jabcdefghjkmnpqrstvwxyz0"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IST_OFFSET = timedelta(hours=5, minutes=30)


def message(**overrides: Any) -> Message:
    data: dict[str, Any] = {
        "id": MESSAGE_ID,
        "subaccount": "acme",
        "channel": Channel.WHATSAPP,
        "to": "+919812345678",
        "body": "Namaste",
        "created_at": NOW,
        "valid_until": NOW + timedelta(hours=48),
        "status": MessageStatus.SENDING,
        "status_at": NOW,
        "due_at": NOW,
    }
    data.update(overrides)
    return Message(**data)


def sms_message(**overrides: Any) -> Message:
    return message(**({"channel": Channel.SMS, "to": "+14155552671", "body": "Your code is 123456"} | overrides))


def settings(url: str = "http://127.0.0.1:9", **overrides: Any) -> SinchSettings:
    data: dict[str, Any] = {
        "base_url": url,
        "whatsapp_user": WA_USER,
        "whatsapp_password": SecretStr(WA_PASS),
        "sms_base_url": url,
        "service_plan_id": PLAN,
        "api_token": SecretStr(TOKEN),
        "sender": SENDER,
        "webhook_user": HOOK_USER,
        "webhook_password": SecretStr(HOOK_PASS),
        "timeout_s": 5.0,
    }
    data.update(overrides)
    return SinchSettings(**data)


def wa_error(code: str, description: str) -> dict[str, Any]:
    """The documented error body of the Sinch India WhatsApp API ("Error and Status Codes")."""
    return {"success": "false", "description": [{"errorCode": code, "errorDescription": description}]}


#: a documented description for each code of ERRORS, as the send API answers it
_WA_DESCRIPTION_OF = {code: desc for desc, code in FAILURE_DESCRIPTIONS.items()}


def sinch_api(req: Recorded) -> Reply:
    """Both documented contracts: the WhatsApp send (user/pass headers) and the SMS batches (Bearer token)."""
    if req.path == WHATSAPP_PATH:
        if req.headers.get("user") != WA_USER or req.headers.get("pass") != WA_PASS:
            return Reply(401, "Unauthorized")
        if req.method != "POST" or not req.headers.get("content-type", "").startswith("application/json"):
            return Reply(400, wa_error("message.transcode.failed", "Message transcoding failed"))
        item = req.json()["messages"][0]
        if not item.get("to"):
            return Reply(400, wa_error("invalid_msisdn", "INVALID MSISDN"))
        return Reply(200, {"success": True, "responseId": "1606887827245734233232332"})
    if req.path == BATCHES and req.method == "POST":
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, "Unauthorized")
        body = req.json()
        if not body.get("to") or "body" not in body:
            return Reply(400, {"code": "syntax_constraint_violation", "text": "to: must not be empty"})
        batch = {
            "id": BATCH_ID,
            "to": body["to"],
            "from": body.get("from", "12345"),
            "canceled": False,
            "body": body["body"],
            "type": "mt_text",
            "created_at": "2026-03-01T12:00:00.000Z",
            "modified_at": "2026-03-01T12:00:00.000Z",
            "delivery_report": body.get("delivery_report", "none"),
            "client_reference": body.get("client_reference"),
        }
        return Reply(201, batch)
    return Reply(404, "Not Found")


@pytest.fixture(scope="module")
def _sinch_server() -> Iterator[ContractServer]:
    # One server for the module: stopping one takes half a second.
    with ContractServer(sinch_api) as server:
        yield server


@pytest.fixture
def server(_sinch_server: ContractServer) -> ContractServer:
    """The contract server, reset to the documented behaviour with no requests recorded."""
    _sinch_server.handler = sinch_api
    _sinch_server.requests.clear()
    return _sinch_server


def provider(server: ContractServer, client: httpx.AsyncClient, **kwargs: Any) -> SinchProvider:
    public_url = kwargs.pop("public_url", None)
    sender = kwargs.pop("sender", None)
    return SinchProvider(settings(server.url, **kwargs), client, public_url=public_url, sender=sender)


def callback(body: Any, *, auth: tuple[str, str] | None = (HOOK_USER, HOOK_PASS)) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(url=CALLBACK, headers=headers, body=raw)


def offline() -> SinchProvider:
    """An adapter for the callback side (no HTTP call is made)."""
    return SinchProvider(settings(), httpx.AsyncClient())


# --- construction -------------------------------------------------------------------------------------------


def test_is_a_webhook_parser_and_a_status_lookup() -> None:
    adapter = offline()
    assert isinstance(adapter, WebhookParser)
    assert isinstance(adapter, StatusLookup)
    assert adapter.name == NAME == "sinch"
    assert adapter.supports_idempotency is False


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (
            {"whatsapp_user": None, "whatsapp_password": None, "api_token": None, "service_plan_id": None},
            "SENDQ_SINCH__WHATSAPP_USER",
        ),
        ({"whatsapp_password": None}, "SENDQ_SINCH__WHATSAPP_PASSWORD"),
        ({"whatsapp_user": None}, "SENDQ_SINCH__WHATSAPP_USER"),
        ({"service_plan_id": None}, "SENDQ_SINCH__SERVICE_PLAN_ID"),
        ({"api_token": SecretStr("")}, "SENDQ_SINCH__API_TOKEN"),
    ],
)
def test_missing_credentials_are_a_configuration_error(overrides: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        SinchProvider(settings(**overrides), httpx.AsyncClient())


def test_one_channel_alone_is_enough() -> None:
    SinchProvider(settings(api_token=None, service_plan_id=None), httpx.AsyncClient())
    SinchProvider(settings(whatsapp_user=None, whatsapp_password=None), httpx.AsyncClient())


def test_report_offset_must_be_an_offset() -> None:
    with pytest.raises(ValidationError):
        settings(report_utc_offset="Asia/Kolkata")
    with pytest.raises(ConfigurationError, match="REPORT_UTC_OFFSET"):
        SinchProvider(settings(report_utc_offset="+99:99"), httpx.AsyncClient())


# --- WhatsApp send ------------------------------------------------------------------------------------------


async def test_whatsapp_text_request_and_answer(server: ContractServer, client: httpx.AsyncClient) -> None:
    result = await provider(server, client, public_url=PUBLIC + "/").send(message(), idempotency_key="k1")

    # The reports carry our messageId back, so it is the id receipts are matched by.
    assert result.provider_message_id == MESSAGE_ID
    assert result.repeat is False
    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/pull-platform-receiver/wa/messages")
    assert req.headers["user"] == WA_USER
    assert req.headers["pass"] == WA_PASS
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "messages": [
            {
                "sender": "918010123456",
                "to": "919812345678",
                "messageId": MESSAGE_ID,
                "channel": "wa",
                "type": "text",
                "text": {"content": "Namaste"},
                "callbackDlrUrl": CALLBACK,
            }
        ],
        "responseType": "json",
    }


async def test_whatsapp_template_request(server: ContractServer, client: httpx.AsyncClient) -> None:
    msg = message(body=None, template="order_update", variables={"2": "14 March", "1": "Asha"})
    adapter = provider(server, client, template_language="hi", sender="+918010999999")

    await adapter.send(msg, idempotency_key="k1")

    [item] = server.requests[0].json()["messages"]
    assert item == {
        "sender": "918010999999",  # the route's sender wins over the default
        "to": "919812345678",
        "messageId": MESSAGE_ID,
        "channel": "wa",
        "type": "template",
        "template": {
            "templateId": "order_update",
            "langCode": "hi",
            "body": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "14 March"}],
        },
    }


def test_template_variables_must_be_positional() -> None:
    msg = message(body=None, template="order_update", variables={"name": "Asha"})
    with pytest.raises(PermanentProviderError) as caught:
        whatsapp_payload(msg, sender=SENDER, language="en")
    assert caught.value.code == "template_variables"


def test_whatsapp_needs_a_sender() -> None:
    with pytest.raises(PermanentProviderError) as caught:
        whatsapp_payload(message(), sender=None, language="en")
    assert caught.value.code == "sender_missing"


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_every_whatsapp_error_code_is_classified(
    code: str, server: ContractServer, client: httpx.AsyncClient
) -> None:
    rule = ERRORS[code]
    server.handler = lambda req: Reply(400, wa_error(code, _WA_DESCRIPTION_OF[code]))

    with pytest.raises(ProviderError) as caught:
        await provider(server, client).send(message(), idempotency_key="k1")

    error = caught.value
    assert isinstance(error, RetryableProviderError if rule.retryable else PermanentProviderError)
    assert (error.code, error.status_code) == (code, 400)
    assert (error.suppress, error.reason) == (rule.suppress, rule.reason)
    assert error.detail == _WA_DESCRIPTION_OF[code]


async def test_opted_out_with_http_200_is_still_refused(server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(200, wa_error("24", "OPTOUT BLOCKED"))
    with pytest.raises(PermanentProviderError) as caught:
        await provider(server, client).send(message(), idempotency_key="k1")
    assert (caught.value.code, caught.value.suppress, caught.value.reason) == ("24", True, "opt_out")


async def test_wrong_whatsapp_credentials_are_permanent(server: ContractServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        await provider(server, client, whatsapp_password=SecretStr("wrong")).send(message(), idempotency_key="k1")
    assert caught.value.status_code == 401


async def test_whatsapp_answer_without_success_flag_is_ambiguous(
    server: ContractServer, client: httpx.AsyncClient
) -> None:
    server.handler = lambda req: Reply(200, "<html>ok</html>")
    with pytest.raises(RetryableProviderError) as caught:
        await provider(server, client).send(message(), idempotency_key="k1")
    assert (caught.value.code, caught.value.ambiguous) == ("bad_response", True)


# --- SMS send -----------------------------------------------------------------------------------------------


async def test_sms_request_and_answer(server: ContractServer, client: httpx.AsyncClient) -> None:
    result = await provider(server, client, public_url=PUBLIC).send(sms_message(), idempotency_key="k1")

    assert result.provider_message_id == BATCH_ID  # the id its delivery reports carry (batch_id)
    [req] = server.requests
    assert (req.method, req.path) == ("POST", BATCHES)
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "from": SENDER,
        "to": ["+14155552671"],
        "body": "Your code is 123456",
        "client_reference": MESSAGE_ID,
        "delivery_report": "per_recipient_final",
        "callback_url": CALLBACK,
    }


def test_sms_without_sender_uses_the_default_originator() -> None:
    body = sms_payload(sms_message(), sender=None)
    assert "from" not in body
    assert "callback_url" not in body


def test_sms_has_no_templates() -> None:
    with pytest.raises(PermanentProviderError) as caught:
        sms_payload(sms_message(body=None, template="otp", variables={"1": "123456"}), sender=SENDER)
    assert caught.value.code == "template_unsupported"


@pytest.mark.parametrize("code", sorted(c for c in SMS_ERRORS if not c.isdigit()))
async def test_every_sms_send_error_code_is_classified(
    code: str, server: ContractServer, client: httpx.AsyncClient
) -> None:
    rule = SMS_ERRORS[code]
    status = 400 if code.startswith("syntax_") else 403  # the API's split of its codes
    server.handler = lambda req: Reply(status, {"code": code, "text": f"refused: {code}"})

    with pytest.raises(ProviderError) as caught:
        await provider(server, client).send(sms_message(), idempotency_key="k1")

    error = caught.value
    assert isinstance(error, RetryableProviderError if rule.retryable else PermanentProviderError)
    assert (error.code, error.status_code, error.reason, error.suppress) == (code, status, rule.reason, rule.suppress)
    assert error.detail == f"refused: {code}"


async def test_sms_answer_without_batch_id_is_ambiguous(server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(201, {"to": ["+14155552671"]})
    with pytest.raises(RetryableProviderError) as caught:
        await provider(server, client).send(sms_message(), idempotency_key="k1")
    assert (caught.value.code, caught.value.ambiguous) == ("bad_response", True)


# --- both: unlisted codes, rate limits, transport failures, channels ----------------------------------------


@pytest.mark.parametrize("send", [message, sms_message], ids=["whatsapp", "sms"])
async def test_unlisted_4xx_is_permanent(send: Any, server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(422, {"code": "something_new", "text": "new"} | wa_error("9999", "NEW"))
    with pytest.raises(PermanentProviderError) as caught:
        await provider(server, client).send(send(), idempotency_key="k1")
    assert caught.value.status_code == 422
    assert caught.value.code in {"9999", "something_new"}  # the provider's code is kept, though unlisted
    assert caught.value.suppress is False


@pytest.mark.parametrize("send", [message, sms_message], ids=["whatsapp", "sms"])
async def test_5xx_is_retryable(send: Any, server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(503, "Service Unavailable")
    with pytest.raises(RetryableProviderError) as caught:
        await provider(server, client).send(send(), idempotency_key="k1")
    assert caught.value.status_code == 503
    assert caught.value.ambiguous is False


@pytest.mark.parametrize("send", [message, sms_message], ids=["whatsapp", "sms"])
async def test_429_is_rate_limited(send: Any, server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(429, "Too Many Requests", headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await provider(server, client).send(send(), idempotency_key="k1")
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("send", [message, sms_message], ids=["whatsapp", "sms"])
async def test_read_timeout_is_ambiguous(send: Any, server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lambda req: Reply(200, {"success": True}, delay_s=1.0)
    with pytest.raises(RetryableProviderError) as caught:
        await provider(server, client, timeout_s=0.1).send(send(), idempotency_key="k1")
    assert (caught.value.code, caught.value.ambiguous) == ("timeout", True)


async def test_connection_refused_is_retryable_not_ambiguous(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = SinchProvider(settings(f"http://127.0.0.1:{port}"), client)
    for msg in (message(), sms_message()):
        with pytest.raises(RetryableProviderError) as caught:
            await adapter.send(msg, idempotency_key="k1")
        assert (caught.value.code, caught.value.ambiguous) == ("connect", False)


async def test_unsupported_and_unconfigured_channels(server: ContractServer, client: httpx.AsyncClient) -> None:
    email = message(channel=Channel.EMAIL, to="asha@example.com")
    with pytest.raises(PermanentProviderError) as caught:
        await provider(server, client).send(email, idempotency_key="k1")
    assert caught.value.code == "channel_unsupported"

    whatsapp_only = provider(server, client, api_token=None, service_plan_id=None)
    with pytest.raises(PermanentProviderError, match="SENDQ_SINCH__API_TOKEN") as caught:
        await whatsapp_only.send(sms_message(), idempotency_key="k1")
    assert caught.value.code == "channel_unsupported"
    assert server.requests == []


# --- WhatsApp delivery reports (seed 004) -------------------------------------------------------------------


def wa_report(status: str, **extra: Any) -> dict[str, Any]:
    """A delivery report as seed 004 shows it, with the placeholders filled in."""
    return {
        "rqst_ack_id": "1748072109543344",
        "del_time": "24/05/2025 13:05:09",
        "mobile_no": "919812345678",
        "messageId": MESSAGE_ID,
        "del_status": status,
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [("sent", MessageStatus.SENT), ("delivered", MessageStatus.DELIVERED), ("read", MessageStatus.READ)],
)
def test_whatsapp_success_reports(status: str, expected: MessageStatus) -> None:
    [receipt] = offline().parse_receipts(callback(wa_report(status)))
    # 13:05:09 India time (+05:30) is 07:35:09 UTC.
    assert receipt == Receipt(MESSAGE_ID, expected, at=datetime(2025, 5, 24, 7, 35, 9, tzinfo=UTC))


@pytest.mark.parametrize(("description", "code"), sorted(FAILURE_DESCRIPTIONS.items()))
def test_whatsapp_failure_by_documented_description(description: str, code: str) -> None:
    [receipt] = offline().parse_receipts(callback(wa_report("failed", del_desc=description)))
    rule = ERRORS[code]
    assert receipt.status is MessageStatus.FAILED
    assert (receipt.code, receipt.reason, receipt.suppress) == (code, rule.reason, rule.suppress)


@pytest.mark.parametrize(
    ("del_desc", "code", "suppress"),
    [
        ("24", "24", True),
        ("OPTIN BLOCKED", "24", True),
        ("  optin   blocked ", "24", True),
        ("24 - OPTIN BLOCKED", "24", True),
        ("-6: MISSING MOBILE NUMBER AND WA ID", "-6", False),
        ("REQUIRED PARAMETER IS MISSING (1008)", "1008", False),
        ("Message failed: OPTOUT BLOCKED", "24", True),
        (26, "26", False),
    ],
)
def test_whatsapp_failure_code_forms(del_desc: object, code: str, suppress: bool) -> None:
    [receipt] = offline().parse_receipts(callback(wa_report("failed", del_desc=del_desc)))
    assert (receipt.code, receipt.suppress) == (code, suppress)


def test_whatsapp_undocumented_failure_keeps_its_text() -> None:
    [receipt] = offline().parse_receipts(callback(wa_report("failed", del_desc="Message undeliverable")))
    assert (receipt.status, receipt.code, receipt.reason, receipt.suppress) == (
        MessageStatus.FAILED,
        None,
        "Message undeliverable",
        False,
    )
    [unlisted] = offline().parse_receipts(callback(wa_report("failed", del_desc="131047 Re-engagement message")))
    assert (unlisted.code, unlisted.reason, unlisted.suppress) == ("131047", "Re-engagement message", False)
    [bare] = offline().parse_receipts(callback(wa_report("failed")))
    assert (bare.status, bare.code, bare.reason) == (MessageStatus.FAILED, None, None)


def test_failure_code_parser() -> None:
    assert failure_code(None) == (None, None)
    assert failure_code("   ") == (None, None)
    assert failure_code("1008") == ("1008", None)
    assert failure_code("INVALID ENCRYPTED DATA") == ("26", "INVALID ENCRYPTED DATA")


def test_whatsapp_report_seen_in_the_wild() -> None:
    # rqst_ack_id as a number and no del_desc; its id starts with the epoch ms two seconds before del_time (IST).
    report = {"rqst_ack_id": 1678791451543344, "del_time": "14/03/2023 16:27:33", "mobile_no": "919952665444"}
    [receipt] = offline().parse_receipts(callback(report | {"del_status": "sent", "messageId": MESSAGE_ID}))
    assert receipt.at == datetime(2023, 3, 14, 10, 57, 33, tzinfo=UTC)
    assert receipt.at - datetime.fromtimestamp(1678791451.543, tz=UTC) < timedelta(seconds=3)


@pytest.mark.parametrize(
    ("del_time", "at"),
    [
        ("2025-05-24T13:05:09+05:30", datetime(2025, 5, 24, 7, 35, 9, tzinfo=UTC)),
        ("2025-05-24T13:05:09", datetime(2025, 5, 24, 7, 35, 9, tzinfo=UTC)),  # no zone: India time
        ("2025-05-24T07:35:09Z", datetime(2025, 5, 24, 7, 35, 9, tzinfo=UTC)),
        ("", None),
    ],
)
def test_whatsapp_report_iso_times(del_time: str, at: datetime | None) -> None:
    [receipt] = offline().parse_receipts(callback(wa_report("delivered", del_time=del_time)))
    assert receipt.at == at


def test_whatsapp_report_offset_is_a_setting() -> None:
    adapter = SinchProvider(settings(report_utc_offset="+00:00"), httpx.AsyncClient())
    [receipt] = adapter.parse_receipts(callback(wa_report("read")))
    assert receipt.at == datetime(2025, 5, 24, 13, 5, 9, tzinfo=UTC)


def test_whatsapp_undocumented_status_makes_no_receipt() -> None:
    assert offline().parse_receipts(callback(wa_report("enroute"))) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        [wa_report("sent")],
        {"del_time": "24/05/2025 13:05:09", "messageId": MESSAGE_ID},  # no del_status
        {"del_status": 3, "messageId": MESSAGE_ID},
        wa_report("sent", messageId=""),
        {k: v for k, v in wa_report("delivered").items() if k != "messageId"},
        wa_report("delivered", del_time="05/24/2025 13:05:09"),  # month first
        wa_report("delivered", del_time=1748072109),
        wa_report("failed", del_desc={"code": 24}),
        {"type": "something_else"},
    ],
)
def test_malformed_reports_are_bad_webhooks(body: Any) -> None:
    with pytest.raises(BadWebhook):
        offline().parse_receipts(callback(body))


# --- SMS delivery reports -----------------------------------------------------------------------------------


def sms_report(status: str, code: int, **extra: Any) -> dict[str, Any]:
    """A recipient delivery report callback as the SMS REST API documents it."""
    return {
        "type": "recipient_delivery_report_sms",
        "batch_id": BATCH_ID,
        "recipient": "+14155552671",
        "code": code,
        "status": status,
        "at": "2026-03-01T12:00:05.148Z",
        "operator_status_at": "2026-03-01T12:00:02Z",
        "client_reference": MESSAGE_ID,
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("Delivered", 0, MessageStatus.DELIVERED),
        ("Dispatched", 401, MessageStatus.SENT),
        ("Failed", 402, MessageStatus.FAILED),
        ("Aborted", 403, MessageStatus.FAILED),
        ("Rejected", 408, MessageStatus.FAILED),
        ("Cancelled", 407, MessageStatus.FAILED),
        ("Expired", 406, MessageStatus.FAILED),
        ("Deleted", 88, MessageStatus.FAILED),
    ],
)
def test_sms_reports(status: str, code: int, expected: MessageStatus) -> None:
    [receipt] = offline().parse_receipts(callback(sms_report(status, code)))
    assert (receipt.provider_message_id, receipt.status) == (BATCH_ID, expected)
    assert receipt.at == datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC)  # the operator's time
    if expected is MessageStatus.FAILED:
        rule = SMS_ERRORS.get(str(code))
        assert receipt.code == str(code)
        assert receipt.reason == (rule.reason if rule else status.lower())
    else:
        assert (receipt.code, receipt.reason) == (None, None)


@pytest.mark.parametrize("code", sorted(c for c in SMS_ERRORS if c.isdigit()))
def test_every_sms_report_code_is_classified(code: str) -> None:
    [receipt] = offline().parse_receipts(callback(sms_report("Aborted", int(code))))
    assert (receipt.code, receipt.reason, receipt.suppress) == (
        code,
        SMS_ERRORS[code].reason,
        SMS_ERRORS[code].suppress,
    )


def test_sms_report_without_operator_time_uses_its_own() -> None:
    report = sms_report("Delivered", 0)
    del report["operator_status_at"]
    [receipt] = offline().parse_receipts(callback(report))
    assert receipt.at == datetime(2026, 3, 1, 12, 0, 5, 148000, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        sms_report("Queued", 400),
        sms_report("Unknown", 0),
        {"type": "delivery_report_sms", "batch_id": BATCH_ID, "statuses": [], "total_message_count": 1},
        {"type": "mo_text", "id": "01FC66621VHDBN119Z8PMV1AHY", "from": "14155552671", "to": "12345"},
    ],
)
def test_sms_callbacks_without_receipts(body: dict[str, Any]) -> None:
    assert offline().parse_receipts(callback(body)) == []


@pytest.mark.parametrize(
    "body",
    [
        sms_report("Delivered", 0, batch_id=None),
        sms_report("Delivered", 0) | {"status": None},
        sms_report("Delivered", 0, at=None, operator_status_at=None),
        sms_report("Delivered", 0, operator_status_at="yesterday"),
    ],
)
def test_malformed_sms_reports_are_bad_webhooks(body: dict[str, Any]) -> None:
    with pytest.raises(BadWebhook):
        offline().parse_receipts(callback(body))


# --- verification -------------------------------------------------------------------------------------------


def test_valid_credentials_pass() -> None:
    offline().verify(callback(wa_report("sent")))


@pytest.mark.parametrize(
    "auth",
    [(HOOK_USER, "wrong"), ("other-user", HOOK_PASS), (HOOK_USER, HOOK_PASS + "x"), None],
    ids=["wrong-password", "wrong-user", "one-character-more", "missing-header"],
)
def test_wrong_or_missing_credentials_are_rejected(auth: tuple[str, str] | None) -> None:
    with pytest.raises(WebhookRejected):
        offline().verify(callback(wa_report("sent"), auth=auth))


def test_credentials_in_the_url_alone_or_another_scheme_are_rejected() -> None:
    in_url = WebhookRequest(
        url=f"https://{HOOK_USER}:{HOOK_PASS}@sendq.example.com/v1/receipts/sinch", headers={}, body=b"{}"
    )
    with pytest.raises(WebhookRejected):
        offline().verify(in_url)
    bearer = WebhookRequest(url=CALLBACK, headers={"authorization": f"Bearer {HOOK_PASS}"}, body=b"{}")
    with pytest.raises(WebhookRejected):
        offline().verify(bearer)


def test_callbacks_are_refused_without_configured_credentials() -> None:
    adapter = SinchProvider(settings(webhook_user=None, webhook_password=None), httpx.AsyncClient())
    with pytest.raises(WebhookRejected, match="not configured"):
        adapter.verify(callback(wa_report("sent")))


# --- inbound SMS --------------------------------------------------------------------------------------------


def mo_text(sender: str, **extra: Any) -> dict[str, Any]:
    """An inbound (MO) SMS callback as the SMS REST API documents it."""
    return {
        "type": "mo_text",
        "id": "01FC66621VHDBN119Z8PMV1AHY",
        "from": sender,
        "to": "12065550123",
        "body": "STOP",
        "operator_id": "40410",
        "received_at": "2026-03-01T12:30:00.235Z",
        **extra,
    }


@pytest.mark.parametrize(
    ("sender", "contact"),
    [
        ("919812345678", "+919812345678"),  # Indian numbers come without "+"
        ("+919812345678", "+919812345678"),
        ("14155552671", "+14155552671"),
        (" 14155552671 ", "+14155552671"),
    ],
)
def test_inbound_sms(sender: str, contact: str) -> None:
    [inbound] = offline().parse_inbound(callback(mo_text(sender)))
    assert inbound == Inbound(
        contact=contact,
        channel=Channel.SMS,
        to="12065550123",
        at=datetime(2026, 3, 1, 12, 30, 0, 235000, tzinfo=UTC),
        provider_message_id="01FC66621VHDBN119Z8PMV1AHY",
    )


def test_inbound_binary_and_media_count_too() -> None:
    for kind in ("mo_binary", "mo_media"):
        [inbound] = offline().parse_inbound(callback(mo_text("919812345678", type=kind)))
        assert inbound.contact == "+919812345678"


@pytest.mark.parametrize(
    "body",
    [
        mo_text("9812345678"),  # a national number: not guessed
        mo_text("0091 98123 45678"),
        mo_text("whatsapp:+919812345678"),
        mo_text("919812345678", received_at=None),
        mo_text("919812345678", received_at="12:30"),
        {k: v for k, v in mo_text("919812345678").items() if k != "from"},
        {"type": "whatsapp_inbound", "from": "919812345678"},
        b"[]",
    ],
)
def test_malformed_inbound_is_a_bad_webhook(body: Any) -> None:
    with pytest.raises(BadWebhook):
        offline().parse_inbound(callback(body))


def test_delivery_reports_on_the_inbound_url_are_ignored() -> None:
    assert offline().parse_inbound(callback(wa_report("read"))) == []
    assert offline().parse_inbound(callback(sms_report("Delivered", 0))) == []


# --- lookup (SMS) -------------------------------------------------------------------------------------------


def lookup_api(batches: list[dict[str, Any]], report: Reply) -> Any:
    """The documented list-batches and recipient-delivery-report queries (Bearer token)."""

    def handle(req: Recorded) -> Reply:
        if req.method != "GET" or req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, "Unauthorized")
        if req.path == BATCHES:
            return Reply(200, {"count": len(batches), "page": 0, "page_size": 30, "batches": batches})
        if req.path.startswith(f"{BATCHES}/{BATCH_ID}/delivery_report/"):
            return report
        return Reply(404, "Not Found")

    return handle


_BATCH = {"id": BATCH_ID, "to": ["+14155552671"], "client_reference": MESSAGE_ID, "type": "mt_text"}


async def test_lookup_found_with_its_delivery_report(server: ContractServer, client: httpx.AsyncClient) -> None:
    report = sms_report("Delivered", 0) | {"type": "recipient_delivery_report_sms"}
    server.handler = lookup_api([_BATCH], Reply(200, report))

    found = await provider(server, client).lookup(sms_message(send_at=NOW + timedelta(hours=1)))

    assert (found.found, found.provider_message_id, found.status) == (True, BATCH_ID, MessageStatus.DELIVERED)
    assert found.at == datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC)
    listing, by_recipient = server.requests
    # Batches are listed from 10 minutes before the send time (the default is only the last 24 hours).
    assert listing.query == {"client_reference": [MESSAGE_ID], "start_date": ["2026-03-01T12:50:00.000Z"]}
    assert by_recipient.path == f"{BATCHES}/{BATCH_ID}/delivery_report/%2B14155552671"


async def test_lookup_found_failed(server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lookup_api([_BATCH], Reply(200, sms_report("Failed", 402)))
    found = await provider(server, client).lookup(sms_message())
    assert (found.found, found.status, found.code, found.reason) == (True, MessageStatus.FAILED, "402", "unroutable")
    assert server.requests[0].query["start_date"] == ["2026-03-01T11:50:00.000Z"]  # from created_at


@pytest.mark.parametrize(
    "report",
    [Reply(404, {"code": "not_found", "text": "no report"}), Reply(200, sms_report("Queued", 400)), Reply(502, "")],
    ids=["no-report-yet", "queued", "report-unavailable"],
)
async def test_lookup_found_without_final_report_is_sent(
    report: Reply, server: ContractServer, client: httpx.AsyncClient
) -> None:
    server.handler = lookup_api([_BATCH], report)
    found = await provider(server, client).lookup(sms_message())
    assert (found.found, found.provider_message_id, found.status) == (True, BATCH_ID, MessageStatus.SENT)


async def test_lookup_not_found(server: ContractServer, client: httpx.AsyncClient) -> None:
    server.handler = lookup_api([], Reply(404, ""))
    found = await provider(server, client).lookup(sms_message())
    assert found.found is False
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(500, "Internal Server Error"), RetryableProviderError),
        (Reply(403, {"code": "blocked_account", "text": "account blocked"}), PermanentProviderError),
        (Reply(200, {"count": 0}), RetryableProviderError),
    ],
)
async def test_lookup_provider_errors(
    reply: Reply, error: type[ProviderError], server: ContractServer, client: httpx.AsyncClient
) -> None:
    server.handler = lambda req: reply
    with pytest.raises(error):
        await provider(server, client).lookup(sms_message())


async def test_whatsapp_has_no_status_query(server: ContractServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        await provider(server, client).lookup(message())
    assert (caught.value.code, caught.value.reason, caught.value.ambiguous) == (
        "lookup_unsupported",
        "unknown_outcome",
        True,
    )
    assert server.requests == []
