"""Sinch: WhatsApp through the Sinch India WhatsApp API (legacy version, the former ACL Mobile platform) and
SMS through the Sinch SMS REST API. Send, delivery reports, inbound SMS, status lookup for SMS.

WhatsApp, documented (docs.aclwhatsapp.com, "wa/legacy"; seed 004 for the delivery report):

- Send: ``POST {base_url}/pull-platform-receiver/wa/messages`` with the headers ``user`` and ``pass``
  ("password-based authentication", which Sinch says is to be deprecated in favour of a bearer token) and
  ``{"messages": [{"sender", "to", "messageId", "channel": "wa", "type": "text", "text": {"content"}}],
  "responseType": "json"}``; a template message has ``"type": "template"`` and ``"template": {"templateId",
  "langCode", "body": [{"type": "text", "text"}, ...]}``. Numbers are international without ``+``.
  ``messageId`` is optional, "for identification of message, limit upto 50 characters": sendq sends its own
  message id, and the delivery reports echo it, so it is the ``provider_message_id``.
- ``callbackDlrUrl`` overrides the report URL configured in Sinch's SmartTA console, but "it will only change
  the domain name, other parameters will be same as configured in smartta": the path configured there must be
  ``/v1/receipts/sinch``.
- Answer: ``{"success": true, "responseId": "..."}``; an error is ``{"success": "false", "description":
  [{"errorCode": "24", "errorDescription": "OPTIN BLOCKED"}]}`` (page "Error and Status Codes": codes
  ``invalid_msisdn``, ``24`` OPTIN BLOCKED / OPTOUT BLOCKED, ``message.transcode.failed``).
- Delivery report (seed 004): one JSON object ``{"rqst_ack_id", "del_time", "mobile_no", "messageId",
  "del_status"}``, ``del_status`` one of ``sent``, ``delivered``, ``read``, ``failed``; ``del_desc`` ("Message
  Failure Reason") only on ``failed``. Failure codes: -6 MISSING MOBILE NUMBER AND WA ID, 24 OPTIN BLOCKED,
  26 INVALID ENCRYPTED DATA, 1008 REQUIRED PARAMETER IS MISSING. No further failure codes were found for this
  API (the page's table ends there; Meta's own codes may come through ``del_desc`` and are kept unlisted).
- ``del_time``: the field table says "ISO-8601", but every sample is ``DD/MM/YYYY HH:MM:SS`` without a zone.
  Day first: the sample's first field is ``2X``. The zone is India time: a real report seen in public code,
  ``{"rqst_ack_id": 1678791451543344, "del_time": "14/03/2023 16:27:33", ...}``, has an id that starts with the
  epoch milliseconds 1678791451543 = 10:57:31 UTC, two seconds before 16:27:33 IST. Both forms are read; a
  time without a zone is taken in the ``report_utc_offset`` setting (default ``+05:30``).
- No WhatsApp status query is documented, and no inbound (incoming message) format for this API version.

Guesses (WhatsApp):

- How a failure code appears in a report: the only documented field is ``del_desc``, next to a table of
  "Error Description / Error Code". ``failure_code`` accepts the description alone (``OPTIN BLOCKED``), the
  code alone (``24``), or both (``24 - OPTIN BLOCKED``, ``OPTIN BLOCKED (24)``).
- The HTTP status of an error answer (served here as 400, but ``"success": "false"`` is an error with any
  status). 24 (not opted in, or opted out) suppresses the contact, as an opt-out.
- Template parameters are positional (``{{1}}``, ...): ``message.variables`` must be keyed ``"1"`` to ``"n"``.

SMS, documented (developers.sinch.com, SMS REST API):

- Send: ``POST {sms_base_url}/xms/v1/{service_plan_id}/batches`` with ``Authorization: Bearer {api_token}`` and
  ``{"from", "to": [...], "body", "client_reference", "delivery_report", "callback_url"}``; 201 with the batch
  (``id``). ``client_reference`` is sendq's message id; ``delivery_report`` is ``per_recipient_final``.
  Errors: 400 and 403 carry ``{"code", "text"}`` (``syntax_invalid_json``, ``blocked_account``, ...).
- Delivery report callback: ``{"type": "recipient_delivery_report_sms", "batch_id", "recipient", "code",
  "status", "at", "operator_status_at", "client_reference"}``; statuses Queued, Dispatched (intermediate),
  Aborted, Cancelled, Rejected, Deleted, Delivered, Failed, Expired, Unknown; codes 0 and 400-418.
- Inbound (MO) callback: ``{"type": "mo_text" | "mo_binary" | "mo_media", "id", "from", "to", "body",
  "received_at"}``; ``from`` is an MSISDN, usually without ``+``.
- Lookup: ``GET .../batches?client_reference=&start_date=`` (batches of the last 14 days), then
  ``GET .../batches/{batch_id}/delivery_report/{recipient}`` (404 while there is no report yet).
- Callbacks can be given basic-auth credentials (the account manager sets it up); no signature scheme.

Callbacks of both APIs are verified with basic auth (``webhook_user`` / ``webhook_password``).

Contacts (inbound): ``+`` and digits are read as E.164; digits alone as an international number without its
``+`` (``919812345678`` is ``+919812345678``). A number that is not valid E.164 then (a national number such as
``9812345678``) is refused as a bad webhook rather than guessed.
"""

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from urllib.parse import quote

