"""``/v1/messages``: program one message, read it (by id or by the client's reference), list, cancel."""

import hashlib
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from redis.asyncio import Redis

from scheduler.intake import Scheduler, parse_new_message
from sendq.api.auth import Key, subaccount_of
from sendq.api.problems import ApiProblem, responses
from sendq.api.schemas import MessageIn, MessageOut, MessagePage
from sendq.apikeys import ApiKey
from sendq.channel import Channel
from sendq.errors import MessageNotFound
from sendq.listing import InvalidCursor, MessageFilter, list_messages
from sendq.message import Message, NewMessage
from sendq.status import MessageStatus

router = APIRouter(prefix="/v1/messages", tags=["messages"])

#: how long an Idempotency-Key is remembered (Stripe's convention)
IDEMPOTENCY_TTL_S = 24 * 3600


def scheduler_of(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


def new_message(
    key: ApiKey, item: MessageIn, *, subaccount: str | None = None, created_by: str | None = None
) -> NewMessage:
    """The API item as the core model; NewMessage's validation errors name the field.

    ``subaccount``: the one the request already acts on (a batch's items take the batch's); else the key's, or
    the item's for an all-subaccounts key. ``created_by``: the default when the item names none (else the key's
    label).
    """
    data = item.model_dump(exclude_none=True, exclude={"validity_s", "subaccount"})
    data["subaccount"] = subaccount or subaccount_of(key, item.subaccount)
    data.setdefault("created_by", created_by or key.label or f"key:{key.id}")
    if item.validity_s is not None:
        data["validity"] = timedelta(seconds=item.validity_s)
    return parse_new_message(data)


async def owned(request: Request, key: ApiKey, message_id: str) -> Message:
    """The message, if this key may see it; another subaccount's message does not exist for it."""
    try:
        message = await scheduler_of(request).get(message_id)
    except MessageNotFound:
        raise ApiProblem(404, "Not found", f"no message {message_id!r}") from None
    if not key.can_access(message.subaccount):
        raise ApiProblem(404, "Not found", f"no message {message_id!r}")
    return message


#: a replay answers 200 with the message the first request stored
_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {"model": MessageOut, "description": "The original message (repeated Idempotency-Key or reference_id)"}
}


@router.post(
    "",
    status_code=201,
    response_model=MessageOut,
    responses=_REPLAYED | responses(400, 401, 404, 409, 413, 422, 503),
)
async def program_message(
    request: Request,
    response: Response,
    item: MessageIn,
    key: Key,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> MessageOut:
    """Program one message. A repeated ``Idempotency-Key`` or ``reference_id`` returns the original with 200."""
    new = new_message(key, item)
    scheduler = scheduler_of(request)
    redis: Redis = scheduler.store.redis
    idem = f"sendq:idem:{new.subaccount}:{idempotency_key}" if idempotency_key else None
    # The key remembers which request it was made for (Stripe's rule): the same key with other parameters is
    # a client bug, answered with an error instead of the unrelated original.
    fingerprint = hashlib.sha256(item.model_dump_json().encode()).hexdigest()[:32]
    if idem is not None and not await redis.set(idem, f"{fingerprint}:pending", nx=True, ex=IDEMPOTENCY_TTL_S):
        found = (await redis.get(idem) or b":pending").decode()
        used_for, _, message_id = found.partition(":")
        if used_for and used_for != fingerprint:
            raise ApiProblem(
                422,
                "Invalid input",
                "this Idempotency-Key was used with different request parameters",
                field="Idempotency-Key",
            )
        if message_id == "pending":
            raise ApiProblem(
                409,
                "Conflict with the current status",
                "a request with this Idempotency-Key is still in progress",
                field="Idempotency-Key",
            )
        response.status_code = 200
        return MessageOut.of(await scheduler.get(message_id))
    try:
        done = await scheduler.program(new)
    except BaseException:
        if idem is not None:
            await redis.delete(idem)
        raise
    if idem is not None:
        await redis.set(idem, f"{fingerprint}:{done.message.id}", ex=IDEMPOTENCY_TTL_S)
    if not done.created:
        response.status_code = 200
    return MessageOut.of(done.message)


@router.get("", response_model=MessagePage, responses=responses(401, 404, 422, 503))
async def list_or_find(
    request: Request,
    key: Key,
    reference_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: MessageStatus | None = None,
    batch_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    channel: Channel | None = None,
    file_name: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    subaccount: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> MessagePage:
    """Messages newest first, filtered; or, with ``reference_id``, the one message with that reference."""
    sub = subaccount_of(key, subaccount)
    scheduler = scheduler_of(request)
    if reference_id is not None:
        found = await scheduler.store.find_by_reference(sub, reference_id)
        return MessagePage(items=[MessageOut.of(found)] if found else [])
    for name, when in (("created_from", created_from), ("created_to", created_to)):
        if when is not None and when.utcoffset() is None:
            raise ApiProblem(422, "Invalid input", f"{name}: must be timezone-aware", field=name)
    flt = MessageFilter(sub, status, batch_id, channel, file_name, created_from, created_to)
    try:
        page = await list_messages(scheduler.store, flt, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ApiProblem(422, "Invalid input", f"cursor: {exc}", field="cursor") from None
    items = [MessageOut.of(m, history=False) for m in page.messages]
    return MessagePage(items=items, next_cursor=page.next_cursor)


@router.get("/{message_id}", response_model=MessageOut, responses=responses(401, 404, 422, 503))
async def get_message(request: Request, message_id: str, key: Key) -> MessageOut:
    return MessageOut.of(await owned(request, key, message_id))


@router.post("/{message_id}/cancel", response_model=MessageOut, responses=responses(401, 404, 409, 422, 503))
async def cancel_message(request: Request, message_id: str, key: Key) -> MessageOut:
    """Cancel; 409 names the status that prevents it (once ``sending`` started, it cannot be stopped)."""
    await owned(request, key, message_id)
    outcome = await scheduler_of(request).cancel(message_id, by=key.label or f"key:{key.id}")
    if not outcome.cancelled:
        raise ApiProblem(409, "Conflict with the current status", f"the message is {outcome.status}", field="status")
    return MessageOut.of(outcome.message)
