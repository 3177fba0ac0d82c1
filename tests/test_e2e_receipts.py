"""Receipts end to end with real processes: `sendq worker` sends through the `http` provider to
`sendq mock-provider`, which calls back `sendq api`'s `/v1/receipts/http` with signed receipts."""

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from scheduler.intake import Scheduler
from sendq.channel import Channel
from sendq.status import MessageStatus as S
from tests.conftest import RedisServer, free_port
from tests.helpers import new_message
from tests.processes import Cluster, Proc
from tests.test_e2e import MakeCluster, cluster_factory, scheduler_real

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
__all__ = ["cluster_factory", "scheduler_real"]

SECRET = "s3cret-for-receipts"


def start_api(cluster: Cluster, port: int, tmp: Path) -> Proc:
    api = Proc(["api", "--port", str(port)], cluster.env, tmp / "api.log").start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return api
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"sendq api did not start: {(tmp / 'api.log').read_text()}")


async def test_receipts_flow_back_from_the_provider(
    scheduler_real: Scheduler, cluster_factory: MakeCluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """120 messages: SMS end delivered, WhatsApp templates end read, a failing range ends failed; every
    receipt the provider sent was accepted, and no message has a status twice in its history."""
    api_port = free_port()
    cluster = cluster_factory(
        provider_args=[
            "--webhook-secret",
            SECRET,
            "--deliver-after-ms",
            "100",
            "--read-after-ms",
            "300",
            "--fail-prefix",
            "+14152999",
        ],
        http__webhook_secret=SECRET,
        public_url=f"http://127.0.0.1:{api_port}",
    )
    cluster.start_provider()
    api = start_api(cluster, api_port, tmp_path)
    cluster.start_worker()
    expected: dict[str, S] = {}
    try:
        for i in range(120):
            if i % 3 == 0:
                msg = new_message(channel=Channel.WHATSAPP, to=f"+1415{2000000 + i:07d}", template="code_v1", body=None)
                want = S.READ
            elif i % 3 == 1:
                msg = new_message(to=f"+1415{2000000 + i:07d}")
                want = S.DELIVERED
            else:
                msg = new_message(to=f"+14152999{i:03d}")
                want = S.FAILED
            expected[(await scheduler_real.program(msg)).message.id] = want
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            messages = {m.id: m for m in await scheduler_real.store.get_many(expected)}
            wrong = {i: messages[i].status for i in expected if messages[i].status is not expected[i]}
            if not wrong:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not there after 60 s: {Counter(s.value for s in wrong.values())}")
            await asyncio.sleep(0.25)
    finally:
        api.stop()
    for message_id in expected:
        got = await scheduler_real.get(message_id)
        history = [h.status for h in got.history]
        assert len(history) == len(set(history)), history
    failed = await scheduler_real.get(next(i for i, s in expected.items() if s is S.FAILED))
    assert failed.last_error_code == "undeliverable"
    receipts = [e for e in cluster.provider_events() if e["event"] == "receipt"]
    assert receipts and all(e["ok"] and e["http_status"] == 200 for e in receipts)
    assert Counter(e["status"] for e in receipts) == {"delivered": 80, "read": 40, "failed": 40}
