"""Twilio Programmable Messaging (SMS and WhatsApp): the Message create call, its error codes, status callbacks,
inbound messages and ``X-Twilio-Signature`` verification.

Facts taken from Twilio's documentation and SDK sources (stored copies of varying age):

- Send: ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP basic auth with
  ``AccountSid:AuthToken``; fields ``To``, ``From`` and/or ``MessagingServiceSid`` ("instead of or in addition to a
  specific From", error 21603), ``Body``, ``StatusCallback``, ``ContentSid`` + ``ContentVariables`` (JSON) for
  templates, ``ValidityPeriod`` 1-36,000 s. WhatsApp addresses carry the ``whatsapp:`` prefix. A 201 answer carries
  ``sid`` (``SM...``/``MM...``), the ``MessageSid`` of every later status callback. Errors answer
  ``{"code", "message", "more_info", "status"}`` (twilio-go docs, message resource, error pages).
- No idempotency key for Message create; a 429/20429 "is never processed and is always safe to retry"; a 500 on a
  non-idempotent POST such as sending an SMS may have been processed, "it is possible for a customer to receive
  multiple messages" (error pages 20429, 20500). So 5xx answers are reported as ``ambiguous`` here.
- Status callbacks: form POST with ``MessageSid``, ``MessageStatus``, ``ErrorCode``, ``AccountSid``...; statuses
  queued, sending, sent, failed, delivered, undelivered, receiving, received, accepted, scheduled, read,
  partially_delivered, canceled. No callback for the initial status. The only time field, ``RawDlrDoneDate``, is a
  carrier passthrough ``YYMMDDhhmm`` "without timezone information" (Twilio changelog 2023-02-14), so receipts
  carry no ``at``.
- Signature: base64 HMAC-SHA1 keyed with the auth token over the full URL followed by every POST parameter name
  and value, sorted by name (values of a repeated name sorted too); JSON bodies are signed over the URL only, which
  carries ``bodySHA256`` = hex SHA-256 of the raw body. Twilio's own validators accept the URL with and without
  its port ("sig generation on back end is inconsistent", twilio-go / twilio-python ``request_validator``); this
  module accepts exactly those two forms and nothing looser.

Guesses are marked in the error table below.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit, urlunsplit

import httpx

from providers.base import ErrorRule, Inbound, Receipt, SendResult, WebhookRequest
from providers.transport import parse_retry_after, request, status_error
from sendq.channel import Channel
from sendq.errors import (
    BadWebhook,
    ConfigurationError,
    InvalidInput,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    WebhookRejected,
)
from sendq.message import Message
from sendq.provider_settings import TwilioSettings
from sendq.recipients import canonical_recipient
from sendq.status import MessageStatus

NAME: Final = "twilio"
WHATSAPP_PREFIX: Final = "whatsapp:"
SIGNATURE_HEADER: Final = "x-twilio-signature"
#: Twilio's ceiling for ValidityPeriod (10 h), also its default queueing limit
MAX_VALIDITY_PERIOD_S: Final = 36_000
_FORM: Final = "application/x-www-form-urlencoded"

_R = ErrorRule
#: Twilio error codes sendq treats specially; any other code falls back to the HTTP status (``status_error``).
#: Codes 30xxx and 63xxx mostly arrive in status callbacks (the message was accepted, then failed); the rule's
#: ``retryable`` only matters when Twilio returns one on create.
ERRORS: Final[Mapping[str, ErrorRule]] = {
    # Account and request
    "20003": _R(retryable=False, reason="auth_failed"),  # permission denied: wrong SID/token, suspended account
    "20429": _R(retryable=True, reason="rate_limited"),  # 429, "never processed and always safe to retry"
    # Recipient, refused at create
    "21211": _R(retryable=False, reason="invalid_recipient"),  # 'To' is not a valid phone number
    "21214": _R(retryable=False, reason="invalid_recipient"),  # 'To' cannot be reached (documented for calls)
    "21408": _R(retryable=False, reason="region_disabled"),  # Messaging Geo Permissions disable the destination
    # recipient replied STOP to this sender (Twilio support article, via copies; the error page was not found)
    "21610": _R(retryable=False, suppress=True, reason="opt_out"),
    "21612": _R(retryable=False, reason="unroutable"),  # this To/From combination cannot be connected
    "21614": _R(retryable=False, reason="not_mobile"),  # 'To' is not a valid mobile number (landline)
    # Our sender
    "21606": _R(retryable=False, reason="invalid_sender"),  # From is not a message-capable Twilio number
    "21659": _R(retryable=False, reason="invalid_sender"),  # From is not a Twilio number / short-code country
    # Queueing and validity (ValidityPeriod is sent from sendq's validity)
    "21611": _R(retryable=True, reason="queue_overflow"),  # the From's queue holds more than 10 h of messages
    "30001": _R(retryable=True, reason="queue_overflow"),  # same, after create, with a Messaging Service
    "30036": _R(retryable=False, reason="expired"),  # ValidityPeriod elapsed in Twilio's queue
    # Carrier delivery
    "30003": _R(retryable=True, reason="unreachable"),  # handset off or out of coverage; docs suggest a retry
    "30004": _R(retryable=False, suppress=True, reason="blocked"),  # destination blocked / opted out
    "30005": _R(retryable=False, reason="invalid_recipient"),  # unknown or inactive number (third-party summaries)
    "30006": _R(retryable=False, reason="landline"),  # landline or unreachable carrier
    # carrier filtering of spam-like content (third-party summaries); not the contact's doing, so no suppression
    "30007": _R(retryable=False, reason="filtered"),
    "30008": _R(retryable=True, reason="unknown"),  # unknown carrier error; retryable is a guess from guides
    # Guess: the error page was not found in the sources; 30034 is known as "US A2P 10DLC - message from an
    # unregistered number", a sender registration problem that no retry fixes.
    "30034": _R(retryable=False, reason="sender_unregistered"),
    # WhatsApp
    "63014": _R(retryable=False, suppress=True, reason="blocked"),  # recipient blocked the sender / removed consent
    "63016": _R(retryable=False, reason="outside_window"),  # free-form outside the 24 h window: use a template
    "63018": _R(retryable=True, reason="rate_limited"),  # channel rate or WhatsApp messaging limit exceeded
    "63024": _R(retryable=False, reason="invalid_recipient"),  # not a WhatsApp user / old client / no ToS
}

#: Callback statuses that are receipts; the others (queued, accepted, scheduled, sending, canceled, receiving,
#: received, partially_delivered, and any status Twilio adds later) change nothing and are ignored.
_RECEIPT_STATUSES: Final[Mapping[str, MessageStatus]] = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "undelivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
}


def status_callback_url(public_url: str) -> str:
    """The StatusCallback Twilio is given, and therefore the URL it signs (``WebhookRequest.url`` must match)."""
    return f"{public_url.rstrip('/')}/v1/receipts/{NAME}"


def _address(channel: Channel, value: str) -> str:
    if channel is Channel.WHATSAPP and not value.startswith(WHATSAPP_PREFIX):
        return WHATSAPP_PREFIX + value
    return value


def payload(
    message: Message,
    *,
    from_: str | None,
    messaging_service_sid: str | None,
    status_callback: str | None,
    now: datetime,
) -> dict[str, str]:
    """The form fields of the Message create call.

    ``ValidityPeriod`` carries what is left of sendq's validity when it is under Twilio's 10 h queueing limit, so a
    message that waits in Twilio's queue past ``valid_until`` fails (30036) instead of going out late. It is at
    least 1 s, Twilio's minimum: the dispatcher has already decided the message is still valid.

    Raises:
        PermanentProviderError: a channel Twilio does not serve here, no sender for the channel, or no content.
    """
    if message.channel not in (Channel.SMS, Channel.WHATSAPP):
        raise PermanentProviderError(
            f"twilio does not send {message.channel.value}", provider=NAME, code="channel_unsupported"
        )
    if from_ is None and messaging_service_sid is None:
        raise PermanentProviderError(
            f"no twilio sender for {message.channel.value}: set a route sender, SENDQ_TWILIO__MESSAGING_SERVICE_SID "
            f"or SENDQ_TWILIO__{'WHATSAPP' if message.channel is Channel.WHATSAPP else 'SMS'}_FROM",
            provider=NAME,
            code="no_sender",
        )
    data = {"To": _address(message.channel, message.to)}
    if from_ is not None:
        data["From"] = _address(message.channel, from_)
    if messaging_service_sid is not None:
        data["MessagingServiceSid"] = messaging_service_sid
    if message.template is not None:
        # Templates go as ContentSid: since 2025-04-01 a WhatsApp template sent as Body outside the window fails.
        data["ContentSid"] = message.template
        if message.variables:
            data["ContentVariables"] = json.dumps(message.variables, separators=(",", ":"))
    elif message.body is not None:
        data["Body"] = message.body
    else:
        raise PermanentProviderError("message has neither body nor template", provider=NAME, code="no_content")
    if status_callback is not None:
        data["StatusCallback"] = status_callback
    remaining_s = (message.valid_until - now).total_seconds()
    if remaining_s < MAX_VALIDITY_PERIOD_S:
        data["ValidityPeriod"] = str(max(1, int(remaining_s)))
    return data


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a request: base64 HMAC-SHA1 of the URL followed by each name and value, sorted."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_forms(url: str) -> list[str]:
    """The URL as given and with its port toggled, the two forms Twilio's own validators accept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no variant, the URL as given simply will not match
        return [url]
    if port is None:
        default = 443 if parts.scheme == "https" else 80
        other = parts._replace(netloc=f"{prefix}{host}:{default}")
    else:
        other = parts._replace(netloc=f"{prefix}{host}")
    return [url, urlunsplit(other)]


