"""End to end on a real redis-server: `sendq worker` processes, `sendq mock-provider`, SIGKILL, cancels, faults.

Each test starts its own processes against the session's private redis-server (flushed first).
"""

import asyncio
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis

from scheduler.backoff import BackoffPolicy
from scheduler.intake import Scheduler
from sendq.message import Message, utcnow
from sendq.settings import Settings
from sendq.status import FINAL_STATUSES, MessageStatus as S
from sendq.store import MessageStore
from tests.conftest import RedisServer, make_settings
from tests.helpers import new_message
from tests.processes import Cluster
from worker.app import health_check_key

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture
async def scheduler_real(real_arq: ArqRedis, redis_server: RedisServer) -> Scheduler:
    settings = make_settings(redis_url=redis_server.url)
    return Scheduler(MessageStore(real_arq, retention=timedelta(days=1)), real_arq, settings)


MakeCluster = Callable[..., Cluster]


async def wait_worker_up(arq: Redis, settings: Settings, timeout_s: float = 20) -> None:
    """Until a worker's poll loop runs (it writes the queue's health-check key; ``real_arq`` starts empty)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await arq.exists(health_check_key(settings)):
        assert asyncio.get_running_loop().time() < deadline, "the worker did not start"
        await asyncio.sleep(0.05)


@pytest.fixture
async def cluster_factory(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[MakeCluster]:
    """Build clusters on the private Redis; every process is stopped at teardown."""
    made: list[Cluster] = []

    def make(**kw: Any) -> Cluster:
        cluster = Cluster(redis_server.url, tmp_path, **kw)
        made.append(cluster)
        return cluster

    yield make
    for c in made:
        await asyncio.to_thread(c.stop)


async def program_many(scheduler: Scheduler, count: int, *, spread_s: float, immediate_share: float) -> list[str]:
    """Program ``count`` messages: some for now, the rest spread over the next ``spread_s`` seconds."""
    rng = random.Random(7)
    now = utcnow()
    ids: list[str] = []
    for i in range(count):
        send_at = None if rng.random() < immediate_share else now + timedelta(seconds=rng.uniform(0, spread_s))
        result = await scheduler.program(
            new_message(to=f"+1415{2000000 + i:07d}", body=f"message {i}", send_at=send_at)
        )
        ids.append(result.message.id)
    return ids


async def wait_final(store: MessageStore, ids: Iterable[str], timeout_s: float) -> list[Message]:
    ids = list(ids)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        messages = await store.get_many(ids)
        pending = [m for m in messages if m.status not in FINAL_STATUSES]
        if not pending and len(messages) == len(ids):
            return [m for m in await asyncio.gather(*(store.get(i) for i in ids)) if m is not None]
        if asyncio.get_running_loop().time() > deadline:
            counts = Counter(m.status.value for m in messages)
            raise AssertionError(f"not all final after {timeout_s}s: {dict(counts)}")
        await asyncio.sleep(0.25)


async def test_500_messages_two_workers(scheduler_real: Scheduler, cluster_factory: MakeCluster) -> None:
    """500 messages (immediate and programmed) through 2 worker processes: all sent, each accepted exactly once."""
    cluster = cluster_factory()
    await asyncio.to_thread(cluster.start_provider)
    cluster.start_worker()
    cluster.start_worker()
    ids = await program_many(scheduler_real, 500, spread_s=3, immediate_share=0.5)
    messages = await wait_final(scheduler_real.store, ids, 90)
    assert Counter(m.status for m in messages) == {S.SENT: 500}
    accepted = cluster.accepted_per_message()
    assert set(accepted) == set(ids) and set(accepted.values()) == {1}
    for m in messages:
        assert m.provider_message_id and m.attempts == 1
        sending = next(h for h in m.history if h.status is S.SENDING)
        if m.send_at is not None:
            assert sending.at >= m.send_at - timedelta(milliseconds=500)


async def _in_flight(scheduler: Scheduler, ids: list[str]) -> list[str]:
    return [m.id for m in await scheduler.store.get_many(ids) if m.status in {S.PROCESSING, S.SENDING}]


async def test_sigkill_mid_run_loses_nothing_sends_nothing_twice(
    scheduler_real: Scheduler, cluster_factory: MakeCluster
) -> None:
    """A worker is SIGKILLed with messages in flight, then 2 others take over: every message final, no duplicate
    accepted send, and the in-flight ones recovered by the sweep."""
    cluster = cluster_factory(provider_args=["--latency-ms", "100"])
    await asyncio.to_thread(cluster.start_provider)
    victim = cluster.start_worker()
    await wait_worker_up(scheduler_real.store.redis, scheduler_real.settings)
    ids = await program_many(scheduler_real, 500, spread_s=4, immediate_share=0.2)
    # The victim is the only worker until it is killed: what is in flight then is its own (on a busy machine a
    # second worker could otherwise hold all of it, and the sweep would have nothing to recover).
    deadline = asyncio.get_running_loop().time() + 20
    while len(in_flight := await _in_flight(scheduler_real, ids)) < 5:  # several: a send may end before the kill
        assert asyncio.get_running_loop().time() < deadline, "the victim never had a message in flight"
        await asyncio.sleep(0.02)
    victim.kill()
    cluster.start_worker()
    cluster.start_worker()
    messages = await wait_final(scheduler_real.store, ids, 120)
    assert Counter(m.status for m in messages) == {S.SENT: 500}
    accepted = cluster.accepted_per_message()
    assert set(accepted) == set(ids)
    duplicates = {k: v for k, v in accepted.items() if v > 1}
    assert duplicates == {}
    recovered = [m for m in messages if {"worker_lost", "worker_lost_during_send"} & {h.reason for h in m.history}]
    # The kill hit jobs in flight, and the sweep (not luck) brought them home.
    assert in_flight and recovered


async def test_cancel_race(scheduler_real: Scheduler, cluster_factory: MakeCluster) -> None:
    """Cancels fired while workers run: every acknowledged cancel has zero provider calls."""
    cluster = cluster_factory(provider_args=["--latency-ms", "20"])
    await asyncio.to_thread(cluster.start_provider)
    cluster.start_worker()
    cluster.start_worker()
    ids = await program_many(scheduler_real, 400, spread_s=2, immediate_share=0.1)
    rng = random.Random(3)
    targets = rng.sample(ids, 250)

    async def cancel_later(message_id: str) -> tuple[str, bool]:
        await asyncio.sleep(rng.uniform(0, 2.2))
        return message_id, (await scheduler_real.cancel(message_id)).cancelled

    outcomes = await asyncio.gather(*(cancel_later(i) for i in targets))
    acknowledged = {i for i, ok in outcomes if ok}
    refused = {i for i, ok in outcomes if not ok}
    messages = {m.id: m for m in await wait_final(scheduler_real.store, ids, 90)}
    provider_calls = Counter(e["message_id"] for e in cluster.provider_events())
    assert acknowledged and refused, "the race should produce both outcomes"
    assert {i for i in acknowledged if provider_calls[i]} == set()
    assert all(messages[i].status is S.CANCELLED for i in acknowledged)
    assert all(messages[i].status is S.SENT for i in refused)
    assert all(messages[i].status is S.SENT for i in set(ids) - acknowledged)


_DELAY = re.compile(r"next attempt in ([0-9.]+)s")


async def test_faults_retry_within_policy(scheduler_real: Scheduler, cluster_factory: MakeCluster) -> None:
    """30 % faults (500, 429 with Retry-After, timeouts): every message sent or error within max attempts,
    retries spaced as the policy says, and no duplicate accepted send."""
    max_attempts, base_s, cap_s, retry_after_s = 4, 0.2, 1.0, 1
    cluster = cluster_factory(
        provider_args=[
            "--fail-rate",
            "0.3",
            "--fail-kinds",
            "500,429,timeout",
            "--retry-after",
            str(retry_after_s),
            "--timeout-delay-ms",
            "1500",
            "--seed",
            "11",
        ],
        max_attempts=max_attempts,
        backoff_base_s=base_s,
        backoff_cap_s=cap_s,
        http__timeout_s=0.5,
    )
    await asyncio.to_thread(cluster.start_provider)
    cluster.start_worker()
    cluster.start_worker()
    ids = await program_many(scheduler_real, 300, spread_s=1, immediate_share=0.5)
    messages = await wait_final(scheduler_real.store, ids, 120)
    policy = BackoffPolicy(base_s, cap_s, max_attempts)
    assert {m.status for m in messages} <= {S.SENT, S.ERROR}
    assert sum(m.attempts > 1 for m in messages) > 30, "faults should have forced retries"
    accepted = cluster.accepted_per_message()
    for m in messages:
        assert 1 <= m.attempts <= max_attempts
        if m.status is S.SENT:
            assert accepted[m.id] == 1
        elif m.reason == "attempts_exhausted":
            assert m.attempts == max_attempts and accepted[m.id] == 0
        else:
            # An earlier attempt timed out after the provider may have taken it: at most one send.
            assert m.reason == "unknown_outcome" and m.reuse_key and accepted[m.id] <= 1
        history = m.history
        for i, entry in enumerate(history):
            if entry.reason != "retry":
                continue
            assert entry.detail is not None
            delay = float(_DELAY.search(entry.detail).group(1))  # type: ignore[union-attr]
            if "http=429" in entry.detail:
                assert delay >= retry_after_s
            else:
                assert delay <= policy.ceiling_s(entry.attempt) + 0.001
            next_sending = next(h for h in history[i + 1 :] if h.status is S.SENDING)
            # Never earlier than the policy's time (ms rounding of stored times aside).
            assert next_sending.at - entry.at >= timedelta(seconds=delay) - timedelta(milliseconds=2)
    assert set(accepted) <= {m.id for m in messages}
