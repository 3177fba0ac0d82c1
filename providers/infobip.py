"""InfobipProvider: SMS through Infobip's ``POST /sms/2/text/advanced``, its delivery reports, inbound SMS and
the SMS logs as a status query.

Documented (Infobip API reference and the official SDKs ``infobip-api-python-client`` / ``-csharp-client``):

- Send: ``POST {base_url}/sms/2/text/advanced`` with ``Authorization: App {api_key}`` and
  ``{"messages": [{"destinations": [{"to", "messageId"}], "from", "text", "notifyUrl", "notifyContentType",
  "callbackData", "validityPeriod"}]}``. ``to`` is the international number without ``+``; ``messageId`` is
  set by the client (we send sendq's message id, so receipts and logs carry it); ``from`` is optional;
  ``validityPeriod`` is in **minutes**, "longer than 48h is not supported" (larger values fall back to 2880);
  ``callbackData`` is at most 4000 characters and is echoed in delivery reports.
- 200 answer: ``{"bulkId", "messages": [{"to", "status": {groupId, groupName, id, name, description},
  "messageId"}]}``. Status groups: 1 PENDING, 2 UNDELIVERABLE, 3 DELIVERED, 4 EXPIRED, 5 REJECTED; the send
  answer is acceptance only, except that a REJECTED status means nothing was sent.
- Errors: ``{"requestError": {"serviceException": {"messageId": "BAD_REQUEST" | "UNAUTHORIZED" |
  "TOO_MANY_REQUESTS", "text", "validationErrors"?}}}`` with HTTP 400 / 401 / 429.
- Delivery reports (``notifyUrl``, JSON): ``{"results": [{"bulkId", "messageId", "to", "sentAt", "doneAt",
  "smsCount", "price", "status", "error": {groupId, groupName, id, name, description, permanent},
  "callbackData"}]}``, timestamps like ``2019-11-09T16:00:00.000+0100``. ``DELIVERED_TO_OPERATOR`` is an
  intermediate success, ``DELIVERED_TO_HANDSET`` the final one. Failed reports are retried by Infobip
  (``1min + 1min * retryNumber²``), so a non-2xx answer is not lost.
- Inbound SMS (forwarding webhook): ``{"results": [{"messageId", "from", "to", "text", "cleanText", "keyword",
  "receivedAt", "smsCount", "price", "callbackData"}], "messageCount", "pendingMessageCount"}``.
- Status query: ``GET {base_url}/sms/3/logs?messageId=...`` (logs of the last 48 hours), ``{"results": [...]}``
  with the same ``status`` / ``error`` objects, ``destination``, ``sentAt``, ``doneAt``.
- Status names and GSM error names, ids and ``permanent`` flags: Infobip's "Response status and error codes"
  page (read through copies: the page itself is longer than the excerpts available here).
- Webhook security: Infobip's subscription notification profiles support BASIC auth (``BasicSecurityConfig``)
  and HMAC; only basic auth is verified here (the HMAC header and algorithm were not found documented).

Guesses, marked as such:

- Whether Infobip sends basic-auth credentials written into a per-message ``notifyUrl``
  (``https://user:pass@host``, i.e. ``SENDQ_PUBLIC_URL`` with userinfo) is not documented; the documented way is
  the subscription's notification profile.
- Status id 14 is named ``REJECTED_DESTINATION`` (blocklisted destination) in older copies of the status table
  and ``REJECTED_DESTINATION_BLOCKLISTED`` in current answers, while id 52 ``REJECTED_DESTINATION`` is an invalid
  number; the id tells them apart.
- ``REJECTED_DUPLICATE_MESSAGE_ID`` is documented ("duplicate message ID specified in the submit request"),
  but not whether it applies across requests. A send rejected for it is read as "Infobip already has this
  message id" (a repeat); a delivery report with it describes the refused duplicate, not the original, and is
  dropped. Since cross-request deduplication is not documented, ``supports_idempotency`` stays False.
- Numeric senders are written without ``+`` as in the docs' examples.
- Retryable vs permanent for credits (``REJECTED_NOT_ENOUGH_CREDITS``: a top-up fixes it), auth failures and
  ``REJECTED_NOT_REACHABLE`` is sendq's policy, not Infobip's statement.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from providers.base import ErrorRule, Inbound, Lookup, Receipt, SendResult, WebhookRequest
from providers.transport import check_basic_auth, parse_retry_after, request, status_error
from sendq.channel import Channel
from sendq.errors import (
    BadWebhook,
    ConfigurationError,
    InvalidInput,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
)
from sendq.message import Message, utcnow
from sendq.provider_settings import InfobipSettings
from sendq.recipients import canonical_recipient
from sendq.status import MessageStatus

NAME: Final = "infobip"

SEND_PATH: Final = "/sms/2/text/advanced"
LOGS_PATH: Final = "/sms/3/logs"
#: "Validity period longer than 48h is not supported" (minutes)
MAX_VALIDITY_MINUTES: Final = 48 * 60

#: status group ids
PENDING, UNDELIVERABLE, DELIVERED, EXPIRED, REJECTED = 1, 2, 3, 4, 5
_GROUP_IDS: Final = {
    "PENDING": PENDING,
    "UNDELIVERABLE": UNDELIVERABLE,
    "DELIVERED": DELIVERED,
    "EXPIRED": EXPIRED,
    "REJECTED": REJECTED,
}
_FAILED_GROUPS: Final = frozenset({UNDELIVERABLE, EXPIRED, REJECTED})
_DELIVERED_TO_HANDSET: Final = "DELIVERED_TO_HANDSET"
_DUPLICATE: Final = "REJECTED_DUPLICATE_MESSAGE_ID"

_PERMANENT = ErrorRule(retryable=False)
_INVALID = ErrorRule(retryable=False, reason="invalid_recipient")
_ABSENT = ErrorRule(retryable=True, reason="absent_subscriber")
_NETWORK = ErrorRule(retryable=True, reason="network_error")
_NO_CREDIT = ErrorRule(retryable=True, reason="insufficient_credit")
_FLOODING = ErrorRule(retryable=False, reason="flooding_filter")
_SENDER_BLOCKED = ErrorRule(retryable=False, reason="sender_blocked")
_EXPIRED = ErrorRule(retryable=False, reason="expired")

#: Infobip's codes: ``serviceException.messageId`` of HTTP errors, REJECTED status names (send answer, reports,
#: logs) and GSM error names (reports, logs). Error rows follow the documented ``permanent`` flag; codes not
#: listed fall back to that flag (reports) or to the HTTP status (``status_error``).
ERRORS: Final[Mapping[str, ErrorRule]] = {
    # HTTP errors (requestError.serviceException.messageId)
    "BAD_REQUEST": ErrorRule(retryable=False, reason="bad_request"),
    # a wrong key says nothing about the message: keep it until the operator fixes the configuration
    "UNAUTHORIZED": ErrorRule(retryable=True, reason="auth_failed"),
    "TOO_MANY_REQUESTS": ErrorRule(retryable=True, reason="rate_limited"),
    # REJECTED status group (5): nothing was sent
    "REJECTED_NETWORK": ErrorRule(retryable=False, reason="network_not_covered"),
    "REJECTED_PREFIX_MISSING": _INVALID,
    "REJECTED_DND": ErrorRule(retryable=False, suppress=True, reason="dnd"),
    "REJECTED_SOURCE": ErrorRule(retryable=False, reason="sender_not_registered"),
    "REJECTED_NOT_ENOUGH_CREDITS": _NO_CREDIT,
    "REJECTED_SENDER": _SENDER_BLOCKED,
    "REJECTED_DESTINATION_BLOCKLISTED": ErrorRule(retryable=False, suppress=True, reason="blocklisted"),
    "REJECTED_DESTINATION": _INVALID,
    "REJECTED_NOT_REACHABLE": ErrorRule(retryable=True, reason="network_unreachable"),
    "REJECTED_PREPAID_PACKAGE_EXPIRED": _NO_CREDIT,
    "REJECTED_DESTINATION_NOT_REGISTERED": ErrorRule(retryable=False, reason="destination_not_registered"),
    "REJECTED_ROUTE_NOT_AVAILABLE": ErrorRule(retryable=False, reason="route_not_available"),
    "REJECTED_FLOODING_FILTER": _FLOODING,
    "REJECTED_SYSTEM_ERROR": ErrorRule(retryable=True, reason="provider_error"),
    "REJECTED_INVALID_UDH": ErrorRule(retryable=False, reason="invalid_content"),
    "REJECTED_MESSAGE_TOO_LONG": ErrorRule(retryable=False, reason="message_too_long"),
    "MISSING_TO": _INVALID,
    # GSM errors, HANDSET_ERRORS (1)
    "EC_UNKNOWN_SUBSCRIBER": _INVALID,
    "EC_ILLEGAL_SUBSCRIBER": _INVALID,
    "EC_TELESERVICE_NOT_PROVISIONED": ErrorRule(retryable=False, reason="service_not_provisioned"),
    "EC_ILLEGAL_EQUIPMENT": ErrorRule(retryable=False, reason="illegal_equipment"),
    "EC_UNIDENTIFIED_SUBSCRIBER": _ABSENT,
    "EC_ABSENT_SUBSCRIBER_SM": _ABSENT,
    "EC_ABSENT_SUBSCRIBER": _ABSENT,
    "EC_ROAMING_NOT_ALLOWED": ErrorRule(retryable=True, reason="roaming"),
    # set by the operator or the subscriber, but documented as not permanent: no suppression
    "EC_CALL_BARRED": ErrorRule(retryable=True, reason="barred"),
    "EC_SUBSCRIBER_BUSY_FOR_MT_SMS": ErrorRule(retryable=True, reason="subscriber_busy"),
    "EC_SM_DF_MEMORYCAPACITYEXCEEDED": ErrorRule(retryable=True, reason="handset_memory_full"),
    "EC_SYSTEM_FAILURE": _NETWORK,
    # GSM errors, USER_ERRORS (2)
    "EC_IMSI_BLACKLISTED": ErrorRule(retryable=False, reason="blocklisted_device"),
    "EC_BLACKLISTED_DESTINATIONADDRESS": ErrorRule(retryable=False, suppress=True, reason="blocklisted"),
    "EC_BLACKLISTED_SENDERADDRESS": _SENDER_BLOCKED,
    "EC_CONTENT_BLOCKED": ErrorRule(retryable=False, suppress=True, reason="opt_out"),
    "EC_REJECTED_SPAM_BY_OPERATOR": ErrorRule(retryable=False, reason="spam_filtered"),
    "EC_INVALID_DESTINATION_ADDRESS": _INVALID,
    "EC_DEACTIVATED_LIST": ErrorRule(retryable=False, reason="deactivated_number"),
    "EC_MESSAGE_CANCELED": _EXPIRED,
    "EC_VALIDITYEXPIRED": _EXPIRED,
    "EC_DESTINATION_FLOODING": _FLOODING,
    "EC_DESTINATION_TXT_FLOODING": _FLOODING,
    # GSM errors, OPERATOR_ERRORS (3)
    "EC_DEST_ADDRESS_BLACKLISTED": ErrorRule(retryable=False, suppress=True, reason="dnd"),
    "EC_TIME_OUT": _NETWORK,
}


class _Malformed(ValueError):
    """A body that is not in Infobip's documented shape (turned into BadWebhook or a ProviderError)."""


