"""What providers report back about messages, normalised: delivery receipts, inbound messages and status
lookups. Provider adapters (``providers/``) produce these; the model layer applies them.
"""

from dataclasses import dataclass
from datetime import datetime

from sendq.channel import Channel
from sendq.status import MessageStatus

#: Statuses a receipt may report. SENT only confirms what sendq already recorded: it changes nothing.
RECEIPT_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED})


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery report, normalised. Matched to a message by ``(provider, provider_message_id)`` only."""

    provider_message_id: str
    #: one of ``RECEIPT_STATUSES``
    status: MessageStatus
    #: when the provider says the status changed (None: not given)
    at: datetime | None = None
    #: the provider's error code, for FAILED
    code: str | None = None
    #: for FAILED: the short reason of the provider's error table (``opt_out``, ...), else its description
    reason: str | None = None
    #: the failure means opt-out, block, complaint or hard bounce: the contact goes on the suppression list
    suppress: bool = False
    #: the provider's event id, when it has one (logged; duplicates are harmless either way)
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message a contact sent to one of our senders (opens the WhatsApp customer-care window)."""

    #: the contact, canonical (E.164 for SMS and WhatsApp, without any ``whatsapp:`` prefix)
    contact: str
    channel: Channel
    #: our address that received it (a number, a WhatsApp sender); routes it to a subaccount
    to: str | None
    at: datetime
    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a provider's status query says about a message whose outcome sendq does not know."""

    #: the provider has the message: it was accepted and must not be sent again
    found: bool
    provider_message_id: str | None = None
    #: its status there, mapped (one of ``RECEIPT_STATUSES``), when found
    status: MessageStatus | None = None
    at: datetime | None = None
    code: str | None = None
    reason: str | None = None
    suppress: bool = False
