"""Worker wiring: the supervised run loop restarts arq after a Redis error and stops on a normal exit."""

from typing import Any, ClassVar

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sendq.errors import ConfigurationError
from tests.conftest import make_settings
from worker import app


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