import httpx

from providers.base import ErrorRule, Inbound, Lookup, Receipt, SendResult, WebhookRequest
from providers.templates import positional_parameters
from providers.transport import check_basic_auth, request, status_error
from sendq.channel import Channel
from sendq.errors import (
    BadWebhook,
    ConfigurationError,
    InvalidInput,
    PermanentProviderError,
    ProviderError,
    RetryableProviderError,
)
from sendq.message import Message
from sendq.provider_settings import SinchSettings
from sendq.recipients import canonical_phone
from sendq.status import MessageStatus

NAME: Final = "sinch"

WHATSAPP_PATH: Final = "/pull-platform-receiver/wa/messages"
SMS_BATCHES_PATH: Final = "/xms/v1/{service_plan_id}/batches"

#: WhatsApp: send-error codes (``description[].errorCode``) and delivery-report failure codes (``del_desc``).
ERRORS: Final[Mapping[str, ErrorRule]] = {
    # Delivery-report failure codes (seed 004).
    "-6": ErrorRule(retryable=False, reason="invalid_recipient"),  # MISSING MOBILE NUMBER AND WA ID
    "24": ErrorRule(retryable=False, suppress=True, reason="opt_out"),  # OPTIN BLOCKED / OPTOUT BLOCKED
    "26": ErrorRule(retryable=False, reason="invalid_request"),  # INVALID ENCRYPTED DATA
    "1008": ErrorRule(retryable=False, reason="invalid_request"),  # REQUIRED PARAMETER IS MISSING
    # Send-error codes ("Error and Status Codes").
    "invalid_msisdn": ErrorRule(retryable=False, reason="invalid_recipient"),
    "message.transcode.failed": ErrorRule(retryable=False, reason="invalid_request"),
}

#: the documented error descriptions, for a ``del_desc`` that names the failure without its code
FAILURE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "MISSING MOBILE NUMBER AND WA ID": "-6",
    "OPTIN BLOCKED": "24",
    "OPTOUT BLOCKED": "24",
    "INVALID ENCRYPTED DATA": "26",
    "REQUIRED PARAMETER IS MISSING": "1008",
    "INVALID MSISDN": "invalid_msisdn",
    "MESSAGE TRANSCODING FAILED": "message.transcode.failed",
}

