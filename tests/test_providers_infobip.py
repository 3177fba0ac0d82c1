"""InfobipProvider against a loopback server that follows Infobip's documented SMS contract.

Sample bodies are the documented ones (Infobip API reference, the official C# client's ``SmsApiTest``), with
realistic failure variants built from Infobip's status and error code tables.
"""

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.base import ErrorRule, Inbound, Receipt, StatusLookup, WebhookParser, WebhookRequest
from providers.infobip import (
    ERRORS,
    LOGS_PATH,
    MAX_VALIDITY_MINUTES,
    NAME,
    SEND_PATH,
    InfobipProvider,
    classify,
    parse_time,
    payload,
    validity_minutes,
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
from sendq.provider_settings import InfobipSettings
from sendq.status import MessageStatus
from tests.contract_server import ContractServer, Recorded, Reply
from tests.redis_server import free_port

API_KEY = "003026bbc133714df1834b8638bb496e-8f4b3d9a-e931-478d-a994-28a725159ab9"
PUBLIC_URL = "https://sendq.example.com"
NOTIFY_URL = "https://sendq.example.com/v1/receipts/infobip"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

PENDING_ACCEPTED = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 26,
    "name": "PENDING_ACCEPTED",
    "description": "Message sent to next instance",
}
DELIVERED_TO_HANDSET = {
    "groupId": 3,
    "groupName": "DELIVERED",
    "id": 5,
    "name": "DELIVERED_TO_HANDSET",
    "description": "Message delivered to handset",
}
NO_ERROR = {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": False}

#: REJECTED-group status ids from Infobip's status table (14 is the blocklisted destination, 52 an invalid one)
REJECTED_IDS = {
    "REJECTED_NETWORK": 6,
    "REJECTED_PREFIX_MISSING": 8,
    "REJECTED_DND": 10,
    "REJECTED_SOURCE": 11,
    "REJECTED_NOT_ENOUGH_CREDITS": 12,
    "REJECTED_SENDER": 13,
    "REJECTED_DESTINATION_BLOCKLISTED": 14,
    "REJECTED_NOT_REACHABLE": 16,
    "REJECTED_PREPAID_PACKAGE_EXPIRED": 17,
    "REJECTED_DESTINATION_NOT_REGISTERED": 18,
    "REJECTED_ROUTE_NOT_AVAILABLE": 19,
    "REJECTED_FLOODING_FILTER": 20,
    "REJECTED_SYSTEM_ERROR": 21,
    "REJECTED_INVALID_UDH": 24,
    "REJECTED_MESSAGE_TOO_LONG": 25,
    "MISSING_TO": 51,
    "REJECTED_DESTINATION": 52,
}
#: serviceException.messageId -> the HTTP status Infobip answers it with
HTTP_CODES = {"BAD_REQUEST": 400, "UNAUTHORIZED": 401, "TOO_MANY_REQUESTS": 429}
#: GSM error name -> (error group id, group name, error id, documented permanent flag)
GSM_ERRORS = {
    "EC_UNKNOWN_SUBSCRIBER": (1, "HANDSET_ERRORS", 1, True),
    "EC_UNIDENTIFIED_SUBSCRIBER": (1, "HANDSET_ERRORS", 5, False),
    "EC_ABSENT_SUBSCRIBER_SM": (1, "HANDSET_ERRORS", 6, False),
    "EC_ROAMING_NOT_ALLOWED": (1, "HANDSET_ERRORS", 8, False),
    "EC_ILLEGAL_SUBSCRIBER": (1, "HANDSET_ERRORS", 9, True),
    "EC_TELESERVICE_NOT_PROVISIONED": (1, "HANDSET_ERRORS", 11, True),
    "EC_ILLEGAL_EQUIPMENT": (1, "HANDSET_ERRORS", 12, True),
    "EC_CALL_BARRED": (1, "HANDSET_ERRORS", 13, False),
    "EC_ABSENT_SUBSCRIBER": (1, "HANDSET_ERRORS", 27, False),
    "EC_SUBSCRIBER_BUSY_FOR_MT_SMS": (1, "HANDSET_ERRORS", 31, False),
    "EC_SYSTEM_FAILURE": (1, "HANDSET_ERRORS", 34, False),
    "EC_SM_DF_MEMORYCAPACITYEXCEEDED": (1, "HANDSET_ERRORS", 256, False),
    "EC_INVALID_DESTINATION_ADDRESS": (2, "USER_ERRORS", 351, True),
    "EC_CONTENT_BLOCKED": (2, "USER_ERRORS", 603, True),
    "EC_REJECTED_SPAM_BY_OPERATOR": (2, "USER_ERRORS", 607, True),
    "EC_IMSI_BLACKLISTED": (2, "USER_ERRORS", 2049, True),
    "EC_BLACKLISTED_DESTINATIONADDRESS": (2, "USER_ERRORS", 2052, True),
    "EC_BLACKLISTED_SENDERADDRESS": (2, "USER_ERRORS", 2053, True),
    "EC_DEACTIVATED_LIST": (2, "USER_ERRORS", 3041, True),
    "EC_MESSAGE_CANCELED": (2, "USER_ERRORS", 4100, True),
    "EC_VALIDITYEXPIRED": (2, "USER_ERRORS", 4101, True),
    "EC_DESTINATION_FLOODING": (2, "USER_ERRORS", 4103, True),
    "EC_DESTINATION_TXT_FLOODING": (2, "USER_ERRORS", 4104, True),
    "EC_TIME_OUT": (3, "OPERATOR_ERRORS", 2048, False),
    "EC_DEST_ADDRESS_BLACKLISTED": (3, "OPERATOR_ERRORS", 2050, True),
}
#: codes meaning the contact opted out or is blocklisted / on a do-not-disturb list
SUPPRESSING = {
    "REJECTED_DND",
    "REJECTED_DESTINATION_BLOCKLISTED",
    "EC_CONTENT_BLOCKED",
    "EC_BLACKLISTED_DESTINATIONADDRESS",
    "EC_DEST_ADDRESS_BLACKLISTED",
}


def make_message(**overrides: Any) -> Message:
    data: dict[str, Any] = {
        "id": "01jh2xq9a7c3v5m8k0r4t6w2yb",
        "subaccount": "acme",
        "channel": Channel.SMS,
        "to": "+41793026727",
        "body": "Your code is 4821",
        "created_at": NOW,
        "valid_until": NOW + timedelta(days=3),
        "status": MessageStatus.SENDING,
        "status_at": NOW,
        "due_at": NOW,
    }
    data.update(overrides)
    return Message(**data)


def make_settings(url: str = "https://api.infobip.com", **overrides: Any) -> InfobipSettings:
    data: dict[str, Any] = {
        "base_url": url,
        "api_key": SecretStr(API_KEY),
        "sender": "InfoSMS",
        "webhook_user": "infobip",
        "webhook_password": SecretStr("s3cret-hook"),
    }
    data.update(overrides)
    return InfobipSettings(**data)


def service_exception(code: str, text: str) -> dict[str, Any]:
    return {"requestError": {"serviceException": {"messageId": code, "text": text}}}


def rejected(name: str, status_id: int) -> dict[str, Any]:
    return {"groupId": 5, "groupName": "REJECTED", "id": status_id, "name": name, "description": name.lower()}


def send_answer(request: Recorded, status: dict[str, Any]) -> Reply:
    destination = request.json()["messages"][0]["destinations"][0]
    return Reply(
        200,
        {
            "bulkId": "2034072219640523072",
            "messages": [{"to": destination["to"], "status": status, "messageId": destination["messageId"]}],
        },
    )


def infobip(status: dict[str, Any] = PENDING_ACCEPTED) -> Callable[[Recorded], Reply]:
    """Infobip's send endpoint: checks auth, path and the body shape, answers with ``status`` per message."""

    def handle(request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"App {API_KEY}":
            return Reply(401, service_exception("UNAUTHORIZED", "Invalid login details"))
        if request.method != "POST" or request.path != SEND_PATH:
            return Reply(404, service_exception("NOT_FOUND", "Not found"))
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(415, service_exception("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"))
        destinations = request.json()["messages"][0]["destinations"]
        if not destinations or not destinations[0]["to"].isdigit():
            return Reply(400, service_exception("BAD_REQUEST", "Bad request"))
        return send_answer(request, status)

    return handle


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def provider(url: str, client: httpx.AsyncClient, **overrides: Any) -> InfobipProvider:
    return InfobipProvider(make_settings(url, **overrides), client, public_url=PUBLIC_URL)


# --- request building -------------------------------------------------------------------------------------------


def test_payload_has_every_field() -> None:
    message = make_message(valid_until=NOW + timedelta(minutes=90, seconds=59))

    body = payload(message, sender="InfoSMS", notify_url=NOTIFY_URL, now=NOW)

    assert body == {
        "messages": [
            {
                "destinations": [{"to": "41793026727", "messageId": "01jh2xq9a7c3v5m8k0r4t6w2yb"}],
                "from": "InfoSMS",
                "text": "Your code is 4821",
                "notifyUrl": NOTIFY_URL,
                "notifyContentType": "application/json",
                "callbackData": "acme",
                "validityPeriod": 90,
            }
        ]
    }


def test_payload_without_notify_url_or_sender_leaves_them_out() -> None:
    body = payload(make_message(), sender=None, notify_url=None, now=NOW)["messages"][0]

    assert "notifyUrl" not in body and "notifyContentType" not in body and "from" not in body


def test_numeric_sender_is_written_without_plus() -> None:
    body = payload(make_message(), sender="+41793026700", notify_url=None, now=NOW)

    assert body["messages"][0]["from"] == "41793026700"


@pytest.mark.parametrize(
    ("left", "minutes"),
    [
        (timedelta(days=3), MAX_VALIDITY_MINUTES),  # Infobip's 48-hour maximum
        (timedelta(hours=48), 2880),
        (timedelta(minutes=10, seconds=59), 10),  # whole minutes, never past valid_until
        (timedelta(seconds=20), 1),  # at least a minute
    ],
)
def test_validity_period_is_minutes_until_valid_until(left: timedelta, minutes: int) -> None:
    assert validity_minutes(make_message(valid_until=NOW + left), NOW) == minutes


@pytest.mark.parametrize("channel", [Channel.WHATSAPP, Channel.EMAIL, Channel.WEBCHAT])
async def test_other_channels_are_refused_before_any_request(client: httpx.AsyncClient, channel: Channel) -> None:
    to = {"whatsapp": "+41793026727", "email": "bob@example.com", "webchat": "session-1"}[channel.value]
    with ContractServer(infobip()) as server, pytest.raises(PermanentProviderError) as caught:
        await provider(server.url, client).send(make_message(channel=channel, to=to), idempotency_key="k1")

    assert caught.value.code == "channel_unsupported"
    assert server.requests == []


async def test_template_is_refused(client: httpx.AsyncClient) -> None:
    message = make_message(body=None, template="otp", variables={"code": "4821"})
    with ContractServer(infobip()) as server, pytest.raises(PermanentProviderError) as caught:
        await provider(server.url, client).send(message, idempotency_key="k1")

    assert caught.value.code == "template_unsupported"
    assert server.requests == []


@pytest.mark.parametrize("api_key", [None, SecretStr("")])
def test_missing_api_key_is_a_configuration_error(api_key: SecretStr | None) -> None:
    with pytest.raises(ConfigurationError, match="SENDQ_INFOBIP__API_KEY"):
        InfobipProvider(make_settings(api_key=api_key), httpx.AsyncClient())


# --- sending ----------------------------------------------------------------------------------------------------


async def test_send_posts_the_documented_request_and_returns_the_message_id(client: httpx.AsyncClient) -> None:
    message = make_message(valid_until=datetime.now(UTC) + timedelta(days=3))
    with ContractServer(infobip()) as server:
        result = await provider(server.url + "/", client).send(message, idempotency_key="k1")

    assert result.provider_message_id == message.id
    assert result.repeat is False
    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", SEND_PATH)
    assert sent.headers["authorization"] == f"App {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "application/json"
    assert sent.json() == payload(message, sender="InfoSMS", notify_url=NOTIFY_URL)


async def test_route_sender_overrides_the_default(client: httpx.AsyncClient) -> None:
    with ContractServer(infobip()) as server:
        sender = InfobipProvider(make_settings(server.url), client, sender="ACME")
        await sender.send(make_message(), idempotency_key="k1")

    body = server.requests[0].json()["messages"][0]
    assert body["from"] == "ACME"
    assert "notifyUrl" not in body  # no public URL: no delivery reports asked for


async def test_delivered_status_in_the_send_answer_is_acceptance(client: httpx.AsyncClient) -> None:
    with ContractServer(infobip(DELIVERED_TO_HANDSET)) as server:
        result = await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert result.provider_message_id == make_message().id


async def test_duplicate_message_id_means_infobip_already_has_it(client: httpx.AsyncClient) -> None:
    with ContractServer(infobip(rejected("REJECTED_DUPLICATE_MESSAGE_ID", 23))) as server:
        result = await provider(server.url, client).send(make_message(), idempotency_key="k2")

    assert (result.provider_message_id, result.repeat) == (make_message().id, True)


def test_every_code_in_the_table_is_exercised_below() -> None:
    assert set(ERRORS) == set(HTTP_CODES) | set(REJECTED_IDS) | set(GSM_ERRORS)


@pytest.mark.parametrize("code", sorted(HTTP_CODES))
async def test_http_error_codes_are_classified(client: httpx.AsyncClient, code: str) -> None:
    status = HTTP_CODES[code]
    answer = Reply(status, service_exception(code, code.replace("_", " ").lower()), headers={"Retry-After": "3"})
    with ContractServer(lambda request: answer) as server, pytest.raises(ProviderError) as caught:
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    error, rule = caught.value, ERRORS[code]
    assert (error.code, error.status_code, error.reason) == (code, status, rule.reason)
    assert error.retryable is rule.retryable
    assert error.ambiguous is False
    assert isinstance(error, RateLimited) == (status == 429)


@pytest.mark.parametrize("name", sorted(REJECTED_IDS))
async def test_rejected_statuses_at_send_are_classified(client: httpx.AsyncClient, name: str) -> None:
    with ContractServer(infobip(rejected(name, REJECTED_IDS[name]))) as server, pytest.raises(ProviderError) as caught:
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    error, rule = caught.value, ERRORS[name]
    assert (error.code, error.status_code, error.reason, error.suppress) == (name, 200, rule.reason, rule.suppress)
    assert error.retryable is rule.retryable
    assert error.suppress is (name in SUPPRESSING)
    assert error.ambiguous is False  # a REJECTED status means nothing went out


async def test_blocklisted_destination_under_its_older_name_is_suppressed(client: httpx.AsyncClient) -> None:
    with (
        ContractServer(infobip(rejected("REJECTED_DESTINATION", 14))) as server,
        pytest.raises(PermanentProviderError) as caught,
    ):
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.suppress) == ("REJECTED_DESTINATION_BLOCKLISTED", True)


async def test_unlisted_rejection_is_permanent(client: httpx.AsyncClient) -> None:
    with (
        ContractServer(infobip(rejected("REJECTED_SOMETHING_NEW", 99))) as server,
        pytest.raises(PermanentProviderError) as caught,
    ):
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.suppress) == ("REJECTED_SOMETHING_NEW", False)


