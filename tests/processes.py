"""Real sendq processes for the end-to-end tests: workers and the mock provider, each a `python -m sendq`."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Proc":
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sendq", *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful stop, in-flight jobs abandoned."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """A mock provider process and any number of worker processes sharing one Redis."""

    def __init__(self, redis_url: str, tmp: Path, *, provider_args: list[str] | None = None, **worker_env: Any) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.provider_port = free_port()
        self.provider_log = tmp / "provider.jsonl"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SENDQ_")}
        self.env = {
            **base,
            "SENDQ_REDIS_URL": redis_url,
            "SENDQ_PROVIDER": "http",
            "SENDQ_HTTP__URL": f"http://127.0.0.1:{self.provider_port}/v1/messages",
            "SENDQ_JOB_TIMEOUT_S": "5",
            "SENDQ_LEASE_MARGIN_S": "2",
            "SENDQ_SWEEP_INTERVAL_S": "1",
            "SENDQ_POLL_DELAY_S": "0.05",
            "SENDQ_JOB_COMPLETION_WAIT_S": "5",
            "SENDQ_LOG_JSON": "true",
            "SENDQ_LOG_LEVEL": "WARNING",
        }
        self.env.update({f"SENDQ_{k.upper()}": str(v) for k, v in worker_env.items()})
        self.provider = Proc(
            [
                "mock-provider",
                "--port",
                str(self.provider_port),
                "--log",
                str(self.provider_log),
                *(provider_args or []),
            ],
            self.env,
            tmp / "provider.out",
        )
        self.workers: list[Proc] = []

    def start_provider(self) -> None:
        self.provider.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.provider_port}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"mock provider did not start: {(self.tmp / 'provider.out').read_text()}")

    def start_worker(self) -> Proc:
        worker = Proc(["worker"], self.env, self.tmp / f"worker{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.provider.stop()

    def provider_events(self) -> list[dict[str, Any]]:
        if not self.provider_log.exists():
            return []
        return [json.loads(line) for line in self.provider_log.read_text().splitlines() if line.strip()]

    def accepted_per_message(self) -> Counter[str]:
        return Counter(e["message_id"] for e in self.provider_events() if e["event"] == "accepted")

    def worker_logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("worker*.log")))
