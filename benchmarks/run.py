"""Throughput, lateness and memory figures for sendq, next to bare arq, on one private redis-server.

``python -m benchmarks.run [--quick] [--out docs/benchmarks.md]`` (``make bench``) starts its own
``redis-server`` on a free loopback port (never a shared Redis), flushes it between phases, and measures:

1. bare arq: N no-op jobs run by one arq worker *process* with sendq's worker knobs (``max_jobs``,
   ``poll_delay``, JSON serializer, ``keep_result=0``, burst mode);
2. sendq end to end: N messages programmed with ``Scheduler.program`` (intake timed on its own), then run by
   1 and by 2 ``python -m sendq worker`` processes (mock provider, no latency) until every message is ``sent``;
3. scheduling lateness: messages programmed ahead of time at half the 1-worker peak rate, one warmed worker;
   lateness is the ``sending`` history time minus ``send_at``;
4. Redis memory per programmed message (``used_memory`` delta / N).

It prints a table and writes a Markdown report (default ``docs/benchmarks.md``). Every process it starts,
redis-server included, is stopped on the way out (SIGTERM, then SIGKILL).

``--arq-worker URL`` is the internal sub-mode that runs the bare arq worker in its own process.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from arq.connections import ArqRedis

from benchmarks import (
    api as api_bench,
    api_server as api_server_bench,
    content as content_bench,
    listing as listing_bench,
    receipts as receipts_bench,
)
from scheduler.enqueue import connect, deserialize_job, redis_settings, serialize_job
from scheduler.intake import Scheduler
from sendq import keys
from sendq.channel import Channel
from sendq.message import HistoryEntry, NewMessage, utcnow
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.store import MessageStore
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
#: the no-op function of the bare arq phase
NOOP = "noop"
#: programs run this many ``Scheduler.program`` calls concurrently
CHUNK = 200
#: the 0.8x target: sendq (1 process) against bare arq
RATIO_TARGET = 0.8
#: p99 scheduling lateness target at half the 1-worker peak rate
LATENESS_P99_TARGET_MS = 250.0
#: issue 3: no content check may hold the event loop this long
CONTENT_BLOCK_TARGET_MS = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sizes:
    arq_jobs: int
    messages: int
    lateness_s: float
    #: messages programmed through the HTTP API (JSON batches, then one CSV file)
    api_messages: int
    #: messages stored for the list-endpoint latency
    stored_messages: int
    #: receipts per provider shape through the callback endpoint
    receipts: int


SMOKE = Sizes(arq_jobs=100, messages=100, lateness_s=1.0, api_messages=300, stored_messages=2_000, receipts=200)
FULL = Sizes(
    arq_jobs=5000, messages=5000, lateness_s=10.0, api_messages=100_000, stored_messages=1_000_000, receipts=20_000
)
QUICK = Sizes(
    arq_jobs=1000, messages=1000, lateness_s=4.0, api_messages=10_000, stored_messages=100_000, receipts=5_000
)
#: issue 4's aims
API_INTAKE_TARGET = 10_000.0
MEMORY_TARGET_B = 1024.0
CANCEL_TARGET_S = 5.0
LIST_TARGET_MS = 100.0


# --- processes ---------------------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> int | None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc), 0.0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Processes:
    """Every child process of the run, so that one ``finally`` can stop them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: Sequence[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / log_name).open("ab") as out:
            proc = subprocess.Popen(list(args), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> int | None:
        code = stop_process(proc)
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def clean_env() -> dict[str, str]:
    """This process's environment without any SENDQ_* variable of the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SENDQ_")}


def worker_env(redis_url: str) -> dict[str, str]:
    return {
        **clean_env(),
        "SENDQ_REDIS_URL": redis_url,
        "SENDQ_PROVIDER": "mock",
        "SENDQ_MOCK__LATENCY_MS": "0",
        "SENDQ_LOG_LEVEL": "WARNING",
        "SENDQ_LOG_JSON": "true",
    }


# --- Redis helpers -----------------------------------------------------------------------------------------


async def used_memory(redis: ArqRedis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def redis_cpu(redis: ArqRedis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def command_calls(redis: ArqRedis) -> Counter[str]:
    """Calls per command since the last CONFIG RESETSTAT (commands run inside Lua scripts included)."""
    stats = await redis.info("commandstats")
    counts: Counter[str] = Counter()
    for name, value in stats.items():
        calls = value["calls"] if isinstance(value, dict) else 0
        counts[str(name).removeprefix("cmdstat_")] = int(calls)
    return counts


def redis_command_summary(calls: Counter[str], per: int) -> tuple[float, float]:
    """(commands per item, EVALSHA per item), leaving out the benchmark's own polling and stats commands."""
    ignored = {"config|resetstat", "info", "zcard", "ping", "client|setinfo", "hello", "select"}
    total = sum(v for k, v in calls.items() if k not in ignored)
    return total / per, (calls["evalsha"] + calls["eval"]) / per


async def gather_in_chunks(coros: Iterable[Awaitable[Any]], size: int = CHUNK) -> list[Any]:
    results: list[Any] = []
    batch: list[Awaitable[Any]] = []
    for coro in coros:
        batch.append(coro)
        if len(batch) == size:
            results += await asyncio.gather(*batch)
            batch = []
    if batch:
        results += await asyncio.gather(*batch)
    return results


async def histories(redis: ArqRedis, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each message's history entries (as stored: JSON objects), one pipeline per 1000 messages."""
    out: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            for message_id in chunk:
                pipe.lrange(keys.history(message_id), 0, -1)
            lists = await pipe.execute()
        for message_id, entries in zip(chunk, lists, strict=True):
            out[message_id] = [json.loads(e) for e in entries]
    return out


def status_time(entries: list[dict[str, Any]], status: MessageStatus) -> datetime:
    """Time of the first history entry with ``status``."""
    for entry in entries:
        if entry["status"] == status.value:
            return HistoryEntry.model_validate(entry).at  # a birth entry's time is epoch ms
    raise LookupError(f"no {status} entry in {entries}")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (``q`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --- phase 1: bare arq -------------------------------------------------------------------------------------


async def _noop(ctx: dict[str, Any]) -> None:
    return None


async def arq_worker_main(url: str) -> dict[str, Any]:
    """The ``--arq-worker`` sub-mode: one burst arq worker with sendq's default knobs, timed around ``main()``."""
    from arq.worker import Worker, func

    settings = Settings()
    # Built inside the running loop: arq's Worker binds to the current event loop at construction.
    worker = Worker(
        functions=[func(_noop, name=NOOP, keep_result=0)],
        queue_name=settings.queue_name,
        redis_settings=redis_settings(url),
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        max_jobs=settings.worker_concurrency,
        poll_delay=settings.poll_delay_s,
        job_timeout=settings.job_timeout_s,
        keep_result=0,
        burst=True,
        handle_signals=False,
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        await worker.main()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return {"wall_s": wall, "cpu_s": cpu, "complete": worker.jobs_complete, "failed": worker.jobs_failed}
    finally:
        await worker.close()


@dataclass(slots=True)
class ArqResult:
    jobs: int
    enqueue_rate: float
    wall_s: float
    process_wall_s: float
    cpu_ms_per_job: float
    memory_per_job: float
    commands_per_job: float
    redis_cpu_ms_per_job: float

    @property
    def rate(self) -> float:
        return self.jobs / self.wall_s


async def bench_arq(redis_url: str, n: int, procs: Processes) -> ArqResult:
    settings = Settings(redis_url=redis_url)
    arq = await connect(settings)
    try:
        await arq.flushdb()
        mem0 = await used_memory(arq)
        t0 = time.perf_counter()
        await gather_in_chunks(arq.enqueue_job(NOOP, _queue_name=settings.queue_name) for _ in range(n))
        enqueue_s = time.perf_counter() - t0
        mem1 = await used_memory(arq)
        queued = await arq.zcard(settings.queue_name)
        if queued != n:
            raise RuntimeError(f"bare arq: {queued} jobs queued, expected {n}")
        await arq.config_resetstat()
        rcpu0 = await redis_cpu(arq)
        start = time.perf_counter()
        proc = procs.spawn(
            [sys.executable, "-m", "benchmarks.run", "--arq-worker", redis_url], clean_env(), "arq-worker.log"
        )
        code = await asyncio.to_thread(proc.wait, 300)
        process_wall = time.perf_counter() - start
        procs.procs.remove(proc)
        log = (procs.log_dir / "arq-worker.log").read_text()
        if code != 0:
            raise RuntimeError(f"bare arq worker exited {code}:\n{log[-3000:]}")
        report = json.loads(next(line for line in reversed(log.splitlines()) if line.startswith('{"wall_s"')))
        if report["complete"] != n or report["failed"]:
            raise RuntimeError(f"bare arq worker: {report}")
        rcpu = await redis_cpu(arq) - rcpu0
        commands, _ = redis_command_summary(await command_calls(arq), n)
        return ArqResult(
            jobs=n,
            enqueue_rate=n / enqueue_s,
            wall_s=float(report["wall_s"]),
            process_wall_s=process_wall,
            cpu_ms_per_job=1000 * float(report["cpu_s"]) / n,
            memory_per_job=(mem1 - mem0) / n,
            commands_per_job=commands,
            redis_cpu_ms_per_job=1000 * rcpu / n,
        )
    finally:
        await arq.aclose()


# --- phase 2: sendq end to end -----------------------------------------------------------------------------


@dataclass(slots=True)
class SendqResult:
    workers: int
    messages: int
    intake_rate: float
    memory_per_message: float
    wall_s: float
    first_to_last_s: float
    steady_cpu_ms_per_message: float
    commands_per_message: float
    evalsha_per_message: float
    redis_cpu_ms_per_message: float

    @property
    def wall_rate(self) -> float:
        return self.messages / self.wall_s

    @property
    def rate(self) -> float:
        """From the first to the last ``sent`` history time: process start-up excluded."""
        return (self.messages - 1) / self.first_to_last_s


def bench_message(subaccount: str, i: int, send_at: datetime | None = None) -> NewMessage:
    return NewMessage(
        subaccount=subaccount,
        channel=Channel.SMS,
        to=f"+1415{2000000 + i:07d}",
        body=f"benchmark message {i}",
        send_at=send_at,
    )


def scheduler_for(arq: ArqRedis, settings: Settings) -> Scheduler:
    return Scheduler(MessageStore(arq, retention=timedelta(seconds=settings.retention_s)), arq, settings)


async def wait_sent(
    arq: ArqRedis, subaccount: str, n: int, timeout_s: float, pids: Sequence[int] = ()
) -> list[tuple[float, int, float]]:
    """Poll ``ZCARD`` of the ``sent`` index until it reaches ``n``; samples of (monotonic, count, workers' CPU s)."""
    key = keys.index(subaccount, "status", MessageStatus.SENT.value)
    deadline = time.monotonic() + timeout_s
    samples: list[tuple[float, int, float]] = []
    while True:
        count = int(await arq.zcard(key))
        samples.append((time.monotonic(), count, sum(cpu_seconds(p) for p in pids)))
        if count >= n:
            return samples
        if time.monotonic() > deadline:
            counts = {s.value: int(await arq.zcard(keys.index(subaccount, "status", s.value))) for s in MessageStatus}
            raise RuntimeError(
                f"only {count}/{n} sent after {timeout_s:.0f}s: {[(k, v) for k, v in counts.items() if v]}"
            )
        await asyncio.sleep(0.05)


def steady_cpu_per_message(samples: list[tuple[float, int, float]], n: int) -> float:
    """Worker CPU seconds per message between 10 % and 90 % sent (start-up and tail excluded)."""
    low = next(s for s in samples if s[1] >= n * 0.1)
    high = next(s for s in samples if s[1] >= n * 0.9)
    if high[1] <= low[1]:
        return float("nan")
    return (high[2] - low[2]) / (high[1] - low[1])


async def bench_sendq(redis_url: str, n: int, workers: int, procs: Processes) -> SendqResult:
    settings = Settings(redis_url=redis_url)
    subaccount = "bench"
    arq = await connect(settings)
    started: list[subprocess.Popen[bytes]] = []
    try:
        await arq.flushdb()
        scheduler = scheduler_for(arq, settings)
        messages = [bench_message(subaccount, i) for i in range(n)]
        mem0 = await used_memory(arq)
        t0 = time.perf_counter()
        programmed = await gather_in_chunks(scheduler.program(m) for m in messages)
        intake_s = time.perf_counter() - t0
        mem1 = await used_memory(arq)
        ids = [p.message.id for p in programmed]
        await arq.config_resetstat()
        rcpu0 = await redis_cpu(arq)
        env = worker_env(redis_url)
        start = time.monotonic()
        for w in range(workers):
            started.append(procs.spawn([sys.executable, "-m", "sendq", "worker"], env, f"sendq-{workers}w-{w}.log"))
        samples = await wait_sent(arq, subaccount, n, max(90.0, n / 20), [p.pid for p in started])
        wall = samples[-1][0] - start
        rcpu = await redis_cpu(arq) - rcpu0
        commands, evalsha = redis_command_summary(await command_calls(arq), n)
        for proc in started:
            procs.stop(proc)
        started.clear()
        sent_at = sorted(status_time(h, MessageStatus.SENT) for h in (await histories(arq, ids)).values())
        return SendqResult(
            workers=workers,
            messages=n,
            intake_rate=n / intake_s,
            memory_per_message=(mem1 - mem0) / n,
            wall_s=wall,
            first_to_last_s=(sent_at[-1] - sent_at[0]).total_seconds(),
            steady_cpu_ms_per_message=1000 * steady_cpu_per_message(samples, n),
            commands_per_message=commands,
            evalsha_per_message=evalsha,
            redis_cpu_ms_per_message=1000 * rcpu / n,
        )
    finally:
        for proc in started:
            procs.stop(proc)
        await arq.aclose()


# --- phase 3: lateness -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LatenessResult:
    rate: float
    messages: int
    min_lead_s: float
    lateness_ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return percentile(self.lateness_ms, q)

    @property
    def max_ms(self) -> float:
        return max(self.lateness_ms)


async def bench_lateness(
    redis_url: str, rate: float, duration_s: float, intake_rate: float, procs: Processes
) -> LatenessResult:
    settings = Settings(redis_url=redis_url)
    arq = await connect(settings)
    worker: subprocess.Popen[bytes] | None = None
    try:
        await arq.flushdb()
        scheduler = scheduler_for(arq, settings)
        worker = procs.spawn([sys.executable, "-m", "sendq", "worker"], worker_env(redis_url), "sendq-lateness.log")
        # Warm-up: the worker has started, connected and sent a few messages before the measured ones.
        warm = 50
        await gather_in_chunks(scheduler.program(bench_message("warm", i)) for i in range(warm))
        await wait_sent(arq, "warm", warm, 60)
        await asyncio.sleep(0.5)
        count = max(2, round(rate * duration_s))
        spacing = timedelta(seconds=1 / rate)
        # All send times at least 2 s ahead of their programming, even for the last message programmed.
        lead = 2.0 + 1.5 * count / intake_rate + 0.5
        base = utcnow() + timedelta(seconds=lead)
        messages = [bench_message("late", i, base + i * spacing) for i in range(count)]
        programmed = await gather_in_chunks(scheduler.program(m) for m in messages)
        send_at = {p.message.id: p.message.send_at for p in programmed}
        min_lead = min((p.message.send_at - p.message.created_at).total_seconds() for p in programmed)
        remaining = (base - utcnow()).total_seconds() + duration_s
        await wait_sent(arq, "late", count, remaining + 60)
        lateness = [
            (status_time(h, MessageStatus.SENDING) - send_at[i]).total_seconds() * 1000
            for i, h in (await histories(arq, list(send_at))).items()
        ]
        return LatenessResult(rate=rate, messages=count, min_lead_s=min_lead, lateness_ms=lateness)
    finally:
        if worker is not None:
            procs.stop(worker)
        await arq.aclose()


# --- report ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    quick: bool
    sizes: Sizes
    started: datetime
    elapsed_s: float
    machine: dict[str, str]
    #: 1-minute load average when the run started and when it ended (other work on the machine skews figures)
    load: tuple[float, float]
    arq: ArqResult
    sendq: list[SendqResult]
    lateness: LatenessResult
    #: content-rule checks (``benchmarks/content.py``)
    content: dict[str, float]
    #: HTTP API intake, memory and batch cancel (``benchmarks/api.py``)
    api: dict[str, float]
    #: list endpoint latency on many stored messages (``benchmarks/listing.py``)
    listing: dict[str, float]
    #: receipts applied through the callback endpoint (``benchmarks/receipts.py``)
    receipts: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.sendq[0].rate / self.arq.rate


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts(redis_version: str) -> dict[str, str]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal:")), 0
    )

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "platform": platform.platform(),
        "CPUs": f"{os.cpu_count()} x {cpu_model}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "unknown",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "redis-server": redis_version,
        "arq": version("arq"),
        "redis-py": version("redis"),
        "hiredis": version("hiredis"),
    }


def figure_rows(r: Results) -> list[tuple[str, str]]:
    a, late, one = r.arq, r.lateness, r.sendq[0]
    rows: list[tuple[str, str]] = [
        (f"bare arq no-op jobs/s (1 worker process, {a.jobs} jobs)", f"{a.rate:,.0f}"),
    ]
    for s in r.sendq:
        label = f"{s.workers} worker process{'es' if s.workers > 1 else ''}, {s.messages} msgs"
        rows += [
            (f"sendq msgs/s, {label}, first to last `sent`", f"{s.rate:,.0f}"),
            (f"sendq msgs/s, {label}, worker start to all `sent`", f"{s.wall_rate:,.0f}"),
        ]
    lateness = f"{late.p(50):.0f} / {late.p(90):.0f} / {late.p(99):.0f} / {late.max_ms:.0f} ms"
    commands = f"{a.commands_per_job:.1f} / {one.commands_per_message:.1f} ({one.evalsha_per_message:.1f} EVALSHA)"
    worker_cpu = f"{a.cpu_ms_per_job:.2f} / {one.steady_cpu_ms_per_message:.2f} ms"
    redis_cpu = f"{a.redis_cpu_ms_per_job:.3f} / {one.redis_cpu_ms_per_message:.3f} ms"
    rows += [
        ("ratio sendq (1 process, first to last `sent`) / bare arq", f"{r.ratio:.2f}x"),
        (f"sendq intake msgs/s (`Scheduler.program`, {CHUNK} concurrent)", f"{one.intake_rate:,.0f}"),
        (f"lateness at {late.rate:,.0f} msgs/s (half the 1-process peak): p50 / p90 / p99 / max", lateness),
        ("Redis memory per programmed message (with its arq job)", f"{one.memory_per_message:,.0f} B"),
        ("Redis memory per bare arq job (for comparison)", f"{a.memory_per_job:,.0f} B"),
        ("worker CPU per arq job / per sendq message (1 process)", worker_cpu),
        ("Redis commands per arq job / per sendq message (incl. inside Lua)", commands),
        ("redis-server CPU per arq job / per sendq message", redis_cpu),
        ("content-rule checks/s, realistic 1-3 segment texts with links (1 core)", f"{r.content['checks_per_s']:,.0f}"),
        ("content-rule check p99, realistic texts", f"{r.content['realistic_p99_ms']:.3f} ms"),
        ("content-rule check, worst 10 kB hostile input", f"{r.content['hostile_worst_ms']:.2f} ms"),
        *api_rows(r),
        *receipt_rows(r),
    ]
    return rows


def receipt_rows(r: Results) -> list[tuple[str, str]]:
    n, per_request, flight = int(r.receipts["receipts"]), receipts_bench.INFOBIP_BATCH, receipts_bench.CONCURRENCY
    return [
        (
            f"receipts applied/s, `POST /v1/receipts/twilio` (form, signed, 1 per request, {flight} in flight, {n:,})",
            f"{r.receipts['twilio_receipts_per_s']:,.0f}",
        ),
        (
            f"receipts applied/s, `POST /v1/receipts/infobip` (JSON, basic auth, {per_request} per request, {n:,})",
            f"{r.receipts['infobip_receipts_per_s']:,.0f}",
        ),
    ]


def api_rows(r: Results) -> list[tuple[str, str]]:
    a, n = r.api, int(r.api["messages"])
    rows = [
        (
            f"API intake msgs/s, `POST /v1/batches` ({n:,} msgs, 10,000 per request)",
            f"{a['batches_json_msgs_per_s']:,.0f}",
        ),
        (f"API intake msgs/s, `POST /v1/batches/file` (one {n:,}-row CSV)", f"{a['batches_file_msgs_per_s']:,.0f}"),
        (
            f"API intake msgs/s through `sendq api` over HTTP, `POST /v1/batches` ({n:,} msgs): "
            + " / ".join(f"{w} process{'es' if w > 1 else ''}" for w in API_SERVER_WORKERS),
            " / ".join(f"{a[f'server_{w}w_msgs_per_s']:,.0f}" for w in API_SERVER_WORKERS),
        ),
        (
            "Redis memory per message programmed through the API (record, indexes; arq jobs for the first 10,000)",
            f"{a['memory_per_message_b']:,.0f} B",
        ),
        (
            f"time to cancel a {n:,}-message batch (`POST /v1/batches/ID/cancel`)",
            f"{a['cancel_whole_file_batch_s']:.2f} s",
        ),
    ]
    n_stored = int(r.listing.get("n", 0))
    for name in [k.removesuffix("_ms_p50") for k in r.listing if k.endswith("_ms_p50")]:
        p50, p99 = r.listing[f"{name}_ms_p50"], r.listing[f"{name}_ms_p99"]
        label = f"list query `{name}` on {n_stored:,} stored messages (limit 50): p50 / p99"
        rows.append((label, f"{p50:.1f} / {p99:.1f} ms"))
    rows.append(
        (
            "Redis memory per message in the list benchmark (records and indexes, no jobs)",
            f"{r.listing.get('memory_per_message_b', 0):,.0f} B",
        )
    )
    return rows


def target_lines(r: Results) -> list[str]:
    ratio_met = "met" if r.ratio >= RATIO_TARGET else "not met"
    p99 = r.lateness.p(99)
    late_met = "met" if p99 < LATENESS_P99_TARGET_MS else "not met"
    ratio = f"{r.sendq[0].rate:,.0f} / {r.arq.rate:,.0f} = {r.ratio:.2f}x"
    worst = r.content["hostile_worst_ms"]
    block_met = "met" if worst < CONTENT_BLOCK_TARGET_MS else "not met"
    a = r.api
    # The everyday filters; `selective` and `budget_bound` are built to be hard and are shown, not judged.
    everyday = ("first_page", "status", "batch", "channel_status", "file_name", "created_range", "deep_page")
    worst_list = max((r.listing.get(f"{q}_ms_p99", float("nan")) for q in everyday), default=float("nan"))

    def met(ok: bool) -> str:
        return "met" if ok else "not met"

    top = max(API_SERVER_WORKERS)
    served = a.get(f"server_{top}w_msgs_per_s", float("nan"))
    api_lines = [
        f"API intake >= {API_INTAKE_TARGET:,.0f} msgs/s in one process: "
        + f"**{met(min(a['batches_json_msgs_per_s'], a['batches_file_msgs_per_s']) >= API_INTAKE_TARGET)}** "
        + f"(in process: JSON {a['batches_json_msgs_per_s']:,.0f}, file {a['batches_file_msgs_per_s']:,.0f})",
        f"API intake >= {API_INTAKE_TARGET:,.0f} msgs/s served over HTTP by `sendq api --workers {top}`: "
        + f"**{met(served >= API_INTAKE_TARGET)}** ({served:,.0f})",
        f"<= {MEMORY_TARGET_B:,.0f} B Redis memory per programmed message: **{met(a['memory_per_message_b'] <= MEMORY_TARGET_B)}** "
        + f"({a['memory_per_message_b']:,.0f} B)",
        f"batch cancel of {int(a['messages']):,} under {CANCEL_TARGET_S:.0f} s: **{met(a['cancel_whole_file_batch_s'] < CANCEL_TARGET_S)}** "
        + f"({a['cancel_whole_file_batch_s']:.2f} s)",
        f"list first page under {LIST_TARGET_MS:.0f} ms (worst p99 of the everyday filters): "
        + f"**{met(worst_list < LIST_TARGET_MS)}** "
        + f"({worst_list:.1f} ms on {int(r.listing.get('n', 0)):,} stored)",
    ]
    return [
        *api_lines,
        f"sendq (1 process) >= {RATIO_TARGET}x bare arq: **{ratio_met}** ({ratio})",
        f"no content check blocks the event loop for {CONTENT_BLOCK_TARGET_MS:.0f} ms or more: **{block_met}** "
        + f"(worst {worst:.2f} ms on 10 kB hostile inputs)",
        f"p99 lateness < {LATENESS_P99_TARGET_MS:.0f} ms at half peak: **{late_met}** "
        + f"(p99 {p99:.0f} ms at {r.lateness.rate:,.0f} msgs/s)",
    ]


def busy_note(r: Results) -> str:
    if r.load[0] < 0.5:
        return ""
    return (
        "the machine was already busy when the run started (load above 0.5 on"
        f" {os.cpu_count()} CPUs): other work competed for the CPUs, so these figures are on the low side."
    )


def render_text(r: Results) -> str:
    rows = figure_rows(r)
    width = max(len(k) for k, _ in rows)
    lines = [f"sendq benchmarks ({'quick' if r.quick else 'full'}, {r.elapsed_s:.0f} s)", ""]
    lines += [f"  {k.replace('`', ''):<{width}}  {v}" for k, v in rows]
    lines += ["", *(f"  {t.replace('**', '')}" for t in target_lines(r))]
    lines += ["", f"  load average (1 min) at start / end: {r.load[0]:.2f} / {r.load[1]:.2f}"]
    if busy_note(r):
        lines.append(f"  note: {busy_note(r)}")
    return "\n".join(lines)


def how_measured(r: Results) -> list[str]:
    s, late, settings = r.sizes, r.lateness, Settings()
    return [
        (
            "One private `redis-server` on a free loopback port (no persistence, `noeviction`), started by the run"
            " and flushed between phases. The benchmark process, the worker processes and Redis share this"
            " machine's CPUs."
        ),
        (
            f"**Bare arq**: {s.arq_jobs} no-op jobs enqueued first (not timed), then one arq worker process in"
            f" burst mode with the knobs sendq's worker uses by default: `max_jobs={settings.worker_concurrency}`,"
            f" `poll_delay={settings.poll_delay_s}`, the JSON serializer of `scheduler.enqueue`, `keep_result=0`."
            " Rate = jobs / wall time of `Worker.main()` in that process (interpreter start-up and imports"
            f" excluded; the whole process took {r.arq.process_wall_s:.1f} s)."
        ),
        (
            f"**sendq end to end**: {s.messages} messages programmed for immediate sending with"
            f" `Scheduler.program` ({CHUNK} concurrent calls at a time; this is the intake rate) while no worker"
            " runs; then 1 (or 2) `python -m sendq worker` processes with `SENDQ_PROVIDER=mock`,"
            " `SENDQ_MOCK__LATENCY_MS=0`, `SENDQ_LOG_LEVEL=WARNING`, `SENDQ_LOG_JSON=true`, every other setting"
            " at its default. *Worker start to all sent* runs from process spawn until `ZCARD` of the"
            " subaccount's `sent` status index reaches N (polled every 50 ms), so it includes process start-up."
            " *First to last sent* is (N - 1) / the span between the first and the last `sent` history entries:"
            " start-up excluded, the fairer figure, and the one the ratio uses."
        ),
        (
            f"**Lateness**: one worker started beforehand and warmed with 50 messages; then {late.messages}"
            f" messages with `send_at` spaced evenly at {late.rate:,.0f} msgs/s (half the 1-process first-to-last"
            f" rate) over {s.lateness_s:.0f} s, all programmed ahead of time (each `send_at` at least"
            f" {late.min_lead_s:.1f} s after its programming). Lateness = the message's `sending` history time"
            " minus its `send_at`."
        ),
        (
            "**Memory**: `INFO memory` `used_memory` after programming N messages minus before, divided by N"
            " (a message is its hash, 3 index entries, a due-index entry and an event-stream entry; its history"
            " list comes with its first status change; the first `SENDQ_QUEUE_MAX_JOBS` (10,000) messages due"
            " within `SENDQ_ENQUEUE_AHEAD_S` also have their arq job). The bare arq figure is the same delta for"
            " N enqueued no-op jobs. The private redis-server runs with `hash-max-listpack-value 4096`, as sendq"
            " recommends."
        ),
        (
            "**CPU and commands**: sendq worker CPU from `/proc/<pid>/stat` between 10 % and 90 % of messages"
            " sent (arq: the process's CPU time over `Worker.main()`); Redis commands from `INFO commandstats`"
            " after `CONFIG RESETSTAT` (commands run inside Lua scripts count too; the benchmark's own polling is"
            " left out); Redis CPU from `INFO cpu`."
        ),
        (
            "**Content rules**: `benchmarks/content.py` checks generated 1-3 segment texts (each with an enabled"
            " and a not-enabled link) with `sendq.content.check_content` in this process, and a set of 10 kB"
            " hostile inputs (runs of dots, brackets, fake URLs, format characters), each a few times; the worst"
            " single check is how long it holds the event loop."
        ),
        (
            "**HTTP API**: `benchmarks/api.py` runs the FastAPI app in the benchmark process behind httpx's ASGI"
            " transport (no sockets) on the same private Redis, with no worker running: N messages as JSON batches"
            " of 10,000, the memory delta over them, a cancel of each batch, then the same N as one CSV upload"
            " and a cancel of that whole batch. `benchmarks/api_server.py` then starts `sendq api --workers W`"
            " (W = 1, 2) and posts the same N as JSON batches of 10,000 from this process over loopback HTTP"
            " (pre-encoded bodies, 2 requests in flight per API process), timed from the first request to the"
            " last answer."
        ),
        (
            "**Receipts**: `benchmarks/receipts.py` moves N messages per provider to `sent` through the store's"
            " transitions, then posts one `delivered` receipt for each through the app (ASGI transport, no"
            " sockets) in Twilio's shape (form-encoded, one per request, 32 requests in flight, `X-Twilio-Signature`"
            " computed by the client and checked by the app) and Infobip's (JSON, 100 reports per request, one"
            " request at a time, basic auth); the"
            " rate is N / wall time, and every receipt must come back applied."
        ),
        (
            "**List endpoint**: `benchmarks/listing.py` writes N message records and their index entries straight"
            " into Redis (the layout the store's scripts write), then times `list_messages` first pages (limit 50)"
            " for each filter, median and p99 over repeated calls."
        ),
        "A small shared machine is noisy: runs vary, so treat single figures as roughly +/-30 %.",
    ]


def render_markdown(r: Results) -> str:
    mode = "quick" if r.quick else "full"
    out = [
        "# sendq benchmarks",
        "",
        f"Date: {r.started:%Y-%m-%d %H:%M} UTC ({mode} run, {r.elapsed_s:.0f} s).",
        "",
        "Command: `make bench`, that is `.venv/bin/python -m benchmarks.run --out docs/benchmarks.md`"
        + " (`--quick` for a smaller, faster run).",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in r.machine.items()),
        f"- load average (1 min) at start / end of the run: {r.load[0]:.2f} / {r.load[1]:.2f}",
        *([f"- **Note**: {busy_note(r)}"] if busy_note(r) else []),
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in figure_rows(r)),
        "",
        "## Targets",
        "",
        *(f"- {t}" for t in target_lines(r)),
        "",
        "## How measured",
        "",
        *(f"- {line}" for line in how_measured(r)),
        "",
    ]
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------------------


async def run_all(
    sizes: Sizes, procs: Processes, redis: RedisServer
) -> tuple[ArqResult, list[SendqResult], LatenessResult]:
    print(f"redis-server on {redis.url}; logs in {procs.log_dir}", flush=True)
    arq_result = await bench_arq(redis.url, sizes.arq_jobs, procs)
    print(f"bare arq: {arq_result.rate:,.0f} jobs/s", flush=True)
    sendq_results: list[SendqResult] = []
    for workers in (1, 2):
        result = await bench_sendq(redis.url, sizes.messages, workers, procs)
        sendq_results.append(result)
        print(
            f"sendq, {workers} worker(s): {result.rate:,.0f} msgs/s first to last sent,"
            f" {result.wall_rate:,.0f} msgs/s from start; intake {result.intake_rate:,.0f} msgs/s",
            flush=True,
        )
    half_peak = sendq_results[0].rate / 2
    lateness = await bench_lateness(redis.url, half_peak, sizes.lateness_s, sendq_results[0].intake_rate, procs)
    print(f"lateness at {half_peak:,.0f} msgs/s: p99 {lateness.p(99):.0f} ms", flush=True)
    return arq_result, sendq_results, lateness


async def redis_version(url: str) -> str:
    arq = await connect(Settings(redis_url=url))
    try:
        return str((await arq.info("server"))["redis_version"])
    finally:
        await arq.aclose()


#: API processes of the over-HTTP intake runs (``benchmarks/api_server.py``)
API_SERVER_WORKERS = (1, 2)


def api_server_rates(sizes: Sizes, procs: Processes, redis_url: str) -> dict[str, float]:
    """Intake msgs/s through a real ``sendq api`` with 1 and 2 processes (each run stops its server)."""
    out: dict[str, float] = {}
    started: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], env: dict[str, str], name: str) -> Callable[[], bool]:
        proc = procs.spawn(args, env, name)
        started.append(proc)
        return lambda: proc.poll() is None

    for workers in API_SERVER_WORKERS:
        try:
            rate = asyncio.run(
                api_server_bench.run(redis_url, sizes.api_messages, workers, spawn, worker_env(redis_url))
            )
        finally:
            while started:
                procs.stop(started.pop())
        out[f"server_{workers}w_msgs_per_s"] = rate
    return out