async def test_unlisted_4xx_is_permanent(client: httpx.AsyncClient) -> None:
    answer = Reply(403, service_exception("FORBIDDEN", "Forbidden"))
    with ContractServer(lambda request: answer) as server, pytest.raises(PermanentProviderError) as caught:
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.status_code, caught.value.detail) == ("FORBIDDEN", 403, "Forbidden")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(client: httpx.AsyncClient, status: int) -> None:
    answer = Reply(status, service_exception("GENERAL_ERROR", "Something went wrong"))
    with ContractServer(lambda request: answer) as server, pytest.raises(RetryableProviderError) as caught:
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.status_code) == ("GENERAL_ERROR", status)


async def test_5xx_without_a_json_body_is_retryable(client: httpx.AsyncClient) -> None:
    with (
        ContractServer(lambda request: Reply(502, "<html>Bad Gateway</html>")) as server,
        pytest.raises(RetryableProviderError) as caught,
    ):
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.status_code) == (None, 502)


async def test_429_with_retry_after_is_rate_limited(client: httpx.AsyncClient) -> None:
    answer = Reply(429, service_exception("TOO_MANY_REQUESTS", "Too many requests"), headers={"Retry-After": "7"})
    with ContractServer(lambda request: answer) as server, pytest.raises(RateLimited) as caught:
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert caught.value.retry_after_s == 7.0
    assert caught.value.code == "TOO_MANY_REQUESTS"


