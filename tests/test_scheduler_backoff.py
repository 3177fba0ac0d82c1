"""Backoff: full jitter under an exponential, capped ceiling; Retry-After; attempts and validity."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from scheduler.backoff import BackoffPolicy
from sendq.errors import PermanentProviderError, RateLimited, RetryableProviderError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


def policy(seed: int = 1) -> BackoffPolicy:
    return BackoffPolicy(base_s=2, cap_s=60, max_attempts=5, rng=random.Random(seed))


def test_ceiling_doubles_then_caps() -> None:
    """The ceiling is base * 2**(n-1), never above the cap."""
    p = policy()
    assert [p.ceiling_s(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert p.ceiling_s(10_000) == 60


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_delay_within_ceiling(attempt: int, seed: int) -> None:
    """Every delay lies in [0, ceiling]."""
    p = policy(seed)
    assert 0 <= p.delay_s(attempt) <= p.ceiling_s(attempt)


def test_jitter_spreads_over_the_window() -> None:
    """Full jitter: delays for one attempt cover the window (not all equal, mean near half the ceiling)."""
    p = policy()
    delays = [p.delay_s(4) for _ in range(2000)]
    assert min(delays) < 1 and max(delays) > 15
    assert 7 < sum(delays) / len(delays) < 9


def test_retry_after_is_a_floor() -> None:
    """A 429's Retry-After is honoured even above the jittered delay."""
    p = policy()
    err = RateLimited("slow down", provider="x", retry_after_s=30)
    decision = p.decide(1, err, now=NOW, valid_until=LATER)
    assert decision.retry_at is not None and decision.retry_at >= NOW + timedelta(seconds=30)


def test_permanent_gives_up_at_once() -> None:
    """A permanent error is not retried."""
    decision = policy().decide(1, PermanentProviderError("bad", provider="x"), now=NOW, valid_until=LATER)
    assert decision.retry_at is None and decision.reason == "provider_rejected"


def test_attempts_exhausted() -> None:
    """The last allowed attempt's failure ends the message."""
    err = RetryableProviderError("500", provider="x")
    assert policy().decide(4, err, now=NOW, valid_until=LATER).retry_at is not None
    decision = policy().decide(5, err, now=NOW, valid_until=LATER)
    assert decision.retry_at is None and decision.reason == "attempts_exhausted"


def test_validity_ends_retries() -> None:
    """A retry that would fall after the validity ends the message as expired."""
    err = RateLimited("later", provider="x", retry_after_s=120)
    decision = policy().decide(1, err, now=NOW, valid_until=NOW + timedelta(seconds=60))
    assert decision.retry_at is None and decision.reason == "expired"


def test_parse_retry_after() -> None:
    """Seconds or an HTTP date; garbage, infinities and NaN are ignored; huge values are capped."""
    from providers.transport import MAX_RETRY_AFTER_S, parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=1445412470.0) == 10.0
    assert parse_retry_after("-5") == 0.0
    for bad in ("", None, "soon", "inf", "nan"):
        assert parse_retry_after(bad) is None
    assert parse_retry_after("1e300") == MAX_RETRY_AFTER_S