def _form_pairs(request: WebhookRequest) -> list[tuple[str, str]]:
    """The form parameters of a callback. Raises ``BadWebhook`` for anything but a readable form body."""
    if request.content_type != _FORM:
        raise BadWebhook(f"expected {_FORM}, got {request.content_type or 'no content type'!r}")
    try:
        return parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError as exc:  # includes UnicodeDecodeError
        raise BadWebhook(f"unreadable form body: {exc}") from None


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """Twilio's error ``code`` (as a string) and ``message`` from an error answer."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return None, str(body)[:300]
    code = body.get("code")
    text = body.get("message") or response.reason_phrase
    return (str(code) if code is not None else None), str(text)[:300]


class TwilioProvider:
    """Sends SMS and WhatsApp through Twilio and reads its status callbacks and inbound messages.

    Twilio has no status query by client reference, so there is no ``lookup``.
    """

    name: str = NAME
    #: Twilio documents no deduplication of Message create
    supports_idempotency: bool = False

    def __init__(
        self,
        settings: TwilioSettings,
        client: httpx.AsyncClient,
        *,
        public_url: str | None = None,
        sender: str | None = None,
    ) -> None:
        """Raises ``ConfigurationError`` when credentials or every sender are missing."""
        if not settings.account_sid:
            raise ConfigurationError("SENDQ_TWILIO__ACCOUNT_SID is required for the twilio provider")
        if settings.auth_token is None or not settings.auth_token.get_secret_value():
            raise ConfigurationError("SENDQ_TWILIO__AUTH_TOKEN is required for the twilio provider")
        if not (sender or settings.messaging_service_sid or settings.sms_from or settings.whatsapp_from):
            raise ConfigurationError(
                "the twilio provider needs a sender: set SENDQ_TWILIO__MESSAGING_SERVICE_SID, "
                "SENDQ_TWILIO__SMS_FROM or SENDQ_TWILIO__WHATSAPP_FROM (or a route sender)"
            )
        self.settings = settings
        self.client = client
        self.account_sid: str = settings.account_sid
        self._auth_token = settings.auth_token.get_secret_value()
        self.sender = sender
        self.status_callback = status_callback_url(public_url) if public_url else None
        self.url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json"
        )

    def _from(self, channel: Channel) -> str | None:
        # A route's sender is an explicit choice; otherwise a Messaging Service picks from its pool (sticky sender,
        # geomatch), and only without one do the per-channel defaults apply.
        if self.sender:
            return self.sender
        if self.settings.messaging_service_sid:
            return None
        return self.settings.whatsapp_from if channel is Channel.WHATSAPP else self.settings.sms_from

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        """Create the Message. ``idempotency_key`` is unused: Twilio has no such header."""
        data = payload(
            message,
            from_=self._from(message.channel),
            messaging_service_sid=self.settings.messaging_service_sid,
            status_callback=self.status_callback,
            now=datetime.now(UTC),
        )
        response = await request(
            self.client,
            NAME,
            "POST",
            self.url,
            data=data,
            auth=(self.account_sid, self._auth_token),
            headers={"Accept": "application/json"},
            timeout=self.settings.timeout_s,
        )
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            try:
                sid = response.json()["sid"]
            except (ValueError, KeyError, TypeError):
                sid = None
            if not isinstance(sid, str) or not sid:
                # Accepted, but receipts could never be matched; the message may exist at Twilio.
                raise RetryableProviderError(
                    "2xx without a message sid", provider=NAME, code="bad_response", status_code=status, ambiguous=True
                )
            return SendResult(sid)
        code, text = _error_fields(response)
        rule = ERRORS.get(code) if code is not None else None
        if rule is None:
            error = status_error(response, NAME, code, text)
            if status >= 500:
                error.ambiguous = True  # Twilio: a 5xx on a message POST may still have sent it
            raise error
        raise _rule_error(rule, response, code, text)

    async def aclose(self) -> None:
        # The client is the worker's; nothing of ours to close.
        return None

    def verify(self, request: WebhookRequest) -> None:
        """Check ``X-Twilio-Signature`` against ``request.url`` (and ``bodySHA256`` for JSON bodies), and that the
        callback is for our account."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise WebhookRejected("missing X-Twilio-Signature")
        if request.content_type == "application/json":
            self._verify_json(request, signature)
            return
        try:
            params = _form_pairs(request)
        except BadWebhook as exc:
            raise WebhookRejected(f"cannot check the signature: {exc}") from None
        if not self._signed(request.url, params, signature):
            raise WebhookRejected("X-Twilio-Signature does not match")
        account = dict(params).get("AccountSid")
        if account != self.account_sid:
            raise WebhookRejected(f"callback for another Twilio account ({account!r})")

    def _verify_json(self, request: WebhookRequest, signature: str) -> None:
        expected_hash = parse_qs(urlsplit(request.url).query).get("bodySHA256", [""])[0]
        if not expected_hash:
            raise WebhookRejected("JSON callback without a bodySHA256 query parameter")
        if not self._signed(request.url, [], signature):
            raise WebhookRejected("X-Twilio-Signature does not match")
        if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), expected_hash):
            raise WebhookRejected("body does not match bodySHA256")

    def _signed(self, url: str, params: list[tuple[str, str]], signature: str) -> bool:
        return any(
            hmac.compare_digest(compute_signature(self._auth_token, form, params).encode(), signature.encode())
            for form in _url_forms(url)
        )

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        """The status callback as a receipt: sent, delivered, read, or failed (failed and undelivered)."""
        fields = dict(_form_pairs(request))
        # SmsSid/SmsStatus are the legacy duplicates Twilio still sends alongside.
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not sid or not status:
            raise BadWebhook("status callback without MessageSid or MessageStatus")
        mapped = _RECEIPT_STATUSES.get(status.lower())
        if mapped is None:
            return []
        if mapped is not MessageStatus.FAILED:
            return [Receipt(provider_message_id=sid, status=mapped)]
        code = fields.get("ErrorCode") or None
        rule = ERRORS.get(code) if code is not None else None
        reason = (rule.reason if rule else None) or fields.get("ErrorMessage") or None
        return [
            Receipt(
                provider_message_id=sid,
                status=MessageStatus.FAILED,
                code=code,
                reason=reason,
                suppress=rule.suppress if rule else False,
            )
        ]

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        """An incoming SMS or WhatsApp message. Twilio sends no time for it, so ``at`` is when it was parsed."""
        fields = dict(_form_pairs(request))
        sender = fields.get("From")
        if not sender:
            raise BadWebhook("inbound message without From")
        channel = Channel.WHATSAPP if sender.startswith(WHATSAPP_PREFIX) else Channel.SMS
        try:
            contact = canonical_recipient(channel, sender.removeprefix(WHATSAPP_PREFIX))
        except InvalidInput as exc:
            raise BadWebhook(f"inbound From is not an E.164 number: {exc.reason}") from None
        to = fields.get("To")
        return [
            Inbound(
                contact=contact,
                channel=channel,
                to=to.removeprefix(WHATSAPP_PREFIX) if to else None,
                at=datetime.now(UTC),
                provider_message_id=fields.get("MessageSid") or fields.get("SmsMessageSid") or None,
            )
        ]


def _rule_error(rule: ErrorRule, response: httpx.Response, code: str | None, text: str) -> ProviderError:
    status = response.status_code
    if not rule.retryable:
        return PermanentProviderError(
            text, provider=NAME, code=code, status_code=status, suppress=rule.suppress, reason=rule.reason
        )
    if rule.reason == "rate_limited":
        return RateLimited(
            text,
            provider=NAME,
            code=code,
            status_code=status,
            reason=rule.reason,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    return RetryableProviderError(text, provider=NAME, code=code, status_code=status, reason=rule.reason)