async def test_2xx_without_a_status_is_ambiguous(client: httpx.AsyncClient) -> None:
    with (
        ContractServer(lambda request: Reply(200, {"bulkId": "2034072219640523072"})) as server,
        pytest.raises(RetryableProviderError) as caught,
    ):
        await provider(server.url, client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.ambiguous) == ("bad_response", True)


async def test_read_timeout_is_ambiguous(client: httpx.AsyncClient) -> None:
    late = Reply(200, {"messages": [{"status": PENDING_ACCEPTED, "messageId": make_message().id}]}, delay_s=1.0)
    with ContractServer(lambda request: late) as server:
        slow = provider(server.url, client, timeout_s=0.2)
        with pytest.raises(RetryableProviderError) as caught:
            await slow.send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.ambiguous) == ("timeout", True)


async def test_connection_refused_is_retryable_and_not_ambiguous(client: httpx.AsyncClient) -> None:
    with pytest.raises(RetryableProviderError) as caught:
        await provider(f"http://127.0.0.1:{free_port()}", client).send(make_message(), idempotency_key="k1")

    assert (caught.value.code, caught.value.ambiguous) == ("connect", False)


async def test_aclose_leaves_the_shared_client_open(client: httpx.AsyncClient) -> None:
    await provider("https://api.infobip.com", client).aclose()

    assert not client.is_closed


