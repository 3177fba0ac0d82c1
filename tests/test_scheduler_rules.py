"""Subaccount rules end to end over fakeredis: judged at programming, judged again by the worker before the
provider call, and every refusal stored with its reason and no provider call.

Times are fixed (a past week in Europe/Madrid) so the tests do not depend on when they run: the scheduler takes
``now=`` and the worker reads a test clock.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.mock import MockProvider
from scheduler.intake import Scheduler
from scheduler.sweeps import run_sweeps
from sendq import keys
from sendq.channel import Channel
from sendq.errors import InvalidInput
from sendq.settings import Settings
from sendq.status import MessageStatus as S
from sendq.subaccount import BlockedTimePolicy, SubaccountRules
from sendq.subaccounts import Suppression
from sendq.windows import SendingWindows, parse_weekly
from tests.conftest import RunWorker
from tests.helpers import new_message, statuses

# Monday 2026-11-16 in Madrid (UTC+1 in November).
MON_1000 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # 10:00 local
MON_1759 = datetime(2026, 11, 16, 16, 59, tzinfo=UTC)  # 17:59 local
MON_1801 = datetime(2026, 11, 16, 17, 1, tzinfo=UTC)  # 18:01 local
MON_2000 = datetime(2026, 11, 16, 19, 0, tzinfo=UTC)  # 20:00 local
TUE_0900 = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)  # 09:00 local: the next allowed instant after Monday 18:00
LONG = timedelta(days=30)  # validity long enough that the real date of the test run is inside it


class Clock:
    """The worker's clock in these tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def office_hours(policy: BlockedTimePolicy = BlockedTimePolicy.DEFER, **more: Any) -> SubaccountRules:
    windows = SendingWindows(timezone="Europe/Madrid", weekly=parse_weekly(["mon-fri=09:00-18:00"]))
    return SubaccountRules(windows=windows, blocked_time_policy=policy, **more)


async def _due_ids(scheduler: Scheduler) -> list[str]:
    return [i.decode() for i in await scheduler.store.redis.zrange(keys.DUE, 0, -1)]


async def test_deferred_message_is_stored_blocked_and_sent_at_release(
    scheduler: Scheduler, run_worker: RunWorker
) -> None:
    """defer: blocked_time with the release time at intake; at the release the job releases it and it is sent."""
    await scheduler.subaccounts.set_rules("acme", office_hours())
    msg = (await scheduler.program(new_message(validity=LONG), now=MON_2000)).message
    assert msg.status is S.BLOCKED_TIME and msg.reason == "outside_window"
    assert msg.due_at == TUE_0900
    assert "2026-11-17T08:00:00+00:00" in (msg.history[0].detail or "")
    stored = await scheduler.get(msg.id)
    assert stored.status is S.BLOCKED_TIME and await _due_ids(scheduler) == [msg.id]

    provider = MockProvider()
    await run_worker(provider, clock=Clock(TUE_0900 + timedelta(seconds=5)))
    got = await scheduler.get(msg.id)
    assert statuses(got.history) == ["blocked_time", "programmed", "processing", "sending", "sent"]
    assert got.history[1].reason == "window_open"
    assert len(provider.sent) == 1


