"""Sweeps that run on a clock (as a unique arq cron job): nothing is lost silently.

- leases: a message left in ``processing`` or ``sending`` by a dead worker is taken back;
- re-drive: a ``programmed`` (or deferred ``blocked_time``) message overdue with no arq job (Redis restart, expired job key, a crash
  between store and enqueue) gets a new versioned job;
- retention: final messages past retention are deleted with their index entries.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from scheduler.requeue import reprogram
from sendq.message import Message, dispatch_job_id
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.store import MessageStore

log = structlog.get_logger("sendq.sweep")

#: messages read per page; lease recovery handles one page per sweep, the rest wait for the next tick
SWEEP_LIMIT = 1000
#: overdue messages the re-drive sweep checks per sweep
REDRIVE_SCAN_LIMIT = 20_000


@dataclass(slots=True)
class SweepReport:
    released: int = 0
    resent: int = 0
    unknown_outcome: int = 0
    redriven: int = 0
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


async def recover_leases(store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime) -> SweepReport:
    report = SweepReport()
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
            decision = resolve_interrupted_send(message, settings.max_attempts)
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
                    detail=f"resending with the same idempotency key {message.idempotency_key}",
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


async def run_sweeps(store: MessageStore, arq: ArqRedis, settings: Settings, now: datetime) -> SweepReport:
    """All sweeps, in order; each is safe to run concurrently with workers and with itself."""
    report = await recover_leases(store, arq, settings, now)
    await redrive_due(store, arq, settings, now, report)
    report.purged = await store.purge_expired(now)
    if report.released or report.resent or report.unknown_outcome or report.redriven or report.purged:
        log.info(
            "sweep.done",
            released=report.released,
            resent=report.resent,
            unknown_outcome=report.unknown_outcome,
            redriven=report.redriven,
            purged=report.purged,
        )
    return report
