"""Latency of the filtered message list (``sendq.listing.list_messages``) on a large store.

``run(redis_url, n)`` flushes the given (private!) Redis, fills it with ``n`` messages of one subaccount and
times the first page (limit 50) of typical queries and a deep page (and, asked, a limit-1000 page), over
``CALLS`` calls each. The fill writes what ``lua.CREATE_MANY`` and later status changes leave behind (record hash,
history list, reference key, the five secondary indexes, due/inflight/retention entries) straight through
big pipelines: a create and its status changes, one message at a time through the store, would take far
longer for a million messages.

The data set looks like a busy subaccount's: most messages come from file uploads (batches sent in bursts of
several messages per ms, so creation times tie), the rest one by one through the API; statuses, channels,
batches and file names are spread the way a sent list is (mostly delivered, a few failures).

``python -m benchmarks.listing [-n N]`` starts its own redis-server on a free loopback port and prints the
figures (``benchmarks/run.py`` calls ``run``).
"""

import argparse
import asyncio
import json
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from sendq import keys
from sendq.channel import Channel
from sendq.listing import MessageFilter, Page, list_messages
from sendq.message import HistoryEntry, from_ms
from sendq.status import FINAL_STATUSES, LEASED_STATUSES, WAITING_STATUSES, MessageStatus as S
from sendq.store import MessageStore
from tests.redis_server import RedisServer

SUBACCOUNT: Final = "bench"
#: timed calls per query (after WARMUP untimed ones)
CALLS: Final = 50
WARMUP: Final = 3
LIMIT: Final = 50
#: messages per pipeline while filling
FILL_CHUNK: Final = 5000
#: the newest message's creation time (fixed, so runs are comparable)
END: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: status mix of a sent list, and the path each status took (its history)
STATUS_WEIGHTS: Final = {
    S.DELIVERED: 55,
    S.SENT: 12,
    S.READ: 10,
    S.PROGRAMMED: 8,
    S.FAILED: 4,
    S.ERROR: 3,
    S.CANCELLED: 3,
    S.TIMED_OUT: 2,
    S.PROCESSING: 1,
    S.BLOCKED_TIME: 2,
}
PATHS: Final = {
    S.PROGRAMMED: [S.PROGRAMMED],
    S.BLOCKED_TIME: [S.BLOCKED_TIME],
    S.PROCESSING: [S.PROGRAMMED, S.PROCESSING],
    S.CANCELLED: [S.PROGRAMMED, S.CANCELLED],
    S.ERROR: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.ERROR],
    S.SENT: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.SENT],
    S.DELIVERED: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.SENT, S.DELIVERED],
    S.READ: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.SENT, S.DELIVERED, S.READ],
    S.FAILED: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.SENT, S.FAILED],
    S.TIMED_OUT: [S.PROGRAMMED, S.PROCESSING, S.SENDING, S.SENT, S.TIMED_OUT],
}
CHANNEL_WEIGHTS: Final = {Channel.SMS: 60, Channel.WHATSAPP: 30, Channel.EMAIL: 7, Channel.WEBCHAT: 3}
#: share of messages that come from file uploads, messages per upload (batch), distinct file names
BATCHED_SHARE: Final = 0.6
BATCH_SIZE: Final = 3000
FILES: Final = 50
#: uploads go out in bursts of this many messages per ms; API messages arrive every API_GAP_MS on average
BURST_PER_MS: Final = 8
API_GAP_MS: Final = 1000
BODIES: Final = [
    "Hi {n}, your order #{k} has shipped. Track it at https://track.acme.com/o/{k}",
    "Your verification code is {k}. It expires in 10 minutes.",
    "Reminder: your appointment is tomorrow at 10:30. Reply C to confirm or R to reschedule.",
    "Dear customer, your invoice {k} of EUR {n}.50 is due on Friday. Pay at acme.com/pay",
]
_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
#: crockford base32 of every 10-bit value, two characters each (ids are 48-bit ms + 80 random bits)
_PAIRS: Final = [_CROCKFORD[v >> 5] + _CROCKFORD[v & 31] for v in range(1024)]


def _fast_id(ms: int, rng: random.Random) -> str:
    """``new_message_id``'s layout (time-ordered, lowercase crockford), several times faster for the fill."""
    value = (ms << 80) | rng.getrandbits(80)
    # 130 bits: the top 2 bits are 0, so 13 ten-bit groups spell the 26 characters
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10))


def _history(path: list[S], at: datetime) -> list[str]:
    entries = []
    for step, status in enumerate(path):
        attempt = 1 if step >= 3 else 0
        reason = "created" if step == 0 else None
        entry = HistoryEntry(status=status, at=at + timedelta(seconds=step), reason=reason, attempt=attempt)
        entries.append(entry.model_dump_json())
    return entries


