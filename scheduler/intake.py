"""Programming, cancelling and rescheduling messages: the scheduler's front door."""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from pydantic import ValidationError
from redis.exceptions import RedisError

from scheduler.enqueue import Queue, discard_dispatch, enqueue_dispatch, enqueue_many, left_without_job
from scheduler.requeue import reprogram
from sendq.channel import Channel
from sendq.errors import InvalidInput, MessageNotFound
from sendq.message import HistoryEntry, Message, NewMessage, is_message_id, new_message_id, to_ms, utcnow, whole_ms
from sendq.policy import Policy, Verdict
from sendq.segments import count_segments
from sendq.settings import Settings
from sendq.status import CANCELLABLE_STATUSES, MessageStatus
from sendq.store import BIRTH_REASON, MessageStore, Transition
from sendq.subaccounts import RuleContext, SubaccountStore

log = structlog.get_logger("sendq.scheduler")


@dataclass(frozen=True, slots=True)
class Programmed:
    message: Message
    #: False when the reference_id matched an existing message, which is returned instead
    created: bool


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    #: the cancel took: no provider call for this message will start
    cancelled: bool
    #: the status now (CANCELLED, or the one that prevented the cancel)
    status: MessageStatus
    message: Message

    @property
    def maybe_sent(self) -> bool:
        """An earlier attempt timed out with its outcome unknown: the provider may have delivered it."""
        return self.cancelled and self.message.reuse_key


#: the shape of the ids sendq makes (``new_message_id``); anything else cannot name a message


def _check_id(message_id: str) -> None:
    if not is_message_id(message_id):
        raise MessageNotFound(message_id)


@functools.lru_cache(maxsize=64)
def _span(seconds: float) -> timedelta:
    """A configured number of seconds as a timedelta (made once: batch intake asks twice per message)."""
    return timedelta(seconds=seconds)


def parse_new_message(data: dict[str, Any]) -> NewMessage:
    """Validate raw input; the first problem becomes an ``InvalidInput`` naming its field."""
    try:
        return NewMessage.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "message"
        raise InvalidInput(field, err["msg"].removeprefix("Value error, ")) from None


def _refused(message: Message, verdict: Verdict, now: datetime) -> Message:
    """The record of a message a rule refused at intake: stored with its status, reason and history entry."""
    assert verdict.status is not None
    changes: dict[str, Any] = {
        "status": verdict.status,
        "reason": verdict.reason,
        "history": [HistoryEntry(status=verdict.status, at=now, reason=verdict.reason, detail=verdict.detail)],
    }
    if verdict.release_at is not None:
        # Deferred: it goes out at the release time and keeps its whole validity from then.
        changes["due_at"] = verdict.release_at
        changes["valid_until"] = max(message.valid_until, verdict.release_at + (message.valid_until - message.due_at))
    return message.model_copy(update=changes)


@dataclass(frozen=True, slots=True)
class BatchStamp:
    """What every message of one batch carries: applied as the records are built (not by copying each item)."""

    subaccount: str
    batch_id: str
    #: the uploaded file's name; None leaves each item's own
    file_name: str | None
    #: the default for items that name no creator
    created_by: str | None


@dataclass(slots=True)
class Prepared:
    """Messages built and judged, not stored yet (``Scheduler.prepare_many``)."""

    now: datetime
    #: per input item: its result when it was refused already (InvalidInput), None when it is in ``judged``
    results: list[Programmed | InvalidInput | None]
    #: (input index, the record as the rules leave it, held for an operator)
    judged: list[tuple[int, Message, bool]]


