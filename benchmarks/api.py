"""HTTP API figures for ``make bench``: intake through ``POST /v1/batches`` and ``POST /v1/batches/file``, Redis
memory per programmed message, and the time to cancel a whole batch.

The app runs in this process behind httpx's ASGI transport (no sockets, no uvicorn workers), on the private
redis-server the benchmark run started; no worker runs, so every message stays programmed.
"""

import time
from typing import Any

import httpx

from scheduler.enqueue import connect
from sendq.api.app import create_app
from sendq.apikeys import ApiKeyStore
from sendq.gc_tuning import tune_collector
from sendq.settings import Settings

#: messages per JSON batch request (the default SENDQ_API_MAX_BATCH_ITEMS)
PER_REQUEST = 10_000


def _item(i: int) -> dict[str, Any]:
    return {"channel": "sms", "to": f"+1415{2000000 + i % 8_000_000:07d}", "body": f"Your code is {100000 + i}"}


def _csv(n: int) -> bytes:
    lines = ["to,body"] + [f"+1415{2000000 + i % 8_000_000:07d},Your code is {100000 + i}" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


async def run(redis_url: str, n: int = 100_000) -> dict[str, float]:
    settings = Settings(redis_url=redis_url, api_max_csv_rows=max(n, 100_000))
    arq = await connect(settings)
    try:
        await arq.flushdb()
        _, token = await ApiKeyStore(arq).create(subaccount="bench", operator=False, label="bench")
        app = create_app(settings, redis=arq)
        tune_collector()  # as `sendq api` does once its app is built
        out: dict[str, float] = {"messages": float(n)}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(600.0),
            ) as client,
        ):
            before = int((await arq.info("memory"))["used_memory"])
            t0 = time.perf_counter()
            batch_ids = []
            for start in range(0, n, PER_REQUEST):
                items = [_item(i) for i in range(start, min(n, start + PER_REQUEST))]
                r = await client.post("/v1/batches", json={"messages": items})
                r.raise_for_status()
                assert r.json()["accepted"] == len(items), r.json()
                batch_ids.append(r.json()["id"])
            out["batches_json_msgs_per_s"] = n / (time.perf_counter() - t0)
            after = int((await arq.info("memory"))["used_memory"])
            out["memory_per_message_b"] = (after - before) / n

            t0 = time.perf_counter()
            for batch_id in batch_ids:
                r = await client.post(f"/v1/batches/{batch_id}/cancel")
                r.raise_for_status()
            out["cancel_s"] = time.perf_counter() - t0
            out["cancel_batch_size"] = float(min(n, PER_REQUEST))

            await arq.flushdb()
            _, token = await ApiKeyStore(arq).create(subaccount="bench", operator=False, label="bench")
            client.headers["Authorization"] = f"Bearer {token}"
            body = _csv(n)
            t0 = time.perf_counter()
            r = await client.post("/v1/batches/file", files={"file": ("contacts.csv", body, "text/csv")})
            r.raise_for_status()
            out["batches_file_msgs_per_s"] = n / (time.perf_counter() - t0)
            assert r.json()["accepted"] == n, {k: v for k, v in r.json().items() if k != "items"}
            file_batch = r.json()["id"]

            t0 = time.perf_counter()
            r = await client.post(f"/v1/batches/{file_batch}/cancel")
            r.raise_for_status()
            out["cancel_whole_file_batch_s"] = time.perf_counter() - t0
            assert r.json()["cancelled"] == n
        return out
    finally:
        await arq.flushdb()
        await arq.aclose()


if __name__ == "__main__":
    import asyncio
    import sys

    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
        print(asyncio.run(run(server.url, count)))
    finally:
        server.stop()
