"""The provider protocol: what the dispatch job needs from a channel provider."""

from dataclasses import dataclass
from typing import Protocol

from sendq.message import Message


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message."""

    #: the provider's id for the message (receipts are matched by it)
    provider_message_id: str
    #: the provider reported the idempotency key as already used: this call sent nothing new
    repeat: bool = False


class Provider(Protocol):
    """A channel provider.

    ``send`` returns a ``SendResult`` when the provider accepted the message and raises a
    ``sendq.errors.ProviderError`` subclass otherwise: ``RetryableProviderError`` (``RateLimited`` for 429)
    or ``PermanentProviderError``. It never raises anything else on purpose.
    """

    #: registry name, recorded on the message
    name: str
    #: a repeated idempotency key is answered with the first result instead of a second send
    supports_idempotency: bool

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult: ...

    async def aclose(self) -> None: ...
