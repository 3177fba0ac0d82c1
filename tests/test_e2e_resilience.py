"""Worker resilience with real processes: graceful stop on SIGTERM, and a Redis restart under load."""

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.enqueue import connect
from scheduler.intake import Scheduler
from sendq.message import utcnow
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from tests.conftest import RedisServer, make_settings, require_redis_server
from tests.helpers import new_message
from tests.processes import Cluster
from tests.test_e2e import MakeCluster, cluster_factory, program_many, scheduler_real, wait_final

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
__all__ = ["cluster_factory", "scheduler_real"]  # fixtures shared with test_e2e


async def test_sigterm_lets_running_sends_finish(scheduler_real: Scheduler, cluster_factory: MakeCluster) -> None:
    """SIGTERM during slow provider calls: the worker stops picking, finishes them (sent), and exits 0."""
    cluster = cluster_factory(provider_args=["--latency-ms", "1500"])
    await asyncio.to_thread(cluster.start_provider)
    worker = cluster.start_worker()
    ids = [(await scheduler_real.program(new_message(to=f"+1415555{i:04d}"))).message.id for i in range(5)]
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        sending = [m for m in await scheduler_real.store.get_many(ids) if m.status is S.SENDING]
        if len(sending) == 5:
            break
        assert asyncio.get_running_loop().time() < deadline, "messages never reached sending"
        await asyncio.sleep(0.05)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    later = (await scheduler_real.program(new_message(to="+14155559999"))).message.id
    code = await asyncio.to_thread(worker.proc.wait, 20)
    assert code == 0
    after = {m.id: m for m in await scheduler_real.store.get_many([*ids, later])}
    assert all(after[i].status is S.SENT for i in ids)
    # Programmed after the signal: left for the next worker, not started and abandoned.
    assert after[later].status is S.PROGRAMMED
    assert Counter(e["event"] for e in cluster.provider_events()) == {"accepted": 5}


@pytest.fixture
async def durable_redis() -> AsyncIterator[RedisServer]:
    """A private redis-server with AOF (fsync always), restartable on the same port and data directory."""
    require_redis_server()
    server = RedisServer()
    server.extra_args = ["--appendonly", "yes", "--appendfsync", "always"]
    server.start()
    yield server
    server.stop()


async def test_worker_rides_out_a_redis_restart(durable_redis: RedisServer, tmp_path: Path) -> None:
    """Redis restarts while a worker runs: the worker reconnects and every message is sent once."""
    settings = make_settings(redis_url=durable_redis.url)
    arq = await connect(settings)
    scheduler = Scheduler(MessageStore(arq, retention=timedelta(days=1)), arq, settings)
    cluster = Cluster(durable_redis.url, tmp_path, provider_args=["--latency-ms", "5"])
    try:
        await asyncio.to_thread(cluster.start_provider)
        worker = cluster.start_worker()
        ids = await program_many(scheduler, 200, spread_s=6, immediate_share=0.1)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(durable_redis.restart, 2.0)
        messages = await wait_final(scheduler.store, ids, 90)
        assert Counter(m.status for m in messages) == {S.SENT: 200}
        assert set(cluster.accepted_per_message().values()) == {1}
        assert worker.alive(), "the worker should have survived the restart"
    finally:
        await asyncio.to_thread(cluster.stop)
        await arq.aclose()


def test_send_at_is_stored_in_utc() -> None:
    """Offsets are normalised to UTC on input (the stored time is the same instant)."""
    at = utcnow().astimezone().replace(microsecond=0) + timedelta(hours=1)
    assert new_message(send_at=at).send_at == at
