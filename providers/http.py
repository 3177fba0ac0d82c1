"""HttpProvider: a generic JSON-over-HTTP provider, the contract ``sendq mock-provider`` serves.

Sending: ``POST <url>`` with a JSON body (``payload`` below) and an ``Idempotency-Key`` header.
2xx with ``{"id": ...}``: accepted (200 with ``"repeat": true`` for a key seen before);
429 (``Retry-After`` seconds), 408, 5xx, timeouts and connection errors: retryable;
any other 4xx (``{"code": ..., "message": ...}``): permanent.

Callbacks (delivery receipts and inbound messages), when the provider is given sendq's public URL:

- Each message payload carries ``"callback_url": "{public_url}/v1/receipts/http"``.
- Receipts are POSTed there as JSON ``{"receipts": [{"id", "status", "at", "code", "reason", "suppress"}]}``:
  ``id`` is the provider's id (the send answer's ``id``); ``status`` is ``sent``, ``delivered``, ``read`` or
  ``failed``; ``at`` is ISO 8601 (an offset or ``Z``; a bare time is read as UTC; null or absent: unknown);
  ``code`` and ``reason`` are strings or null and ``suppress`` a boolean (default false), all three only
  looked at for ``failed``.
- Inbound messages are POSTed to ``{public_url}/v1/inbound/http`` as ``{"inbound": [{"from", "to", "channel",
  "at", "id"}]}``: ``from`` the contact (E.164 for ``sms`` and ``whatsapp``), ``to`` our sender (string or
  null), ``channel`` a sendq channel (``sms``, ``whatsapp``, ``webchat``, ``email``), ``at`` ISO 8601 (absent:
  when it arrived), ``id`` the provider's id for it (string or null).
- Every callback is signed the Standard Webhooks way: headers ``webhook-id`` (unique per event, the same on
  every retry), ``webhook-timestamp`` (integer Unix seconds of this attempt) and ``webhook-signature:
  v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}">``, keyed with the shared secret
  (``SENDQ_HTTP__WEBHOOK_SECRET``; a secret written ``whsec_<base64>`` is keyed with the decoded bytes, as
  Standard Webhooks libraries do). The header may list several space-separated signatures (secret rotation);
  one matching ``v1`` entry is enough. Timestamps more than 5 minutes from sendq's clock are refused, and
  signatures are compared in constant time. Without a secret every callback is refused (fail closed).
- A malformed body (not JSON, missing ``receipts``/``inbound`` list, a bad field) is a 400; a bad or missing
  signature a 401. Anything but a 2xx should be retried by the sender.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from providers.base import Inbound, Receipt, SendResult, WebhookRequest
from providers.transport import request, status_error
from sendq.channel import Channel
from sendq.errors import BadWebhook, ConfigurationError, InvalidInput, RetryableProviderError, WebhookRejected
from sendq.message import Message, utcnow
from sendq.recipients import canonical_recipient
from sendq.status import MessageStatus

NAME = "http"
#: where receipts and inbound messages go, under sendq's public URL
RECEIPTS_PATH: Final = f"/v1/receipts/{NAME}"
INBOUND_PATH: Final = f"/v1/inbound/{NAME}"
ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
#: how far a callback's timestamp may be from our clock, either way
TOLERANCE_S: Final = 5 * 60
_SECRET_PREFIX = "whsec_"
_RECEIPT_STATUSES: Final = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def payload(message: Message, *, callback_url: str | None = None) -> dict[str, Any]:
    """The JSON body sent for a message (``callback_url`` only when receipts are wanted)."""
    body: dict[str, Any] = {
        "message_id": message.id,
        "subaccount": message.subaccount,
        "channel": message.channel.value,
        "to": message.to,
        "body": message.body,
        "template": message.template,
        "variables": message.variables,
        "reference_id": message.reference_id,
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


def secret_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: the decoded bytes of ``whsec_<base64>``, else the secret's UTF-8 bytes.

    Raises:
        ValueError: an empty secret, or ``whsec_`` followed by something that is not base64.
    """
    if secret.startswith(_SECRET_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(_SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ webhook secret must be followed by base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a callback: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    return f"v1,{_signature(secret_key(secret), webhook_id, timestamp, body)}"


def webhook_headers(
    secret: str, body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a signed JSON callback (a new ``msg_`` id and the current time unless given)."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, webhook_id, timestamp, body),
    }


def verify_signature(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Check a callback's Standard Webhooks headers (names lower-cased) against ``key``.

    Raises:
        WebhookRejected: a header missing, a timestamp that is no integer or is more than 5 minutes off, or no
            ``v1`` signature that matches.
    """
    webhook_id = headers.get(ID_HEADER, "").strip()
    raw_timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
    signatures = headers.get(SIGNATURE_HEADER, "").split()
    if not (webhook_id and raw_timestamp and signatures):
        raise WebhookRejected(f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()):
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not Unix seconds")
    timestamp = int(raw_timestamp)
    skew = (time.time() if now is None else now) - timestamp
    if skew > TOLERANCE_S:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is too old")
    if skew < -TOLERANCE_S:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is too new")
    expected = _signature(key, webhook_id, timestamp, body).encode()
    matched = False
    for entry in signatures:
        version, _, given = entry.partition(",")
        # every entry is compared, so the time taken does not tell which one matched
        if version == "v1" and hmac.compare_digest(given.encode(), expected):
            matched = True
    if not matched:
        raise WebhookRejected(f"{SIGNATURE_HEADER} does not match")


def _items(request: WebhookRequest, key: str) -> list[Mapping[str, Any]]:
    """The objects of the ``key`` list of a JSON callback. Raises ``BadWebhook``."""
    if request.content_type not in ("", "application/json"):
        raise BadWebhook(f"http callbacks are JSON, not {request.content_type}")
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise BadWebhook("http callback body is not JSON") from None
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadWebhook(f'http callback is not an object with a "{key}" list')
    if not all(isinstance(item, dict) for item in items):
        raise BadWebhook(f'every entry of "{key}" must be an object')
    return items


def _required(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise BadWebhook(f'"{name}" must be a non-empty string')
    return value


def _optional(entry: Mapping[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise BadWebhook(f'"{name}" must be a string or null')
    return value


def _time(entry: Mapping[str, Any]) -> datetime | None:
    value = _optional(entry, "at")
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadWebhook(f'"at" is not ISO 8601: {value[:40]!r}') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _receipt(entry: Mapping[str, Any], event_id: str | None) -> Receipt:
    provider_id = _required(entry, "id")
    raw_status = entry.get("status")
    status = _RECEIPT_STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if status is None:
        raise BadWebhook(f'"status" must be one of {", ".join(_RECEIPT_STATUSES)}, got {raw_status!r}')
    at = _time(entry)
    code, reason = _optional(entry, "code"), _optional(entry, "reason")
    suppress = entry.get("suppress", False)
    if not isinstance(suppress, bool):
        raise BadWebhook('"suppress" must be true or false')
    if status is not MessageStatus.FAILED:
        return Receipt(provider_id, status, at=at, event_id=event_id)
    return Receipt(provider_id, status, at=at, code=code, reason=reason, suppress=suppress, event_id=event_id)


def _inbound(entry: Mapping[str, Any]) -> Inbound:
    raw_channel = _required(entry, "channel")
    try:
        channel = Channel(raw_channel)
    except ValueError:
        raise BadWebhook(f'"channel" must be one of {", ".join(Channel)}, got {raw_channel!r}') from None
    sender = _required(entry, "from")
    try:
        contact = canonical_recipient(channel, sender)
    except InvalidInput as exc:
        raise BadWebhook(f'"from" is no {channel} contact: {exc.reason}') from None
    return Inbound(contact, channel, _optional(entry, "to"), _time(entry) or utcnow(), _optional(entry, "id"))


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("code")
        text = body.get("message") or body.get("detail") or response.reason_phrase
        return (str(code) if code is not None else None), str(text)[:300]
    return None, str(body)[:300]


class HttpProvider:
    """Sends through the generic HTTP contract with a shared ``httpx.AsyncClient``; verifies and parses its
    signed callbacks."""

    name = NAME
    supports_idempotency = True

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        auth_token: str | None = None,
        public_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.url = url
        self.client = client
        self.auth_token = auth_token
        #: where the provider POSTs receipts (None: no receipts asked for)
        self.callback_url = f"{public_url.rstrip('/')}{RECEIPTS_PATH}" if public_url else None
        try:
            self._webhook_key = secret_key(webhook_secret) if webhook_secret else None
        except ValueError as exc:
            raise ConfigurationError(f"SENDQ_HTTP__WEBHOOK_SECRET: {exc}") from None

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        headers = {"Idempotency-Key": idempotency_key}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        body = payload(message, callback_url=self.callback_url)
        response = await request(self.client, NAME, "POST", self.url, json=body, headers=headers)
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
                provider_id = str(body["id"])
            except (ValueError, KeyError, TypeError) as exc:
                # Accepted, but we cannot tell under which id: retrying with the same key asks again.
                raise RetryableProviderError(
                    "2xx without an id", provider=NAME, code="bad_response", status_code=status, ambiguous=True
                ) from exc
            return SendResult(provider_id, repeat=bool(body.get("repeat", False)))
        code, text = _error_fields(response)
        raise status_error(response, NAME, code, text)

    def verify(self, request: WebhookRequest) -> None:
        """Check the Standard Webhooks signature; without a configured secret nothing is accepted."""
        if self._webhook_key is None:
            raise WebhookRejected("callbacks are not configured: set SENDQ_HTTP__WEBHOOK_SECRET")
        verify_signature(self._webhook_key, request.headers, request.body)

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        event_id = request.headers.get(ID_HEADER) or None
        return [_receipt(entry, event_id) for entry in _items(request, "receipts")]

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        return [_inbound(entry) for entry in _items(request, "inbound")]

    async def aclose(self) -> None:
        return None
