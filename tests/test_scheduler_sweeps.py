"""Sweeps: messages left by dead workers are resolved, due messages get their jobs (hand-over), retention purges."""

import asyncio
from datetime import timedelta

import pytest
from arq.connections import ArqRedis

from providers.mock import MockProvider
from scheduler.enqueue import Queue
from scheduler.intake import Programmed, Scheduler
from scheduler.sweeps import SweepReport, hand_over_due, run_sweeps
from sendq import keys
from sendq.message import to_ms, utcnow
from sendq.settings import Settings
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from tests.conftest import RunWorker
from tests.helpers import leave_claimed, new_message, phone, statuses


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


async def test_lost_job_is_handed_over_again(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """A due programmed message whose arq job vanished (e.g. Redis lost it) gets its job back and is sent once."""
    msg = (await scheduler.program(new_message())).message
    await fake_arq.delete(f"arq:job:{msg.job_id}")
    await fake_arq.zrem(settings.queue_name, msg.job_id)
    report = await run_sweeps(store, fake_arq, settings, utcnow())
    assert report.handed_over == 1
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.job_version == 1 and len(provider.sent) == 1
    assert statuses(got.history) == ["programmed", "processing", "sending", "sent"]


async def test_live_job_is_not_handed_over_again(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """A due message whose job is still queued is left to that job."""
    msg = (await scheduler.program(new_message())).message
    report = await run_sweeps(store, fake_arq, settings, utcnow() + timedelta(seconds=30))
    assert report.handed_over == 0
    assert await fake_arq.zrange(settings.queue_name, 0, -1) == [msg.job_id.encode()]


async def test_a_message_programmed_far_ahead_gets_its_job_when_it_comes_near(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """Only the store holds a message due later than enqueue_ahead_s; the hand-over gives it its job in time,
    at its send time."""
    now = utcnow()
    at = now + timedelta(hours=2)
    msg = (await scheduler.program(new_message(send_at=at))).message
    assert await fake_arq.zcard(settings.queue_name) == 0 and not await fake_arq.exists(f"arq:job:{msg.job_id}")
    early = await run_sweeps(store, fake_arq, settings, now + timedelta(hours=1))
    assert early.handed_over == 0 and await fake_arq.zcard(settings.queue_name) == 0
    near = at - timedelta(seconds=settings.enqueue_ahead_s)
    report = await run_sweeps(store, fake_arq, settings, near)
    assert report.handed_over == 1
    assert await fake_arq.zscore(settings.queue_name, msg.job_id) == to_ms(at)
    assert await fake_arq.exists(f"arq:job:{msg.job_id}")


async def test_a_batch_larger_than_the_queue_goes_out_a_queueful_at_a_time(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """With room for 3 jobs, a batch of 10 gets 3 jobs at intake; each hand-over tops the queue up to 3 as the
    workers drain it, and every message is sent exactly once."""
    small = settings.model_copy(update={"queue_max_jobs": 3})
    scheduler = Scheduler(store, fake_arq, small)
    programmed = await scheduler.program_many([new_message(to=phone(i)) for i in range(10)])
    ids = {p.message.id for p in programmed if isinstance(p, Programmed)}
    assert len(ids) == 10 and await fake_arq.zcard(small.queue_name) == 3
    full = await run_sweeps(store, fake_arq, small, utcnow())
    assert full.handed_over == 0  # no room: the queue is full
    provider = MockProvider()
    rounds = 0
    while len(provider.sent) < 10:
        await run_worker(provider)
        report = await run_sweeps(store, fake_arq, small, utcnow())
        assert report.handed_over == min(3, 10 - len(provider.sent))
        assert await fake_arq.zcard(small.queue_name) == report.handed_over
        rounds += 1
        assert rounds <= 4
    assert sorted(m.message_id for m in provider.sent) == sorted(ids)
    assert {m.status for m in await store.get_many(ids)} == {S.SENT}


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


async def test_hand_over_pages_past_a_live_backlog(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost job behind more due messages than one page (whose jobs are alive) is still found."""
    from scheduler import sweeps

    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 3)
    ids = [(await scheduler.program(new_message(to=f"+141555500{i:02d}"))).message.id for i in range(7)]
    lost = await scheduler.get(ids[-1])
    await fake_arq.delete(f"arq:job:{lost.job_id}")
    await fake_arq.zrem(settings.queue_name, lost.job_id)
    report = await run_sweeps(store, fake_arq, settings, utcnow())
    assert report.handed_over == 1
    assert await fake_arq.exists(f"arq:job:{lost.job_id}")


async def test_a_lost_job_hidden_by_the_counts_is_found_by_the_audit(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job lost behind the hand-over's mark, while arq's queue holds as many jobs as there are waiting messages
    (a job in progress pads the count), is found by the sweep's audit: a slice of the due index per run, in turn,
    the slices going round."""
    from scheduler import sweeps

    monkeypatch.setattr(sweeps, "AUDIT_SLICE", 2)
    ids = [(await scheduler.program(new_message(to=phone(i)))).message.id for i in range(5)]
    order = [i for i, _ in await store.due_entries(utcnow() + timedelta(minutes=1), 10)]
    assert (await run_sweeps(store, fake_arq, settings, utcnow())).handed_over == 0  # sets the mark
    await fake_arq.set(keys.HAND_OVER_AUDIT, 0)  # that sweep audited the first slice; start over
    lost = await scheduler.get(order[-1])  # in the last slice, and behind the mark
    await fake_arq.delete(f"arq:job:{lost.job_id}")
    await fake_arq.zadd(settings.queue_name, {"dispatch:in-progress-elsewhere:1": to_ms(utcnow())})
    found = [(await run_sweeps(store, fake_arq, settings, utcnow())).handed_over for _ in range(4)]
    assert found == [0, 0, 1, 0]
    assert await fake_arq.exists(f"arq:job:{lost.job_id}") and sorted(order) == sorted(ids)


async def test_concurrent_hand_overs_fill_the_room_once(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """The per-second hand-over and the sweep's can run at once (and on every worker): one takes the room, the
    other does nothing, so the queue never holds more than queue_max_jobs."""
    small = settings.model_copy(update={"queue_max_jobs": 3})
    roomless = Scheduler(store, fake_arq, small.model_copy(update={"queue_max_jobs": 1}))
    await roomless.program_many([new_message(to=phone(i)) for i in range(10)])
    await fake_arq.delete(small.queue_name)  # as if a worker took the one job intake wrote
    reports = [SweepReport(), SweepReport()]
    queue = Queue.of(small)
    await asyncio.gather(*(hand_over_due(store, fake_arq, queue, utcnow(), r) for r in reports))
    assert sorted(r.handed_over for r in reports) == [0, 3]
    assert await fake_arq.zcard(small.queue_name) == 3


async def test_single_messages_respect_the_queue_room(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """One message at a time (the API's POST /v1/messages, retries, reschedules) gets a job only while the queue
    has room; the others wait for the hand-over."""
    scheduler = Scheduler(store, fake_arq, settings.model_copy(update={"queue_max_jobs": 2}))
    ids = [(await scheduler.program(new_message(to=phone(i)))).message.id for i in range(4)]
    queued = sorted(m.decode() for m in await fake_arq.zrange(settings.queue_name, 0, -1))
    assert queued == sorted(f"dispatch:{i}:1" for i in ids[:2])


async def test_a_message_due_now_never_waits_behind_jobs_due_later(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """A queue full of jobs deferred a few seconds (a campaign) or far ahead (as an older sendq wrote them) still
    takes a message due now: jobs already due have their own allowance."""
    small = settings.model_copy(update={"queue_max_jobs": 3})
    scheduler = Scheduler(store, fake_arq, small)
    soon = utcnow() + timedelta(seconds=30)
    await scheduler.program_many([new_message(to=phone(i), send_at=soon) for i in range(5)])
    assert await fake_arq.zcard(small.queue_name) == 3  # the campaign's allowance is used up
    await fake_arq.zadd(small.queue_name, {f"dispatch:legacy{i}:1": to_ms(utcnow()) + 86_400_000 for i in range(5)})
    now_due = (await scheduler.program(new_message(to=phone(9)))).message
    assert await fake_arq.zscore(small.queue_name, now_due.job_id) is not None
    report = await run_sweeps(store, fake_arq, small, utcnow())
    assert report.handed_over == 0  # the other two campaign messages wait for room


async def test_batch_intake_stores_chunks_in_order(scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are prepared while the previous one is stored, but stored in order: of two items of a batch with
    one reference_id, the first is the one stored, and the second answers with it."""
    from scheduler import batching

    monkeypatch.setattr(batching, "CHUNK", 2)
    intake = await batching.BatchIntake.start(scheduler, "acme")
    items = [new_message(to=phone(i), body=f"body {i}", reference_id=f"r{i % 3}") for i in range(6)]
    results = await intake.add(list(enumerate(items)))
    assert [(r.number, r.created) for r in results] == [(i, i < 3) for i in range(6)]
    for r in results:
        assert r.message is not None and r.message.body == f"body {r.number % 3}"


async def test_a_long_batch_intake_keeps_to_the_queue_cap(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk of a batch is judged at the batch's start time, while its jobs are written at the clock's: the
    chunks after the first still count them (a 100,000-row upload once gave every message a job)."""
    from scheduler import batching

    monkeypatch.setattr(batching, "CHUNK", 2)
    small = settings.model_copy(update={"queue_max_jobs": 3})
    scheduler = Scheduler(store, fake_arq, small)
    intake = await batching.BatchIntake.start(scheduler, "acme", now=utcnow() - timedelta(seconds=2))
    results = await intake.add(list(enumerate(new_message(to=phone(i)) for i in range(10))))
    assert all(r.created for r in results)
    assert await fake_arq.zcard(small.queue_name) == 3
    assert await fake_arq.zcard(keys.DUE) == 10


async def test_a_job_key_without_its_queue_entry_is_no_job(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """A crash between the two writes of a job (key, then queue entry) leaves a key that never runs: the
    hand-over writes the job again."""
    msg = (await scheduler.program(new_message())).message
    await fake_arq.zrem(settings.queue_name, msg.job_id)
    report = await run_sweeps(store, fake_arq, settings, utcnow())
    assert report.handed_over == 1
    assert await fake_arq.zscore(settings.queue_name, msg.job_id) is not None


async def test_the_per_second_hand_over_finds_newcomers_and_messages_left_without_room(
    store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """The per-second run (no audit) looks only past its mark, whatever pads the queue's count (cron entries):
    it finds a message that came within the window since, and one intake left without a job for lack of room
    (intake lowers the mark)."""
    small = settings.model_copy(update={"queue_max_jobs": 1})
    scheduler = Scheduler(store, fake_arq, small)
    queue = Queue.of(small)
    await fake_arq.zadd(small.queue_name, {"cron:sweep:1": to_ms(utcnow())})  # pads the count, as cron jobs do
    now = utcnow()
    later = (await scheduler.program(new_message(to=phone(1), send_at=now + timedelta(hours=1)))).message
    first = SweepReport()
    await hand_over_due(store, fake_arq, queue, now, first, audit=False)
    assert first.handed_over == 0  # sets the mark at now + ahead
    await fake_arq.delete(small.queue_name)
    near = SweepReport()
    await hand_over_due(store, fake_arq, queue, now + timedelta(hours=1), near, audit=False)
    assert near.handed_over == 1 and await fake_arq.zscore(small.queue_name, later.job_id) is not None

    await fake_arq.delete(small.queue_name)
    results = await scheduler.program_many([new_message(to=phone(i)) for i in (2, 3)])
    jobs = [r.message.job_id for r in results if isinstance(r, Programmed)]
    queued = [m.decode() for m in await fake_arq.zrange(small.queue_name, 0, -1)]
    assert len(queued) == 1  # room for one: the other is left without a job, behind the mark
    # A worker claims the one with a job; a cron entry due later keeps the counts level (1 waiting, 1 queued).
    await fake_arq.delete(small.queue_name)
    await fake_arq.zrem(keys.DUE, queued[0].split(":")[1])
    await fake_arq.zadd(small.queue_name, {"cron:sweep:2": to_ms(utcnow()) + 1000})
    report = SweepReport()
    await hand_over_due(store, fake_arq, queue, utcnow(), report, audit=False)
    left = next(j for j in jobs if j not in queued)
    assert report.handed_over == 1 and await fake_arq.zscore(small.queue_name, left) is not None
