"""Retry policy: exponential backoff with full jitter, capped, honouring a provider's Retry-After."""

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sendq.errors import ProviderError, RateLimited
from sendq.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Either ``retry_at`` (try again then) or ``reason`` (give up with this reason)."""

    retry_at: datetime | None
    reason: str | None
    #: the delay chosen, in seconds (for the history and the logs)
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """``delay(n) = uniform(0, min(cap, base * 2**(n-1)))``, and never less than a Retry-After.

    Full jitter (rather than equal or no jitter) spreads a burst of failures over the whole window, so a
    provider that failed many sends at once is not hit again by all of them at the same instant.
    """

    base_s: float
    cap_s: float
    max_attempts: int
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "BackoffPolicy":
        return cls(base_s=settings.backoff_base_s, cap_s=settings.backoff_cap_s, max_attempts=settings.max_attempts)

    def ceiling_s(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        # min() before the power would overflow for large attempts; cap the exponent instead.
        return float(min(self.cap_s, self.base_s * 2 ** min(attempt - 1, 62)))

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        delay = self.rng.uniform(0, self.ceiling_s(attempt))
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def decide(self, attempt: int, error: ProviderError, *, now: datetime, valid_until: datetime) -> RetryDecision:
        """What to do after failed attempt number ``attempt``.

        Permanent errors give up at once; retryable ones retry until ``max_attempts`` or until the next try
        would fall after the message's validity.
        """
        if not error.retryable:
            return RetryDecision(None, "provider_rejected")
        if attempt >= self.max_attempts:
            return RetryDecision(None, "attempts_exhausted")
        retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
        delay = self.delay_s(attempt, retry_after)
        # Compared as seconds first: a huge Retry-After must end the message, not overflow a timedelta.
        if not math.isfinite(delay) or delay > (valid_until - now).total_seconds():
            return RetryDecision(None, "expired", delay)
        retry_at = now + timedelta(seconds=delay)
        return RetryDecision(retry_at, None, delay)
