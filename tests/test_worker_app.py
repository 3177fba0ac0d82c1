"""Worker wiring: the supervised run loop restarts arq after a Redis error and stops on a normal exit."""

from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from sendq.errors import ConfigurationError
from tests.conftest import make_settings
from tests.redis_server import RedisServer
from worker import app
from worker.redis_policy import RECOMMENDED_LISTPACK_VALUE, listpack_advice


class StubWorker:
    runs: ClassVar[list[str]] = []
    outcomes: ClassVar[list[Exception | None]] = []

    def __init__(self, **kwargs: Any) -> None:
        assert kwargs["queue_name"] == "sendq:queue" and kwargs["keep_result"] == 0
        self.on_shutdown = kwargs["on_shutdown"]
        self.ctx: dict[str, Any] = {}
        self._pool = None

    def run(self) -> None:
        outcome = StubWorker.outcomes.pop(0)
        StubWorker.runs.append("crash" if outcome else "stop")
        if outcome is not None:
            raise outcome


def test_redis_error_restarts_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Redis failures restart arq with growing pauses; the third run ends normally and returns."""
    StubWorker.runs = []
    StubWorker.outcomes = [RedisConnectionError("gone"), OSError("reset"), None]
    pauses: list[float] = []
    monkeypatch.setattr(app, "Worker", StubWorker)
    monkeypatch.setattr("worker.app.time.sleep", pauses.append)
    app.run_worker(make_settings(redis_url="redis://127.0.0.1:1/0", require_noeviction=False))
    assert StubWorker.runs == ["crash", "crash", "stop"]
    assert pauses == [app.RESTART_DELAY_S, app.RESTART_DELAY_S * 2]


def test_other_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (not a Redis error) ends the worker instead of looping."""
    StubWorker.runs = []
    StubWorker.outcomes = [ValueError("bug")]
    monkeypatch.setattr(app, "Worker", StubWorker)
    with pytest.raises(ValueError, match="bug"):
        app.run_worker(make_settings(redis_url="redis://127.0.0.1:1/0", require_noeviction=False))


def test_no_redis_url() -> None:
    """Without a Redis URL the worker refuses to start."""
    with pytest.raises(ConfigurationError, match="SENDQ_REDIS_URL"):
        app.run_worker(make_settings(redis_url=None))


async def test_listpack_advice_names_the_setting_until_it_is_raised() -> None:
    """A Redis with the default hash-max-listpack-value (64) gets one warning naming the setting and the value
    to set; at the recommended value there is none. A real server: fakeredis has no such setting."""
    server = RedisServer()
    server.start()
    redis = Redis.from_url(server.url)
    try:
        await redis.config_set("hash-max-listpack-value", 64)
        advice = await listpack_advice(redis)
        assert advice is not None
        assert "hash-max-listpack-value is 64" in advice
        assert f"CONFIG SET hash-max-listpack-value {RECOMMENDED_LISTPACK_VALUE}" in advice
        await redis.config_set("hash-max-listpack-value", RECOMMENDED_LISTPACK_VALUE)
        assert await listpack_advice(redis) is None
    finally:
        await redis.aclose()
        server.stop()
