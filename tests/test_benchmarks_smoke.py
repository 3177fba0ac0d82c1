"""`make bench` in miniature: the benchmark runs end to end and writes its report (figures are not judged)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_redis_server

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def test_benchmark_smoke(tmp_path: Path) -> None:
    """A tiny benchmark run exits 0 and reports every figure with a positive value."""
    require_redis_server()
    out = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = out.read_text()
    labels = (
        "bare arq no-op jobs/s",
        "sendq msgs/s, 1 worker process",
        "sendq msgs/s, 2 worker processes",
        "receipts applied/s, `POST /v1/receipts/twilio`",
        "receipts applied/s, `POST /v1/receipts/infobip`",
        # a real `sendq api`, with 1 and with 2 processes (`--workers`): each must have taken every message
        "API intake msgs/s through `sendq api` over HTTP",
    )
    for label in labels:
        row = next(line for line in report.splitlines() if line.startswith(f"| {label}"))
        value = float(re.sub(r"[^0-9.]", "", row.rsplit("|", 2)[1]))
        assert value > 0, row
    assert "p99" in report and "Machine" in report
    # The intake aim is judged for one process and for the served API with its processes.
    assert "msgs/s in one process: **" in report
    assert "served over HTTP by `sendq api --workers 2`: **" in report
