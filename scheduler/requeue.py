"""Handing a message back to the clock: one transition to ``programmed`` plus its new versioned job."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis

from scheduler.enqueue import Queue, enqueue_dispatch
from sendq.message import Message
from sendq.policy import Verdict
from sendq.status import MessageStatus
from sendq.store import MessageStore, Transition


async def reprogram(
    store: MessageStore,
    arq: ArqRedis,
    message_id: str,
    *,
    queue: Queue,
    from_: Iterable[MessageStatus],
    expected_version: int,
    now: datetime,
    due_at: datetime,
    reason: str,
    detail: str | None = None,
    lease_expired_by: datetime | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Transition:
    """Move the message to ``programmed`` at ``due_at`` under a new job version, then enqueue that job.

    Bumping the version is what makes every earlier job of the message a no-op. A job due later than
    ``queue.ahead``, or one lost to a crash right here, is given by the hand-over sweep.
    """
    result = await store.transition(
        message_id,
        from_=from_,
        to=MessageStatus.PROGRAMMED,
        now=now,
        reason=reason,
        detail=detail,
        expected_version=expected_version,
        bump_version=True,
        due_at=due_at,
        lease_expired_by=lease_expired_by,
        fields=fields,
    )
    if result.ok:
        at = due_at if due_at > now else None
        await enqueue_dispatch(arq, message_id, result.job_version, at=at, queue=queue)
    return result


async def block(
    store: MessageStore,
    arq: ArqRedis,
    message: Message,
    *,
    queue: Queue,
    expected_version: int,
    now: datetime,
    verdict: Verdict,
) -> Transition:
    """Move a claimed message to ``blocked_time``: deferred (a new job at the release time) or held (no job).

    A deferred message keeps the validity it had left, counted from its release.
    """
    release = verdict.release_at
    fields: dict[str, Any] = {}
    if release is not None:
        fields["valid_until"] = max(message.valid_until, release + (message.valid_until - message.due_at))
    result = await store.transition(
        message.id,
        from_={MessageStatus.PROCESSING},
        to=MessageStatus.BLOCKED_TIME,
        now=now,
        reason=verdict.reason,
        detail=verdict.detail,
        expected_version=expected_version,
        bump_version=True,
        due_at=release,
        fields=fields,
    )
    if result.ok and release is not None:
        await enqueue_dispatch(arq, message.id, result.job_version, at=release, queue=queue)
    return result
