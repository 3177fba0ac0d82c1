"""HttpProvider: a generic JSON-over-HTTP provider, the contract ``sendq mock-provider`` serves.

Contract: ``POST <url>`` with a JSON body (below) and an ``Idempotency-Key`` header.
2xx with ``{"id": ...}``: accepted (200 with ``"repeat": true`` for a key seen before);
429 (``Retry-After`` seconds), 408, 5xx, timeouts and connection errors: retryable;
any other 4xx (``{"code": ..., "message": ...}``): permanent.
"""

from typing import Any

import httpx

from providers.base import SendResult
from providers.transport import request, status_error
from sendq.errors import RetryableProviderError
from sendq.message import Message

NAME = "http"


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
        response = await request(self.client, NAME, "POST", self.url, json=payload(message), headers=headers)
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
        raise status_error(response, NAME, code, text)

    async def aclose(self) -> None:
        return None
