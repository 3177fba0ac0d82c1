"""The provider protocol: what the dispatch job needs from a channel provider, and what a provider's
callbacks (delivery receipts, inbound messages) and status queries turn into.

A real provider adapter is one module (``providers/twilio.py``, ...) with four parts: request building,
response parsing into ``SendResult`` or a ``ProviderError``, an error-code table (``ErrorRule``), and the
webhook side (``verify``, ``parse_receipts``, ``parse_inbound``). Providers that can be asked about a message
whose outcome is unknown also implement ``lookup``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sendq.message import Message
from sendq.reports import RECEIPT_STATUSES, Inbound, Lookup, Receipt


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message."""

    #: the provider's id for the message (receipts are matched by it)
    provider_message_id: str
    #: the provider reported the idempotency key as already used: this call sent nothing new
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How sendq treats one provider error code."""

    #: a later attempt may succeed (rate limits, outages); False: the message can never go as it is
    retryable: bool
    #: the code means the contact opted out, blocked the sender or bounced hard: suppress the contact
    suppress: bool = False
    #: short reason stored on the message and the suppression entry (e.g. ``opt_out``, ``invalid_recipient``)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's HTTP callback, as received (the raw body: signatures are computed over bytes)."""

    #: the full URL the provider was configured to call (scheme, host, path and query): Twilio signs it
    url: str
    #: header names lower-cased
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class Provider(Protocol):
    """A channel provider.

    ``send`` returns a ``SendResult`` when the provider accepted the message and raises a
    ``sendq.errors.ProviderError`` subclass otherwise: ``RetryableProviderError`` (``RateLimited`` for 429)
    or ``PermanentProviderError`` (with ``suppress`` set when the code means opt-out or block). It never
    raises anything else on purpose.
    """

    #: registry name, recorded on the message
    name: str
    #: a repeated idempotency key is answered with the first result instead of a second send
    supports_idempotency: bool

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WebhookParser(Protocol):
    """A provider whose callbacks sendq accepts at ``/v1/receipts/{name}`` and ``/v1/inbound/{name}``."""

    name: str

    def verify(self, request: WebhookRequest) -> None:
        """Raise ``sendq.errors.WebhookRejected`` unless the request provably comes from the provider."""
        ...

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        """The receipts in a verified callback (a callback may carry several, or none worth applying).

        Raises ``sendq.errors.BadWebhook`` when the body is not the provider's documented format.
        """
        ...

    def parse_inbound(self, request: WebhookRequest) -> list[Inbound]:
        """The inbound messages in a verified callback. Raises ``sendq.errors.BadWebhook`` like above."""
        ...


@runtime_checkable
class StatusLookup(Protocol):
    """A provider that can be asked what became of a message (by its id there, or by sendq's reference)."""

    name: str

    async def lookup(self, message: Message) -> Lookup:
        """Raises ``sendq.errors.ProviderError`` when the provider cannot be asked now (try again later)."""
        ...


__all__ = [
    "RECEIPT_STATUSES",
    "ErrorRule",
    "Inbound",
    "Lookup",
    "Provider",
    "Receipt",
    "SendResult",
    "StatusLookup",
    "WebhookParser",
    "WebhookRequest",
]
