"""Settings from the environment."""

import pytest
from pydantic import ValidationError

from sendq.settings import Settings


def test_defaults() -> None:
    """A bare environment gives the documented defaults."""
    s = Settings()
    assert (s.redis_url, s.provider, s.max_attempts, s.queue_name) == (None, "mock", 5, "sendq:queue")
    assert s.lease_s == s.job_timeout_s + s.lease_margin_s


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SENDQ_* variables, nested with __, fill the settings."""
    monkeypatch.setenv("SENDQ_REDIS_URL", "redis://h:1/2")
    monkeypatch.setenv("SENDQ_PROVIDER", "http")
    monkeypatch.setenv("SENDQ_HTTP__URL", "http://p/v1/messages")
    monkeypatch.setenv("SENDQ_HTTP__TIMEOUT_S", "2.5")
    s = Settings()
    assert (s.redis_url, s.http.url, s.http.timeout_s) == ("redis://h:1/2", "http://p/v1/messages", 2.5)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SENDQ_SWEEP_INTERVAL_S": "7"}, "divide 60"),
        ({"SENDQ_PROVIDER": "http"}, "SENDQ_HTTP__URL"),
        ({"SENDQ_PROVIDER": "carrier-pigeon"}, "provider"),
        ({"SENDQ_MAX_ATTEMPTS": "0"}, "max_attempts"),
        ({"SENDQ_BACKOFF_BASE_S": "10", "SENDQ_BACKOFF_CAP_S": "1"}, "backoff_cap_s"),
    ],
)
def test_invalid(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str) -> None:
    """Unworkable settings are refused with the field named."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=fragment):
        Settings()


def test_restricted_terms_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON list replaces the default terms; a term that normalises to nothing is refused by name."""
    monkeypatch.setenv("SENDQ_RESTRICTED_TERMS", '["Casino", "payday loan"]')
    assert Settings().restricted_terms == ("Casino", "payday loan")
    monkeypatch.setenv("SENDQ_RESTRICTED_TERMS", '["ok", "\\u200b"]')
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert refused.value.errors()[0]["loc"] == ("restricted_terms",)
