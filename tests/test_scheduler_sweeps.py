"""Sweeps: messages left by dead workers are resolved, lost jobs are re-driven, retention purges."""

from datetime import timedelta

import pytest
from arq.connections import ArqRedis

from providers.mock import MockProvider
from scheduler.intake import Scheduler
from scheduler.sweeps import run_sweeps
from sendq.message import utcnow
from sendq.settings import Settings
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from tests.conftest import RunWorker
from tests.helpers import leave_claimed, new_message, statuses


async def test_dead_worker_in_processing_is_released(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """processing past its lease goes back to programmed and is sent by a new job."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.PROCESSING)
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=1))
    assert report.released == 1
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and len(provider.sent) == 1
    assert "worker_lost" in [h.reason for h in got.history]


async def test_lease_not_expired_is_left_alone(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """A live worker's message (lease running) is not touched."""
    msg = (await scheduler.program(new_message())).message
    now = utcnow()
    await store.transition(msg.id, from_={S.PROGRAMMED}, to=S.PROCESSING, now=now, lease_until=now + timedelta(60))
    report = await run_sweeps(store, fake_arq, settings, now)
    assert report.released == 0
    assert (await scheduler.get(msg.id)).status is S.PROCESSING


async def test_dead_worker_in_sending_resends_with_same_key(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """sending past its lease, idempotent provider: resent with the same key, so at most one real send."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=True)
    provider = MockProvider()
    # The killed worker's request had reached the provider.
    await provider.send(msg, idempotency_key=f"{msg.id}:1")
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=1))
    assert report.resent == 1
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.reason == "repeat_acknowledged"
    assert len(provider.accepted()) == 1 and provider.sent[-1].repeat
    assert got.provider_message_id == provider.accepted()[0].provider_message_id


async def test_dead_worker_in_sending_without_idempotency_is_unknown_outcome(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """sending past its lease, provider without idempotency keys: error unknown_outcome, never a resend."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=1))
    assert report.unknown_outcome == 1
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason) == (S.ERROR, "unknown_outcome")


async def test_lost_job_is_redriven(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """A due programmed message whose arq job vanished (e.g. Redis lost it) gets a new job and is sent."""
    msg = (await scheduler.program(new_message())).message
    await fake_arq.delete(f"arq:job:{msg.job_id}")
    await fake_arq.zrem(settings.queue_name, msg.job_id)
    early = await run_sweeps(store, fake_arq, settings, utcnow())
    assert early.redriven == 0  # not overdue by redrive_after_s yet
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=settings.redrive_after_s + 1))
    assert report.redriven == 1
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.job_version == 2 and len(provider.sent) == 1
    assert statuses(got.history)[:2] == ["programmed", "programmed"] and got.history[1].reason == "job_missing"


async def test_live_job_is_not_redriven(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """An overdue message whose job is still queued is left to that job."""
    await scheduler.program(new_message())
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=settings.redrive_after_s + 1))
    assert report.redriven == 0


async def test_sweep_is_idempotent(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """Two sweeps over the same dead claim release it once."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.PROCESSING)
    later = utcnow() + timedelta(seconds=1)
    first = await run_sweeps(store, fake_arq, settings, later)
    second = await run_sweeps(store, fake_arq, settings, later)
    assert (first.released, second.released) == (1, 0)
    got = await scheduler.get(msg.id)
    assert statuses(got.history) == ["programmed", "processing", "programmed"]


async def test_redrive_pages_past_a_live_backlog(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost job behind more overdue messages than one page (whose jobs are alive) is still re-driven."""
    from scheduler import sweeps

    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 3)
    ids = [(await scheduler.program(new_message(to=f"+141555500{i:02d}"))).message.id for i in range(7)]
    lost = await scheduler.get(ids[-1])
    await fake_arq.delete(f"arq:job:{lost.job_id}")
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=settings.redrive_after_s + 1))
    assert report.redriven == 1
    assert (await scheduler.get(ids[-1])).job_version == 2