def validity_minutes(message: Message, now: datetime) -> int:
    """Whole minutes left until ``valid_until`` (never past it), between 1 and Infobip's 48-hour maximum."""
    minutes = math.floor((message.valid_until - now).total_seconds() / 60)
    return max(1, min(minutes, MAX_VALIDITY_MINUTES))


def payload(
    message: Message, *, sender: str | None, notify_url: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body of ``POST /sms/2/text/advanced`` for one SMS.

    Raises:
        PermanentProviderError: not an SMS, or a template (Infobip SMS has no templates).
    """
    if message.channel is not Channel.SMS:
        raise PermanentProviderError(
            f"infobip sends sms only, not {message.channel}", provider=NAME, code="channel_unsupported"
        )
    if message.body is None:
        raise PermanentProviderError(
            "infobip sms needs a body, not a template", provider=NAME, code="template_unsupported"
        )
    entry: dict[str, Any] = {
        "destinations": [{"to": message.to.removeprefix("+"), "messageId": message.id}],
        "text": message.body,
        # shown in Infobip's own logs and reports, so operators there can tell which subaccount sent it
        "callbackData": message.subaccount,
        "validityPeriod": validity_minutes(message, now or utcnow()),
    }
    if sender:
        entry["from"] = sender.removeprefix("+")
    if notify_url:
        entry["notifyUrl"] = notify_url
        entry["notifyContentType"] = "application/json"
    return {"messages": [entry]}


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Malformed(f"{what} is not an object")
    return value


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and value != "" else None


def _group(status: Mapping[str, Any]) -> int | None:
    group_id = status.get("groupId")
    if isinstance(group_id, int) and not isinstance(group_id, bool):
        return group_id
    name = status.get("groupName")
    return _GROUP_IDS.get(name.upper()) if isinstance(name, str) else None


def _status_code(status: Mapping[str, Any]) -> str | None:
    if _group(status) == REJECTED and status.get("id") == 14:
        return "REJECTED_DESTINATION_BLOCKLISTED"  # id 14 also went by REJECTED_DESTINATION (see module doc)
    return _text(status.get("name"))


def _error_code(error: Mapping[str, Any] | None) -> str | None:
    """The GSM error's name, unless it is the "no error" entry (group OK, id 0) reports carry on success too."""
    if error is None or error.get("id") == 0:
        return None
    name = _text(error.get("name"))
    return None if name == "NO_ERROR" else name


def classify(status: Mapping[str, Any], error: Mapping[str, Any] | None) -> tuple[str | None, ErrorRule]:
    """The code of a failed message (the GSM error when there is one, else the status) and its rule.

    A code the table does not list takes the error's documented ``permanent`` flag; without one it is permanent.
    """
    error_code = _error_code(error)
    status_code = _status_code(status)
    for code in (error_code, status_code):
        if code is not None and code in ERRORS:
            return code, ERRORS[code]
    permanent = error.get("permanent") if error is not None else None
    rule = ErrorRule(retryable=not permanent) if isinstance(permanent, bool) else _PERMANENT
    return error_code or status_code, rule


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A status object mapped: None while pending (or for a refused duplicate submission)."""

    status: MessageStatus | None
    code: str | None = None
    reason: str | None = None
    suppress: bool = False


def _outcome(entry: Mapping[str, Any]) -> _Outcome:
    status = _obj(entry.get("status"), "status")
    error = entry.get("error")
    if error is not None:
        error = _obj(error, "error")
    group = _group(status)
    if group == DELIVERED:
        # DELIVERED_TO_OPERATOR (and any other member) is not proof of delivery
        return _Outcome(MessageStatus.DELIVERED if status.get("name") == _DELIVERED_TO_HANDSET else MessageStatus.SENT)
    if group not in _FAILED_GROUPS or status.get("name") == _DUPLICATE:
        return _Outcome(None)
    code, rule = classify(status, error)
    described = error if error is not None and _error_code(error) is not None else status
    return _Outcome(MessageStatus.FAILED, code, rule.reason or _text(described.get("description")), rule.suppress)


def parse_time(value: Any) -> datetime | None:
    """Infobip's timestamp (``2019-11-09T16:00:00.000+0100``) as aware UTC; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed("timestamp is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Malformed(f"unreadable timestamp {value[:40]!r}") from None
    if parsed.tzinfo is None:  # Infobip always writes an offset; read a bare time as UTC rather than local
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _results(body: Any) -> list[Mapping[str, Any]]:
    results = _obj(body, "body").get("results")
    if not isinstance(results, list):
        raise _Malformed("results is not a list")
    return [_obj(item, "result") for item in results]


def _webhook_results(request: WebhookRequest) -> list[Mapping[str, Any]]:
    # notifyContentType asks for JSON; an XML report (the other documented choice) is not ours
    if request.content_type not in ("", "application/json"):
        raise BadWebhook(f"infobip callbacks are JSON, not {request.content_type}")
    try:
        return _results(json.loads(request.body))
    except (ValueError, UnicodeDecodeError) as exc:  # _Malformed and JSONDecodeError are ValueErrors
        raise BadWebhook(f"not an infobip callback: {exc}") from None


def _number(value: Any) -> str:
    """An MO ``from`` / ``to`` (international digits, no ``+``) as E.164 when it is a valid number, else as given."""
    raw = _text(value)
    if raw is None:
        raise _Malformed("number missing")
    try:
        return canonical_recipient(Channel.SMS, raw if raw.startswith("+") else f"+{raw}")
    except InvalidInput:
        return raw  # a short code or a sender name


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    try:
        exception = response.json()["requestError"]["serviceException"]
        return _text(exception.get("messageId")), str(exception.get("text") or response.reason_phrase)[:300]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, response.text[:300] or response.reason_phrase


def http_error(response: httpx.Response) -> ProviderError:
    """The error for a non-2xx answer: its ``serviceException.messageId`` through ``ERRORS``, else by HTTP status."""
    code, text = _error_fields(response)
    rule = ERRORS.get(code) if code is not None else None
    status = response.status_code
    if status == 429 or (rule is not None and rule.reason == "rate_limited"):
        return RateLimited(
            text,
            provider=NAME,
            code=code or "rate_limited",
            status_code=status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            reason="rate_limited",
        )
    if rule is None:
        return status_error(response, NAME, code, text)
    kind = RetryableProviderError if rule.retryable else PermanentProviderError
    return kind(text, provider=NAME, code=code, status_code=status, suppress=rule.suppress, reason=rule.reason)


class InfobipProvider:
    """Sends SMS through Infobip with a shared ``httpx.AsyncClient``; parses its callbacks; looks messages up."""

    name = NAME
    #: a repeated messageId is not documented as deduplicated across requests (see the module doc)
    supports_idempotency = False

    def __init__(
        self,
        settings: InfobipSettings,
        client: httpx.AsyncClient,
        *,
        public_url: str | None = None,
        sender: str | None = None,
    ) -> None:
        if settings.api_key is None or not settings.api_key.get_secret_value():
            raise ConfigurationError("SENDQ_INFOBIP__API_KEY is required for the infobip provider")
        self.settings = settings
        self.client = client
        self.sender = sender or settings.sender
        self.notify_url = f"{public_url.rstrip('/')}/v1/receipts/{NAME}" if public_url else None
        self._base = settings.base_url.rstrip("/")
        self._headers = {
            "Authorization": f"App {settings.api_key.get_secret_value()}",
            "Accept": "application/json",
        }

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        # Infobip has no idempotency key: the client-set messageId (sendq's id) is what identifies the message
        body = payload(message, sender=self.sender, notify_url=self.notify_url)
        response = await request(
            self.client,
            NAME,
            "POST",
            self._base + SEND_PATH,
            json=body,
            headers=self._headers,
            timeout=self.settings.timeout_s,
        )
        if not 200 <= response.status_code < 300:
            raise http_error(response)
        try:
            entry = _obj(response.json()["messages"][0], "message")
            status = _obj(entry.get("status"), "status")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # Accepted or not, we cannot tell: the next attempt sends the same messageId again.
            raise RetryableProviderError(
                "2xx without a message status",
                provider=NAME,
                code="bad_response",
                status_code=response.status_code,
                ambiguous=True,
            ) from exc
        provider_id = _text(entry.get("messageId")) or message.id
        if _group(status) != REJECTED:
            return SendResult(provider_id)
        if status.get("name") == _DUPLICATE:
            return SendResult(message.id, repeat=True)
        code, rule = classify(status, None)
        kind = RetryableProviderError if rule.retryable else PermanentProviderError
        raise kind(
            str(status.get("description") or code or "rejected"),
            provider=NAME,
            code=code,
            status_code=response.status_code,
            suppress=rule.suppress,
            reason=rule.reason,
        )

    async def lookup(self, message: Message) -> Lookup:
        """The message in Infobip's SMS logs (kept 48 hours): not found there means it was never accepted."""
        response = await request(
            self.client,
            NAME,
            "GET",
            self._base + LOGS_PATH,
            params={"messageId": message.id},
            headers=self._headers,
            timeout=self.settings.timeout_s,
        )
        if not 200 <= response.status_code < 300:
            raise http_error(response)
        try:
            results = _results(response.json())
            if not results:
                return Lookup(found=False)
            # a refused duplicate submission shares the id; the original's entry is the one that matters
            entry = next((r for r in results if _obj(r.get("status"), "status").get("name") != _DUPLICATE), results[0])
            outcome = _outcome(entry)
            at = parse_time(entry.get("doneAt"))
        except ValueError as exc:
            raise RetryableProviderError(
                f"unreadable logs answer: {exc}", provider=NAME, code="bad_response", status_code=response.status_code
            ) from None
        return Lookup(
            found=True,
            provider_message_id=_text(entry.get("messageId")) or message.id,
            # pending at Infobip: accepted, which is what SENT records
            status=outcome.status or MessageStatus.SENT,
            at=at,
            code=outcome.code,
            reason=outcome.reason,
            suppress=outcome.suppress,
        )

    def verify(self, request: WebhookRequest) -> None:
        check_basic_auth(request, self.settings)

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        receipts = []
        for entry in _webhook_results(request):
            try:
                message_id = _text(entry.get("messageId"))
                if message_id is None:
                    raise _Malformed("messageId missing")
                outcome = _outcome(entry)
                at = parse_time(entry.get("doneAt"))
            except _Malformed as exc:
                raise BadWebhook(f"not an infobip delivery report: {exc}") from None
            if outcome.status is not None:
                receipts.append(
                    Receipt(
                        message_id,
                        outcome.status,
                        at=at,
                        code=outcome.code,
                        reason=outcome.reason,
                        suppress=outcome.suppress,
                    )
                )
        return receipts

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        inbound = []
        for entry in _webhook_results(request):
            try:
                contact, to = _number(entry.get("from")), _number(entry.get("to"))
                at = parse_time(entry.get("receivedAt")) or utcnow()
            except _Malformed as exc:
                raise BadWebhook(f"not an infobip inbound message: {exc}") from None
            if not contact.startswith("+"):
                continue  # a sender that is no dialable number (a short code, a name) is no contact of ours
            inbound.append(Inbound(contact, Channel.SMS, to, at, _text(entry.get("messageId"))))
        return inbound

    async def aclose(self) -> None:
        return None  # the client belongs to the worker