def test_protocols() -> None:
    adapter = provider("https://api.infobip.com", httpx.AsyncClient())
    assert isinstance(adapter, WebhookParser) and isinstance(adapter, StatusLookup)
    assert (adapter.name, adapter.supports_idempotency) == (NAME, False)


# --- delivery reports -------------------------------------------------------------------------------------------


def callback(body: Any, *, content_type: str = "application/json", auth: str | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type}
    if auth is not None:
        headers["authorization"] = auth
    return WebhookRequest(url=NOTIFY_URL, headers=headers, body=raw)


def report(status: Any, error: Any = NO_ERROR, **fields: Any) -> dict[str, Any]:
    entry = {
        "bulkId": "BULK-ID-123-xyz",
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": status,
        "error": error,
        "messageId": "MESSAGE-ID-123-xyz",
        "to": "41793026727",
        "sender": "InfoSMS",
        "sentAt": "2019-11-09T16:00:00.000+0100",
        "doneAt": "2019-11-09T16:00:00.000+0100",
        "messageCount": 1,
        "callbackData": "acme",
    }
    entry.update(fields)
    return entry


def gsm_error(name: str) -> dict[str, Any]:
    group_id, group_name, error_id, permanent = GSM_ERRORS[name]
    return {
        "groupId": group_id,
        "groupName": group_name,
        "id": error_id,
        "name": name,
        "description": name.lower(),
        "permanent": permanent,
    }