#: SMS: send-error ``code`` values of 400/403 answers, and delivery-report ``code`` values (custom 4xx codes;
#: 400 Queued and 401 Dispatched are not failures; 414-418 are MMS only).
SMS_ERRORS: Final[Mapping[str, ErrorRule]] = {
    "syntax_invalid_json": ErrorRule(retryable=False, reason="invalid_request"),
    "syntax_invalid_parameter_format": ErrorRule(retryable=False, reason="invalid_request"),
    "syntax_constraint_violation": ErrorRule(retryable=False, reason="invalid_request"),
    "blocked_account": ErrorRule(retryable=False, reason="account_blocked"),
    "illegal_number_type": ErrorRule(retryable=False, reason="invalid_recipient"),
    "402": ErrorRule(retryable=False, reason="unroutable"),  # Message unroutable
    "403": ErrorRule(retryable=True, reason="provider_error"),  # Internal error
    "404": ErrorRule(retryable=True, reason="temporary_failure"),  # Temporary delivery failure
    "405": ErrorRule(retryable=False, reason="invalid_request"),  # Unmatched parameter
    "406": ErrorRule(retryable=True, reason="expired"),  # Internal expiry
    "407": ErrorRule(retryable=False, reason="cancelled"),  # Cancelled
    "408": ErrorRule(retryable=False, reason="rejected"),  # Internal reject
    "410": ErrorRule(retryable=False, reason="invalid_sender"),  # Unmatched default originator
    "411": ErrorRule(retryable=False, reason="too_long"),  # Exceeded parts limit
    "412": ErrorRule(retryable=False, reason="unprovisioned_region"),  # Unprovisioned region
    "413": ErrorRule(retryable=False, reason="account_blocked"),  # Blocked
}

_WHATSAPP_STATUS: Final[Mapping[str, MessageStatus]] = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
#: SMS statuses that make a receipt; Queued and Unknown (no operator receipt came) make none
_SMS_STATUS: Final[Mapping[str, MessageStatus]] = {
    "Dispatched": MessageStatus.SENT,
    "Delivered": MessageStatus.DELIVERED,
    "Aborted": MessageStatus.FAILED,
    "Cancelled": MessageStatus.FAILED,
    "Rejected": MessageStatus.FAILED,
    "Deleted": MessageStatus.FAILED,
    "Failed": MessageStatus.FAILED,
    "Expired": MessageStatus.FAILED,
}
_SMS_REPORT_TYPE: Final = "recipient_delivery_report_sms"
_SMS_INBOUND_TYPES: Final = frozenset({"mo_text", "mo_binary", "mo_media"})
#: the batch list searches batches created from this long before the message's send time
_LOOKUP_MARGIN: Final = timedelta(minutes=10)

# "24", "-6: MISSING ...", "24 - OPTIN BLOCKED": the code first; "OPTIN BLOCKED (24)": the code last.
_LEADING_CODE: Final = re.compile(r"(-?\d+)(?:\s*[-:|,]\s*|\s+|$)(.*)")
_TRAILING_CODE: Final = re.compile(r"(.*?)\s*[(\[](-?\d+)[)\]]")
_REPORT_TIME_FORMAT: Final = "%d/%m/%Y %H:%M:%S"


# --- request building ---------------------------------------------------------------------------------------


def whatsapp_payload(
    message: Message, *, sender: str | None, language: str, callback_url: str | None = None
) -> dict[str, Any]:
    """The JSON body of a WhatsApp send; ``messageId`` is sendq's message id (the reports carry it back).

    Raises:
        PermanentProviderError: no sender configured (``sender_missing``), or bad template variables.
    """
    if not sender:
        raise PermanentProviderError(
            "no WhatsApp sender: set SENDQ_SINCH__SENDER or the route's sender", provider=NAME, code="sender_missing"
        )
    item: dict[str, Any] = {
        "sender": sender.removeprefix("+"),
        "to": message.to.removeprefix("+"),
        "messageId": message.id,
        "channel": "wa",
    }
    if message.template is not None:
        body = [{"type": "text", "text": value} for value in positional_parameters(message.variables, provider=NAME)]
        item["type"] = "template"
        item["template"] = {"templateId": message.template, "langCode": language, "body": body}
    else:
        item["type"] = "text"
        item["text"] = {"content": message.body or ""}
    if callback_url:
        item["callbackDlrUrl"] = callback_url
    return {"messages": [item], "responseType": "json"}


def sms_payload(message: Message, *, sender: str | None, callback_url: str | None = None) -> dict[str, Any]:
    """The JSON body of a Sinch SMS batch of one; ``client_reference`` is sendq's message id, for ``lookup``.

    Raises:
        PermanentProviderError: a template message (``template_unsupported``): SMS sends a body only.
    """
    if message.template is not None:
        raise PermanentProviderError(
            "Sinch SMS has no approved templates: send a body", provider=NAME, code="template_unsupported"
        )
    body: dict[str, Any] = {
        "to": [message.to],
        "body": message.body or "",
        "client_reference": message.id,
        # Final statuses only: the intermediate ones make no receipt.
        "delivery_report": "per_recipient_final",
    }
    if sender:  # without one, Sinch uses the service plan's default originator
        body["from"] = sender
    if callback_url:
        body["callback_url"] = callback_url
    return body