class Scheduler:
    """Admits messages into the store and keeps their arq jobs in step with it."""

    def __init__(self, store: MessageStore, arq: ArqRedis, settings: Settings) -> None:
        self.store = store
        self.arq = arq
        self.settings = settings
        self.queue = Queue.of(settings)
        self.subaccounts = SubaccountStore(store.redis)
        self.rules = Policy.from_settings(settings)

    async def program(self, new: NewMessage, *, now: datetime | None = None) -> Programmed:
        """Judge a message by its subaccount's rules, store it, and enqueue its dispatch at ``send_at`` (or now).

        A message a rule refuses is stored too, with its status and reason, so that it shows in the lists:
        ``error`` (suppressed, restricted content, outside the WhatsApp window, ...) or ``blocked_time`` (its
        time is outside the subaccount's windows: deferred to the next allowed instant, or held).

        Raises:
            InvalidInput: the send time is already past the message's validity (nothing is stored).
        """
        now = whole_ms(now or utcnow())
        message = self.build(new, now)
        ctx = await self.subaccounts.context(message.subaccount, message.channel, message.to)
        message, held = self.judge(message, ctx, now)
        found_id, created = await self.store.create(message, held=held)
        if not created:
            existing = await self.store.get(found_id)
            if existing is None:  # purged between the two calls; vanishingly rare
                raise MessageNotFound(found_id)
            return Programmed(existing, created=False)
        if message.status is MessageStatus.ERROR or held:  # no job: nothing to send, or an operator decides
            return Programmed(message, created=True)
        at = message.due_at if message.due_at > now else None
        try:
            await enqueue_dispatch(self.arq, message.id, message.job_version, at=at, queue=self.queue)
        except RedisError as exc:
            # The message is stored, so this call succeeded: reporting a failure would invite a second message.
            # The hand-over sweep gives the message its job.
            log.warning("message.enqueue_deferred_to_sweep", message_id=message.id, error=repr(exc))
        return Programmed(message, created=True)

    def build(self, new: NewMessage, now: datetime, stamp: BatchStamp | None = None) -> Message:
        """The record of a new message, programmed, before the rules judge it (as a message of the batch
        ``stamp`` names, if one does).

        Raises:
            InvalidInput: the send time is beyond the horizon or already past the message's validity.
        """
        base = new.send_at or now
        self.check_horizon("send_at", base, now)
        validity = new.validity or _span(self.settings.validity_s)
        if validity > _span(self.settings.max_schedule_ahead_s):
            raise InvalidInput("validity", f"is longer than {self._horizon_text()}")
        valid_until = base + validity
        if valid_until <= now:
            raise InvalidInput("send_at", f"is more than its validity ({validity}) in the past")
        subaccount, batch_id, file_name, created_by = new.subaccount, new.batch_id, new.file_name, new.created_by
        if stamp is not None:
            subaccount, batch_id = stamp.subaccount, stamp.batch_id
            file_name = stamp.file_name or file_name
            created_by = created_by or stamp.created_by
        return Message(
            id=new_message_id(to_ms(now)),
            subaccount=subaccount,
            channel=new.channel,
            to=new.to,
            body=new.body,
            template=new.template,
            variables=new.variables,
            send_at=new.send_at,
            reference_id=new.reference_id,
            batch_id=batch_id,
            file_name=file_name,
            created_by=created_by,
            created_at=now,
            valid_until=valid_until,
            segments=count_segments(new.body).segments if new.channel is Channel.SMS and new.body else None,
            status=MessageStatus.PROGRAMMED,
            status_at=now,
            due_at=max(base, now),
            history=[HistoryEntry(status=MessageStatus.PROGRAMMED, at=now, reason=BIRTH_REASON)],
        )

    def judge(self, message: Message, ctx: RuleContext, now: datetime) -> tuple[Message, bool]:
        """The record as the subaccount's rules leave it, and whether it is held for an operator."""
        verdict = self.rules.check(message, ctx, message.due_at)
        if verdict.allowed:
            return message, False
        return _refused(message, verdict, now), verdict.status is MessageStatus.BLOCKED_TIME and not verdict.release_at

    async def program_many(
        self, news: Sequence[NewMessage], *, now: datetime | None = None
    ) -> list[Programmed | InvalidInput]:
        """``program`` for many messages of one subaccount with a few pipelined round trips (batch intake):
        one to read the rules, one to store, one to enqueue. Each result is the message or why it was refused.
        """
        return await self.store_prepared(await self.prepare_many(news, now=now))

    async def prepare_many(
        self, news: Sequence[NewMessage], *, now: datetime | None = None, stamp: BatchStamp | None = None
    ) -> "Prepared":
        """The first half of ``program_many``: build the records and judge them (one read of the rules). Batch
        intake prepares the next chunk while the previous one is being stored; its messages take ``stamp``."""
        now = whole_ms(now or utcnow())
        prepared = Prepared(now, [None] * len(news), [])
        if not news:
            return prepared
        subaccount = stamp.subaccount if stamp is not None else news[0].subaccount
        if stamp is None and any(n.subaccount != subaccount for n in news):
            raise ValueError("program_many takes messages of one subaccount")
        built: list[tuple[int, Message]] = []
        for i, new in enumerate(news):
            try:
                built.append((i, self.build(new, now, stamp)))
            except InvalidInput as exc:
                prepared.results[i] = exc
        ctxs = await self.subaccounts.contexts(subaccount, [(m.channel, m.to) for _, m in built])
        prepared.judged = [(i, *self.judge(m, ctx, now)) for (i, m), ctx in zip(built, ctxs, strict=True)]
        return prepared

    async def store_prepared(self, prepared: "Prepared") -> list[Programmed | InvalidInput]:
        """The second half of ``program_many``: store the judged records, then enqueue what is due soon."""
        results, now = prepared.results, prepared.now
        stored = await self.store.create_many([(m, held) for _, m, held in prepared.judged])
        jobs: list[tuple[str, int, datetime | None]] = []
        existing: dict[int, str] = {}
        for (i, message, held), (found_id, created) in zip(prepared.judged, stored, strict=True):
            if not created:
                existing[i] = found_id
                continue
            results[i] = Programmed(message, created=True)
            if message.status is not MessageStatus.ERROR and not held:
                jobs.append((message.id, message.job_version, message.due_at if message.due_at > now else None))
        if existing:
            found = {m.id: m for m in await self.store.get_many(existing.values())}
            for i, found_id in existing.items():
                if found_id in found:
                    results[i] = Programmed(found[found_id], created=False)
                else:  # purged between the two reads; vanishingly rare
                    results[i] = InvalidInput("reference_id", "matched a message that was just deleted; retry")
        await self._enqueue_soon(jobs, now)
        return [r for r in results if r is not None]

    async def _enqueue_soon(self, jobs: list[tuple[str, int, datetime | None]], now: datetime) -> None:
        """Jobs for the new messages due soon, as far as the queue has room; the hand-over sweep gives the rest
        theirs."""
        # Soonest due first: when the room runs out, the later ones wait for the hand-over.
        soon = sorted((job for job in jobs if self.queue.takes(job[2], now)), key=lambda job: job[2] or now)
        try:
            if soon:
                room = await self.queue.room(self.arq, now)
                taken = [job for job in soon if room.take(job[2], now)]
                await enqueue_many(self.arq, taken, queue_name=self.queue.name)
                if len(taken) < len(soon):
                    left = min(job[2] or now for job in soon if job not in taken)
                    await left_without_job(self.arq, left)
        except RedisError as exc:
            # As in `program`: the messages are stored, so the call succeeded; the sweep gives them their jobs.
            log.warning("batch.enqueue_deferred_to_sweep", messages=len(soon), error=repr(exc))

    async def cancel_many(
        self, message_ids: Sequence[str], *, by: str | None = None, now: datetime | None = None
    ) -> list[Transition]:
        """Cancel many messages with one pipelined compare-and-set each; leftover jobs are discarded (tidiness:
        they would do nothing anyway)."""
        now = now or utcnow()
        outcomes = await self.store.transition_many(
            message_ids,
            from_=CANCELLABLE_STATUSES,
            to=MessageStatus.CANCELLED,
            now=now,
            reason="cancelled",
            detail=f"by {by}" if by else None,
        )
        await self._tidy([(i, o.job_version) for i, o in zip(message_ids, outcomes, strict=True) if o.ok])
        return outcomes

    def _horizon_text(self) -> str:
        return f"{self.settings.max_schedule_ahead_s / 86400:g} days (SENDQ_MAX_SCHEDULE_AHEAD_S)"

    def check_horizon(self, field: str, at: datetime, now: datetime) -> None:
        if at - now > _span(self.settings.max_schedule_ahead_s):
            raise InvalidInput(field, f"is more than {self._horizon_text()} ahead")

    async def get(self, message_id: str) -> Message:
        _check_id(message_id)
        message = await self.store.get(message_id)
        if message is None:
            raise MessageNotFound(message_id)
        return message

    async def cancel(self, message_id: str, *, now: datetime | None = None, by: str | None = None) -> CancelOutcome:
        """Cancel if the message is still cancellable; the answer says whether it took.

        Once this returns ``cancelled=True`` no provider call for the message starts: the worker's next
        compare-and-set (to ``sending``) finds ``cancelled`` and stops.
        """
        _check_id(message_id)
        (result,) = await self.cancel_many([message_id], by=by, now=now)
        if result.status is None:
            raise MessageNotFound(message_id)
        return CancelOutcome(result.ok, result.status, await self.get(message_id))

    async def _tidy(self, jobs: Sequence[tuple[str, int]]) -> None:
        # Best effort: a leftover job is a no-op (version guard), so a failure here must not fail the call.
        if not jobs:
            return
        try:
            await discard_dispatch(self.arq, jobs, queue_name=self.queue.name)
        except RedisError as exc:
            log.warning("message.discard_failed", jobs=len(jobs), error=repr(exc))

    async def reschedule(self, message_id: str, at: datetime, *, now: datetime | None = None) -> Message:
        """Move a programmed (or blocked) message to a new send time; its validity window moves with it.

        Raises:
            InvalidInput: naive time, or the message is no longer waiting.
            MessageNotFound: no such message.
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidInput("at", "must be timezone-aware")
        now = now or utcnow()
        self.check_horizon("at", at, now)
        message = await self.get(message_id)
        ctx = await self.subaccounts.context(message.subaccount, message.channel, message.to)
        blocked = self.rules.window(message, ctx, max(at, now))
        if not blocked.allowed:
            # An operator moving a message out of blocked_time wants it to go; a time still outside the windows
            # would only block it again at send time.
            windows = ctx.rules.windows
            nxt = windows.next_allowed(max(at, now))
            hint = f"; the next allowed time is {nxt.isoformat()}" if nxt else ""
            raise InvalidInput(
                "at", f"is outside the sending windows of subaccount {message.subaccount} ({windows.describe()}){hint}"
            )
        window = message.valid_until - (message.send_at or message.created_at)
        result = await reprogram(
            self.store,
            self.arq,
            message_id,
            queue=self.queue,
            from_={MessageStatus.PROGRAMMED, MessageStatus.BLOCKED_TIME},
            expected_version=message.job_version,
            now=now,
            due_at=max(at, now),
            reason="rescheduled",
            detail=at.isoformat(),
            fields={"send_at": at, "valid_until": at + window},
        )
        if not result.ok:
            raise InvalidInput("id", f"cannot reschedule a message in status {result.status}")
        await self._tidy([(message_id, message.job_version)])
        return await self.get(message_id)