UNDELIVERED = {
    "groupId": 2,
    "groupName": "UNDELIVERABLE",
    "id": 9,
    "name": "UNDELIVERABLE_NOT_DELIVERED",
    "description": "Message sent not delivered",
}
DELIVERED_TO_OPERATOR = {
    "groupId": 3,
    "groupName": "DELIVERED",
    "id": 2,
    "name": "DELIVERED_TO_OPERATOR",
    "description": "Message delivered to operator",
}
EXPIRED = {"groupId": 4, "groupName": "EXPIRED", "id": 15, "name": "EXPIRED_EXPIRED", "description": "Message expired"}
PARSER = provider("https://api.infobip.com", httpx.AsyncClient())


def test_documented_report_sample_is_delivered() -> None:
    # The C# client's ShouldReceiveOutBoundSmsMessageReport body: two delivered messages.
    body = {
        "results": [
            report(DELIVERED_TO_HANDSET),
            report(
                DELIVERED_TO_HANDSET,
                messageId="12db39c3-7822-4e72-a3ec-c87442c0ffc5",
                to="41793026834",
                doneAt="2019-11-09T17:00:00.000+0100",
            ),
        ]
    }

    assert PARSER.parse_receipts(callback(body)) == [
        Receipt("MESSAGE-ID-123-xyz", MessageStatus.DELIVERED, at=datetime(2019, 11, 9, 15, 0, tzinfo=UTC)),
        Receipt(
            "12db39c3-7822-4e72-a3ec-c87442c0ffc5", MessageStatus.DELIVERED, at=datetime(2019, 11, 9, 16, tzinfo=UTC)
        ),
    ]


def test_delivered_to_operator_is_only_sent() -> None:
    [receipt] = PARSER.parse_receipts(callback({"results": [report(DELIVERED_TO_OPERATOR)]}))

    assert receipt.status is MessageStatus.SENT


def test_pending_gives_no_receipt() -> None:
    assert PARSER.parse_receipts(callback({"results": [report(PENDING_ACCEPTED, doneAt=None)]})) == []


def test_report_of_a_refused_duplicate_is_not_about_the_original() -> None:
    body = {"results": [report(rejected("REJECTED_DUPLICATE_MESSAGE_ID", 23))]}

    assert PARSER.parse_receipts(callback(body)) == []


