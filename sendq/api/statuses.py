"""``GET /v1/messages/status``: the status of several messages at once, by sendq id or by the client's
reference (the shape of seed 002's status API: current status, channel, contact, sent time, and every status
with its time)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from sendq.api.auth import Key, subaccount_of
from sendq.api.problems import ApiProblem, responses
from sendq.channel import Channel
from sendq.message import Message, is_message_id
from sendq.status import MessageStatus
from sendq.store import MessageStore

router = APIRouter(prefix="/v1/messages", tags=["messages"])

#: ids or references per request
MAX_IDS = 100


class StatusAt(BaseModel):
    status: MessageStatus
    at: datetime
    reason: str | None = None


class MessageStatusOut(BaseModel):
    message_id: str
    reference_id: str | None = None
    status: MessageStatus
    channel: Channel
    contact: str
    #: when the provider accepted it (the first ``sent``), null before that
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    #: every status, oldest first
    statuses: list[StatusAt]

    @classmethod
    def of(cls, m: Message) -> "MessageStatusOut":
        sent_at = next((h.at for h in m.history if h.status is MessageStatus.SENT), None)
        return cls(
            message_id=m.id,
            reference_id=m.reference_id,
            status=m.status,
            channel=m.channel,
            contact=m.to,
            sent_at=sent_at,
            provider_message_id=m.provider_message_id,
            statuses=[StatusAt(status=h.status, at=h.at, reason=h.reason) for h in m.history],
        )


def _split(name: str, value: str) -> list[str]:
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not items:
        raise ApiProblem(422, "Invalid input", f"{name}: give at least one, comma separated", field=name)
    if len(items) > MAX_IDS:
        raise ApiProblem(422, "Invalid input", f"{name}: at most {MAX_IDS} per request", field=name)
    return items


@router.get("/status", response_model=list[MessageStatusOut], responses=responses(401, 404, 422, 503))
async def message_statuses(
    request: Request,
    key: Key,
    message_ids: Annotated[str | None, Query(max_length=10_000)] = None,
    reference_ids: Annotated[str | None, Query(max_length=30_000)] = None,
    subaccount: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> list[MessageStatusOut]:
    """Statuses of the messages named by ``message_ids`` or ``reference_ids`` (one of the two, comma separated,
    up to 100), in the order asked; ids this key cannot see, and unknown ones, are left out."""
    if (message_ids is None) == (reference_ids is None):
        raise ApiProblem(
            422, "Invalid input", "message_ids: give message_ids or reference_ids (one of them)", field="message_ids"
        )
    store: MessageStore = request.app.state.scheduler.store
    if message_ids is not None:
        # ids that are no message id (e.g. a key name's suffix) never reach a key name
        ids = [i for i in _split("message_ids", message_ids) if is_message_id(i)]
    else:
        assert reference_ids is not None
        ids = await store.ids_by_reference(subaccount_of(key, subaccount), _split("reference_ids", reference_ids))
    found = [m for m in await store.get_many(ids, history=True) if key.can_access(m.subaccount)]
    return [MessageStatusOut.of(m) for m in found]
