"""Enqueueing dispatch jobs: versioned job ids, JSON payloads, only ids in the queue."""

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix
from arq.jobs import serialize_job as arq_serialize_job
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from scheduler.packing import use_hiredis_packing
from sendq import keys
from sendq.errors import ConfigurationError
from sendq.keys import JobName
from sendq.message import dispatch_job_id
from sendq.settings import Settings


def serialize_job(data: dict[str, Any]) -> bytes:
    """JSON, not arq's default pickle: whoever can write to Redis must not be able to run code in workers."""
    return json.dumps(data, separators=(",", ":")).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    assert isinstance(data, dict)
    return data


def redis_settings(url: str, *, patient: bool = True) -> RedisSettings:
    """arq connection settings.

    Patient (workers): ride out a Redis restart instead of dying on the first failed poll.
    Impatient (CLI, API calls): fail within about a second so the user gets an answer.
    """
    settings = RedisSettings.from_dsn(url)
    if patient:
        settings.retry = Retry(ExponentialBackoff(cap=2, base=0.1), 20)
        settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
        settings.conn_retries = 10
    else:
        settings.conn_retries = 0
    return settings


async def connect(settings: Settings, *, patient: bool = True) -> ArqRedis:
    """An arq Redis pool for ``settings.redis_url``."""
    if not settings.redis_url:
        raise ConfigurationError("SENDQ_REDIS_URL is not set (or run `sendq dev` for an embedded one)")
    pool = await create_pool(
        redis_settings(settings.redis_url, patient=patient),
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        default_queue_name=settings.queue_name,
    )
    use_hiredis_packing(pool)
    # Drop the connection create_pool pinged with: it packs the slow way; the next command opens a fast one.
    await pool.connection_pool.disconnect()
    pool.connection_pool.reset()  # type: ignore[no-untyped-call]
    return pool


@dataclass(frozen=True, slots=True)
class Queue:
    """arq's queue as sendq uses it: only messages due soon get a job there, and only so many at once.

    A waiting message is always in the store's due index; its arq job (about 345 bytes of Redis memory) is written
    when it comes within ``ahead`` of its time and the queue has room (``Room``). The hand-over sweep
    (``scheduler.sweeps.hand_over_due``, every second) gives the others theirs as time passes and the queue drains.
    So a million messages programmed for tomorrow, or a backlog far larger than the workers' pace, costs the store's
    record only, and arq holds a bounded queue.
    """

    name: str
    ahead: timedelta
    max_jobs: int

    @classmethod
    def of(cls, settings: Settings) -> "Queue":
        return cls(settings.queue_name, timedelta(seconds=settings.enqueue_ahead_s), settings.queue_max_jobs)

    def takes(self, due_at: datetime | None, now: datetime) -> bool:
        """Whether a job due at ``due_at`` (None: now) goes into arq now rather than at a later hand-over."""
        return due_at is None or due_at <= now + self.ahead

    async def room(self, arq: ArqRedis, now: datetime) -> "Room":
        """How many more jobs the queue takes now (see ``Room``)."""
        # Jobs are scored with the clock at their writing, which can be after ``now`` (batch intake stores one
        # chunk while it prepares the next at its own ``now``): count up to the clock, or they would not count as
        # due and every chunk would find the queue empty.
        now_ms = int(max(now, datetime.now(UTC)).timestamp() * 1000)
        async with arq.pipeline(transaction=False) as pipe:
            pipe.zcount(self.name, "-inf", now_ms)
            pipe.zcount(self.name, "-inf", now_ms + int(self.ahead.total_seconds() * 1000))
            due, soon = await pipe.execute()
        return Room(ready=self.max_jobs - int(due), soon=self.max_jobs - int(soon))


@dataclass(slots=True)
class Room:
    """Places left in arq's queue, in two allowances of ``max_jobs`` each.

    ``ready`` counts down from the jobs already due: a message due now never waits behind a campaign deferred a
    few seconds ahead. ``soon`` counts down from every job due within ``ahead`` (jobs further out, as an older
    sendq wrote them, take no place). So the queue holds at most about twice ``max_jobs`` jobs.
    """

    ready: int
    soon: int

    def take(self, at: datetime | None, now: datetime) -> bool:
        """Take a place for a job due at ``at`` (None: now); False when its allowance is used up."""
        if at is None or at <= now:
            if self.ready <= 0:
                return False
            self.ready -= 1
        elif self.soon <= 0:
            return False
        self.soon -= 1
        return True

    @property
    def left(self) -> bool:
        return self.ready > 0 or self.soon > 0