def test_undeliverable_carries_the_gsm_error() -> None:
    body = {"results": [report(UNDELIVERED, gsm_error("EC_ABSENT_SUBSCRIBER"), doneAt="2026-01-05T09:00:03.120+0000")]}

    assert PARSER.parse_receipts(callback(body)) == [
        Receipt(
            "MESSAGE-ID-123-xyz",
            MessageStatus.FAILED,
            at=datetime(2026, 1, 5, 9, 0, 3, 120000, tzinfo=UTC),
            code="EC_ABSENT_SUBSCRIBER",
            reason="absent_subscriber",
        )
    ]


def test_expired_without_an_error_uses_the_status() -> None:
    [receipt] = PARSER.parse_receipts(callback({"results": [report(EXPIRED)]}))

    assert (receipt.status, receipt.code, receipt.reason) == (
        MessageStatus.FAILED,
        "EXPIRED_EXPIRED",
        "Message expired",
    )


@pytest.mark.parametrize("name", sorted(GSM_ERRORS))
def test_gsm_errors_in_reports_are_classified(name: str) -> None:
    [receipt] = PARSER.parse_receipts(callback({"results": [report(UNDELIVERED, gsm_error(name))]}))

    assert (receipt.status, receipt.code) == (MessageStatus.FAILED, name)
    assert (receipt.reason, receipt.suppress) == (ERRORS[name].reason, name in SUPPRESSING)
    # every row follows Infobip's documented permanent flag
    assert ERRORS[name].retryable is not GSM_ERRORS[name][3]


@pytest.mark.parametrize("name", sorted(REJECTED_IDS))
def test_rejected_reports_are_classified(name: str) -> None:
    [receipt] = PARSER.parse_receipts(callback({"results": [report(rejected(name, REJECTED_IDS[name]))]}))

    assert (receipt.status, receipt.code, receipt.suppress) == (MessageStatus.FAILED, name, name in SUPPRESSING)


def test_unlisted_error_keeps_its_description_and_is_not_suppressed() -> None:
    error = {"groupId": 3, "groupName": "OPERATOR_ERRORS", "id": 4242, "name": "EC_NEW_THING"}
    error.update(description="Something new", permanent=True)
    [receipt] = PARSER.parse_receipts(callback({"results": [report(UNDELIVERED, error)]}))

    assert (receipt.code, receipt.reason, receipt.suppress) == ("EC_NEW_THING", "Something new", False)


def test_error_given_by_name_only_is_read() -> None:
    entry = {"messageId": "MESSAGE-ID-123-xyz", "status": {"groupName": "UNDELIVERABLE"}}
    entry["error"] = {"name": "EC_UNKNOWN_SUBSCRIBER", "description": "Unknown subscriber"}
    [receipt] = PARSER.parse_receipts(callback({"results": [entry]}))

    assert (receipt.status, receipt.code, receipt.reason) == (
        MessageStatus.FAILED,
        "EC_UNKNOWN_SUBSCRIBER",
        "invalid_recipient",
    )


@pytest.mark.parametrize("permanent", [True, False])
def test_unlisted_codes_follow_the_permanent_flag(permanent: bool) -> None:
    error = {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 4242, "name": "EC_NEW_THING", "permanent": permanent}

    assert classify(UNDELIVERED, error) == ("EC_NEW_THING", ErrorRule(retryable=not permanent))


def test_listed_codes_win_over_the_permanent_flag() -> None:
    error = dict(gsm_error("EC_CALL_BARRED"), permanent=True)

    assert classify(UNDELIVERED, error) == ("EC_CALL_BARRED", ERRORS["EC_CALL_BARRED"])


