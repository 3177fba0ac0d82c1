"""Unknown outcomes settled by asking the provider (a status query), and suppression from send errors."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis

from providers.base import StatusLookup
from providers.mock import MockProvider, make_failure
from scheduler.intake import Scheduler
from sendq.channel import Channel
from sendq.errors import PermanentProviderError, ProviderError, RetryableProviderError
from sendq.message import Message, utcnow
from sendq.reports import Lookup
from sendq.settings import Settings
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from sendq.subaccounts import SubaccountStore
from tests.conftest import RunWorker
from tests.helpers import leave_claimed, new_message, statuses
from worker.app import sweep, worker_settings


@dataclass
class LookupMock(MockProvider):
    """The mock with a status query answering from ``answers`` (a Lookup, or a ProviderError to raise), and
    without idempotency keys, like Infobip or Unifonic."""

    supports_idempotency: bool = False
    answers: list[Lookup | ProviderError] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    async def lookup(self, message: Message) -> Lookup:
        self.asked.append(message.id)
        answer = self.answers.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer


def test_lookup_mock_is_a_status_lookup() -> None:
    assert isinstance(LookupMock(), StatusLookup) and not isinstance(MockProvider(), StatusLookup)


async def _sweep_once(fake_arq: ArqRedis, settings: Settings, provider: MockProvider) -> str:
    opts = worker_settings(settings, provider=provider)
    ctx: dict[str, Any] = {"redis": fake_arq}
    await opts["on_startup"](ctx)
    try:
        return str(await sweep(ctx))
    finally:
        await opts["on_shutdown"](ctx)


async def test_lost_send_found_at_the_provider_is_recorded_not_resent(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    provider = LookupMock(answers=[Lookup(found=True, provider_message_id="prov-9", status=S.DELIVERED)])
    report = await _sweep_once(fake_arq, settings, provider)
    assert "reconciled=1" in report and provider.asked == [msg.id]
    got = await scheduler.get(msg.id)
    assert statuses(got.history)[-2:] == ["sent", "delivered"]
    assert got.provider_message_id == "prov-9" and got.history[-2].reason == "reconciled"
    assert await store.find_by_provider_id("mock", "prov-9") == msg.id
    await run_worker(provider)
    assert provider.sent == []  # nothing was sent again


async def test_lost_send_absent_at_the_provider_is_resent(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """The provider has no record: resending is safe even without idempotency keys (it asks once more first)."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    provider = LookupMock(answers=[Lookup(found=False), Lookup(found=False)])
    report = await _sweep_once(fake_arq, settings, provider)
    assert "resent=1" in report
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and len(provider.sent) == 1 and len(provider.asked) == 2


async def test_lost_send_with_provider_unreachable_waits(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    down = RetryableProviderError("status API down", provider="mock", status_code=503)
    provider = LookupMock(answers=[down])
    await _sweep_once(fake_arq, settings, provider)
    assert (await scheduler.get(msg.id)).status is S.SENDING  # asked again at the next sweep


async def test_timeout_then_lookup_finds_it_so_no_second_send(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A read timeout (outcome unknown) on a provider without idempotency keys but with a status query: the
    retry asks first, finds the message, and records it as sent without a second call."""
    msg = (await scheduler.program(new_message())).message
    provider = LookupMock(
        script=[make_failure("timeout")],
        answers=[Lookup(found=True, provider_message_id="prov-1", status=S.SENT)],
    )
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and got.provider_message_id == "prov-1"
    assert provider.sent == [] and provider.asked == [msg.id]
    assert got.history[-1].reason == "reconciled"


async def test_timeout_without_idempotency_or_lookup_gives_up(scheduler: Scheduler, run_worker: RunWorker) -> None:
    msg = (await scheduler.program(new_message())).message
    provider = MockProvider(supports_idempotency=False, script=[make_failure("timeout")])
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "unknown_outcome"


@pytest.mark.parametrize("suppress", [True, False])
async def test_opt_out_at_send_suppresses_the_contact(
    scheduler: Scheduler, run_worker: RunWorker, fake_arq: ArqRedis, suppress: bool
) -> None:
    """A send refused because the contact opted out (e.g. Twilio 21610) puts it on the suppression list."""
    msg = (await scheduler.program(new_message())).message
    refusal = PermanentProviderError(
        "unsubscribed", provider="twilio", code="21610", status_code=400, suppress=suppress, reason="opt_out"
    )
    await run_worker(MockProvider(script=[refusal]))
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "opt_out" and got.last_error_code == "21610"
    entry = await SubaccountStore(fake_arq).suppressed("acme", Channel.SMS, msg.to)
    if suppress:
        assert entry is not None and entry.reason == "opt_out" and entry.source == "provider:twilio code 21610"
        assert (await scheduler.program(new_message(body="again"))).message.reason == "suppressed"
    else:
        assert entry is None


async def test_provider_that_cannot_be_asked_about_this_message_falls_back(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """A permanent lookup error (no status query for this channel) is not 'try later': the usual rule applies
    (no idempotency key: error / unknown_outcome) instead of waiting until the validity ends."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    unsupported = PermanentProviderError("no status query for whatsapp", provider="mock", code="lookup_unsupported")
    await _sweep_once(fake_arq, settings, LookupMock(answers=[unsupported]))
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "unknown_outcome"


async def test_found_without_an_id_is_never_resent(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings, run_worker: RunWorker
) -> None:
    """The provider has the message but did not say under which id: recorded sent anyway, never sent again."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    provider = LookupMock(answers=[Lookup(found=True, provider_message_id=None, status=S.SENT)])
    report = await _sweep_once(fake_arq, settings, provider)
    assert "reconciled=1" in report
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and provider.sent == []


async def test_unreachable_provider_is_asked_again_later(
    scheduler: Scheduler, store: MessageStore, fake_arq: ArqRedis, settings: Settings
) -> None:
    """While the provider cannot be asked, the message's lease moves a minute on, so newer lost leases come
    first and one provider outage does not hold the sweep."""
    msg = (await scheduler.program(new_message())).message
    await leave_claimed(store, msg.id, S.SENDING, idempotent=False)
    down = RetryableProviderError("status API down", provider="mock", status_code=503)
    await _sweep_once(fake_arq, settings, LookupMock(answers=[down]))
    assert await store.lease_expired(utcnow(), 10) == []
    assert await store.lease_expired(utcnow() + timedelta(seconds=61), 10) == [msg.id]


async def test_retry_after_unknown_outcome_stays_with_its_provider(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """The unsettled attempt went to a provider the routes no longer name: no other provider gets the message
    (it could not dedupe it); it ends as unknown_outcome."""
    msg = (await scheduler.program(new_message())).message
    await scheduler.store.transition(
        msg.id,
        from_={S.PROGRAMMED},
        to=S.PROGRAMMED,
        now=utcnow(),
        due_at=utcnow(),
        fields={"provider": "twilio", "reuse_key": True, "idempotency_key": f"{msg.id}:1"},
    )
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "unknown_outcome" and provider.sent == []
