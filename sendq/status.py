"""Message statuses and the one transition table every status change is checked against.

Every other set (final, terminal, cancellable) is derived from ``TRANSITIONS``; none is listed twice.
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class MessageStatus(StrEnum):
    """Where a message is; wire and storage values are snake_case (seed 001's names)."""

    #: accepted, waiting for its send time or its next attempt
    PROGRAMMED = "programmed"
    #: claimed by a worker; checks running, no provider call yet
    PROCESSING = "processing"
    #: provider call in flight; a rerun that finds this status must not blindly resend
    SENDING = "sending"
    #: the provider accepted it (not proof of delivery)
    SENT = "sent"
    #: receipt: reached the device or mailbox
    DELIVERED = "delivered"
    #: receipt: read (implies delivered)
    READ = "read"
    #: receipt: accepted by the provider, then not delivered
    FAILED = "failed"
    #: sent, but no final receipt within the subaccount's receipt timeout
    TIMED_OUT = "timed_out"
    #: not sent: permanent provider error, policy violation, attempts or validity exhausted
    ERROR = "error"
    #: cancelled before any provider call
    CANCELLED = "cancelled"
    #: its time is outside the subaccount's allowed sending window
    BLOCKED_TIME = "blocked_time"


_S = MessageStatus

#: The spec. ``X -> PROGRAMMED`` from PROCESSING is a release (not due yet, or its worker died before any
#: provider call); from SENDING it is the next attempt after a retryable failure or a recovered crash.
#: Receipts only move forward; a receipt after TIMED_OUT still applies.
TRANSITIONS: Final[Mapping[MessageStatus, frozenset[MessageStatus]]] = {
    _S.PROGRAMMED: frozenset({_S.PROCESSING, _S.CANCELLED, _S.ERROR, _S.BLOCKED_TIME, _S.PROGRAMMED}),
    _S.PROCESSING: frozenset({_S.SENDING, _S.PROGRAMMED, _S.BLOCKED_TIME, _S.ERROR, _S.CANCELLED}),
    _S.BLOCKED_TIME: frozenset({_S.PROGRAMMED, _S.PROCESSING, _S.CANCELLED, _S.ERROR}),
    _S.SENDING: frozenset({_S.SENT, _S.PROGRAMMED, _S.ERROR}),
    _S.SENT: frozenset({_S.DELIVERED, _S.READ, _S.FAILED, _S.TIMED_OUT}),
    _S.DELIVERED: frozenset({_S.READ, _S.FAILED, _S.TIMED_OUT}),
    _S.TIMED_OUT: frozenset({_S.DELIVERED, _S.READ, _S.FAILED}),
    _S.READ: frozenset(),
    _S.FAILED: frozenset(),
    _S.ERROR: frozenset(),
    _S.CANCELLED: frozenset(),
}


def _reachable(start: MessageStatus) -> frozenset[MessageStatus]:
    seen: set[MessageStatus] = set()
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


#: No transition leads out of these.
TERMINAL_STATUSES: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
#: An operator's cancel can still take: an edge to CANCELLED exists.
CANCELLABLE_STATUSES: Final = frozenset(s for s, targets in TRANSITIONS.items() if _S.CANCELLED in targets)
#: The dispatch outcome is settled: no path leads back to a provider call (only receipts may still arrive).
#: Retention is counted from entry into one of these.
FINAL_STATUSES: Final = frozenset(s for s in TRANSITIONS if _S.SENDING not in _reachable(s) and s != _S.SENDING)
#: A worker holds the message under a lease; the recovery sweep resolves it if the lease runs out.
LEASED_STATUSES: Final = frozenset({_S.PROCESSING, _S.SENDING})
#: Waiting on the clock; listed in the due index (a held ``blocked_time`` message waits for an operator instead).
WAITING_STATUSES: Final = frozenset({_S.PROGRAMMED, _S.BLOCKED_TIME})
#: A message is born programmed, or, when a subaccount rule refuses it at intake, blocked_time or error: it is
#: stored either way so that it shows in the sent-messages list with its reason.
INITIAL_STATUSES: Final = frozenset({_S.PROGRAMMED, _S.BLOCKED_TIME, _S.ERROR})


def can_transition(current: MessageStatus, new: MessageStatus) -> bool:
    """Whether the table allows ``current -> new``."""
    return new in TRANSITIONS[current]


def sources_of(new: MessageStatus) -> frozenset[MessageStatus]:
    """Every status from which ``new`` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if new in targets)
