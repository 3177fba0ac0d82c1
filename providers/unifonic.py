"""Unifonic WhatsApp through the Conversations API: send, delivery events, inbound messages, status lookup.

Documented (docs.unifonic.com, and seed 002 for the events and the status API):

- Send: ``POST {base_url}/v1/messages`` with the headers ``PublicId`` and ``Secret`` and a JSON body
  ``{"recipient": {"contact": "+9665...", "channel": "whatsapp"}, "content": ...}``; ``content`` is
  ``{"type": "text", "text": ...}`` for a free-form (session) message, or ``{"type": "template", "name": ...,
  "language": {"code": ...}, "components": [{"type": "body", "parameters": [{"type": "text", "text": ...}]}]}``
  for an approved template (pages "Session Messages", "Template Messages"; the template shape is also what
  public integrations send).
- Send errors ("API error codes"): the body is ``{"message": ..., "errors": ...}`` with no error code, so the
  HTTP status is the code: 400 invalid payload (or a sandbox recipient not on the test list), 401 credential
  headers missing, 402 no balance left (or the sandbox allowance used up), 403 credentials wrong, 500 sending
  temporarily unavailable.
- Delivery events (one JSON object per callback): ``eventType`` ``message.sent_successfully_to_provider``
  (handed to Meta), ``message.sent``, ``message.delivered``, ``message.read`` (may come without
  ``message.delivered``: read implies delivered), ``message.rejected`` with ``failReason`` (``invalid_contact``
  in the sample), and ``message.daily_limit_hit`` (page "Other Webhooks": the message was not sent because the
  number's daily limit was reached); each with ``messageId``, ``eventId``, ``recipient``, ``timestamp`` and
  ``receivedAt``.
- Inbound ("Incoming Messages"): ``eventType`` ``message.received`` with ``sender {channel, contact, name}``,
  ``messageId`` and ``timestamp``. It does not name the number that received it, so ``Inbound.to`` is this
  adapter's sender.
- Status: ``GET /v1/messages/status?messageIds=`` and ``GET /v1/messages/status_by_ref_id?referenceIds=``
  answer a JSON list of ``{messageId, referenceId, status, statuses: [{status, createdAt}], sentAt, ...}``;
  the by-reference query finds a message only if the send request carried a ``referenceId``.
- Callbacks carry no signature. Unifonic's webhook set-up lets the account add a custom header, so sendq
  checks basic auth (``Authorization: Basic ...``, or ``user:password@`` in the configured URL).

Guesses (not found in the docs read):

- ``referenceId`` is a top-level field of the send body (the status API returns it at the top level, and the
  docs say it must be "specified in your original request payload"). sendq sends its message id there.
- The send answer carries the new message's id as ``messageId`` (the field the events and status API use).
- ``failReason`` values other than ``invalid_contact`` (see ``ERRORS``) and the status values beyond the
  samples' ``QUEUED`` and ``REJECTED``.
- No deduplication of a repeated send (nothing documented), so ``supports_idempotency`` is False; after an
  ambiguous failure, ``lookup`` by reference tells whether the first request got through.

Template variables: WhatsApp template parameters are positional (``{{1}}``, ``{{2}}``, ...), so
``message.variables`` must have the keys ``"1"`` to ``"n"``; they become the body parameters in that order.
The template language is the ``template_language`` setting.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

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
from sendq.provider_settings import UnifonicSettings
from sendq.recipients import canonical_recipient
from sendq.status import MessageStatus

NAME: Final = "unifonic"

SEND_PATH: Final = "/v1/messages"
STATUS_PATH: Final = "/v1/messages/status"
STATUS_BY_REF_PATH: Final = "/v1/messages/status_by_ref_id"

#: Send-API HTTP statuses (the API has no error codes) and ``failReason`` values of ``message.rejected``.
ERRORS: Final[Mapping[str, ErrorRule]] = {
    # Documented send errors ("API error codes").
    "400": ErrorRule(retryable=False, reason="invalid_request"),
    "401": ErrorRule(retryable=False, reason="unauthorized"),
    # No balance left: a top-up lets a later attempt through, within the message's validity.
    "402": ErrorRule(retryable=True, reason="insufficient_balance"),
    "403": ErrorRule(retryable=False, reason="unauthorized"),
    "500": ErrorRule(retryable=True, reason="unavailable"),
    # Documented failReason (seed 002 sample).
    "invalid_contact": ErrorRule(retryable=False, reason="invalid_recipient"),
    # Documented event message.daily_limit_hit: the number's daily limit; tomorrow it may go.
    "daily_limit_hit": ErrorRule(retryable=True, reason="daily_limit"),
    # Guesses: failReason names for a contact who blocked the number or opted out, and for a closed window.
    "user_blocked": ErrorRule(retryable=False, suppress=True, reason="blocked"),
    "opted_out": ErrorRule(retryable=False, suppress=True, reason="opt_out"),
    "re_engagement_required": ErrorRule(retryable=False, reason="outside_window"),
}

#: delivery events that make a receipt; ``message.sent_successfully_to_provider`` (handed to Meta) makes none
_EVENT_STATUS: Final[Mapping[str, MessageStatus]] = {
    "message.sent": MessageStatus.SENT,
    "message.delivered": MessageStatus.DELIVERED,
    "message.read": MessageStatus.READ,
    "message.rejected": MessageStatus.FAILED,
    "message.daily_limit_hit": MessageStatus.FAILED,
}
#: the code of a failure event that carries no ``failReason``
_EVENT_CODE: Final[Mapping[str, str]] = {"message.daily_limit_hit": "daily_limit_hit"}
INBOUND_EVENT: Final = "message.received"

#: status API values; any other value of a message Unifonic has (QUEUED, ...) means accepted: SENT
_LOOKUP_STATUS: Final[Mapping[str, MessageStatus]] = {
    "SENT": MessageStatus.SENT,
    "DELIVERED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "REJECTED": MessageStatus.FAILED,
    "FAILED": MessageStatus.FAILED,
}


# --- request building ---------------------------------------------------------------------------------------


def _content(message: Message, language: str) -> dict[str, Any]:
    if message.template is not None:
        parameters = [
            {"type": "text", "text": value} for value in positional_parameters(message.variables, provider=NAME)
        ]
        return {
            "type": "template",
            "name": message.template,
            "language": {"code": language},
            "components": [{"type": "body", "parameters": parameters}] if parameters else [],
        }
    if message.body is None:
        raise PermanentProviderError("message has neither body nor template", provider=NAME, code="no_content")
    return {"type": "text", "text": message.body}


def payload(message: Message, *, language: str) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages``; ``referenceId`` is sendq's message id, for ``lookup``.

    Raises:
        PermanentProviderError: not a WhatsApp message (``channel_unsupported``), or bad template variables.
    """
    if message.channel is not Channel.WHATSAPP:
        raise PermanentProviderError(
            f"Unifonic sends WhatsApp only, not {message.channel.value}", provider=NAME, code="channel_unsupported"
        )
    return {
        "recipient": {"contact": message.to, "channel": "whatsapp"},
        "content": _content(message, language),
        "referenceId": message.id,
    }


