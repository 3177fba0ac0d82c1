"""The mock provider server on loopback, driven by raw httpx requests and by the real HttpProvider."""

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from providers.base import SendResult
from providers.http import HttpProvider
from providers.mock_server import (
    MockProviderServer,
    MockServerConfig,
    add_arguments,
    config_from_args,
    read_log,
)
from sendq.channel import Channel
from sendq.errors import PermanentProviderError, RateLimited, RetryableProviderError
from sendq.message import Message, new_message_id
from sendq.status import MessageStatus

StartServer = Callable[..., MockProviderServer]
ROOT = Path(__file__).resolve().parent.parent
# Every AsyncClient would otherwise load the CA bundle again (~70 ms); these requests are plain HTTP anyway.
_TLS = ssl.create_default_context()


def http_client(timeout: float, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, verify=_TLS, **kwargs)


def make_message(to: str = "+14155552671") -> Message:
    now = datetime.now(UTC)
    return Message(
        id=new_message_id(),
        subaccount="acme",
        channel=Channel.SMS,
        to=to,
        body="hello",
        created_at=now,
        valid_until=now + timedelta(hours=1),
        status=MessageStatus.SENDING,
        status_at=now,
        due_at=now,
    )


def message_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"message_id": new_message_id(), "channel": "sms", "to": "+14155552671", "body": "hi"}
    data.update(overrides)
    return data


def events(server: MockProviderServer, event: str | None = None) -> list[dict[str, Any]]:
    assert server.config.log_path is not None
    return [e for e in read_log(server.config.log_path) if event is None or e["event"] == event]


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def base_url(server: MockProviderServer) -> str:
    return server.url.removesuffix("/v1/messages")


@contextlib.contextmanager
def start_mock_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start(**config)`` starts a mock provider (logging under ``tmp_path``); all are stopped on exit."""
    servers: list[MockProviderServer] = []

    def start(**overrides: Any) -> MockProviderServer:
        overrides.setdefault("log_path", str(tmp_path / f"provider-{len(servers)}.jsonl"))
        server = MockProviderServer(MockServerConfig(**overrides))
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    with start_mock_server(tmp_path) as start:
        yield start


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Generous: hundreds of concurrent requests queue in the pool on a small CI machine.
    async with http_client(30.0) as http:
        yield http


async def test_new_key_is_accepted_and_logged(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A new key answers 201 with an mp- id, and the log gets one "accepted" line with the message's fields."""
    server = start_server()
    data = message_json()
    response = await client.post(server.url, json=data, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("mp-") and len(body["id"]) == 35
    assert body["status"] == "accepted" and body["repeat"] is False
    [line] = events(server)
    assert line["event"] == "accepted"
    assert line["provider_id"] == body["id"]
    assert line["idempotency_key"] == "k-1"
    assert (line["message_id"], line["to"], line["channel"], line["body"]) == (
        data["message_id"],
        data["to"],
        "sms",
        "hi",
    )
    received = datetime.fromisoformat(line["received_at"])
    assert received.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - received) < timedelta(seconds=5)


