"""MockProvider: in-process and scriptable, for unit tests and ``sendq dev``.

It behaves like an idempotent provider: a repeated idempotency key returns the first provider id.
"""

import asyncio
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from providers.base import SendResult
from sendq.errors import PermanentProviderError, ProviderError, RateLimited, RetryableProviderError
from sendq.message import Message


@dataclass(slots=True)
class SentRecord:
    message_id: str
    idempotency_key: str
    provider_message_id: str
    repeat: bool


#: failure kinds the random fault injection draws from
FAILURE_KINDS = ("server_error", "rate_limited", "timeout", "permanent")


def make_failure(kind: str, *, retry_after_s: float = 1.0) -> ProviderError:
    """The error a real provider failure of this kind maps to."""
    if kind == "server_error":
        return RetryableProviderError("mock 500", provider="mock", code="server_error", status_code=500)
    if kind == "rate_limited":
        return RateLimited(
            "mock 429", provider="mock", code="rate_limited", status_code=429, retry_after_s=retry_after_s
        )
    if kind == "timeout":
        return RetryableProviderError("mock read timeout", provider="mock", code="timeout", ambiguous=True)
    if kind == "permanent":
        return PermanentProviderError(
            "mock invalid recipient", provider="mock", code="invalid_recipient", status_code=400
        )
    raise ValueError(f"unknown failure kind {kind!r}")


@dataclass
class MockProvider:
    """Accepts everything unless scripted or randomly told to fail.

    Args:
        latency_s: time each call takes.
        fail_rate: probability that a call fails with one of ``fail_kinds``.
        script: outcomes for the next calls, in order (a ``ProviderError`` to raise, or None to accept).
    """

    latency_s: float = 0.0
    fail_rate: float = 0.0
    fail_kinds: tuple[str, ...] = ("server_error", "rate_limited", "timeout")
    seed: int | None = None
    script: list[ProviderError | None] = field(default_factory=list)
    name: str = "mock"
    supports_idempotency: bool = True
    sent: list[SentRecord] = field(default_factory=list)
    _by_key: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def queue(self, outcomes: Iterable[ProviderError | None]) -> None:
        self.script.extend(outcomes)

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.script:
            outcome = self.script.pop(0)
            if outcome is not None:
                raise outcome
        elif self.fail_rate and self._random.random() < self.fail_rate:
            raise make_failure(self._random.choice(self.fail_kinds))
        if idempotency_key in self._by_key:
            provider_id = self._by_key[idempotency_key]
            self.sent.append(SentRecord(message.id, idempotency_key, provider_id, repeat=True))
            return SendResult(provider_id, repeat=True)
        # Unique across processes and restarts, like a real provider's ids: receipts are matched by them.
        provider_id = f"mock-{secrets.token_hex(8)}"
        self._by_key[idempotency_key] = provider_id
        self.sent.append(SentRecord(message.id, idempotency_key, provider_id, repeat=False))
        return SendResult(provider_id)

    def accepted(self) -> list[SentRecord]:
        """First (non-repeat) acceptances: what a real provider would have sent."""
        return [r for r in self.sent if not r.repeat]

    async def aclose(self) -> None:
        return None
