"""Sweeps that run on a clock (as a unique arq cron job): nothing is lost silently.

- leases: a message left in ``processing`` or ``sending`` by a dead worker is taken back;
- re-drive: a ``programmed`` (or deferred ``blocked_time``) message overdue with no arq job (Redis restart, expired job key, a crash
  between store and enqueue) gets a new versioned job;
- receipts: a ``sent`` message (or a ``delivered`` one on a channel that reports "read") with no final receipt by
  its subaccount's receipt timeout becomes ``timed_out``; a late receipt still applies;
- retention: final messages past retention are deleted with their index entries.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from scheduler.requeue import reprogram
from sendq.channel import READ_RECEIPT_CHANNELS
from sendq.message import Message, dispatch_job_id
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.store import MessageStore

log = structlog.get_logger("sendq.sweep")

#: messages read per page; lease recovery handles one page per sweep, the rest wait for the next tick
SWEEP_LIMIT = 1000
#: overdue messages the re-drive sweep checks per sweep
REDRIVE_SCAN_LIMIT = 20_000
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
    redriven: int = 0
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
    started = time.monotonic()
    ids = await store.lease_expired(now, SWEEP_LIMIT)
    for message in await store.get_many(ids):
        if message.status is MessageStatus.PROCESSING:
            result = await reprogram(
                store,
                arq,
                message.id,
                queue_name=settings.queue_name,
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
                    # re-drive, receipt time-outs and retention still run now.
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
                    queue_name=settings.queue_name,
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


async def redrive_due(
    store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime, report: SweepReport
) -> None:
    """Give a new job to every overdue programmed message whose job is gone.

    Pages through the overdue set (up to ``REDRIVE_SCAN_LIMIT`` per sweep), so a lost job behind a large live
    backlog is still found; an overdue message whose job is queued or running is left to that job.
    """
    until = now - timedelta(seconds=settings.redrive_after_s)
    for offset in range(0, REDRIVE_SCAN_LIMIT, SWEEP_LIMIT):
        page = await store.waiting_due(until, SWEEP_LIMIT, offset)
        await _redrive_page(store, arq, settings, now, page, report)
        if len(page) < SWEEP_LIMIT:
            return


async def _redrive_page(
    store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime, ids: list[str], report: SweepReport
) -> None:
    # A deferred blocked_time message past its release time is due like a programmed one.
    waiting = {MessageStatus.PROGRAMMED, MessageStatus.BLOCKED_TIME}
    messages = [m for m in await store.get_many(ids) if m.status in waiting]
    if not messages:
        return
    async with arq.pipeline(transaction=False) as pipe:
        for m in messages:
            job_id = dispatch_job_id(m.id, m.job_version)
            pipe.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id)
        alive = await pipe.execute()
    for message, count in zip(messages, alive, strict=True):
        if count:
            continue
        result = await reprogram(
            store,
            arq,
            message.id,
            queue_name=settings.queue_name,
            from_=waiting,
            expected_version=message.job_version,
            now=now,
            due_at=message.due_at,
            reason="job_missing",
            detail=f"re-enqueued: job {message.job_id} was gone",
        )
        report.redriven += int(result.ok)


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
    await redrive_due(store, arq, settings, now, report)
    await time_out_receipts(store, now, report)
    report.purged = await store.purge_expired(now)
    counts = {
        "released": report.released,
        "resent": report.resent,
        "unknown_outcome": report.unknown_outcome,
        "reconciled": report.reconciled,
        "redriven": report.redriven,
        "timed_out": report.timed_out,
        "purged": report.purged,
    }
    if any(counts.values()):
        log.info("sweep.done", **counts)
    return report
