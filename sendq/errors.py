"""The sendq error family. Context lives on attributes, and every class pickles (arq stores results).

```text
SendqError
├── InvalidInput                field, reason          bad input from a caller; nothing was changed
├── MessageNotFound             message_id
├── ConfigurationError          unknown provider, missing URL, evicting Redis
├── ProviderError               provider, code, detail, status_code, ambiguous
│   ├── RetryableProviderError  timeouts, connection errors, 5xx, 408
│   │   └── RateLimited         429; carries retry_after_s
│   └── PermanentProviderError  other 4xx, invalid recipient; suppress when the code means opt-out/block
├── WebhookRejected             a provider callback failed verification (401)
└── BadWebhook                  a verified provider callback is not in the provider's format (400)
```
"""

from typing import Any


class SendqError(Exception):
    """Base of every error sendq raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[SendqError], args: tuple[Any, ...], state: dict[str, Any]) -> SendqError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class InvalidInput(SendqError):
    """Raised when a caller's input is refused; ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class MessageNotFound(SendqError):
    """Raised when no message has the given id."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"no message with id {message_id!r}")
        self.message_id = message_id


class ConfigurationError(SendqError):
    """Raised when the configuration cannot work (unknown provider, missing URL, evicting Redis)."""


class ProviderError(SendqError):
    """Raised by a provider when a send did not end in acceptance.

    ``ambiguous`` is true when the request may have reached the provider and been accepted (a read timeout,
    a dropped connection): the next attempt must then reuse the same idempotency key.
    """

    retryable: bool = False

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        code: str | None = None,
        status_code: int | None = None,
        ambiguous: bool = False,
        suppress: bool = False,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.provider = provider
        self.code = code
        self.status_code = status_code
        self.ambiguous = ambiguous
        #: the code means the contact opted out or blocked the sender: suppress it (permanent errors only)
        self.suppress = suppress
        #: short reason from the provider's error table (e.g. ``opt_out``), stored with the error
        self.reason = reason

    def __str__(self) -> str:
        parts = [f"provider={self.provider}"]
        if self.status_code is not None:
            parts.append(f"http={self.status_code}")
        if self.code:
            parts.append(f"code={self.code}")
        return f"{self.detail} ({', '.join(parts)})"


class RetryableProviderError(ProviderError):
    """Raised when the send failed for a reason that may pass: timeout, connection error, 5xx, 408."""

    retryable = True


class RateLimited(RetryableProviderError):
    """Raised when the provider answered 429; ``retry_after_s`` is its Retry-After, if it gave one."""

    def __init__(self, detail: str, *, provider: str, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(detail, provider=provider, **kw)
        self.retry_after_s = retry_after_s


class PermanentProviderError(ProviderError):
    """Raised when the provider refused the message for good (other 4xx, invalid recipient)."""


class WebhookRejected(SendqError):
    """Raised when a provider callback fails verification (bad or missing signature or credentials)."""


class BadWebhook(SendqError):
    """Raised when a verified provider callback is not in the provider's documented format."""
