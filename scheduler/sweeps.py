"""Sweeps that run on a clock (as a unique arq cron job): nothing is lost silently.

- leases: a message left in ``processing`` or ``sending`` by a dead worker is taken back;
- hand-over: a ``programmed`` (or deferred ``blocked_time``) message due soon with no arq job gets one (it was
  programmed further ahead, the queue had no room for it, or its job was lost: Redis restart, expired job key, a
  crash between store and enqueue); this one also runs every second on its own;
- receipts: a ``sent`` message (or a ``delivered`` one on a channel that reports "read") with no final receipt by
  its subaccount's receipt timeout becomes ``timed_out``; a late receipt still applies;
- retention: final messages past retention are deleted with their index entries.
"""

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.exceptions import LockError

from scheduler.enqueue import Queue, Room, enqueue_many
from scheduler.requeue import reprogram
from sendq import keys
from sendq.channel import READ_RECEIPT_CHANNELS
from sendq.message import Message, dispatch_job_id, to_ms
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.store import MessageStore

log = structlog.get_logger("sendq.sweep")

#: messages read per page; lease recovery handles one page per sweep, the rest wait for the next tick
SWEEP_LIMIT = 1000
#: due messages the hand-over sweep checks per run (those with a job are passed over)
HAND_OVER_SCAN_LIMIT = 20_000
#: due messages checked per hand-over when the counts say every one most likely has its job
AUDIT_SLICE = 500
#: the hand-over's lock expires after this long if its holder dies
HAND_OVER_LOCK_S = 30.0
#: seconds of provider lookups per sweep (each may take a provider timeout); the rest wait for the next sweep
RECONCILE_BUDGET_S = 20.0
#: a message whose provider could not be asked is asked again after this long
RECONCILE_RETRY_S = 60.0


#: What asking the provider about a message found in ``sending`` gave: ``sent`` (it had the message; now recorded),
#: ``absent`` (it has no record: resending is safe), ``unknown`` (it could not be asked; try at the next sweep).
ReconcileOutcome = Literal["sent", "absent", "unknown"]
#: Asks the message's provider, or returns None when that provider has no status query.
Reconcile = Callable[[Message, datetime], Awaitable[ReconcileOutcome | None]]


@dataclass(slots=True)
class SweepReport:
    released: int = 0
    resent: int = 0
    unknown_outcome: int = 0
    reconciled: int = 0
    handed_over: int = 0
    timed_out: int = 0
    purged: int = 0
    skipped: list[str] = field(default_factory=list)


def resolve_interrupted_send(message: Message, max_attempts: int) -> MessageStatus:
    """The product decision for a message found in ``sending`` after its worker died.

    The provider call may or may not have been accepted. Resending is safe only when the provider honours
    idempotency keys (the next attempt reuses the same key, so a provider that accepted it answers with the
    first id); otherwise sendq must not risk a second send and ends the message in ``error``.
    """
    if message.provider_idempotent and message.attempts < max_attempts:
        return MessageStatus.PROGRAMMED
    return MessageStatus.ERROR


async def recover_leases(
    store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime, reconcile: Reconcile | None = None
) -> SweepReport:
    """Take back messages whose worker lease ran out.

    A message left in ``sending`` is first reconciled with its provider when the provider can be asked
    (``reconcile``): found there, it is recorded as sent; absent, it is resent; unreachable, it waits for the
    next sweep (until its validity ends: then ``error``/``unknown_outcome``).
    """
    report = SweepReport()
    queue = Queue.of(settings)
    started = time.monotonic()
    ids = await store.lease_expired(now, SWEEP_LIMIT)
    for message in await store.get_many(ids):
        if message.status is MessageStatus.PROCESSING:
            result = await reprogram(
                store,
                arq,
                message.id,
                queue=queue,
                from_={MessageStatus.PROCESSING},
                expected_version=message.job_version,
                now=now,
                due_at=message.due_at,
                reason="worker_lost",
                detail="released: the worker died before any provider call",
                lease_expired_by=now,
            )
            report.released += int(result.ok)
        elif message.status is MessageStatus.SENDING:
            outcome: ReconcileOutcome | None = None
            if reconcile is not None:
                if time.monotonic() - started > RECONCILE_BUDGET_S:
                    # Provider lookups are slow when a provider is: leave the rest to the next sweeps, so that
                    # hand-over, receipt time-outs and retention still run now.
                    report.skipped.append(message.id)
                    continue
                outcome = await reconcile(message, now)
            if outcome == "sent":
                report.reconciled += 1
                continue
            if outcome == "unknown" and now <= message.valid_until:
                # Ask again later; meanwhile newer lost leases come first in the lease index.
                await store.extend_lease(message.id, now + timedelta(seconds=RECONCILE_RETRY_S))
                report.skipped.append(message.id)
                continue
            decision = resolve_interrupted_send(message, settings.max_attempts)
            if outcome == "absent" and message.attempts < settings.max_attempts:
                decision = MessageStatus.PROGRAMMED
            if decision is MessageStatus.PROGRAMMED:
                result = await reprogram(
                    store,
                    arq,
                    message.id,
                    queue=queue,
                    from_={MessageStatus.SENDING},
                    expected_version=message.job_version,
                    now=now,
                    due_at=message.due_at,
                    reason="worker_lost_during_send",
                    detail=(
                        "the provider has no record of it: resending"
                        if outcome == "absent"
                        else f"resending with the same idempotency key {message.idempotency_key}"
                    ),
                    lease_expired_by=now,
                    fields={"reuse_key": True},
                )
                report.resent += int(result.ok)
            else:
                result = await store.transition(
                    message.id,
                    from_={MessageStatus.SENDING},
                    to=MessageStatus.ERROR,
                    now=now,
                    reason="unknown_outcome",
                    detail="the worker died during the provider call and the provider has no idempotency key",
                    expected_version=message.job_version,
                    lease_expired_by=now,
                )
                report.unknown_outcome += int(result.ok)
        else:
            report.skipped.append(message.id)
    return report