# --- response parsing ---------------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: httpx.Response, table: Mapping[str, ErrorRule], code: str | None, text: str) -> ProviderError:
    rule = table.get(code) if code is not None else None
    if rule is None:
        return status_error(response, NAME, code, text)
    cls = RetryableProviderError if rule.retryable else PermanentProviderError
    return cls(
        text, provider=NAME, code=code, status_code=response.status_code, suppress=rule.suppress, reason=rule.reason
    )


def whatsapp_error(response: httpx.Response) -> ProviderError:
    """The error in a WhatsApp answer: ``description[0].errorCode`` looked up in ``ERRORS``, else by status."""
    body = _json(response)
    code = text = None
    if isinstance(body, dict) and isinstance(body.get("description"), list) and body["description"]:
        first = body["description"][0]
        if isinstance(first, dict):
            raw_code = first.get("errorCode")
            code = str(raw_code) if isinstance(raw_code, str | int) and not isinstance(raw_code, bool) else None
            text = str(first.get("errorDescription") or "")[:300] or None
    return _error(response, ERRORS, code, text or response.text[:300] or response.reason_phrase)


def whatsapp_result(response: httpx.Response, message_id: str) -> SendResult:
    """2xx with ``"success": true``: accepted, under sendq's ``messageId``; anything else raises."""
    body = _json(response)
    success = body.get("success") if isinstance(body, dict) else None
    if 200 <= response.status_code < 300 and success in (True, "true"):
        return SendResult(message_id)
    if 200 <= response.status_code < 300 and success is None:
        # Accepted or not, we cannot tell; there is no status query to ask later.
        raise RetryableProviderError(
            "2xx without a success flag",
            provider=NAME,
            code="bad_response",
            status_code=response.status_code,
            ambiguous=True,
        )
    raise whatsapp_error(response)


def sms_error(response: httpx.Response) -> ProviderError:
    """The error in an SMS answer: its ``code`` looked up in ``SMS_ERRORS``, else by HTTP status."""
    body = _json(response)
    code = text = None
    if isinstance(body, dict):
        code = body["code"] if isinstance(body.get("code"), str) else None
        text = str(body.get("text") or "")[:300] or None
    return _error(response, SMS_ERRORS, code, text or response.text[:300] or response.reason_phrase)


def sms_result(response: httpx.Response) -> SendResult:
    """2xx with the batch's ``id``: accepted under that id; anything else raises a ``ProviderError``."""
    if not 200 <= response.status_code < 300:
        raise sms_error(response)
    body = _json(response)
    batch_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(batch_id, str) or not batch_id:
        # Accepted under an id we cannot read: the lookup by client_reference settles what happened.
        raise RetryableProviderError(
            "2xx without a batch id",
            provider=NAME,
            code="bad_response",
            status_code=response.status_code,
            ambiguous=True,
        )
    return SendResult(batch_id)


# --- webhooks -----------------------------------------------------------------------------------------------


def failure_code(del_desc: object) -> tuple[str | None, str | None]:
    """The failure code and description in a WhatsApp report's ``del_desc`` (either may be None).

    Accepts a code (``24``), a documented description (``OPTIN BLOCKED``) or both (``24 - OPTIN BLOCKED``,
    ``OPTIN BLOCKED (24)``); an undocumented text is returned as the description with no code.
    """
    if del_desc is None:
        return None, None
    if isinstance(del_desc, int) and not isinstance(del_desc, bool):
        return str(del_desc), None
    if not isinstance(del_desc, str):
        raise BadWebhook("Sinch report's del_desc is not text")
    text = " ".join(del_desc.split())[:200]
    if not text:
        return None, None
    if leading := _LEADING_CODE.fullmatch(text):
        return leading[1], leading[2] or None
    if trailing := _TRAILING_CODE.fullmatch(text):
        return trailing[2], trailing[1] or None
    upper = text.upper()
    code = FAILURE_DESCRIPTIONS.get(upper)
    if code is None:
        # A documented description inside a longer text ("Message failed: OPTIN BLOCKED").
        code = next((c for d, c in FAILURE_DESCRIPTIONS.items() if d in upper), None)
    return code, text


