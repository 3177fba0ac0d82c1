"""The transition table against an independently written expectation."""

import itertools

import pytest

from sendq.status import (
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    MessageStatus as S,
    can_transition,
)

# Written out by hand from DESIGN.md and seed 001, not derived from TRANSITIONS.
EXPECTED_EDGES = {
    ("programmed", "processing"),
    ("programmed", "cancelled"),
    ("programmed", "error"),
    ("programmed", "blocked_time"),
    ("programmed", "programmed"),
    ("processing", "sending"),
    ("processing", "programmed"),
    ("processing", "blocked_time"),
    ("processing", "error"),
    ("processing", "cancelled"),
    ("blocked_time", "programmed"),
    ("blocked_time", "processing"),
    ("blocked_time", "cancelled"),
    ("blocked_time", "error"),
    ("sending", "sent"),
    ("sending", "programmed"),
    ("sending", "error"),
    ("sent", "delivered"),
    ("sent", "read"),
    ("sent", "failed"),
    ("sent", "timed_out"),
    ("delivered", "read"),
    ("delivered", "failed"),
    ("delivered", "timed_out"),
    ("timed_out", "delivered"),
    ("timed_out", "read"),
    ("timed_out", "failed"),
}


def test_every_status_has_a_row() -> None:
    """Every status is a key of the table, and the wire values are the seed's names in snake_case."""
    assert set(TRANSITIONS) == set(S)
    assert {s.value for s in S} == {
        "programmed",
        "processing",
        "sending",
        "sent",
        "delivered",
        "read",
        "failed",
        "timed_out",
        "error",
        "cancelled",
        "blocked_time",
    }


@pytest.mark.parametrize(("current", "new"), list(itertools.product(S, S)))
def test_transition_matches_expectation(current: S, new: S) -> None:
    """Each pair is allowed exactly when the hand-written table says so."""
    assert can_transition(current, new) == ((current.value, new.value) in EXPECTED_EDGES)


def test_derived_sets() -> None:
    """Terminal, final and cancellable sets follow from the table."""
    assert {S.READ, S.FAILED, S.ERROR, S.CANCELLED} == TERMINAL_STATUSES
    assert {S.PROGRAMMED, S.PROCESSING, S.BLOCKED_TIME} == CANCELLABLE_STATUSES
    assert {S.SENT, S.DELIVERED, S.READ, S.FAILED, S.TIMED_OUT, S.ERROR, S.CANCELLED} == FINAL_STATUSES
    assert S.SENDING not in CANCELLABLE_STATUSES


def test_receipts_never_go_back() -> None:
    """A late delivered after read, or any receipt after failed, is not a transition."""
    assert not can_transition(S.READ, S.DELIVERED)
    assert not can_transition(S.FAILED, S.DELIVERED)
    assert not can_transition(S.SENT, S.SENDING)
