"""Redis key names and arq job names: every key sendq writes starts with ``sendq:``.

Keys are built from ids inside Lua too (``sendq/lua.py``), so sendq runs on one Redis primary (or a
Sentinel-managed one), like arq itself, not on Redis Cluster.
"""

from enum import StrEnum
from typing import Final

PREFIX: Final = "sendq:"
#: zset: waiting messages (programmed, blocked_time) by due time in ms
DUE: Final = "sendq:due"
#: zset: leased messages (processing, sending) by lease deadline in ms
INFLIGHT: Final = "sendq:inflight"
#: zset: final messages by the time their retention ends, in ms
RETENTION: Final = "sendq:retention"
#: stream: one entry per status change (for webhooks and audit)
EVENTS: Final = "sendq:events"
#: string: held by the one hand-over running now (``scheduler.sweeps.hand_over_due``)
HAND_OVER_LOCK: Final = "sendq:lock:hand_over"
#: string: where in the due index the hand-over's next audit slice starts
HAND_OVER_AUDIT: Final = "sendq:hand_over:audit"
#: string: due ms up to which every waiting message had its job at the last hand-over (lowered by whoever leaves
#: one without a job)
HAND_OVER_MARK: Final = "sendq:hand_over:mark"
#: zset: sent (and delivered, where read receipts exist) messages by their receipt deadline in ms
AWAITING: Final = "sendq:awaiting"


class JobName(StrEnum):
    """arq function names; stored in every queued job, so they never change."""

    #: send one message: args (message_id, version)
    DISPATCH = "dispatch"
    #: recovery, hand-over, receipt time-out and retention sweeps
    SWEEP = "sweep"
    #: the hand-over sweep alone, every second
    HAND_OVER = "hand_over"


def message(message_id: str) -> str:
    return f"sendq:msg:{message_id}"


def history(message_id: str) -> str:
    return f"sendq:msg:{message_id}:history"


def provider_message(provider: str, provider_message_id: str) -> str:
    """string: the sendq message id behind a provider's message id (receipts are matched through it only)"""
    return f"sendq:pmid:{provider}:{provider_message_id}"


def early_receipts(provider: str, provider_message_id: str) -> str:
    """list: receipts that arrived before sendq recorded the send (parked briefly, applied once it is)"""
    return f"sendq:early:{provider}:{provider_message_id}"


def reference(subaccount: str, reference_id: str) -> str:
    return f"sendq:ref:{subaccount}:{reference_id}"


def index(subaccount: str, name: str, value: str) -> str:
    """Secondary index (zset of message ids scored by creation ms): status, batch, channel, file.

    Every message is in exactly one status index, so together they list all of a subaccount's messages.
    """
    return f"sendq:idx:{subaccount}:{name}:{value}"


def subaccount_rules(subaccount: str) -> str:
    """string: the subaccount's rules as JSON (absent = defaults)"""
    return f"sendq:sub:{subaccount}:rules"


def allowed_terms(subaccount: str) -> str:
    """set: restricted terms an operator enabled for the subaccount (normalised)"""
    return f"sendq:sub:{subaccount}:allow:terms"


def allowed_domains(subaccount: str) -> str:
    """set: link domains an operator enabled for the subaccount (A-labels)"""
    return f"sendq:sub:{subaccount}:allow:domains"


def suppression(subaccount: str, channel: str) -> str:
    """hash: contact -> JSON entry (reason, source, message id, time) of contacts never to be sent to"""
    return f"sendq:sub:{subaccount}:suppressed:{channel}"


def last_inbound(subaccount: str) -> str:
    """hash: contact -> ms of the contact's latest inbound message (the WhatsApp customer-care window)"""
    return f"sendq:sub:{subaccount}:inbound"


#: set: subaccounts that have stored rules, allowlists or suppressions (for listing)
SUBACCOUNTS: Final = "sendq:subaccounts"