def report_time(value: object, local: tzinfo) -> datetime | None:
    """``del_time`` as aware UTC: ``DD/MM/YYYY HH:MM:SS`` or ISO 8601, zone-less times in ``local``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadWebhook("Sinch report's del_time is not text")
    try:
        when = datetime.strptime(value.strip(), _REPORT_TIME_FORMAT)
    except ValueError:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadWebhook(f"Sinch report has a bad del_time: {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=local)
    return when.astimezone(UTC)


def _iso_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise BadWebhook(f"Sinch {what} is missing")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadWebhook(f"Sinch {what} is not ISO 8601: {value[:40]!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def whatsapp_receipts(report: Mapping[str, Any], local: tzinfo) -> list[Receipt]:
    """The receipt in one WhatsApp delivery report (seed 004); an undocumented ``del_status`` makes none."""
    raw_status = report.get("del_status")
    if not isinstance(raw_status, str):
        raise BadWebhook("Sinch WhatsApp report has no del_status")
    status = _WHATSAPP_STATUS.get(raw_status.strip().lower())
    if status is None:
        return []
    message_id = report.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise BadWebhook("Sinch WhatsApp report has no messageId")
    code = reason = None
    suppress = False
    if status is MessageStatus.FAILED:
        code, description = failure_code(report.get("del_desc"))
        rule = ERRORS.get(code) if code is not None else None
        reason = rule.reason if rule else description
        suppress = rule.suppress if rule else False
    return [
        Receipt(
            provider_message_id=message_id,
            status=status,
            at=report_time(report.get("del_time"), local),
            code=code,
            reason=reason,
            suppress=suppress,
        )
    ]


def _sms_outcome(report: Mapping[str, Any]) -> tuple[MessageStatus | None, str | None, str | None, bool]:
    """(status, code, reason, suppress) of an SMS recipient delivery report."""
    raw_status = report.get("status")
    if not isinstance(raw_status, str):
        raise BadWebhook("Sinch SMS delivery report has no status")
    status = _SMS_STATUS.get(raw_status)
    if status is not MessageStatus.FAILED:
        return status, None, None, False
    raw_code = report.get("code")
    code = str(raw_code) if isinstance(raw_code, int | str) and not isinstance(raw_code, bool) else None
    rule = SMS_ERRORS.get(code) if code is not None else None
    return status, code, rule.reason if rule else raw_status.lower(), rule.suppress if rule else False


def sms_receipts(report: Mapping[str, Any]) -> list[Receipt]:
    """The receipt in one SMS recipient delivery report (none for Queued and Unknown)."""
    batch_id = report.get("batch_id")
    if not isinstance(batch_id, str) or not batch_id:
        raise BadWebhook("Sinch SMS delivery report has no batch_id")
    status, code, reason, suppress = _sms_outcome(report)
    if status is None:
        return []
    # When the operator reported the status, else when Sinch made the report.
    at = _iso_time(report.get("operator_status_at") or report.get("at"), "SMS delivery report time")
    return [Receipt(batch_id, status, at=at, code=code, reason=reason, suppress=suppress)]


def contact(raw: object) -> str:
    """An inbound sender as E.164: ``+`` and digits as is, digits alone with a ``+`` put in front."""
    if not isinstance(raw, str):
        raise BadWebhook("Sinch inbound message has no sender number")
    value = raw.strip()
    if value.isascii() and value.isdigit():
        value = "+" + value
    try:
        return canonical_phone(value)
    except InvalidInput as exc:
        raise BadWebhook(f"Sinch inbound sender {exc.reason}") from None


def sms_inbound(event: Mapping[str, Any]) -> list[Inbound]:
    """The message in one Sinch SMS inbound (MO) callback."""
    to = event.get("to")
    message_id = event.get("id")
    return [
        Inbound(
            contact=contact(event.get("from")),
            channel=Channel.SMS,
            to=to if isinstance(to, str) else None,
            at=_iso_time(event.get("received_at"), "inbound received_at"),
            provider_message_id=message_id if isinstance(message_id, str) else None,
        )
    ]


def _callback(request: WebhookRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except ValueError:
        raise BadWebhook("Sinch callback body is not JSON") from None
    if not isinstance(body, dict):
        raise BadWebhook("Sinch callback is not a JSON object")
    return body


def _is_whatsapp_report(body: Mapping[str, Any]) -> bool:
    return "del_status" in body


# --- status lookup ------------------------------------------------------------------------------------------


def lookup_of(batch_id: str, report: Mapping[str, Any] | None) -> Lookup:
    """A found SMS batch, with its recipient's delivery report when there is one (else: accepted, SENT)."""
    if report is None:
        return Lookup(found=True, provider_message_id=batch_id, status=MessageStatus.SENT)
    status, code, reason, suppress = _sms_outcome(report)
    raw_at = report.get("operator_status_at") or report.get("at")
    return Lookup(
        found=True,
        provider_message_id=batch_id,
        status=status or MessageStatus.SENT,
        at=_iso_time(raw_at, "delivery report time") if raw_at else None,
        code=code,
        reason=reason,
        suppress=suppress,
    )