def _raise_on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and a shorter lateness run")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the benchmark works")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown report (default {DEFAULT_OUT})")
    parser.add_argument("--arq-worker", metavar="URL", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    # Only defaults count: a SENDQ_* variable of the caller's shell must not change the figures.
    for name in [n for n in os.environ if n.startswith("SENDQ_")]:
        del os.environ[name]
    if ns.arq_worker:
        print(json.dumps(asyncio.run(arq_worker_main(ns.arq_worker))), flush=True)
        return 0

    signal.signal(signal.SIGTERM, _raise_on_term)
    if shutil.which("redis-server") is None:
        raise SystemExit("benchmarks: redis-server is not on PATH (install the redis-server package)")
    sizes = SMOKE if ns.smoke else QUICK if ns.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="sendq-bench-"))
    procs = Processes(log_dir)
    redis = RedisServer()
    started, t0, load0 = datetime.now(UTC), time.monotonic(), os.getloadavg()[0]
    ok = False
    try:
        redis.start()
        machine = machine_facts(asyncio.run(redis_version(redis.url)))
        arq_result, sendq_results, lateness = asyncio.run(run_all(sizes, procs, redis))
        content = content_bench.run(quick=ns.quick or ns.smoke)
        api = asyncio.run(api_bench.run(redis.url, sizes.api_messages))
        api.update(api_server_rates(sizes, procs, redis.url))
        print(f"API: {api}", flush=True)
        listing = asyncio.run(listing_bench.run(redis.url, sizes.stored_messages))
        print(f"list endpoint: {listing}", flush=True)
        receipts = asyncio.run(receipts_bench.run(redis.url, sizes.receipts))
        print(f"receipts: {receipts}", flush=True)
        print(f"content rules: {content['checks_per_s']:,.0f} checks/s, worst {content['hostile_worst_ms']:.2f} ms")
        ok = True
    finally:
        procs.stop_all()
        redis.stop()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"benchmarks: failed; process logs kept in {log_dir}", file=sys.stderr)
    results = Results(
        quick=ns.quick or ns.smoke,
        sizes=sizes,
        started=started,
        elapsed_s=time.monotonic() - t0,
        machine=machine,
        load=(load0, os.getloadavg()[0]),
        arq=arq_result,
        sendq=sendq_results,
        lateness=lateness,
        content=content,
        api=api,
        listing=listing,
        receipts=receipts,
    )
    print()
    print(render_text(results))
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(render_markdown(results))
    print(f"\nwrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