# --- response parsing ---------------------------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:300]
    return str(body)[:300]


def response_error(response: httpx.Response) -> ProviderError:
    """The error for a non-2xx answer: its HTTP status looked up in ``ERRORS``, else ``status_error``."""
    code = str(response.status_code)
    text = _error_text(response)
    rule = ERRORS.get(code)
    if rule is None:
        return status_error(response, NAME, code, text)
    cls = RetryableProviderError if rule.retryable else PermanentProviderError
    return cls(
        text, provider=NAME, code=code, status_code=response.status_code, suppress=rule.suppress, reason=rule.reason
    )


def send_result(response: httpx.Response) -> SendResult:
    """2xx with a ``messageId``: accepted under that id; anything else raises a ``ProviderError``."""
    status = response.status_code
    if not 200 <= status < 300:
        raise response_error(response)
    try:
        message_id = response.json()["messageId"]
    except (ValueError, KeyError, TypeError):
        message_id = None
    if not isinstance(message_id, str) or not message_id:
        # Accepted, but under an id we cannot read: the lookup by referenceId settles what happened.
        raise RetryableProviderError(
            "2xx without a messageId", provider=NAME, code="bad_response", status_code=status, ambiguous=True
        )
    return SendResult(message_id)


# --- webhooks -----------------------------------------------------------------------------------------------


