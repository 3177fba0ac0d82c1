"""arq wiring: the worker settings mapping, startup and shutdown, the sweep cron job, the run loop."""

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.worker import Function, Worker, async_check_health, func
from redis.exceptions import RedisError

from providers import build_providers, check_providers
from providers.base import Provider
from providers.routing import Providers
from scheduler.backoff import BackoffPolicy
from scheduler.enqueue import Queue, connect, deserialize_job, redis_settings, serialize_job
from scheduler.sweeps import SweepReport, hand_over_due, run_sweeps
from sendq.errors import ConfigurationError
from sendq.keys import JobName
from sendq.message import utcnow
from sendq.policy import Policy
from sendq.receipts import ReceiptBook
from sendq.settings import Settings
from sendq.store import MessageStore
from sendq.subaccounts import SubaccountStore
from worker.dispatch import dispatch
from worker.reconcile import reconciler
from worker.redis_policy import check_redis_policy, listpack_advice
from worker.services import Services, services

log = structlog.get_logger("sendq.worker")


async def sweep(ctx: dict[str, Any]) -> str:
    """arq cron job: lease recovery (with reconciliation), hand-over, receipt timeouts, retention."""
    svc = services(ctx)
    report = await run_sweeps(svc.store, svc.arq, svc.settings, svc.clock(), reconciler(svc))
    return (
        f"released={report.released} resent={report.resent} unknown={report.unknown_outcome} "
        f"reconciled={report.reconciled} handed_over={report.handed_over} timed_out={report.timed_out} "
        f"purged={report.purged}"
    )


async def hand_over(ctx: dict[str, Any]) -> str:
    """arq cron job, every second: jobs for waiting messages now due soon, as far as the queue has room (the
    sweep also audits for lost jobs the counts do not show)."""
    svc = services(ctx)
    report = SweepReport()
    await hand_over_due(svc.store, svc.arq, svc.queue, svc.clock(), report, audit=False)
    return f"handed_over={report.handed_over}"


