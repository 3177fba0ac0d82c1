"""Errors pickle (arq stores results) and keep their context."""

import pickle

import pytest

from sendq.errors import (
    ConfigurationError,
    InvalidInput,
    MessageNotFound,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    SendqError,
)

ERRORS: list[SendqError] = [
    InvalidInput("send_at", "must be timezone-aware"),
    MessageNotFound("m1"),
    ConfigurationError("no url"),
    ProviderError("x", provider="p"),
    RetryableProviderError("500", provider="p", code="e", status_code=500, ambiguous=True),
    RateLimited("429", provider="p", retry_after_s=3.5, status_code=429),
    PermanentProviderError("400", provider="p", code="bad"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_round_trip(error: SendqError) -> None:
    """Every error class survives pickling with its attributes."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and vars(again) == vars(error) and str(again) == str(error)


def test_retryable_flags() -> None:
    """The class is the retry policy."""
    assert RateLimited("x", provider="p").retryable
    assert not PermanentProviderError("x", provider="p").retryable
    assert "http=429" in str(RateLimited("slow", provider="p", status_code=429))
