"""Channel providers behind one protocol, built by name from settings."""

from typing import Final

import httpx

from providers.base import Provider, SendResult
from providers.http import HttpProvider
from providers.mock import MockProvider
from sendq.errors import ConfigurationError
from sendq.settings import Settings

#: every provider name sendq knows
PROVIDER_NAMES: Final = ("mock", "http")


def build_provider(settings: Settings, client: httpx.AsyncClient) -> Provider:
    """The configured provider (``SENDQ_PROVIDER``).

    Raises:
        ConfigurationError: unknown name or missing settings.
    """
    if settings.provider == "mock":
        return MockProvider(
            latency_s=settings.mock.latency_ms / 1000, fail_rate=settings.mock.fail_rate, seed=settings.mock.seed
        )
    if settings.provider == "http":
        if not settings.http.url:
            raise ConfigurationError("SENDQ_HTTP__URL is required for the http provider")
        return HttpProvider(settings.http.url, client, auth_token=settings.http.auth_token)
    raise ConfigurationError(f"unknown provider {settings.provider!r}; known: {', '.join(PROVIDER_NAMES)}")


__all__ = ["PROVIDER_NAMES", "HttpProvider", "MockProvider", "Provider", "SendResult", "build_provider"]