def _parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (``2023-05-02T11:36:51.000Z``) as aware UTC; None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:  # Unifonic writes UTC ("Z"); a bare time is read as UTC too
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _event(request: WebhookRequest) -> dict[str, Any]:
    try:
        event = json.loads(request.body)
    except ValueError:
        raise BadWebhook("Unifonic callback body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
        raise BadWebhook("Unifonic callback is not an event object with an eventType")
    return event


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    """The event's ``timestamp`` (when the status changed), else ``receivedAt``; None if it has neither."""
    value = event.get("timestamp") or event.get("receivedAt")
    if value is None:
        return None
    when = _parse_time(value)
    if when is None:
        raise BadWebhook(f"Unifonic event has a bad timestamp: {str(value)[:40]!r}")
    return when


def _message_id(event: Mapping[str, Any]) -> str:
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise BadWebhook(f"Unifonic {event['eventType']} event has no messageId")
    return message_id


def receipts(event: Mapping[str, Any]) -> list[Receipt]:
    """The receipt in one delivery event (none for intermediate and non-delivery events)."""
    event_type = event["eventType"]
    status = _EVENT_STATUS.get(event_type)
    if status is None:
        return []
    message_id = _message_id(event)
    event_id = event.get("eventId")
    code = reason = None
    suppress = False
    if status is MessageStatus.FAILED:
        fail_reason = event.get("failReason")
        code = str(fail_reason) if fail_reason else _EVENT_CODE.get(event_type)
        rule = ERRORS.get(code) if code else None
        reason = rule.reason if rule else code
        suppress = rule.suppress if rule else False
    return [
        Receipt(
            provider_message_id=message_id,
            status=status,
            at=_event_time(event),
            code=code,
            reason=reason,
            suppress=suppress,
            event_id=event_id if isinstance(event_id, str) else None,
        )
    ]


# --- status lookup ------------------------------------------------------------------------------------------


def lookup_of(row: Mapping[str, Any]) -> Lookup:
    """One entry of the status API's answer as a ``Lookup`` (the message is there: found)."""
    raw = str(row.get("status") or "").upper()
    status = _LOOKUP_STATUS.get(raw, MessageStatus.SENT)
    history = row.get("statuses")
    last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
    message_id = row.get("messageId")
    return Lookup(
        found=True,
        provider_message_id=message_id if isinstance(message_id, str) else None,
        status=status,
        at=_parse_time(last.get("createdAt")) or _parse_time(row.get("sentAt")),
        # The status API gives no failReason: the status itself is the code.
        code=raw if status is MessageStatus.FAILED else None,
    )


# --- the adapter --------------------------------------------------------------------------------------------


class UnifonicProvider:
    """Unifonic WhatsApp with a shared ``httpx.AsyncClient`` (owned by the worker, never closed here).

    ``public_url`` is accepted like every adapter's, but Unifonic takes webhook URLs only in its console
    (Channels > WhatsApp > Webhook): configure ``{public_url}/v1/receipts/unifonic`` for delivery events and
    ``{public_url}/v1/inbound/unifonic`` for incoming messages there.
    """

    name = NAME
    supports_idempotency = False

    def __init__(
        self,
        settings: UnifonicSettings,
        client: httpx.AsyncClient,
        *,
        public_url: str | None = None,
        sender: str | None = None,
    ) -> None:
        if not settings.public_id or settings.secret is None or not settings.secret.get_secret_value():
            raise ConfigurationError(
                "Unifonic needs its application keys: set SENDQ_UNIFONIC__PUBLIC_ID and SENDQ_UNIFONIC__SECRET"
            )
        self.settings = settings
        self.client = client
        self.public_url = public_url
        self.sender = sender or settings.sender
        self._base = settings.base_url.rstrip("/")
        self._headers = {"PublicId": settings.public_id, "Secret": settings.secret.get_secret_value()}

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        # idempotency_key is not sent: Unifonic documents no deduplication (referenceId is only a tag).
        body = payload(message, language=self.settings.template_language)
        response = await request(
            self.client,
            NAME,
            "POST",
            self._base + SEND_PATH,
            json=body,
            headers=self._headers,
            timeout=self.settings.timeout_s,
        )
        return send_result(response)

    async def aclose(self) -> None:
        return None

    def verify(self, request: WebhookRequest) -> None:
        check_basic_auth(request, self.settings)

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        return receipts(_event(request))

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        event = _event(request)
        if event["eventType"] != INBOUND_EVENT:
            return []
        sender = event.get("sender")
        if not isinstance(sender, dict):
            raise BadWebhook("Unifonic message.received event has no sender")
        if sender.get("channel") != Channel.WHATSAPP.value:
            return []  # this adapter serves WhatsApp only
        raw_contact = sender.get("contact")
        if not isinstance(raw_contact, str):
            raise BadWebhook("Unifonic message.received event has no sender contact")
        try:
            contact = canonical_recipient(Channel.WHATSAPP, raw_contact)
        except InvalidInput as exc:
            raise BadWebhook(f"Unifonic sender contact {exc.reason}") from None
        at = _event_time(event)
        if at is None:
            raise BadWebhook("Unifonic message.received event has no timestamp")
        message_id = event.get("messageId")
        return [
            Inbound(
                contact=contact,
                channel=Channel.WHATSAPP,
                to=self.sender,
                at=at,
                provider_message_id=message_id if isinstance(message_id, str) else None,
            )
        ]

    async def lookup(self, message: Message) -> Lookup:
        """By sendq's message id (sent as ``referenceId``), then by the provider id when one is known."""
        rows = await self._statuses(STATUS_BY_REF_PATH, {"referenceIds": message.id})
        if not rows and message.provider_message_id:
            rows = await self._statuses(STATUS_PATH, {"messageIds": message.provider_message_id})
        return lookup_of(rows[0]) if rows else Lookup(found=False)

    async def _statuses(self, path: str, params: Mapping[str, str]) -> list[Mapping[str, Any]]:
        response = await request(
            self.client,
            NAME,
            "GET",
            self._base + path,
            params=params,
            headers=self._headers,
            timeout=self.settings.timeout_s,
        )
        if not 200 <= response.status_code < 300:
            raise response_error(response)
        try:
            rows = response.json()
        except ValueError:
            rows = None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise RetryableProviderError(
                "status answer is not a list of messages",
                provider=NAME,
                code="bad_response",
                status_code=response.status_code,
            )
        return rows