async def test_repeated_key_returns_the_same_id(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A repeated key answers 200 with the first id and repeat=true; HttpProvider reports SendResult.repeat."""
    server = start_server()
    provider = HttpProvider(server.url, client)
    message = make_message()
    first = await provider.send(message, idempotency_key="key-a")
    second = await provider.send(message, idempotency_key="key-a")
    assert first == SendResult(first.provider_message_id, repeat=False)
    assert second == SendResult(first.provider_message_id, repeat=True)
    raw = await client.post(server.url, json=message_json(), headers={"Idempotency-Key": "key-a"})
    assert raw.status_code == 200
    assert raw.json() == {"id": first.provider_message_id, "status": "accepted", "repeat": True}
    assert [(e["event"], e["provider_id"]) for e in events(server)] == [
        ("accepted", first.provider_message_id),
        ("repeat", first.provider_message_id),
        ("repeat", first.provider_message_id),
    ]


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": ""}])
async def test_missing_idempotency_key_is_400(
    start_server: StartServer, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A missing or empty Idempotency-Key is refused with 400 missing_idempotency_key, and nothing is accepted."""
    server = start_server()
    response = await client.post(server.url, json=message_json(), headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "missing_idempotency_key"
    assert events(server) == []


async def test_invalid_json_is_400(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A body that is not JSON, or not an object, is refused with 400 invalid_request."""
    server = start_server()
    for content in (b"{not json", b"\xff\xfe", b"[1, 2]"):
        response = await client.post(server.url, content=content, headers={"Idempotency-Key": "k"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_request"
    assert events(server) == []


@pytest.mark.parametrize("name", ["message_id", "to", "channel"])
async def test_missing_field_is_400_naming_it(start_server: StartServer, client: httpx.AsyncClient, name: str) -> None:
    """A missing or empty required field is refused with 400 invalid_request that names the field."""
    server = start_server()
    for data in (message_json(**{name: ""}), {k: v for k, v in message_json().items() if k != name}):
        response = await client.post(server.url, json=data, headers={"Idempotency-Key": "k"})
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_request"
        assert body["field"] == name and name in body["message"]


async def test_oversized_body_is_413(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """A body over 64 KiB is refused with 413, and the client can carry on afterwards."""
    server = start_server()
    big = message_json(body="x" * (65 * 1024))
    response = await client.post(server.url, json=big, headers={"Idempotency-Key": "big"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    after = await client.post(server.url, json=message_json(), headers={"Idempotency-Key": "small"})
    assert after.status_code == 201
    assert [e["idempotency_key"] for e in events(server)] == ["small"]


async def test_fault_500_is_retryable(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """An injected 500 maps to RetryableProviderError(status 500, not ambiguous) and accepts nothing."""
    server = start_server(fail_rate=1.0, fail_kinds=("500",))
    with pytest.raises(RetryableProviderError) as caught:
        await HttpProvider(server.url, client).send(make_message(), idempotency_key="k5")
    assert type(caught.value) is RetryableProviderError
    assert (caught.value.status_code, caught.value.code, caught.value.ambiguous) == (500, "server_error", False)
    [line] = events(server)
    assert (line["event"], line["kind"], line["idempotency_key"]) == ("fault", "500", "k5")
    assert server.snapshot()["accepted"] == 0


async def test_fault_429_is_rate_limited(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """An injected 429 carries the configured Retry-After, read by HttpProvider into RateLimited.retry_after_s."""
    server = start_server(fail_rate=1.0, fail_kinds=("429",), retry_after_s=7)
    raw = await client.post(server.url, json=message_json(), headers={"Idempotency-Key": "raw"})
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "7"
    with pytest.raises(RateLimited) as caught:
        await HttpProvider(server.url, client).send(make_message(), idempotency_key="k4")
    assert (caught.value.status_code, caught.value.code, caught.value.retry_after_s) == (429, "rate_limited", 7.0)
    assert [e["kind"] for e in events(server, "fault")] == ["429", "429"]
    assert server.snapshot()["accepted"] == 0


async def test_fault_400_is_permanent(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """An injected 400 maps to PermanentProviderError(invalid_recipient) and accepts nothing."""
    server = start_server(fail_rate=1.0, fail_kinds=("400",))
    with pytest.raises(PermanentProviderError) as caught:
        await HttpProvider(server.url, client).send(make_message(), idempotency_key="k0")
    assert (caught.value.status_code, caught.value.code) == (400, "invalid_recipient")
    assert [(e["event"], e["kind"]) for e in events(server)] == [("fault", "400")]


async def test_fault_timeout_accepts_but_answers_late(start_server: StartServer) -> None:
    """A "timeout" accepts the message yet answers too late: ambiguous error; a patient retry gets the same id."""
    server = start_server(fail_rate=1.0, fail_kinds=("timeout",), timeout_delay_ms=1500)
    message = make_message()
    async with http_client(0.3) as impatient:
        with pytest.raises(RetryableProviderError) as caught:
            await HttpProvider(server.url, impatient).send(message, idempotency_key="kt")
    assert caught.value.ambiguous is True and caught.value.code == "timeout"
    accepted, fault = events(server)
    assert accepted["event"] == "accepted" and accepted["idempotency_key"] == "kt"
    assert accepted["message_id"] == message.id
    assert (fault["event"], fault["kind"]) == ("fault", "timeout")

    async with http_client(5.0) as patient:
        started = time.monotonic()
        result = await HttpProvider(server.url, patient).send(message, idempotency_key="kt")
    assert time.monotonic() - started >= 1.4
    assert result == SendResult(accepted["provider_id"], repeat=True)
    assert [e["event"] for e in events(server)] == ["accepted", "fault", "repeat", "fault"]
    stats = server.snapshot()
    assert (stats["accepted"], stats["repeats"], stats["faults"]["timeout"]) == (1, 1, 2)


async def test_reject_prefix_is_permanent(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """Recipients starting with reject_prefix are refused 400 invalid_recipient; others are accepted."""
    server = start_server(reject_prefix="+1999")
    provider = HttpProvider(server.url, client)
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(make_message(to="+19990000000"), idempotency_key="bad")
    assert (caught.value.status_code, caught.value.code) == (400, "invalid_recipient")
    result = await provider.send(make_message(to="+14155550000"), idempotency_key="good")
    assert [e["provider_id"] for e in events(server, "accepted")] == [result.provider_message_id]
    assert server.snapshot()["rejected"] == 1


async def test_auth_token_is_required(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """With an auth token, a missing or wrong bearer token gets 401 (permanent); the right one is accepted."""
    server = start_server(auth_token="s3cret")
    for token in (None, "wrong"):
        with pytest.raises(PermanentProviderError) as caught:
            await HttpProvider(server.url, client, auth_token=token).send(make_message(), idempotency_key="k")
        assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")
    result = await HttpProvider(server.url, client, auth_token="s3cret").send(make_message(), idempotency_key="k")
    assert result.repeat is False
    assert len(events(server, "accepted")) == 1


async def test_concurrent_sends_get_distinct_ids(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """200 concurrent sends with distinct keys get 200 distinct ids and 200 "accepted" log lines."""
    server = start_server()
    provider = HttpProvider(server.url, client)
    results = await asyncio.gather(*(provider.send(make_message(), idempotency_key=f"c-{i}") for i in range(200)))
    ids = {r.provider_message_id for r in results}
    assert len(ids) == 200 and not any(r.repeat for r in results)
    accepted = events(server, "accepted")
    assert len(accepted) == 200
    assert {e["provider_id"] for e in accepted} == ids
    assert server.snapshot()["accepted"] == 200


async def test_fail_rate_statistics(start_server: StartServer) -> None:
    """fail_rate=0.3 over 300 requests injects 60..120 faults; the rest are accepted, and stats and log agree."""
    server = start_server(fail_rate=0.3, fail_kinds=("500",), seed=42)
    # A small pool is quicker here: fewer server threads competing for the GIL with the client's event loop.
    async with http_client(30.0, limits=httpx.Limits(max_connections=10)) as http:
        provider = HttpProvider(server.url, http)
        outcomes = await asyncio.gather(
            *(provider.send(make_message(), idempotency_key=f"s-{i}") for i in range(300)), return_exceptions=True
        )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, RetryableProviderError) and f.status_code == 500 for f in failures)
    assert 60 <= len(failures) <= 120
    stats = server.snapshot()
    assert stats["faults"]["500"] == len(failures) == len(events(server, "fault"))
    assert stats["accepted"] == 300 - len(failures) == len(events(server, "accepted"))


async def test_latency_delays_every_answer(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """latency_ms holds back every POST answer."""
    server = start_server(latency_ms=200)
    started = time.monotonic()
    response = await client.post(server.url, json=message_json(), headers={"Idempotency-Key": "slow"})
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.19


async def test_stats_health_and_routing(start_server: StartServer, client: httpx.AsyncClient) -> None:
    """/stats counts requests, /healthz is ok, unknown paths are 404 and wrong methods 405, all in JSON."""
    server = start_server()
    provider = HttpProvider(server.url, client)
    await provider.send(make_message(), idempotency_key="a")
    await provider.send(make_message(), idempotency_key="a")
    await client.post(server.url, json=message_json())
    stats = (await client.get(f"{base_url(server)}/stats")).json()
    assert stats == {
        "requests": 3,
        "accepted": 1,
        "repeats": 1,
        "rejected": 0,
        "invalid": 1,
        "faults": {"500": 0, "429": 0, "timeout": 0, "400": 0},
    }
    assert stats == server.snapshot()
    health = await client.get(f"{base_url(server)}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    missing = await client.get(f"{base_url(server)}/nope")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = await client.put(server.url, json=message_json())
    assert (wrong.status_code, wrong.json()["code"], wrong.headers["Allow"]) == (405, "method_not_allowed", "POST")
    assert (await client.get(server.url)).status_code == 405
    # A body on a request that does not use it is read and dropped, so the connection stays in step.
    with_body = await client.request("GET", f"{base_url(server)}/healthz", content=b"GET /nope HTTP/1.1\r\n\r\n")
    assert with_body.status_code == 200
    assert (await client.get(f"{base_url(server)}/healthz")).json() == {"status": "ok"}


async def test_stop_interrupts_pending_answers(start_server: StartServer) -> None:
    """stop() returns promptly while a "timeout" answer is pending and a client holds a keep-alive connection."""
    server = start_server(fail_rate=1.0, fail_kinds=("timeout",), timeout_delay_ms=30_000)
    async with http_client(60.0) as idle, http_client(60.0) as waiting:
        assert (await idle.get(f"{base_url(server)}/healthz")).status_code == 200
        pending = asyncio.create_task(waiting.post(server.url, json=message_json(), headers={"Idempotency-Key": "p"}))
        await eventually(lambda: server.snapshot()["accepted"] == 1)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert time.monotonic() - started < 2
        await asyncio.gather(pending, return_exceptions=True)


def _raise(message: str) -> NoReturn:
    raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mock-provider")
    parser.error = _raise  # type: ignore[method-assign]
    add_arguments(parser)
    return parser


async def test_arguments_build_the_config() -> None:
    """The CLI flags map onto MockServerConfig; defaults match the dataclass."""
    assert config_from_args(_parser().parse_args([])) == MockServerConfig()
    argv = [
        *("--host", "127.0.0.2", "--port", "8099", "--log", "/tmp/x.jsonl"),
        *("--fail-rate", "0.25", "--fail-kinds", "500,timeout", "--latency-ms", "5", "--timeout-delay-ms", "900"),
        *("--retry-after", "3", "--reject-prefix", "+1999", "--seed", "7", "--auth-token", "t"),
    ]
    ns = _parser().parse_args(argv)
    assert config_from_args(ns) == MockServerConfig(
        host="127.0.0.2",
        port=8099,
        log_path="/tmp/x.jsonl",
        fail_rate=0.25,
        fail_kinds=("500", "timeout"),
        latency_ms=5.0,
        timeout_delay_ms=900.0,
        retry_after_s=3,
        reject_prefix="+1999",
        seed=7,
        auth_token="t",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--fail-rate", "1.5"],
        ["--fail-rate", "nan"],
        ["--port", "70000"],
        ["--port", "-1"],
        ["--fail-kinds", "500,503"],
        ["--fail-kinds", ","],
        ["--latency-ms", "-1"],
        ["--timeout-delay-ms", "soon"],
        ["--retry-after", "1.5"],
    ],
)
async def test_invalid_arguments_are_one_line_errors(argv: list[str]) -> None:
    """Out-of-range or unknown values end in parser.error with one line naming the flag."""
    with pytest.raises(ValueError, match=f"^argument {argv[0]}") as caught:
        _parser().parse_args(argv)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [{"fail_rate": -0.1}, {"port": 65536}, {"fail_kinds": ("500", "503")}, {"fail_kinds": ()}, {"latency_ms": -1.0}],
)
async def test_config_validates(overrides: dict[str, Any]) -> None:
    """MockServerConfig refuses invalid values with ValueError."""
    with pytest.raises(ValueError):
        MockServerConfig(**overrides)


async def test_sigterm_stops_serve_forever(tmp_path: Path) -> None:
    """The command prints its banner, serves, and exits 0 on SIGTERM with the log written."""
    log = tmp_path / "cli.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "providers.mock_server",
        "--log",
        str(log),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert banner.startswith("mock provider listening on http://127.0.0.1:")
        assert banner.rstrip().endswith(f"(log: {log})")
        url = banner.split()[4]
        async with http_client(5.0) as http:
            result = await HttpProvider(url, http).send(make_message(), idempotency_key="cli")
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert stderr == b""
    assert [e["provider_id"] for e in read_log(log)] == [result.provider_message_id]


async def test_read_log_skips_a_torn_last_line(tmp_path: Path) -> None:
    """read_log leaves out a partly written last line but refuses a corrupt line in the middle."""
    path = tmp_path / "torn.jsonl"
    path.write_text('{"event":"accepted"}\n\n{"event":"repe')
    assert read_log(path) == [{"event": "accepted"}]
    path.write_text('{"event":"accepted"}\n{oops\n{"event":"repeat"}\n')
    with pytest.raises(ValueError):
        read_log(path)
