"""The message: what an application hands in (``NewMessage``) and the stored record (``Message``)."""

import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sendq.channel import Channel
from sendq.errors import InvalidInput
from sendq.recipients import canonical_recipient
from sendq.status import MessageStatus

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
#: every 10-bit value as its two Crockford base32 characters
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


_MESSAGE_ID = re.compile(r"[0-9a-z]{26}")


def is_message_id(value: str) -> bool:
    """Whether ``value`` has the form of a message id (checked before it goes into a key name)."""
    return _MESSAGE_ID.fullmatch(value) is not None


def new_message_id(now_ms: int | None = None) -> str:
    """A 26-character, time-ordered, URL-safe id (ULID layout: 48 bits of ms time, 80 random bits)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    # 130 bits as 13 pairs of characters, most significant first (bulk intake makes one per message).
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


#: subaccount ids appear inside Redis key names, so they are kept to a safe alphabet (no ":")
SubaccountId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class NewMessage(BaseModel):
    """A message as an application submits it. Validation errors name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subaccount: SubaccountId
    channel: Channel
    to: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
    body: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] | None = None
    template: Token | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    send_at: datetime | None = None
    reference_id: Token | None = None
    batch_id: Token | None = None
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    created_by: Token | None = None
    #: how long after its send time the message may still go out; None takes the configured default
    validity: timedelta | None = None

    @field_validator("to")
    @classmethod
    def _recipient(cls, value: str, info: ValidationInfo) -> str:
        channel = info.data.get("channel")
        if channel is None:  # the channel itself was invalid; that error is reported
            return value
        try:
            return canonical_recipient(channel, value)
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value.tzinfo.utcoffset(value) is None):
            raise ValueError("must be timezone-aware (e.g. 2026-01-31T09:00:00+01:00 or ...Z)")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("validity")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _content(self) -> Self:
        if (self.body is None) == (self.template is None):
            raise ValueError("exactly one of body or template is required")
        if self.variables and self.template is None:
            raise ValueError("variables are only allowed with a template")
        return self


class HistoryEntry(BaseModel):
    """One status change, appended atomically with the change itself."""

    status: MessageStatus
    at: datetime
    reason: str | None = None
    attempt: int = 0
    detail: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> Any:
        # A birth entry written by the store's Lua carries the record's creation time as epoch ms.
        return from_ms(value) if isinstance(value, int) else value


class Message(BaseModel):
    """The stored record of a message; the store is its source of truth."""

    id: str
    subaccount: str
    channel: Channel
    to: str
    body: str | None = None
    template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    send_at: datetime | None = None
    reference_id: str | None = None
    batch_id: str | None = None
    file_name: str | None = None
    created_by: str | None = None
    created_at: datetime
    valid_until: datetime
    status: MessageStatus
    status_at: datetime
    reason: str | None = None
    #: SMS segments the body needs (GSM-7 or UCS-2 packing); None for other channels and templates
    segments: int | None = None
    #: provider calls started so far
    attempts: int = 0
    #: when the message is next due (its send time, or its next attempt)
    due_at: datetime
    #: version of the arq job that may act on it; bumped on every re-enqueue, so stale jobs do nothing
    job_version: int = 1
    provider: str | None = None
    provider_message_id: str | None = None
    #: the idempotency key of the latest provider call
    idempotency_key: str | None = None
    #: the latest attempt's outcome is unknown, so the next attempt must reuse its idempotency key
    reuse_key: bool = False
    #: whether the provider of the latest attempt honours idempotency keys (crash recovery depends on it)
    provider_idempotent: bool = False
    last_error_code: str | None = None
    last_error: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def job_id(self) -> str:
        """The arq job id of the job that may act on this message now."""
        return dispatch_job_id(self.id, self.job_version)


def dispatch_job_id(message_id: str, version: int) -> str:
    """Versioned arq job id: a re-enqueue never collides with an earlier job's id or kept result."""
    return f"dispatch:{message_id}:{version}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: int | str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def whole_ms(value: datetime) -> datetime:
    """``value`` cut to the ms the store keeps: a new record reads back exactly as it was built."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def fields_to_redis(values: dict[str, Any]) -> dict[str, str]:
    """Flat string encoding of record fields for the Redis hash (datetimes as epoch ms)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            out[key] = ""
        elif isinstance(value, datetime):
            out[key] = str(to_ms(value))
        elif isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, dict):
            out[key] = json.dumps(value, separators=(",", ":"))
        else:
            out[key] = str(value)
    return out
