"""The `sendq` command as a user runs it: one line and a non-zero exit on bad input, never a traceback."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from arq.connections import ArqRedis

from sendq.message import utcnow
from tests.conftest import RedisServer


def sendq(*args: str, redis_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SENDQ_")}
    if redis_url:
        full_env["SENDQ_REDIS_URL"] = redis_url
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sendq", *args], check=False, capture_output=True, text=True, env=full_env, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str, code: int = 2) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


SEND = ["send", "--subaccount", "acme", "--channel", "sms", "--to", "+14155552671", "--body", "hi"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["send", "--subaccount", "acme"], "required"),
        ([*SEND[:4], "fax", *SEND[5:]], "--channel"),
        ([*SEND, "--at", "2030-01-01T09:00:00"], "timezone offset"),
        ([*SEND, "--at", "tomorrow"], "not an ISO 8601 time"),
        ([*SEND, "--template", "t"], "exactly one of body or template"),
        ([*SEND[:2], "a:b", *SEND[3:]], "--subaccount"),
        ([*SEND, "--validity", "-1"], "positive number of seconds"),
        (["nonsense"], "invalid choice"),
        ([*SEND, "--validity", "inf"], "positive number of seconds"),
        ([*SEND, "--validity", "nan"], "positive number of seconds"),
        (["dev", "--port", "99999"], "port must be 1-65535"),
        (["api", "--workers", "0"], "must be between 1 and 64"),
        (["api", "--workers", "two"], "expected a whole number"),
    ],
)
def test_bad_input_is_one_line(args: list[str], fragment: str) -> None:
    """Bad input: exit 2 and one readable line naming the problem (checked before Redis is contacted)."""
    assert_one_line_error(sendq(*args, redis_url="redis://127.0.0.1:1/0"), fragment)


def test_missing_redis_url() -> None:
    """Without SENDQ_REDIS_URL the command says how to get one."""
    assert_one_line_error(sendq(*SEND), "SENDQ_REDIS_URL")


def test_unreachable_redis() -> None:
    """An unreachable Redis is one line, exit 1."""
    assert_one_line_error(sendq(*SEND, redis_url="redis://127.0.0.1:1/0"), "cannot reach Redis", code=1)


def test_bad_setting() -> None:
    """An invalid SENDQ_* variable is named."""
    assert_one_line_error(sendq("status", "x", SENDQ_MAX_ATTEMPTS="many"), "SENDQ_MAX_ATTEMPTS")


@pytest.mark.redis
async def test_send_status_cancel_round_trip(redis_server: RedisServer, real_arq: ArqRedis) -> None:
    """send prints an id; status shows it programmed; cancel takes once and is refused the second time."""
    at = (utcnow() + timedelta(hours=1)).isoformat()
    sent = sendq(*SEND, "--at", at, "--reference", "r-1", redis_url=redis_server.url)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.strip()
    again = sendq(*SEND, "--reference", "r-1", redis_url=redis_server.url)
    assert again.stdout.strip() == message_id and "already used" in again.stderr
    status = sendq("status", message_id, redis_url=redis_server.url)
    assert status.returncode == 0 and "programmed" in status.stdout and "created" in status.stdout
    cancelled = sendq("cancel", message_id, "--by", "ops", redis_url=redis_server.url)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    refused = sendq("cancel", message_id, redis_url=redis_server.url)
    assert_one_line_error(refused, "is cancelled", code=1)
    unknown = sendq("status", "nope", redis_url=redis_server.url)
    assert_one_line_error(unknown, "no message with id", code=1)


@pytest.mark.redis
async def test_reschedule_command(redis_server: RedisServer, real_arq: ArqRedis) -> None:
    """reschedule moves a programmed message and refuses a naive time."""
    at = (utcnow() + timedelta(hours=1)).isoformat()
    message_id = sendq(*SEND, "--at", at, redis_url=redis_server.url).stdout.strip()
    later = (utcnow() + timedelta(hours=2)).isoformat()
    moved = sendq("reschedule", message_id, "--at", later, redis_url=redis_server.url)
    assert moved.returncode == 0 and "programmed for" in moved.stdout
    assert_one_line_error(sendq("reschedule", message_id, "--at", "2030-01-01T00:00"), "timezone offset")


@pytest.mark.redis
def test_worker_refuses_evicting_redis(redis_server: RedisServer) -> None:
    """A worker will not start on a Redis whose maxmemory-policy can evict keys."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(redis_server.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = sendq("worker", redis_url=redis_server.url)
        assert_one_line_error(result, "noeviction")
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SENDQ_REDIS_URL": "redis://h:abc/0"}, "SENDQ_REDIS_URL: invalid port"),
        ({"SENDQ_REDIS_URL": "http://x"}, "SENDQ_REDIS_URL: must be a redis://"),
        ({"SENDQ_REDIS_URL": "localhost:6379"}, "SENDQ_REDIS_URL"),
        ({"SENDQ_HTTP": "{bad"}, "cannot read the SENDQ_* settings"),
    ],
)
def test_bad_settings_are_one_line(env: dict[str, str], fragment: str) -> None:
    """Unusable SENDQ_* values are named in one line, before anything runs."""
    assert_one_line_error(sendq("status", "x", **env), fragment)


@pytest.mark.redis
async def test_far_future_and_odd_ids(redis_server: RedisServer, real_arq: ArqRedis) -> None:
    """Times past the scheduling horizon and ids that cannot be ours are clear errors, not tracebacks."""
    url = redis_server.url
    assert_one_line_error(sendq(*SEND, "--at", "9999-12-31T23:00:00+00:00", redis_url=url), "--at: is more than")
    message_id = sendq(*SEND, "--at", (utcnow() + timedelta(hours=1)).isoformat(), redis_url=url).stdout.strip()
    far = sendq("reschedule", message_id, "--at", "9999-12-31T23:00:00+00:00", redis_url=url)
    assert_one_line_error(far, "at: is more than")
    assert_one_line_error(sendq("status", "\udcff", redis_url=url), "no message with id", code=1)
    assert_one_line_error(sendq("status", f"{message_id}:history", redis_url=url), "no message with id", code=1)
    assert_one_line_error(sendq("cancel", "../../etc", redis_url=url), "no message with id", code=1)


def test_dev_port_in_use() -> None:
    """sendq dev on a taken port says so in one line."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert_one_line_error(sendq("dev", "--port", str(port)), "cannot listen on")


def test_a_closed_pipe_is_not_a_redis_error(redis_server: RedisServer) -> None:
    """`sendq status ID | true`: a reader that goes away early is not reported as an unreachable Redis."""
    sent = sendq(*SEND, redis_url=redis_server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDQ_")} | {"SENDQ_REDIS_URL": redis_server.url}
    shell = f"{sys.executable} -m sendq status {sent.stdout.strip()} | true"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.stderr == ""


@pytest.mark.parametrize("command", ["api", "worker"])
def test_missing_provider_credentials_stop_the_start(command: str) -> None:
    """A route to a provider without credentials: one line naming the variable, exit 2, before anything runs."""
    result = sendq(
        command,
        redis_url="redis://127.0.0.1:1/0",
        SENDQ_ROUTES='[{"subaccount": "acme", "channel": "sms", "provider": "infobip"}]',
    )
    assert_one_line_error(result, "SENDQ_INFOBIP__API_KEY")
