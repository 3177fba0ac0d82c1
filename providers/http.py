"""HttpProvider: a generic JSON-over-HTTP provider, the contract ``sendq mock-provider`` serves.

Contract: ``POST <url>`` with a JSON body (below) and an ``Idempotency-Key`` header.
2xx with ``{"id": ...}``: accepted (200 with ``"repeat": true`` for a key seen before);
429 (``Retry-After`` seconds), 408, 5xx, timeouts and connection errors: retryable;
any other 4xx (``{"code": ..., "message": ...}``): permanent.
"""

import email.utils
import math
import time
from datetime import UTC
from typing import Any

import httpx

from providers.base import SendResult
from sendq.errors import PermanentProviderError, ProviderError, RateLimited, RetryableProviderError
from sendq.message import Message

NAME = "http"
#: a longer Retry-After is read as this: past any sane validity, so the message ends as expired
MAX_RETRY_AFTER_S = 7 * 86400.0


def payload(message: Message) -> dict[str, Any]:
    """The JSON body sent for a message."""
    return {
        "message_id": message.id,
        "subaccount": message.subaccount,
        "channel": message.channel.value,
        "to": message.to,
        "body": message.body,
        "template": message.template,
        "variables": message.variables,
        "reference_id": message.reference_id,
    }


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


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("code")
        text = body.get("message") or body.get("detail") or response.reason_phrase
        return (str(code) if code is not None else None), str(text)[:300]
    return None, str(body)[:300]


class HttpProvider:
    """Sends through the generic HTTP contract with a shared ``httpx.AsyncClient``."""

    name = NAME
    supports_idempotency = True

    def __init__(self, url: str, client: httpx.AsyncClient, *, auth_token: str | None = None) -> None:
        self.url = url
        self.client = client
        self.auth_token = auth_token

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        headers = {"Idempotency-Key": idempotency_key}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        try:
            response = await self.client.post(self.url, json=payload(message), headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached the provider: nothing can have been sent.
            raise RetryableProviderError(f"cannot connect: {exc!r}", provider=NAME, code="connect") from exc
        except httpx.TimeoutException as exc:
            raise RetryableProviderError(f"timed out: {exc!r}", provider=NAME, code="timeout", ambiguous=True) from exc
        except httpx.TransportError as exc:
            raise RetryableProviderError(
                f"transport error: {exc!r}", provider=NAME, code="transport", ambiguous=True
            ) from exc
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
                provider_id = str(body["id"])
            except (ValueError, KeyError, TypeError) as exc:
                # Accepted, but we cannot tell under which id: retrying with the same key asks again.
                raise RetryableProviderError(
                    "2xx without an id", provider=NAME, code="bad_response", status_code=status, ambiguous=True
                ) from exc
            return SendResult(provider_id, repeat=bool(body.get("repeat", False)))
        code, text = _error_fields(response)
        error: ProviderError
        if status == 429:
            error = RateLimited(
                text,
                provider=NAME,
                code=code or "rate_limited",
                status_code=status,
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        elif status == 408 or status >= 500:
            error = RetryableProviderError(text, provider=NAME, code=code, status_code=status)
        else:
            error = PermanentProviderError(text, provider=NAME, code=code, status_code=status)
        raise error

    async def aclose(self) -> None:
        return None
