"""Fixtures: explicit settings, fakeredis for unit tests, a real redis-server for the rest.

Real-Redis tests start their own ``redis-server`` on a free loopback port; they never touch a shared Redis.
Without ``redis-server`` they skip with a loud reason, except under ``CI=true`` where that is a failure.
"""

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import arq.worker
import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool

from providers.mock import MockProvider
from scheduler.enqueue import connect, deserialize_job, serialize_job
from scheduler.intake import Scheduler
from sendq.settings import Settings
from sendq.store import MessageStore
from tests.redis_server import RedisServer, free_port
from worker.app import worker_settings


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SENDQ_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("SENDQ_"):
            monkeypatch.delenv(name)


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": "redis://fake",
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "poll_delay_s": 0.01,
        "job_timeout_s": 5,
        "lease_margin_s": 1,
        "require_noeviction": False,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def fake_arq() -> AsyncIterator[ArqRedis]:
    """An arq Redis client on a fresh in-memory fakeredis server (with Lua, through lupa)."""
    pool = ConnectionPool(server=FakeServer(), connection_class=FakeAsyncRedisConnection)
    redis = ArqRedis(pool_or_conn=pool, job_serializer=serialize_job, job_deserializer=deserialize_job)
    yield redis
    await redis.aclose()
    await pool.aclose()


@pytest.fixture
def store(fake_arq: ArqRedis, settings: Settings) -> MessageStore:
    return MessageStore(fake_arq, retention=timedelta(seconds=settings.retention_s))


@pytest.fixture
def scheduler(store: MessageStore, fake_arq: ArqRedis, settings: Settings) -> Scheduler:
    return Scheduler(store, fake_arq, settings)


async def _no_redis_info(*_: Any, **__: Any) -> None:
    return None


RunWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def run_worker(
    fake_arq: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunWorker]:
    """Run a burst worker (dispatch jobs only) over the fake Redis until the queue is empty."""
    monkeypatch.setattr(arq.worker, "log_redis_info", _no_redis_info)
    workers: list[Worker] = []

    async def run(provider: MockProvider, **kwargs: Any) -> Worker:
        opts = worker_settings(settings, provider=provider, **kwargs)
        opts.pop("cron_jobs")
        opts.pop("redis_settings")
        opts.update(redis_pool=fake_arq, burst=True, handle_signals=False, poll_delay=0)
        w = Worker(**opts)
        workers.append(w)
        await w.main()
        return w

    yield run
    for w in workers:
        await w.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client, as a worker gives provider adapters (tests point them at a contract server)."""
    async with httpx.AsyncClient() as c:
        yield c


# --- real redis-server -------------------------------------------------------------------------------------

__all__ = ["RedisServer", "free_port"]


def require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        message = "redis-server is not on PATH: the real-Redis tests cannot run (install the redis-server package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session; tests that use it get it flushed."""
    require_redis_server()
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def real_arq(redis_server: RedisServer) -> AsyncIterator[ArqRedis]:
    """An arq client on the session's private redis-server, emptied first."""
    redis = await connect(make_settings(redis_url=redis_server.url))
    await redis.flushdb()
    yield redis
    await redis.aclose()