async def hand_over_due(
    store: MessageStore, arq: ArqRedis, queue: Queue, now: datetime, report: SweepReport, *, audit: bool = True
) -> None:
    """Give an arq job to each waiting message due within ``queue.ahead`` that has none, soonest due first, while
    the queue has room (see ``scheduler.enqueue.Queue``).

    This is how messages programmed further ahead, and the part of a large batch the queue had no room for, reach
    the workers. It also re-creates jobs that were lost: a Redis restart, an expired job key, a crash between
    storing a message and enqueueing it. A job written twice is one job (same versioned id), and one for a message
    that moved on does nothing, so this is safe alongside intake, workers and itself.

    ``audit`` False leaves out the slice audit below (the per-second run; the sweep audits).
    """
    # One hand-over at a time (every worker runs it, and the sweep too): two would both fill the same room.
    lock = arq.lock(keys.HAND_OVER_LOCK, timeout=HAND_OVER_LOCK_S)
    if not await lock.acquire(blocking=False):
        return
    try:
        await _hand_over(store, arq, queue, now, report, audit)
    finally:
        with contextlib.suppress(LockError):  # held past its timeout and taken over: that one releases it
            await lock.release()


#: KEYS: the mark. ARGV: the mark as read ('' when absent), the new mark. Sets it unless someone lowered it since.
_ADVANCE_MARK: Final = """
if (redis.call('GET', KEYS[1]) or '') == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""


async def _hand_over(
    store: MessageStore, arq: ArqRedis, queue: Queue, now: datetime, report: SweepReport, audit: bool
) -> None:
    room = await queue.room(arq, now)
    if not room.left:
        return
    until = now + queue.ahead
    async with arq.pipeline(transaction=False) as pipe:
        pipe.zcount(keys.DUE, "-inf", to_ms(until))
        pipe.zcount(queue.name, "-inf", to_ms(until))
        pipe.get(keys.HAND_OVER_MARK)
        waiting, queued, raw_mark = await pipe.execute()
    mark = None if raw_mark is None else int(raw_mark)
    # Every waiting message due up to the mark had its job at the last run, or whoever left one without a job since
    # lowered the mark: only later ones need looking at, not the whole due index every second. More waiting messages
    # than jobs means some have none (jobs in progress and cron entries pad the count): then look from the start.
    since = None if mark is None or int(waiting) > int(queued) else mark
    new_mark = await _scan(store, arq, queue, now, since, room, report)
    reply = arq.eval(_ADVANCE_MARK, 1, keys.HAND_OVER_MARK, "" if raw_mark is None else raw_mark, str(new_mark))
    await cast("Awaitable[Any]", reply)  # redis-py types eval as its sync client's
    if audit:
        # A lost job (Redis restart, expired key) is behind the mark and may hide in the counts: audit a slice per
        # sweep, in turn. It is found within waiting / AUDIT_SLICE sweeps.
        await _audit(store, arq, queue, now, until, room, report)


async def _scan(
    store: MessageStore, arq: ArqRedis, queue: Queue, now: datetime, since: int | None, room: Room, report: SweepReport
) -> int:
    """Give jobs to the jobless waiting messages due after ``since`` (ms; None: from the start) and within the
    window, soonest first, while there is room. Returns the new mark: the window's end when every one got its
    job, else just before the first that did not (or before the last score scanned, when the scan limit hit)."""
    until = now + queue.ahead
    offset = 0
    while offset < HAND_OVER_SCAN_LIMIT:
        page = await store.due_entries(until, SWEEP_LIMIT, offset, after_ms=since)
        taken: list[tuple[str, int, datetime]] = []
        refused = None
        for job in await _jobless(store, arq, queue, page):
            if not room.take(job[2], now):
                refused = job[2]
                break
            taken.append(job)
        if taken:
            await enqueue_many(arq, taken, queue_name=queue.name)
        report.handed_over += len(taken)
        if refused is not None:
            return to_ms(refused) - 1
        if len(page) < SWEEP_LIMIT:
            return to_ms(until)
        offset += len(page)
    return to_ms(page[-1][1]) - 1


async def _audit(
    store: MessageStore, arq: ArqRedis, queue: Queue, now: datetime, until: datetime, room: Room, report: SweepReport
) -> None:
    offset = int(await arq.get(keys.HAND_OVER_AUDIT) or 0)
    page = await store.due_entries(until, AUDIT_SLICE, offset)
    await _give_jobs(store, arq, queue, now, page, room, report)
    await arq.set(keys.HAND_OVER_AUDIT, offset + len(page) if len(page) == AUDIT_SLICE else 0)


async def _give_jobs(
    store: MessageStore,
    arq: ArqRedis,
    queue: Queue,
    now: datetime,
    page: list[tuple[str, datetime]],
    room: Room,
    report: SweepReport,
) -> None:
    taken = [job for job in await _jobless(store, arq, queue, page) if room.take(job[2], now)]
    if taken:
        await enqueue_many(arq, taken, queue_name=queue.name)
    report.handed_over += len(taken)


async def _jobless(
    store: MessageStore, arq: ArqRedis, queue: Queue, page: list[tuple[str, datetime]]
) -> list[tuple[str, int, datetime]]:
    """(id, job version, due time) of the waiting messages of ``page`` whose current job is neither queued nor
    running, in due order. A queued job needs both its queue entry and its job key: a job key without its queue
    entry (a crash between the two writes) never runs, and a queue entry without its key fails as expired."""
    # A deferred blocked_time message is due like a programmed one: its job releases it.
    versions = await store.waiting_versions([message_id for message_id, _ in page])
    waiting = [(i, versions[i], due) for i, due in page if i in versions]
    if not waiting:
        return []
    async with arq.pipeline(transaction=False) as pipe:
        for message_id, version, _ in waiting:
            job_id = dispatch_job_id(message_id, version)
            pipe.zscore(queue.name, job_id)
            pipe.exists(job_key_prefix + job_id)
            pipe.exists(in_progress_key_prefix + job_id)
        replies = await pipe.execute()
    alive = [
        (score is not None and has_key) or running
        for score, has_key, running in zip(replies[::3], replies[1::3], replies[2::3], strict=True)
    ]
    return [job for job, ok in zip(waiting, alive, strict=True) if not ok]


async def time_out_receipts(store: MessageStore, now: datetime, report: SweepReport) -> None:
    """``timed_out`` for messages past their receipt deadline that still lack a final receipt."""
    ids = await store.awaiting_receipt(now, SWEEP_LIMIT)
    if not ids:
        return
    messages = await store.get_many(ids)
    waiting = [
        m
        for m in messages
        if m.status is MessageStatus.SENT
        or (m.status is MessageStatus.DELIVERED and m.channel in READ_RECEIPT_CHANNELS)
    ]
    calls: list[dict[str, Any]] = [
        {
            "message_id": m.id,
            "from_": {m.status},
            "to": MessageStatus.TIMED_OUT,
            "now": now,
            "reason": "receipt_timeout",
            "detail": f"no {'read' if m.status is MessageStatus.DELIVERED else 'final'} receipt by the deadline",
        }
        for m in waiting
    ]
    done = await store.transitions(calls) if calls else []
    report.timed_out += sum(t.ok for t in done)
    # Delivered on a channel without read receipts, already final, or gone: nothing left to wait for.
    await store.stop_awaiting(sorted(set(ids) - {m.id for m in waiting}))


async def run_sweeps(
    store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime, reconcile: Reconcile | None = None
) -> SweepReport:
    """All sweeps, in order; each is safe to run concurrently with workers and with itself."""
    report = await recover_leases(store, arq, settings, now, reconcile)
    await hand_over_due(store, arq, Queue.of(settings), now, report)
    await time_out_receipts(store, now, report)
    report.purged = await store.purge_expired(now)
    counts = {
        "released": report.released,
        "resent": report.resent,
        "unknown_outcome": report.unknown_outcome,
        "reconciled": report.reconciled,
        "handed_over": report.handed_over,
        "timed_out": report.timed_out,
        "purged": report.purged,
    }
    if any(counts.values()):
        log.info("sweep.done", **counts)
    return report
