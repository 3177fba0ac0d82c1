"""What every HTTP provider adapter shares: one request call that maps transport failures to the right
``ProviderError`` (was anything possibly sent?), the HTTP-status fallback classification, Retry-After, and
basic-auth checks for callbacks of providers without a signature scheme.
"""

import base64
import binascii
import email.utils
import hmac
import math
import time
from datetime import UTC
from typing import Any

import httpx

from providers.base import WebhookRequest
from sendq.errors import (
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    WebhookRejected,
)
from sendq.provider_settings import WebhookCredentials

#: a longer Retry-After is read as this: past any sane validity, so the message ends as expired
MAX_RETRY_AFTER_S = 7 * 86400.0


async def request(client: httpx.AsyncClient, provider: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``client.request`` with transport failures raised as ``RetryableProviderError``.

    A failure before the request left (connect refused, connect or pool timeout) is safe to retry with a new
    key; a failure after it may have been written (read timeout, reset) is ``ambiguous``: the provider may have
    accepted the message.
    """
    try:
        return await client.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryableProviderError(f"cannot connect: {exc!r}", provider=provider, code="connect") from exc
    except httpx.TimeoutException as exc:
        raise RetryableProviderError(f"timed out: {exc!r}", provider=provider, code="timeout", ambiguous=True) from exc
    except httpx.TransportError as exc:
        raise RetryableProviderError(
            f"transport error: {exc!r}", provider=provider, code="transport", ambiguous=True
        ) from exc
    except httpx.RequestError as exc:  # decoding, redirects: the request went out, the answer is unusable
        raise RetryableProviderError(
            f"unusable answer: {exc!r}", provider=provider, code="bad_response", ambiguous=True
        ) from exc


def status_error(response: httpx.Response, provider: str, code: str | None, text: str) -> ProviderError:
    """The error for a non-2xx answer whose code no provider table lists: 429 rate limited; 408 and 5xx
    retryable; any other 4xx permanent."""
    status = response.status_code
    if status == 429:
        return RateLimited(
            text,
            provider=provider,
            code=code or "rate_limited",
            status_code=status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 408 or status >= 500:
        return RetryableProviderError(text, provider=provider, code=code, status_code=status)
    return PermanentProviderError(text, provider=provider, code=code, status_code=status)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def check_basic_auth(request: WebhookRequest, credentials: WebhookCredentials) -> None:
    """Accept the callback only with the configured basic-auth user and password (constant-time compare).

    Raises:
        WebhookRejected: no credentials configured (fail closed), header missing, or credentials wrong.
    """
    user, password = credentials.webhook_user, credentials.webhook_password
    if not user or password is None:
        raise WebhookRejected("callbacks are not configured: set webhook_user and webhook_password")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        raise WebhookRejected("missing basic-auth credentials")
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("malformed basic-auth header") from None
    expected = f"{user}:{password.get_secret_value()}".encode()
    if not hmac.compare_digest(given, expected):
        raise WebhookRejected("wrong basic-auth credentials")
