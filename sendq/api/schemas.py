"""What the API reads and writes. Requests mirror ``NewMessage`` (which does the real validation); responses
are flat JSON with times in ISO 8601 UTC."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sendq.batches import Batch
from sendq.channel import Channel
from sendq.message import Message, from_ms, to_ms
from sendq.status import MessageStatus


class MessageIn(BaseModel):
    """One message to program. ``subaccount`` comes from the API key (an all-subaccounts operator key names it)."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    to: Annotated[str, Field(min_length=1, max_length=320)]
    body: Annotated[str, Field(min_length=1, max_length=20_000)] | None = None
    template: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    variables: dict[str, Annotated[str, Field(max_length=2_000)]] = Field(default_factory=dict, max_length=100)
    send_at: datetime | None = None
    reference_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    #: seconds after the send time the message may still go
    validity_s: Annotated[float, Field(gt=0, le=366 * 86400)] | None = None
    created_by: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    subaccount: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1)
    created_by: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    subaccount: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class StatusEntry(BaseModel):
    status: MessageStatus
    at: datetime
    reason: str | None = None
    detail: str | None = None


class MessageOut(BaseModel):
    id: str
    subaccount: str
    channel: Channel
    to: str
    body: str | None = None
    template: str | None = None
    variables: dict[str, str] = {}
    send_at: datetime | None = None
    reference_id: str | None = None
    batch_id: str | None = None
    file_name: str | None = None
    created_by: str | None = None
    created_at: datetime
    status: MessageStatus
    status_at: datetime
    reason: str | None = None
    attempts: int
    segments: int | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    valid_until: datetime
    #: the status history, oldest first; null in the filtered list (GET the message for it)
    statuses: list[StatusEntry] | None = None

    @classmethod
    def of(cls, m: Message, *, history: bool = True) -> "MessageOut":
        data = m.model_dump(exclude={"history"})
        # Times as the store keeps them (whole ms): the answer to a POST equals what a later GET shows, and its
        # created_at works as a created_from filter.
        for name in ("created_at", "status_at", "valid_until", "send_at"):
            if data[name] is not None:
                data[name] = from_ms(to_ms(data[name]))
        # A listed record is loaded without its history: null says "not loaded", an empty list would say "none".
        data["statuses"] = (
            [StatusEntry(status=h.status, at=h.at, reason=h.reason, detail=h.detail) for h in m.history]
            if history
            else None
        )
        return cls.model_validate(data, from_attributes=False, strict=False, context=None)


class MessagePage(BaseModel):
    items: list[MessageOut]
    #: pass as ``cursor`` for the next (older) page; null at the end
    next_cursor: str | None = None


class ItemOut(BaseModel):
    """One item of a batch request: its message id, or why it was refused."""

    index: int
    message_id: str | None = None
    status: MessageStatus | None = None
    #: false when its reference_id matched an existing message
    created: bool | None = None
    field: str | None = None
    reason: str | None = None


#: a batch as the API shows it is the stored record with its counters
BatchOut = Batch


class BatchCreated(Batch):
    items: list[ItemOut] = Field(default_factory=list)


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = None


class CancelReport(BaseModel):
    cancelled: int
    #: messages that could not be cancelled, by the status that prevented it
    not_cancelled: dict[MessageStatus, int] = {}


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_at: datetime


class RescheduleReport(BaseModel):
    rescheduled: int
    #: messages left alone: not waiting, or the new time is outside their windows
    skipped: dict[str, int] = {}