async def test_held_message_waits_for_an_operator(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """hold: blocked_time with no job and no due entry; reschedule into a window sends it, outside is refused."""
    await scheduler.subaccounts.set_rules("acme", office_hours(BlockedTimePolicy.HOLD))
    msg = (await scheduler.program(new_message(validity=LONG), now=MON_2000)).message
    assert msg.status is S.BLOCKED_TIME and "held until an operator" in (msg.history[0].detail or "")
    assert await _due_ids(scheduler) == []
    provider = MockProvider()
    await run_worker(provider, clock=Clock(TUE_0900 + timedelta(hours=1)))
    assert (await scheduler.get(msg.id)).status is S.BLOCKED_TIME and provider.sent == []

    with pytest.raises(InvalidInput) as refused:
        await scheduler.reschedule(msg.id, MON_2000 + timedelta(hours=1), now=MON_2000)
    assert refused.value.field == "at" and "next allowed time is 2026-11-17T08:00:00+00:00" in refused.value.reason
    assert (await scheduler.get(msg.id)).status is S.BLOCKED_TIME

    await scheduler.reschedule(msg.id, TUE_0900, now=MON_2000)
    await run_worker(provider, clock=Clock(TUE_0900 + timedelta(seconds=1)))
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and len(provider.sent) == 1
    assert statuses(got.history)[:2] == ["blocked_time", "programmed"]


async def test_held_message_can_be_cancelled(scheduler: Scheduler) -> None:
    await scheduler.subaccounts.set_rules("acme", office_hours(BlockedTimePolicy.HOLD))
    msg = (await scheduler.program(new_message(validity=LONG), now=MON_2000)).message
    outcome = await scheduler.cancel(msg.id, now=MON_2000)
    assert outcome.cancelled and outcome.status is S.CANCELLED


async def test_window_closed_during_a_backlog(scheduler: Scheduler, run_worker: RunWorker, settings: Settings) -> None:
    """Programmed inside the window, picked up after it closed: blocked (not sent), then released by the sweep
    and sent the next morning."""
    await scheduler.subaccounts.set_rules("acme", office_hours())
    msg = (await scheduler.program(new_message(validity=LONG), now=MON_1759)).message
    assert msg.status is S.PROGRAMMED
    provider = MockProvider()
    clock = Clock(MON_1801)
    await run_worker(provider, clock=clock)
    got = await scheduler.get(msg.id)
    assert got.status is S.BLOCKED_TIME and got.due_at == TUE_0900 and provider.sent == []
    assert statuses(got.history) == ["programmed", "processing", "blocked_time"]
    # Validity counts again from the release.
    assert got.valid_until == TUE_0900 + (msg.valid_until - msg.due_at)

    clock.now = TUE_0900 + timedelta(seconds=30)
    await run_sweeps(scheduler.store, scheduler.arq, settings, clock.now)
    await run_worker(provider, clock=clock)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT and len(provider.sent) == 1


async def test_allowlist_revoked_between_programming_and_sending(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """A link domain enabled at programming and revoked before the send: error, no provider call."""
    await scheduler.subaccounts.allow("acme", domain="example.com")
    msg = (await scheduler.program(new_message(body="Your order: https://shop.example.com/o/1"))).message
    assert msg.status is S.PROGRAMMED
    assert await scheduler.subaccounts.revoke("acme", domain="example.com")
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "restricted_link" and provider.sent == []
    assert "shop.example.com" in (got.history[-1].detail or "") or "example.com" in (got.history[-1].detail or "")


async def test_restricted_link_is_stored_as_error_with_how_to_enable(scheduler: Scheduler) -> None:
    msg = (await scheduler.program(new_message(body="win big at bit.ly/abc"))).message
    assert msg.status is S.ERROR and msg.reason == "restricted_link"
    detail = msg.history[0].detail or ""
    assert "bit.ly" in detail and "allow-domain" in detail
    stored = await scheduler.get(msg.id)
    assert stored.status is S.ERROR
    assert await scheduler.store.redis.zscore(keys.RETENTION, msg.id) is not None
    assert await _due_ids(scheduler) == []
    listed = await scheduler.store.ids_in_index(keys.index("acme", "status", "error"))
    assert listed == [msg.id]


async def test_restricted_term_and_its_allowlist(scheduler: Scheduler) -> None:
    refused = (await scheduler.program(new_message(body="Tonight at the C.A.S.I.N.O!"))).message
    assert (
        refused.status is S.ERROR
        and refused.reason == "restricted_term"
        and "casino" in (refused.history[0].detail or "")
    )
    await scheduler.subaccounts.allow("acme", term="casino")
    allowed = (await scheduler.program(new_message(body="Tonight at the casino!"))).message
    assert allowed.status is S.PROGRAMMED


async def test_suppressed_contact_gets_error_without_a_provider_call(
    scheduler: Scheduler, run_worker: RunWorker
) -> None:
    entry = Suppression(
        contact="+14155552671", channel=Channel.SMS, reason="opt_out", at=MON_1000, source="receipt:test"
    )
    assert await scheduler.subaccounts.suppress("acme", entry)
    assert not await scheduler.subaccounts.suppress("acme", entry)
    msg = (await scheduler.program(new_message())).message
    assert msg.status is S.ERROR and msg.reason == "suppressed"
    # Another channel and another subaccount are not affected.
    other = (await scheduler.program(new_message(subaccount="globex"))).message
    assert other.status is S.PROGRAMMED
    provider = MockProvider()
    await run_worker(provider)
    assert [r.message_id for r in provider.sent] == [other.id]


async def test_suppression_added_after_programming_stops_the_send(scheduler: Scheduler, run_worker: RunWorker) -> None:
    msg = (await scheduler.program(new_message())).message
    entry = Suppression(contact="+14155552671", channel=Channel.SMS, reason="operator", at=MON_1000)
    await scheduler.subaccounts.suppress("acme", entry)
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "suppressed" and provider.sent == []


def whatsapp(**overrides: Any) -> Any:
    return new_message(channel=Channel.WHATSAPP, **overrides)


@pytest.mark.parametrize(
    ("since_inbound", "allowed"),
    [
        (timedelta(hours=23, minutes=59, seconds=59), True),
        (timedelta(hours=24), False),
        (timedelta(hours=24, seconds=1), False),
        (timedelta(0), True),
    ],
)
async def test_care_window_edges(scheduler: Scheduler, since_inbound: timedelta, allowed: bool) -> None:
    """Free-form WhatsApp goes only within 24 h of the contact's last message."""
    await scheduler.subaccounts.record_inbound("acme", "+14155552671", MON_1000)
    msg = (await scheduler.program(whatsapp(validity=LONG), now=MON_1000 + since_inbound)).message
    if allowed:
        assert msg.status is S.PROGRAMMED
    else:
        assert msg.status is S.ERROR and msg.reason == "outside_care_window"


async def test_care_window_never_written_and_templates(scheduler: Scheduler) -> None:
    free = (await scheduler.program(whatsapp())).message
    assert free.status is S.ERROR and "has never written" in (free.history[0].detail or "")
    template = (await scheduler.program(whatsapp(body=None, template="order_update", variables={"n": "1"}))).message
    assert template.status is S.PROGRAMMED


async def test_care_window_closes_before_the_send(scheduler: Scheduler, run_worker: RunWorker) -> None:
    """Open at programming, closed when the worker gets to it: error, no provider call."""
    await scheduler.subaccounts.record_inbound("acme", "+14155552671", MON_1000)
    msg = (await scheduler.program(whatsapp(validity=LONG), now=MON_1000 + timedelta(hours=23))).message
    assert msg.status is S.PROGRAMMED
    provider = MockProvider()
    await run_worker(provider, clock=Clock(MON_1000 + timedelta(hours=24, seconds=1)))
    got = await scheduler.get(msg.id)
    assert got.status is S.ERROR and got.reason == "outside_care_window" and provider.sent == []


async def test_last_inbound_only_moves_forward(scheduler: Scheduler) -> None:
    subs = scheduler.subaccounts
    assert await subs.record_inbound("acme", "+14155552671", MON_1000)
    assert not await subs.record_inbound("acme", "+14155552671", MON_1000 - timedelta(hours=1))
    assert await subs.last_inbound("acme", "+14155552671") == MON_1000


async def test_segment_cap(scheduler: Scheduler) -> None:
    """Segments are stored on SMS messages; above the subaccount's cap the message is refused."""
    await scheduler.subaccounts.set_rules("acme", SubaccountRules(max_sms_segments=2))
    two = (await scheduler.program(new_message(body="a" * 306))).message
    assert two.status is S.PROGRAMMED and two.segments == 2
    three = (await scheduler.program(new_message(body="a" * 307))).message
    assert three.status is S.ERROR and three.reason == "too_many_segments" and three.segments == 3
    assert (await scheduler.get(three.id)).segments == 3


async def test_channel_not_enabled(scheduler: Scheduler) -> None:
    await scheduler.subaccounts.set_rules("acme", SubaccountRules(allowed_channels=frozenset({Channel.WHATSAPP})))
    msg = (await scheduler.program(new_message())).message
    assert msg.status is S.ERROR and msg.reason == "channel_not_allowed"


@pytest.mark.parametrize(
    ("channel", "to"),
    [
        (Channel.SMS, "+1 415 555 2671"),
        (Channel.SMS, "+14155552671 ext. 12"),
        (Channel.WHATSAPP, "tel:+14155552671"),
        (Channel.SMS, "+447700900123"),
        (Channel.EMAIL, "Bob <bob@example.com>"),
    ],
)
async def test_malformed_recipient_is_not_stored(scheduler: Scheduler, channel: Channel, to: str) -> None:
    from scheduler.intake import parse_new_message

    with pytest.raises(InvalidInput) as refused:
        parse_new_message({"subaccount": "acme", "channel": channel.value, "to": to, "body": "hi"})
    assert refused.value.field == "to"
    assert await scheduler.store.redis.keys("sendq:msg:*") == []


async def test_defer_with_no_allowed_time_is_an_error(scheduler: Scheduler) -> None:
    windows = SendingWindows(timezone="Europe/Madrid", weekly={})
    await scheduler.subaccounts.set_rules("acme", SubaccountRules(windows=windows))
    msg = (await scheduler.program(new_message(), now=MON_1000)).message
    assert msg.status is S.ERROR and msg.reason == "no_allowed_window"


async def test_bulk_intake_judges_each_contact_on_its_own_channel(scheduler: Scheduler) -> None:
    """program_many reads suppressions per channel and the care window per contact (a few commands per chunk,
    not one per message) and gets each item right: the same contact suppressed on SMS is still reachable on
    WhatsApp, and only the contact who wrote in gets free-form WhatsApp."""
    wrote, silent = "+14155552671", "+14155552672"
    entry = Suppression(contact=wrote, channel=Channel.SMS, reason="opt_out", at=MON_1000)
    await scheduler.subaccounts.suppress("acme", entry)
    await scheduler.subaccounts.record_inbound("acme", wrote, MON_1000)
    items = [
        new_message(to=wrote, validity=LONG),
        new_message(to=silent, validity=LONG),
        whatsapp(to=wrote, validity=LONG),
        whatsapp(to=silent, validity=LONG),
        new_message(to=wrote, validity=LONG, subaccount="acme"),
    ]
    done = await scheduler.program_many(items, now=MON_1000 + timedelta(hours=1))
    got = [(p.message.status, p.message.reason) for p in done if not isinstance(p, InvalidInput)]
    assert got == [
        (S.ERROR, "suppressed"),
        (S.PROGRAMMED, None),
        (S.PROGRAMMED, None),
        (S.ERROR, "outside_care_window"),
        (S.ERROR, "suppressed"),
    ]