def _batch_count(n: int) -> int:
    """Uploads in a data set of ``n`` messages (batch ``b`` comes from file ``b % FILES``)."""
    return max(1, round(n * BATCHED_SHARE / BATCH_SIZE))


class _Maker:
    """Builds the records, in creation order, with the fields a real message of that status holds."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.statuses = self.rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=n)
        self.channels = self.rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()), k=n)
        self.batches = _batch_count(n)
        self.retention_ms = int(timedelta(days=30).total_seconds() * 1000)

    def created_ms(self) -> list[tuple[int, str | None, str | None]]:
        """(creation ms, batch, file) per message, oldest first: bursts of uploads between API singles."""
        plan: list[tuple[int, str | None, str | None]] = []
        per_batch = max(1, round(self.n * BATCHED_SHARE / self.batches))
        api_total = self.n - per_batch * self.batches
        api_between = max(0, api_total // (self.batches + 1))
        ms = 0
        for b in range(self.batches + 1):
            for _ in range(api_between if b < self.batches else api_total - api_between * self.batches):
                ms += self.rng.randint(1, 2 * API_GAP_MS)
                plan.append((ms, None, None))
            if b < self.batches:
                batch, file = f"batch-{b:05d}", f"upload-{b % FILES:02d}.csv"
                for i in range(per_batch):
                    plan.append((ms + i // BURST_PER_MS, batch, file))
                ms += per_batch // BURST_PER_MS + 1
        end = int(END.timestamp() * 1000)
        return [(end - ms + t, batch, file) for t, batch, file in plan[: self.n]]

    def record(self, i: int, ms: int, batch: str | None, file: str | None) -> tuple[str, dict[str, str], list[str]]:
        rng = self.rng
        status, channel = self.statuses[i], self.channels[i]
        message_id = _fast_id(ms, rng)
        created = from_ms(ms)
        sent = status in {S.SENT, S.DELIVERED, S.READ, S.FAILED, S.TIMED_OUT} or status is S.ERROR
        to = f"+1415{rng.randrange(10**7):07d}" if channel is not Channel.EMAIL else f"user{rng.randrange(10**6)}@x.io"
        path = PATHS[status]
        fields = {
            "subaccount": SUBACCOUNT,
            "channel": channel.value,
            "to": to,
            "body": BODIES[i % len(BODIES)].format(n=i % 997, k=rng.randrange(10**6)),
            "template": "",
            "variables": "{}",
            "send_at": "",
            "reference_id": "" if batch or i % 3 else f"ref-{i}",
            "batch_id": batch or "",
            "file_name": file or "",
            "created_by": "api-key-1" if batch is None else "uploader",
            "created_at": str(ms),
            "valid_until": str(ms + 86_400_000),
            "status": status.value,
            "status_at": str(ms + 1000 * (len(path) - 1)),
            "reason": "",
            "segments": "1" if channel is Channel.SMS else "",
            "attempts": "1" if sent else "0",
            "due_at": str(ms),
            "job_version": "1",
            "provider": "mock" if sent else "",
            "provider_message_id": f"pm-{message_id[-12:]}" if sent else "",
            "idempotency_key": f"{message_id}:1" if sent else "",
            "reuse_key": "0",
            "provider_idempotent": "1" if sent else "0",
            "last_error_code": "E42" if status in {S.FAILED, S.ERROR} else "",
            "last_error": "number unreachable" if status in {S.FAILED, S.ERROR} else "",
        }
        return message_id, fields, _history(path, created)


async def fill(redis_url: str, n: int) -> None:
    """``n`` messages of ``SUBACCOUNT`` in the layout ``lua.CREATE_MANY`` (and the status changes since) leave."""
    # The sync client packs commands with hiredis (C); the asyncio one packs in Python, 3 times slower here.
    await asyncio.to_thread(_fill, redis_url, n)


def _fill(redis_url: str, n: int) -> None:
    maker = _Maker(n)
    plan = maker.created_ms()
    redis = SyncRedis.from_url(redis_url)
    for start in range(0, n, FILL_CHUNK):
        zsets: dict[str, dict[str, int]] = defaultdict(dict)
        with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + FILL_CHUNK)):
                ms, batch, file = plan[i]
                message_id, fields, history = maker.record(i, ms, batch, file)
                pipe.hset(keys.message(message_id), mapping=fields)
                pipe.rpush(keys.history(message_id), *history)
                if fields["reference_id"]:
                    pipe.set(keys.reference(SUBACCOUNT, fields["reference_id"]), message_id)
                status = S(fields["status"])
                index_keys = [
                    keys.index(SUBACCOUNT, "status", status.value),
                    keys.index(SUBACCOUNT, "channel", fields["channel"]),
                ]
                if batch:
                    index_keys.append(keys.index(SUBACCOUNT, "batch", batch))
                if file:
                    index_keys.append(keys.index(SUBACCOUNT, "file", file))
                for key in index_keys:
                    zsets[key][message_id] = ms
                if status in WAITING_STATUSES:
                    zsets[keys.DUE][message_id] = ms
                if status in LEASED_STATUSES:
                    zsets[keys.INFLIGHT][message_id] = ms + 30_000
                if status in FINAL_STATUSES:
                    zsets[keys.RETENTION][message_id] = int(fields["status_at"]) + maker.retention_ms
            # One ZADD per index and chunk: the members are the same ones CREATE adds one by one.
            for key, members in zsets.items():
                pipe.zadd(key, members)
            pipe.execute()
    redis.close()


async def _time(call: Callable[[], Awaitable[Page]], calls: int) -> dict[str, float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    p99 = statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]
    return {"p50": statistics.median(samples), "p99": p99}


async def run(redis_url: str, n: int = 1_000_000, *, calls: int = CALLS, large_page: bool = False) -> dict[str, float]:
    """Fill the Redis at ``redis_url`` (flushed first: give a private one) with ``n`` messages and time queries.

    Returns ``n``, ``fill_s``, ``memory_per_message_b`` (``used_memory`` delta / n) and, for each query,
    ``<query>_ms_p50``, ``<query>_ms_p99`` (over ``calls`` calls) and ``<query>_found`` (the page's size).
    ``first_page`` is the unfiltered first page; every page has limit ``LIMIT``, except ``first_page_limit1000``
    (with ``large_page``: mostly the time to load and validate 1,000 records).
    """
    if n < 1 or calls < 1:
        raise ValueError("n and calls must be at least 1")
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
        before = int((await redis.info("memory"))["used_memory"])
        began = time.perf_counter()
        await fill(redis_url, n)
        out: dict[str, float] = {"n": float(n), "fill_s": time.perf_counter() - began}
        after = int((await redis.info("memory"))["used_memory"])
        out["memory_per_message_b"] = (after - before) / n
        store = MessageStore(redis, retention=timedelta(days=30))
        # The channel indexes together hold every message too: oldest and newest creation time of all of them.
        ends = [
            score
            for channel in Channel
            for end in (0, -1)
            for _, score in await redis.zrange(
                keys.index(SUBACCOUNT, "channel", channel.value), end, end, withscores=True
            )
        ]
        oldest = min(ends)
        span = max(ends) - oldest
        middle = _batch_count(n) // 2
        middle_batch, middle_file = f"batch-{middle:05d}", f"upload-{middle % FILES:02d}.csv"
        everything = MessageFilter(SUBACCOUNT)
        cursor: str | None = None
        for _ in range(10):
            cursor = (await list_messages(store, everything, limit=LIMIT, cursor=cursor)).next_cursor
        queries: dict[str, tuple[MessageFilter, str | None, int]] = {
            "first_page": (everything, None, LIMIT),
            "status": (MessageFilter(SUBACCOUNT, status=S.FAILED), None, LIMIT),
            "batch": (MessageFilter(SUBACCOUNT, batch_id=middle_batch), None, LIMIT),
            "channel_status": (MessageFilter(SUBACCOUNT, channel=Channel.WHATSAPP, status=S.FAILED), None, LIMIT),
            "file_name": (MessageFilter(SUBACCOUNT, file_name=middle_file), None, LIMIT),
            # a twentieth of the time the data set spans, in the middle
            "created_range": (
                MessageFilter(
                    SUBACCOUNT,
                    created_from=from_ms(int(oldest + span * 0.50)),
                    created_to=from_ms(int(oldest + span * 0.55)),
                ),
                None,
                LIMIT,
            ),
            "batch_status": (MessageFilter(SUBACCOUNT, batch_id=middle_batch, status=S.FAILED), None, LIMIT),
            # 1 in ~1,600 messages match, 1 in ~30 of the driving (blocked_time) index
            "selective": (MessageFilter(SUBACCOUNT, channel=Channel.WEBCHAT, status=S.BLOCKED_TIME), None, LIMIT),
            # 1 in ~800 of the driving (file) index match: the scan budget (SCAN_FACTOR x limit) ends the call
            "budget_bound": (
                MessageFilter(SUBACCOUNT, file_name=middle_file, channel=Channel.WEBCHAT, status=S.FAILED),
                None,
                LIMIT,
            ),
            "deep_page": (everything, cursor, LIMIT),
        }
        if large_page:
            queries["first_page_limit1000"] = (everything, None, 1000)
        for name, (flt, start, limit) in queries.items():

            async def call(flt: MessageFilter = flt, start: str | None = start, limit: int = limit) -> Page:
                return await list_messages(store, flt, limit=limit, cursor=start)

            got = await call()
            out[f"{name}_found"] = float(len(got.messages))
            for stat, value in (await _time(call, calls)).items():
                out[f"{name}_ms_{stat}"] = value
        return out
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="messages to store (default 1,000,000)")
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        figures = asyncio.run(run(server.url, args.n, large_page=True))
    finally:
        server.stop()
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
