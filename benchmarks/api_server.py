"""Intake through a real ``sendq api`` over HTTP, for ``make bench``: N messages as JSON batches posted by a
separate client to 1 and to several API processes (``--workers``), so the figure includes uvicorn, the sockets
and the scale-out that ``benchmarks/api.py`` (in process, one event loop) leaves out.

The client posts pre-encoded bodies, a few requests in flight per API process, each on a new connection; no
worker runs.
"""

import asyncio
import json
import sys
import time
from collections.abc import Callable

import httpx

from benchmarks.api import PER_REQUEST, _item
from scheduler.enqueue import connect
from sendq.apikeys import ApiKeyStore
from sendq.settings import Settings
from tests.redis_server import free_port

#: requests in flight per API process: one being programmed, one being read off the socket
IN_FLIGHT_PER_PROCESS = 2


async def _wait_ready(client: httpx.AsyncClient, alive: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("sendq api exited before it was ready")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("sendq api was not ready in time")


async def run(
    redis_url: str,
    n: int,
    workers: int,
    spawn: Callable[[list[str], dict[str, str], str], Callable[[], bool]],
    env: dict[str, str],
) -> float:
    """Messages/s for ``n`` messages posted to ``sendq api --workers {workers}``; ``spawn`` starts a process
    (args, env, log name) and returns a liveness check."""
    arq = await connect(Settings(redis_url=redis_url))
    try:
        await arq.flushdb()
        _, token = await ApiKeyStore(arq).create(subaccount="bench", operator=False, label="bench")
        port = free_port()
        alive = spawn(
            [sys.executable, "-m", "sendq", "api", "--port", str(port), "--workers", str(workers)],
            env,
            f"api-{workers}w.log",
        )
        bodies = [
            json.dumps({"messages": [_item(i) for i in range(start, min(n, start + PER_REQUEST))]}).encode()
            for start in range(0, n, PER_REQUEST)
        ]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(600.0),
            # A new connection per request, as a load balancer would spread them. Kept-alive connections stay
            # with the process that accepted them, and the processes accept them at start-up when all are idle:
            # with --workers 2 one process often got every connection (2w then measured 7,900 or 12,800 msgs/s
            # at random, against a steady 10,300 this way).
            limits=httpx.Limits(max_connections=IN_FLIGHT_PER_PROCESS * workers, max_keepalive_connections=0),
        ) as client:
            await _wait_ready(client, alive)
            slots = asyncio.Semaphore(IN_FLIGHT_PER_PROCESS * workers)

            async def post(body: bytes) -> int:
                async with slots:
                    r = await client.post("/v1/batches", content=body)
                    r.raise_for_status()
                    return int(r.json()["accepted"])

            t0 = time.perf_counter()
            accepted = sum(await asyncio.gather(*(post(b) for b in bodies)))
            elapsed = time.perf_counter() - t0
        if accepted != n:
            raise RuntimeError(f"sendq api accepted {accepted} of {n} messages")
        return n / elapsed
    finally:
        await arq.flushdb()
        await arq.aclose()