# --- the adapter --------------------------------------------------------------------------------------------


def _utc_offset(value: str) -> tzinfo:
    try:
        zone = datetime.strptime(value, "%z").tzinfo  # "+05:30"
    except ValueError:
        zone = None
    if zone is None:
        raise ConfigurationError(f"SENDQ_SINCH__REPORT_UTC_OFFSET must be a UTC offset such as +05:30, not {value!r}")
    return zone


class SinchProvider:
    """Sinch WhatsApp (Sinch India API) and SMS (Sinch SMS REST API) with a shared ``httpx.AsyncClient``.

    Either channel may be configured alone; at least one must be. ``lookup`` answers for SMS only: the WhatsApp
    API has no status query, so for a WhatsApp message it raises a permanent ``lookup_unsupported`` error
    (the outcome stays unknown).
    """

    name = NAME
    supports_idempotency = False

    def __init__(
        self,
        settings: SinchSettings,
        client: httpx.AsyncClient,
        *,
        public_url: str | None = None,
        sender: str | None = None,
    ) -> None:
        password = settings.whatsapp_password.get_secret_value() if settings.whatsapp_password else ""
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        if bool(settings.whatsapp_user) != bool(password):
            raise ConfigurationError(
                "Sinch WhatsApp needs both SENDQ_SINCH__WHATSAPP_USER and SENDQ_SINCH__WHATSAPP_PASSWORD"
            )
        if bool(token) != bool(settings.service_plan_id):
            raise ConfigurationError("Sinch SMS needs both SENDQ_SINCH__API_TOKEN and SENDQ_SINCH__SERVICE_PLAN_ID")
        if not password and not token:
            raise ConfigurationError(
                "Sinch needs credentials: set SENDQ_SINCH__WHATSAPP_USER and SENDQ_SINCH__WHATSAPP_PASSWORD "
                "(WhatsApp) and/or SENDQ_SINCH__API_TOKEN and SENDQ_SINCH__SERVICE_PLAN_ID (SMS)"
            )
        self.settings = settings
        self.client = client
        self.sender = sender or settings.sender
        self.callback_url = f"{public_url.rstrip('/')}/v1/receipts/{NAME}" if public_url else None
        self.report_zone = _utc_offset(settings.report_utc_offset)
        self._whatsapp_headers = {"user": settings.whatsapp_user or "", "pass": password} if password else None
        self._sms_headers = {"Authorization": f"Bearer {token}"} if token else None
        self._batches = settings.sms_base_url.rstrip("/") + SMS_BATCHES_PATH.format(
            service_plan_id=quote(settings.service_plan_id or "", safe="")
        )

    def _not_configured(self, channel: Channel) -> PermanentProviderError:
        needs = {
            Channel.WHATSAPP: "SENDQ_SINCH__WHATSAPP_USER and SENDQ_SINCH__WHATSAPP_PASSWORD",
            Channel.SMS: "SENDQ_SINCH__API_TOKEN and SENDQ_SINCH__SERVICE_PLAN_ID",
        }.get(channel)
        detail = f"Sinch {channel.value} is not configured: set {needs}" if needs else f"Sinch cannot send {channel}"
        return PermanentProviderError(detail, provider=NAME, code="channel_unsupported")

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        # idempotency_key is not sent: neither API documents deduplication.
        if message.channel is Channel.WHATSAPP and self._whatsapp_headers is not None:
            body = whatsapp_payload(
                message, sender=self.sender, language=self.settings.template_language, callback_url=self.callback_url
            )
            url = self.settings.base_url.rstrip("/") + WHATSAPP_PATH
            response = await self._post(url, body, self._whatsapp_headers)
            return whatsapp_result(response, message.id)
        if message.channel is Channel.SMS and self._sms_headers is not None:
            body = sms_payload(message, sender=self.sender, callback_url=self.callback_url)
            return sms_result(await self._post(self._batches, body, self._sms_headers))
        raise self._not_configured(message.channel)

    async def _post(self, url: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> httpx.Response:
        return await request(
            self.client, NAME, "POST", url, json=body, headers=headers, timeout=self.settings.timeout_s
        )

    async def aclose(self) -> None:
        return None

    def verify(self, request: WebhookRequest) -> None:
        check_basic_auth(request, self.settings)

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        body = _callback(request)
        if _is_whatsapp_report(body):
            return whatsapp_receipts(body, self.report_zone)
        kind = body.get("type")
        if kind == _SMS_REPORT_TYPE:
            return sms_receipts(body)
        if isinstance(kind, str) and (kind.startswith("delivery_report_") or kind in _SMS_INBOUND_TYPES):
            return []  # a batch summary (not requested) or an inbound message on the same URL
        raise BadWebhook("Sinch callback is neither a WhatsApp nor an SMS delivery report")

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        body = _callback(request)
        kind = body.get("type")
        if kind in _SMS_INBOUND_TYPES:
            return sms_inbound(body)
        if _is_whatsapp_report(body) or kind == _SMS_REPORT_TYPE:
            return []  # a delivery report on the inbound URL
        raise BadWebhook("Sinch callback is not an inbound SMS (no WhatsApp inbound format is documented)")

    async def lookup(self, message: Message) -> Lookup:
        """SMS: the batch with ``client_reference`` = sendq's message id, and its recipient's delivery report."""
        if message.channel is not Channel.SMS or self._sms_headers is None:
            raise PermanentProviderError(
                f"Sinch has no status query for {message.channel.value} messages",
                provider=NAME,
                code="lookup_unsupported",
                reason="unknown_outcome",
                ambiguous=True,
            )
        since = (message.send_at or message.created_at) - _LOOKUP_MARGIN
        params = {
            "client_reference": message.id,
            "start_date": since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        batch_id = await self._batch_id(params)
        if batch_id is None:
            return Lookup(found=False)
        report = await self._recipient_report(batch_id, message.to)
        try:
            return lookup_of(batch_id, report)
        except BadWebhook:  # a report we cannot read: the batch was found, so it was accepted
            return lookup_of(batch_id, None)

    async def _get(self, url: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        assert self._sms_headers is not None
        return await request(
            self.client, NAME, "GET", url, params=params, headers=self._sms_headers, timeout=self.settings.timeout_s
        )

    async def _batch_id(self, params: Mapping[str, str]) -> str | None:
        response = await self._get(self._batches, params)
        if not 200 <= response.status_code < 300:
            raise sms_error(response)
        body = _json(response)
        batches = body.get("batches") if isinstance(body, dict) else None
        if not isinstance(batches, list):
            raise RetryableProviderError(
                "batch list without batches", provider=NAME, code="bad_response", status_code=response.status_code
            )
        for batch in batches:
            if isinstance(batch, dict) and isinstance(batch.get("id"), str) and batch["id"]:
                return str(batch["id"])
        return None

    async def _recipient_report(self, batch_id: str, recipient: str) -> Mapping[str, Any] | None:
        """The recipient's delivery report; None while there is none (404) or it cannot be read now."""
        url = f"{self._batches}/{quote(batch_id, safe='')}/delivery_report/{quote(recipient, safe='')}"
        try:
            response = await self._get(url)
        except ProviderError:
            return None  # the batch was found: accepted is already the answer
        body = _json(response)
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            return None
        return body