def test_report_without_done_at_has_no_time() -> None:
    [receipt] = PARSER.parse_receipts(callback({"results": [report(DELIVERED_TO_HANDSET, doneAt=None)]}))

    assert receipt.at is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-11-09T16:00:00.000+0000", datetime(2019, 11, 9, 16, tzinfo=UTC)),
        ("2023-08-01T16:10:00+05:30", datetime(2023, 8, 1, 10, 40, tzinfo=UTC)),
        ("2021-08-25T16:10:00.000+0500", datetime(2021, 8, 25, 11, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_are_read_as_utc(value: str, expected: datetime) -> None:
    parsed = parse_time(value)

    assert parsed == expected and parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "request_",
    [
        callback(b"not json"),
        callback(b"\xff\xfe"),
        callback([]),
        callback({"results": "none"}),
        callback({"results": ["x"]}),
        callback({"results": [report(DELIVERED_TO_HANDSET, messageId=None)]}),
        callback({"results": [report("DELIVERED")]}),
        callback({"results": [report(UNDELIVERED, "EC_ABSENT_SUBSCRIBER")]}),
        callback({"results": [report(DELIVERED_TO_HANDSET, doneAt="yesterday")]}),
        callback({"results": [report(DELIVERED_TO_HANDSET, doneAt=1573315200)]}),
        callback(b"<reportResponse/>", content_type="application/xml"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "results-not-list",
        "result-not-object",
        "no-message-id",
        "status-not-object",
        "error-not-object",
        "bad-time",
        "numeric-time",
        "xml",
    ],
)
def test_malformed_reports_are_bad_webhooks(request_: WebhookRequest) -> None:
    with pytest.raises(BadWebhook):
        PARSER.parse_receipts(request_)


def test_empty_report_batch_is_fine() -> None:
    assert PARSER.parse_receipts(callback({"results": []})) == []


# --- webhook verification ---------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_valid_credentials_pass() -> None:
    PARSER.verify(callback({"results": []}, auth=basic("infobip", "s3cret-hook")))


@pytest.mark.parametrize(
    "auth",
    [
        basic("infobip", "s3cret-hooK"),  # one character of the password
        basic("infobiq", "s3cret-hook"),  # one character of the user
        basic("infobip", ""),
        None,  # no header
        "",
        f"App {API_KEY}",  # the API key scheme, not basic auth
        "Bearer s3cret-hook",
        "Basic not*base64",
        "Basic " + base64.b64encode(b"infobip s3cret-hook").decode(),  # no colon
    ],
    ids=["password", "user", "empty-password", "missing", "empty", "app-scheme", "bearer", "not-base64", "no-colon"],
)
def test_wrong_or_missing_credentials_are_rejected(auth: str | None) -> None:
    with pytest.raises(WebhookRejected):
        PARSER.verify(callback({"results": []}, auth=auth))


def test_callbacks_are_refused_when_no_credentials_are_configured() -> None:
    unconfigured = provider("https://api.infobip.com", httpx.AsyncClient(), webhook_user=None, webhook_password=None)

    with pytest.raises(WebhookRejected):
        unconfigured.verify(callback({"results": []}, auth=basic("infobip", "s3cret-hook")))


# --- inbound ----------------------------------------------------------------------------------------------------


MO = {
    "messageId": "817790313235066447",
    "from": "385916242493",
    "to": "385921004026",
    "text": "QUIZ Correct answer is Paris",
    "cleanText": "Correct answer is Paris",
    "keyword": "QUIZ",
    "receivedAt": "2021-08-25T16:10:00.000+0500",
    "smsCount": 1,
    "price": {"pricePerMessage": 0, "currency": "EUR"},
    "callbackData": "callbackData",
}


def test_documented_inbound_sample() -> None:
    body = {"results": [MO], "messageCount": 1, "pendingMessageCount": 0}

    assert PARSER.parse_inbound(callback(body)) == [
        Inbound(
            contact="+385916242493",
            channel=Channel.SMS,
            to="+385921004026",
            at=datetime(2021, 8, 25, 11, 10, tzinfo=UTC),
            provider_message_id="817790313235066447",
        )
    ]


def test_inbound_to_a_short_code_keeps_it_as_written() -> None:
    [message] = PARSER.parse_inbound(callback({"results": [dict(MO, to="38599")]}))

    assert (message.contact, message.to) == ("+385916242493", "38599")


def test_inbound_from_something_that_is_no_number_is_skipped() -> None:
    body = {"results": [dict(MO, **{"from": "InfoSMS"}), dict(MO, **{"from": "14155552671", "messageId": "2"})]}

    assert [m.contact for m in PARSER.parse_inbound(callback(body))] == ["+14155552671"]


@pytest.mark.parametrize(
    "body",
    [{"results": [dict(MO, **{"from": None})]}, {"results": [dict(MO, receivedAt="soon")]}, {"messages": [MO]}],
    ids=["no-from", "bad-time", "no-results"],
)
def test_malformed_inbound_is_a_bad_webhook(body: Any) -> None:
    with pytest.raises(BadWebhook):
        PARSER.parse_inbound(callback(body))


# --- lookup -----------------------------------------------------------------------------------------------------


def log_entry(status: dict[str, Any], error: dict[str, Any] = NO_ERROR, **fields: Any) -> dict[str, Any]:
    entry = {
        "destination": "41793026727",
        "bulkId": "BULK-ID-123-xyz",
        "messageId": make_message().id,
        "sentAt": "2026-01-05T10:00:00.000+0100",
        "doneAt": "2026-01-05T10:00:04.000+0100",
        "messageCount": 1,
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": status,
        "error": error,
        "content": {"text": "Your code is 4821"},
        "mccMnc": "22801",
    }
    entry.update(fields)
    return entry


def logs(*entries: dict[str, Any]) -> Callable[[Recorded], Reply]:
    """Infobip's SMS logs: filtered by the messageId query parameter."""

    def handle(request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"App {API_KEY}":
            return Reply(401, service_exception("UNAUTHORIZED", "Invalid login details"))
        if (request.method, request.path) != ("GET", LOGS_PATH):
            return Reply(404, service_exception("NOT_FOUND", "Not found"))
        wanted = request.query.get("messageId", [])
        return Reply(200, {"results": [e for e in entries if e["messageId"] in wanted]})

    return handle


async def test_lookup_finds_a_delivered_message(client: httpx.AsyncClient) -> None:
    with ContractServer(logs(log_entry(DELIVERED_TO_HANDSET))) as server:
        found = await provider(server.url, client).lookup(make_message())

    assert (found.found, found.provider_message_id, found.status) == (True, make_message().id, MessageStatus.DELIVERED)
    assert found.at == datetime(2026, 1, 5, 9, 0, 4, tzinfo=UTC)
    [sent] = server.requests
    assert sent.query == {"messageId": [make_message().id]}
    assert sent.headers["authorization"] == f"App {API_KEY}"


async def test_lookup_of_a_pending_message_says_sent(client: httpx.AsyncClient) -> None:
    with ContractServer(logs(log_entry(PENDING_ACCEPTED, doneAt=None))) as server:
        found = await provider(server.url, client).lookup(make_message())

    assert (found.found, found.status, found.at) == (True, MessageStatus.SENT, None)


async def test_lookup_of_a_failed_message_carries_code_and_suppression(client: httpx.AsyncClient) -> None:
    entry = log_entry(UNDELIVERED, gsm_error("EC_DEST_ADDRESS_BLACKLISTED"))
    with ContractServer(logs(entry)) as server:
        found = await provider(server.url, client).lookup(make_message())

    assert (found.status, found.code, found.reason, found.suppress) == (
        MessageStatus.FAILED,
        "EC_DEST_ADDRESS_BLACKLISTED",
        "dnd",
        True,
    )


async def test_lookup_prefers_the_original_over_a_refused_duplicate(client: httpx.AsyncClient) -> None:
    entries = (log_entry(rejected("REJECTED_DUPLICATE_MESSAGE_ID", 23)), log_entry(DELIVERED_TO_OPERATOR))
    with ContractServer(logs(*entries)) as server:
        found = await provider(server.url, client).lookup(make_message())

    assert (found.found, found.status) == (True, MessageStatus.SENT)


async def test_lookup_not_found(client: httpx.AsyncClient) -> None:
    other = log_entry(DELIVERED_TO_HANDSET, messageId="someone-else")
    with ContractServer(logs(other)) as server:
        found = await provider(server.url, client).lookup(make_message())

    assert found.found is False and found.status is None


async def test_lookup_with_a_wrong_key_raises(client: httpx.AsyncClient) -> None:
    with ContractServer(logs()) as server, pytest.raises(ProviderError) as caught:
        await provider(server.url, client, api_key=SecretStr("wrong")).lookup(make_message())

    assert (caught.value.code, caught.value.status_code) == ("UNAUTHORIZED", 401)


async def test_lookup_server_error_is_retryable(client: httpx.AsyncClient) -> None:
    answer = Reply(500, service_exception("GENERAL_ERROR", "Something went wrong"))
    with ContractServer(lambda request: answer) as server, pytest.raises(RetryableProviderError):
        await provider(server.url, client).lookup(make_message())


async def test_lookup_unreadable_answer_is_retryable(client: httpx.AsyncClient) -> None:
    with (
        ContractServer(lambda request: Reply(200, {"results": [{"status": "DELIVERED"}]})) as server,
        pytest.raises(RetryableProviderError) as caught,
    ):
        await provider(server.url, client).lookup(make_message())

    assert caught.value.code == "bad_response"