def worker_settings(
    settings: Settings,
    *,
    provider: Provider | None = None,
    clock: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """arq's WorkerSettings for ``settings`` (a mapping: arq accepts one in place of a class).

    Args:
        provider: use this provider instead of the configured one (tests, ``sendq dev``).
        clock: where jobs read the time.
    """

    async def startup(ctx: dict[str, Any]) -> None:
        arq: ArqRedis = ctx["redis"]
        if settings.require_noeviction:
            facts = await check_redis_policy(arq)
            log.info("worker.redis_checked", **facts)
        advice = await listpack_advice(arq)
        if advice is not None:
            log.warning("worker.redis_memory_advice", advice=advice)
        http = httpx.AsyncClient(timeout=httpx.Timeout(settings.http.timeout_s, connect=5.0))
        chosen = Providers.single(provider) if provider is not None else build_providers(settings, http)
        store = MessageStore(arq, retention=timedelta(seconds=settings.retention_s))
        subaccounts = SubaccountStore(arq)
        backoff = BackoffPolicy.from_settings(settings)
        if rng is not None:
            backoff = BackoffPolicy(backoff.base_s, backoff.cap_s, backoff.max_attempts, rng)
        ctx["services"] = Services(
            settings=settings,
            store=store,
            arq=arq,
            providers=chosen,
            backoff=backoff,
            subaccounts=subaccounts,
            receipts=ReceiptBook(store, subaccounts),
            rules=Policy.from_settings(settings),
            http=http,
            clock=clock,
            queue=Queue.of(settings),
        )
        log.info("worker.started", providers=sorted(chosen.names()), queue=settings.queue_name)

    async def shutdown(ctx: dict[str, Any]) -> None:
        # pop: the supervised loop may call this again after a failed close(); closing twice must be harmless.
        svc = ctx.pop("services", None)
        if isinstance(svc, Services):
            await svc.providers.aclose()
            await svc.http.aclose()

    functions: list[Function] = [
        func(dispatch, name=JobName.DISPATCH.value, keep_result=0, max_tries=1000, timeout=settings.job_timeout_s),
    ]
    return {
        "functions": functions,
        "cron_jobs": [
            cron(
                sweep,
                name=JobName.SWEEP.value,
                second=set(range(0, 60, settings.sweep_interval_s)),
                unique=True,
                run_at_startup=True,
                timeout=settings.job_timeout_s,
                keep_result=0,
            ),
            cron(
                hand_over,
                name=JobName.HAND_OVER.value,
                second=set(range(60)),
                unique=True,
                run_at_startup=True,
                timeout=settings.job_timeout_s,
                keep_result=0,
            ),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "queue_name": settings.queue_name,
        "redis_settings": redis_settings(settings.redis_url) if settings.redis_url else None,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.poll_delay_s,
        "job_timeout": settings.job_timeout_s,
        "job_completion_wait": settings.job_completion_wait_s,
        "keep_result": 0,
        "health_check_interval": settings.health_check_interval_s,
        "health_check_key": health_check_key(settings),
    }


def health_check_key(settings: Settings) -> str:
    """One health key per host (a container is a host), so `sendq worker --check` speaks for this worker only."""
    return f"{settings.queue_name}:health-check:{socket.gethostname()}"


def run_worker(settings: Settings, *, provider: Provider | None = None) -> Worker:
    """Run a worker until SIGTERM/SIGINT (running sends get ``job_completion_wait_s`` to finish).

    arq's poll loop can still die on a Redis connection drop (its ``WATCH`` in ``start_jobs`` sits outside
    its own error handling), so the loop is supervised here: on a Redis error a fresh arq worker starts after
    a short backoff. Messages the dead loop held are recovered by the lease sweep.

    Raises:
        ConfigurationError: no Redis URL, or Redis would evict keys.
    """
    if not settings.redis_url:
        raise ConfigurationError("SENDQ_REDIS_URL is not set (or run `sendq dev` for an embedded one)")
    if provider is None:
        check_providers(settings)
    # arq's Worker binds to the current event loop at construction, so the loop must exist first.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        if settings.require_noeviction:
            loop.run_until_complete(_preflight(settings))
        delay_s = RESTART_DELAY_S
        while True:
            worker = Worker(**worker_settings(settings, provider=provider))
            try:
                worker.run()
                return worker
            except (RedisError, OSError) as exc:
                log.warning("worker.redis_lost", error=repr(exc), restart_in_s=delay_s)
                _release(loop, worker)
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, RESTART_DELAY_MAX_S)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _release(loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
    """Close what a dead worker loop held when its own close() could not (Redis was down)."""
    with contextlib.suppress(Exception):
        if worker.on_shutdown is not None:
            loop.run_until_complete(worker.on_shutdown(worker.ctx))
    with contextlib.suppress(Exception):
        if worker._pool is not None:  # arq keeps the pool private; close() leaves it open when it fails early
            loop.run_until_complete(worker._pool.aclose())


#: first and largest pause before restarting a worker loop that Redis errors killed
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 10.0


async def _preflight(settings: Settings) -> None:
    """Fail fast with one clear line, before arq starts, when Redis is unusable."""
    # Patient: a worker started before its Redis (a deploy, a reboot) waits for it instead of exiting.
    arq = await connect(settings)
    try:
        await check_redis_policy(arq)
    finally:
        await arq.aclose()


async def check_health(settings: Settings) -> int:
    """0 when a worker recorded a health check recently, 1 otherwise (for container health checks)."""
    if not settings.redis_url:
        raise ConfigurationError("SENDQ_REDIS_URL is not set")
    return await async_check_health(redis_settings(settings.redis_url), health_check_key(settings), settings.queue_name)


__all__ = ["check_health", "hand_over", "run_worker", "sweep", "worker_settings"]
