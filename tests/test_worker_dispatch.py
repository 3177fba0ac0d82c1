"""The dispatch job on a real arq Worker (burst mode) over fakeredis, with the scriptable mock provider."""

from datetime import timedelta
from typing import Any

import pytest

from providers.mock import MockProvider, make_failure
from scheduler.intake import Scheduler
from sendq.errors import InvalidInput, MessageNotFound, ProviderError
from sendq.message import utcnow
from sendq.settings import Settings
from sendq.status import MessageStatus as S
from sendq.store import MessageStore, Transition
from tests.conftest import RunWorker
from tests.helpers import new_message, statuses


async def test_programmed_message_is_sent(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """programmed -> processing -> sending -> sent, with the provider id and one provider call."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert statuses(got.history) == ["programmed", "processing", "sending", "sent"]
    assert got.status is S.SENT and got.attempts == 1
    assert got.provider == "mock" and got.provider_message_id == provider.sent[0].provider_message_id
    assert [r.idempotency_key for r in provider.sent] == [f"{msg.id}:1"]


async def test_future_message_waits_for_its_time(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A message programmed 0.3 s ahead is not sent before its time."""
    send_at = utcnow() + timedelta(seconds=0.3)
    msg = (await scheduler.program(new_message(send_at=send_at))).message
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT
    sending = next(h for h in got.history if h.status is S.SENDING)
    assert sending.at >= send_at - timedelta(milliseconds=1)


async def test_reference_returns_existing(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """Programming twice with one reference gives one message and one send."""
    first = await scheduler.program(new_message(reference_id="order-1"))
    second = await scheduler.program(new_message(reference_id="order-1", body="different"))
    assert first.created and not second.created and second.message.id == first.message.id
    provider = MockProvider()
    await run_worker(provider)
    assert len(provider.sent) == 1


async def test_transient_failures_are_retried(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A 500 then a 429 are retried; the third attempt is sent, each attempt with its own key."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(script=[make_failure("server_error"), make_failure("rate_limited", retry_after_s=0.05)])
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.attempts == 3
    assert [h.reason for h in got.history if h.status is S.PROGRAMMED] == ["created", "retry", "retry"]
    assert [r.idempotency_key for r in provider.sent] == [f"{msg.id}:3"]
    retry_429 = [h for h in got.history if h.status is S.PROGRAMMED][2]
    next_sending = [h for h in got.history if h.status is S.SENDING][2]
    assert next_sending.at - retry_429.at >= timedelta(seconds=0.05)


async def test_ambiguous_failure_reuses_the_key(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """After a timeout (outcome unknown) the next attempt reuses the key, so the provider can deduplicate."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(script=[make_failure("timeout")])
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.attempts == 2
    assert [r.idempotency_key for r in provider.sent] == [f"{msg.id}:1"]


async def test_permanent_failure_is_error_at_once(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A permanent provider error ends in error after one attempt, with the provider's code."""
    msg = (await scheduler.program(new_message())).message
    await run_worker(MockProvider(script=[make_failure("permanent")]))
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason, got.attempts, got.last_error_code) == (
        S.ERROR,
        "provider_rejected",
        1,
        "invalid_recipient",
    )


async def test_attempts_exhausted(scheduler: Scheduler, run_worker: RunWorker, settings: Settings) -> None:
    """Failing every attempt ends in error after max_attempts provider calls."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(script=[make_failure("server_error")] * settings.max_attempts)
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason, got.attempts) == (S.ERROR, "attempts_exhausted", settings.max_attempts)
    assert provider.sent == []


async def test_expired_message_is_not_sent(scheduler: Scheduler, run_worker: RunWorker, store: MessageStore) -> None:
    """A message past its validity when its job runs ends in error 'expired' without a provider call."""
    msg = (await scheduler.program(new_message(validity=timedelta(milliseconds=50)))).message
    # Hold the worker back until the validity has passed.
    await store.transition(msg.id, from_={S.PROGRAMMED}, to=S.PROGRAMMED, now=utcnow(), due_at=utcnow())
    import asyncio

    await asyncio.sleep(0.1)
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason) == (S.ERROR, "expired")
    assert provider.sent == []


async def test_cancel_before_run(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A cancelled message's job does nothing: no provider call."""
    msg = (await scheduler.program(new_message(send_at=utcnow() + timedelta(seconds=0.2)))).message
    outcome = await scheduler.cancel(msg.id, by="ops")
    assert outcome.cancelled and outcome.status is S.CANCELLED
    provider = MockProvider()
    await run_worker(provider)
    assert provider.sent == []
    got = await scheduler.get(msg.id)
    assert statuses(got.history) == ["programmed", "cancelled"] and got.history[-1].detail == "by ops"


async def test_cancel_after_send_is_refused(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """Cancelling a sent message is refused and names the status."""
    msg = (await scheduler.program(new_message())).message
    await run_worker(MockProvider())
    outcome = await scheduler.cancel(msg.id)
    assert not outcome.cancelled and outcome.status is S.SENT


async def test_cancel_while_processing_stops_the_send(
    scheduler: Scheduler, run_worker: RunWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands between the claim and the provider call prevents the call."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider()
    original = MessageStore.transition

    async def cancel_first(self: MessageStore, message_id: str, **kw: Any) -> Transition:
        # The worker builds its own store: fire the cancel just before its processing -> sending step.
        if kw["to"] is S.SENDING:
            await scheduler.cancel(message_id)
        return await original(self, message_id, **kw)

    monkeypatch.setattr(MessageStore, "transition", cancel_first)
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.CANCELLED and provider.sent == []
    assert statuses(got.history) == ["programmed", "processing", "cancelled"]


async def test_reschedule_moves_the_send(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """Rescheduling bumps the job version: the old job does nothing, the new one sends at the new time."""
    msg = (await scheduler.program(new_message(send_at=utcnow() + timedelta(hours=1)))).message
    new_time = utcnow() + timedelta(seconds=0.2)
    moved = await scheduler.reschedule(msg.id, new_time)
    assert moved.job_version == 2 and moved.due_at == new_time.replace(microsecond=new_time.microsecond // 1000 * 1000)
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and len(provider.sent) == 1
    assert statuses(got.history) == ["programmed", "programmed", "processing", "sending", "sent"]


async def test_reschedule_refused_after_send(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """Only waiting messages can be rescheduled; naive times are refused."""
    msg = (await scheduler.program(new_message())).message
    await run_worker(MockProvider())
    with pytest.raises(InvalidInput, match="status sent"):
        await scheduler.reschedule(msg.id, utcnow())
    from datetime import datetime

    with pytest.raises(InvalidInput, match="timezone"):
        await scheduler.reschedule(msg.id, datetime(2030, 1, 1))
    with pytest.raises(MessageNotFound):
        await scheduler.cancel("unknown")


async def test_send_at_past_validity_is_refused(scheduler: Scheduler, store: MessageStore) -> None:
    """A send time already past its validity is bad input and stores nothing."""
    with pytest.raises(InvalidInput, match="send_at"):
        await scheduler.program(new_message(send_at=utcnow() - timedelta(days=30)))
    assert await store.redis.keys("sendq:msg:*") == []


async def test_key_stays_until_the_ambiguity_is_settled(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """timeout, then 429 on the retry, then success: all three attempts use the first key (no double send)."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(script=[make_failure("timeout"), make_failure("rate_limited", retry_after_s=0.01)])
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.attempts == 3
    assert [r.idempotency_key for r in provider.sent] == [f"{msg.id}:1"]


async def test_giving_up_after_an_ambiguous_attempt_is_unknown_outcome(
    scheduler: Scheduler, run_worker: RunWorker, settings: Settings
) -> None:
    """Attempts run out after a timeout: error with reason unknown_outcome (it may have been sent), not exhausted."""
    msg = (await scheduler.program(new_message())).message
    failures: list[ProviderError | None] = [make_failure("timeout")]
    failures += [make_failure("server_error")] * (settings.max_attempts - 1)
    await run_worker(MockProvider(script=failures))
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason, got.attempts) == (S.ERROR, "unknown_outcome", settings.max_attempts)
    assert got.history[-1].detail is not None and got.history[-1].detail.startswith("attempts_exhausted")


async def test_no_resend_after_timeout_without_idempotency(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A provider without idempotency keys is not retried after a timeout: error unknown_outcome, one call."""
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(script=[make_failure("timeout")], supports_idempotency=False)
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason, got.attempts) == (S.ERROR, "unknown_outcome", 1)
    assert got.history[-1].detail is not None and got.history[-1].detail.startswith("no_idempotency_key")


async def test_expiry_after_a_timeout_is_unknown_outcome(
    scheduler: Scheduler, run_worker: RunWorker, store: MessageStore
) -> None:
    """Validity ends while an earlier timeout is unsettled: error unknown_outcome, not expired."""
    msg = (await scheduler.program(new_message(validity=timedelta(milliseconds=300)))).message
    now = utcnow()
    await store.transition(
        msg.id, from_={S.PROGRAMMED}, to=S.PROGRAMMED, now=now, due_at=now, fields={"reuse_key": True}
    )
    import asyncio

    await asyncio.sleep(0.35)
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason) == (S.ERROR, "unknown_outcome") and provider.sent == []


async def test_huge_retry_after_ends_as_expired(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A Retry-After beyond the validity (even infinite) ends the message as expired, never stranding it."""
    msg = (await scheduler.program(new_message())).message
    await run_worker(MockProvider(script=[make_failure("rate_limited", retry_after_s=float("inf"))]))
    got = await scheduler.get(msg.id)
    assert (got.status, got.reason) == (S.ERROR, "expired")