#: KEYS: the mark. ARGV: due ms. Lowers an existing mark to just before ``due`` (absent: the hand-over looks from
#: the start anyway).
_LOWER_MARK: Final = """
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur and tonumber(ARGV[1]) - 1 < cur then redis.call('SET', KEYS[1], tonumber(ARGV[1]) - 1) end
return 0
"""


async def left_without_job(arq: ArqRedis, due: datetime) -> None:
    """Tell the hand-over that a waiting message due at ``due`` has no job (no room): it looks there again."""
    reply = arq.eval(_LOWER_MARK, 1, keys.HAND_OVER_MARK, str(int(due.timestamp() * 1000)))
    await cast("Awaitable[Any]", reply)  # redis-py types eval as its sync client's


async def enqueue_dispatch(arq: ArqRedis, message_id: str, version: int, *, at: datetime | None, queue: Queue) -> bool:
    """Enqueue ``dispatch(message_id, version)``, deferred to ``at``, if it is due within ``queue.ahead`` and the
    queue has room.

    Returns False when the job was left to the hand-over sweep (due later, or no room), or when that versioned
    job already exists (arq answers None), which is fine: it will run.
    """
    now = datetime.now(UTC)
    if not queue.takes(at, now):
        return False  # the hand-over gives it its job when it comes within queue.ahead
    if not (await queue.room(arq, now)).take(at, now):
        await left_without_job(arq, at or now)
        return False
    if at is not None and at <= datetime.now(UTC):
        # arq derives the job key's expiry from the defer time; one far in the past makes it negative (PSETEX
        # refuses), and a past time means "now" anyway.
        at = None
    job = await arq.enqueue_job(
        JobName.DISPATCH.value,
        message_id,
        version,
        _job_id=dispatch_job_id(message_id, version),
        _defer_until=at,
        _queue_name=queue.name,
    )
    return job is not None


async def discard_dispatch(arq: ArqRedis, jobs: Sequence[tuple[str, int]], *, queue_name: str) -> None:
    """Drop jobs (message id, version) that can no longer act (cancelled, or moved to a new version).

    Tidiness only: the version check in the store already makes such a job a no-op. A job already picked by
    a worker keeps running and finds the message changed.
    """
    job_ids = [dispatch_job_id(message_id, version) for message_id, version in jobs]
    # Two variadic commands per slice instead of two per job: a batch cancel drops thousands at once.
    async with arq.pipeline(transaction=False) as pipe:
        for start in range(0, len(job_ids), _DISCARD_SLICE):
            part = job_ids[start : start + _DISCARD_SLICE]
            pipe.zrem(queue_name, *part)
            pipe.delete(*(job_key_prefix + j for j in part))
        await pipe.execute()


#: job ids per ZREM/DEL (bounded so one command never blocks Redis for long)
_DISCARD_SLICE = 500


async def enqueue_many(arq: ArqRedis, jobs: Sequence[tuple[str, int, datetime | None]], *, queue_name: str) -> None:
    """Enqueue many ``dispatch(message_id, version)`` jobs (at their times) in one pipelined round trip.

    arq's ``enqueue_job`` WATCHes each job key to keep ids unique: one round trip per job. This writes the same two
    keys arq writes (the job payload with its expiry, and the queue entry) without the check: writing a job that
    exists again only rewrites it (one queue entry per job id), and a job for a message that moved on does nothing
    (the version and status checks of the claim).
    """
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    async with arq.pipeline(transaction=False) as pipe:
        for message_id, version, at in jobs:
            score = max(now_ms, int(at.timestamp() * 1000)) if at is not None else now_ms
            job_id = dispatch_job_id(message_id, version)
            payload = arq_serialize_job(
                JobName.DISPATCH.value, (message_id, version), {}, None, now_ms, serializer=serialize_job
            )
            pipe.psetex(job_key_prefix + job_id, score - now_ms + arq.expires_extra_ms, payload)
            pipe.zadd(queue_name, {job_id: score})
        await pipe.execute()
