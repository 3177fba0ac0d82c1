"""Channel providers behind one protocol, built by name from settings and routed per (subaccount, channel)."""

import asyncio
from typing import Final, get_args

import httpx

from providers.base import Provider, SendResult
from providers.http import HttpProvider
from providers.infobip import InfobipProvider
from providers.mock import MockProvider
from providers.routing import Providers
from providers.sinch import SinchProvider
from providers.twilio import TwilioProvider
from providers.unifonic import UnifonicProvider
from sendq.errors import ConfigurationError
from sendq.provider_settings import ProviderName
from sendq.settings import Settings

#: every provider name sendq knows
PROVIDER_NAMES: Final = get_args(ProviderName)


def build_provider(name: str, settings: Settings, client: httpx.AsyncClient, sender: str | None = None) -> Provider:
    """The adapter called ``name``, configured from ``settings`` (``sender`` overrides its default sender).

    Raises:
        ConfigurationError: unknown name or missing settings.
    """
    if name == "mock":
        return MockProvider(
            latency_s=settings.mock.latency_ms / 1000, fail_rate=settings.mock.fail_rate, seed=settings.mock.seed
        )
    if name == "http":
        if not settings.http.url:
            raise ConfigurationError("SENDQ_HTTP__URL is required for the http provider")
        secret = settings.http.webhook_secret
        return HttpProvider(
            settings.http.url,
            client,
            auth_token=settings.http.auth_token,
            public_url=settings.public_url,
            webhook_secret=secret.get_secret_value() if secret is not None else None,
        )
    if name == "twilio":
        return TwilioProvider(settings.twilio, client, public_url=settings.public_url, sender=sender)
    if name == "sinch":
        return SinchProvider(settings.sinch, client, public_url=settings.public_url, sender=sender)
    if name == "unifonic":
        return UnifonicProvider(settings.unifonic, client, public_url=settings.public_url, sender=sender)
    if name == "infobip":
        return InfobipProvider(settings.infobip, client, public_url=settings.public_url, sender=sender)
    raise ConfigurationError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


def build_providers(settings: Settings, client: httpx.AsyncClient) -> Providers:
    """Every provider the settings name (the default and each route's), built now so that a missing
    credential stops the process at start-up rather than at the first send."""
    providers = Providers(
        default=settings.provider,
        routes=settings.routes,
        factory=lambda name, sender: build_provider(name, settings, client, sender),
    )
    providers.build_all()
    return providers


def check_providers(settings: Settings) -> None:
    """Build every configured adapter once and drop it, so that a missing credential is one clear error when a
    process starts (not a traceback from inside arq's or uvicorn's start-up)."""
    client = httpx.AsyncClient()
    try:
        build_providers(settings, client)
    finally:
        asyncio.run(client.aclose())


__all__ = [
    "PROVIDER_NAMES",
    "HttpProvider",
    "MockProvider",
    "Provider",
    "Providers",
    "SendResult",
    "build_provider",
    "build_providers",
    "check_providers",
]
