"""Delivery receipts through the store: matching by provider id, monotonic application, parking, suppression,
the timed-out sweep on a fake clock, and a chaos run (replays, shuffles, concurrency) on a real redis-server."""

import asyncio
import random
from dataclasses import dataclass
from datetime import timedelta

import pytest
from arq.connections import ArqRedis

from benchmarks.receipts import make_sent
from providers.base import SendResult
from providers.mock import MockProvider
from scheduler.intake import Scheduler
from scheduler.sweeps import SweepReport, time_out_receipts
from sendq.channel import Channel
from sendq.message import Message, utcnow
from sendq.receipts import ReceiptBook
from sendq.replies import aw
from sendq.reports import Receipt
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from sendq.subaccount import SubaccountRules
from sendq.subaccounts import SubaccountStore
from tests.conftest import RunWorker
from tests.helpers import new_message, statuses

D, R, F = S.DELIVERED, S.READ, S.FAILED


@pytest.fixture
def book(store: MessageStore, fake_arq: ArqRedis) -> ReceiptBook:
    return ReceiptBook(store, SubaccountStore(fake_arq))


async def sent_message(scheduler: Scheduler, run_worker: RunWorker, **overrides: object) -> tuple[Message, str]:
    """A message the worker sent through the mock provider, and the provider's id for it."""
    msg = (await scheduler.program(new_message(**overrides))).message
    provider = MockProvider()
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert got.status is S.SENT
    return got, provider.sent[-1].provider_message_id


async def test_receipts_move_forward_only(scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook) -> None:
    """sent -> delivered -> read; then a late delivered, a replayed read and a failed change nothing."""
    msg, pmid = await sent_message(scheduler, run_worker, channel=Channel.WHATSAPP, template="hello_v1", body=None)
    now = utcnow()
    first = await book.apply("mock", [Receipt(pmid, D, at=now - timedelta(seconds=5))], now)
    second = await book.apply("mock", [Receipt(pmid, R)], now)
    late = await book.apply("mock", [Receipt(pmid, D), Receipt(pmid, R), Receipt(pmid, F, code="x")], now)
    assert (first.applied, second.applied, late.applied, late.unchanged) == (1, 1, 0, 3)
    got = await scheduler.get(msg.id)
    assert statuses(got.history)[-3:] == ["sent", "delivered", "read"] and got.status is R
    delivered = got.history[-2]
    # stamped with sendq's clock (history stays in order); the provider's own time is kept in the detail
    assert delivered.at == now and delivered.detail == f"mock time {(now - timedelta(seconds=5)).isoformat()}"


async def test_read_without_delivered_and_receipt_after_timeout(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook
) -> None:
    """Read may come without delivered (seed 002); a receipt after timed_out still applies."""
    msg, pmid = await sent_message(scheduler, run_worker)
    report = SweepReport()
    await time_out_receipts(scheduler.store, utcnow() + timedelta(days=4), report)
    assert report.timed_out == 1 and (await scheduler.get(msg.id)).status is S.TIMED_OUT
    await book.apply("mock", [Receipt(pmid, R)], utcnow())
    got = await scheduler.get(msg.id)
    assert statuses(got.history)[-3:] == ["sent", "timed_out", "read"]


async def test_sent_receipt_and_unknown_ids_change_nothing(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook
) -> None:
    msg, pmid = await sent_message(scheduler, run_worker)
    report = await book.apply("mock", [Receipt(pmid, S.SENT), Receipt("nobody-knows", D)], utcnow())
    assert (report.ignored, report.parked, report.applied) == (1, 1, 0)
    assert (await scheduler.get(msg.id)).status is S.SENT


async def test_receipt_matched_by_provider_and_id_only(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook
) -> None:
    """The same provider id under another provider's name (or sendq's own id) reaches no message."""
    msg, pmid = await sent_message(scheduler, run_worker)
    other = await book.apply("twilio", [Receipt(pmid, D)], utcnow())
    by_our_id = await book.apply("mock", [Receipt(msg.id, D)], utcnow())
    assert other.applied == by_our_id.applied == 0
    assert (await scheduler.get(msg.id)).status is S.SENT


@dataclass
class FixedIdProvider(MockProvider):
    """The mock, answering with an id known in advance (so a receipt can be sent before the send is recorded)."""

    provider_id: str = "fixed"

    async def send(self, message: Message, *, idempotency_key: str) -> SendResult:
        result = await super().send(message, idempotency_key=idempotency_key)
        return SendResult(self.provider_id, result.repeat)


async def test_early_receipt_is_parked_then_applied(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook, fake_arq: ArqRedis
) -> None:
    """A receipt that beats the worker's 'sent' record waits, and the worker applies it right after."""
    msg = (await scheduler.program(new_message())).message
    early_id = "early-1"
    parked = await book.apply("mock", [Receipt(early_id, D)], utcnow())
    assert parked.parked == 1
    provider = FixedIdProvider(provider_id=early_id)
    await run_worker(provider)
    got = await scheduler.get(msg.id)
    assert statuses(got.history)[-2:] == ["sent", "delivered"]
    assert await fake_arq.exists("sendq:early:mock:early-1") == 0


async def test_failure_receipt_with_block_code_suppresses_the_contact(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook, fake_arq: ArqRedis
) -> None:
    """An opt-out failure suppresses the contact (with reason and source message); the next send is refused."""
    msg, pmid = await sent_message(scheduler, run_worker)
    receipt = Receipt(pmid, F, code="24", reason="opt_out", suppress=True)
    report = await book.apply("mock", [receipt, receipt], utcnow())
    assert (report.applied, report.unchanged, report.suppressed) == (1, 1, 1)
    got = await scheduler.get(msg.id)
    assert got.status is F and got.reason == "opt_out" and got.last_error_code == "24"
    entry = await SubaccountStore(fake_arq).suppressed("acme", Channel.SMS, msg.to)
    assert entry is not None and entry.reason == "opt_out" and entry.message_id == msg.id
    assert entry.source == "receipt:mock code 24"
    nxt = (await scheduler.program(new_message(body="another"))).message
    assert nxt.status is S.ERROR and nxt.reason == "suppressed"


async def test_timed_out_sweep_on_a_fake_clock(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook, fake_arq: ArqRedis
) -> None:
    """The subaccount's receipt timeout decides; a delivered SMS is done, a delivered WhatsApp waits for read."""
    await SubaccountStore(fake_arq).set_rules("acme", SubaccountRules(receipt_timeout_s=3600))
    sms, sms_id = await sent_message(scheduler, run_worker)
    wa, wa_id = await sent_message(scheduler, run_worker, channel=Channel.WHATSAPP, template="t1", body=None)
    silent, _ = await sent_message(scheduler, run_worker, to="+14155552672")
    now = utcnow()
    await book.apply("mock", [Receipt(sms_id, D), Receipt(wa_id, D)], now)
    early = SweepReport()
    await time_out_receipts(scheduler.store, now + timedelta(seconds=3500), early)
    assert early.timed_out == 0
    late = SweepReport()
    await time_out_receipts(scheduler.store, now + timedelta(seconds=3700), late)
    assert late.timed_out == 2
    assert (await scheduler.get(sms.id)).status is D
    timed_out_wa = await scheduler.get(wa.id)
    assert timed_out_wa.status is S.TIMED_OUT and timed_out_wa.reason == "receipt_timeout"
    assert (await scheduler.get(silent.id)).status is S.TIMED_OUT
    assert await fake_arq.zcard("sendq:awaiting") == 0
    again = SweepReport()
    await time_out_receipts(scheduler.store, now + timedelta(days=30), again)
    assert again.timed_out == 0


async def test_purge_removes_the_provider_link(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook, fake_arq: ArqRedis
) -> None:
    msg, pmid = await sent_message(scheduler, run_worker)
    assert await fake_arq.get(f"sendq:pmid:mock:{pmid}") == msg.id.encode()
    await scheduler.store.purge_expired(utcnow() + timedelta(days=400))
    assert await fake_arq.exists(f"sendq:pmid:mock:{pmid}", "sendq:awaiting") == 0
    assert (await book.apply("mock", [Receipt(pmid, D)], utcnow())).parked == 1


# --- chaos on a real redis-server ----------------------------------------------------------------------------

#: receipt plans: what the provider really reports for a message, and the status it must end in
PLANS: list[tuple[tuple[S, ...], S]] = [
    ((D,), D),
    ((D, R), R),
    ((R,), R),
    ((F,), F),
    ((D, F), F),
]


@pytest.mark.redis
async def test_receipt_chaos_on_real_redis(real_arq: ArqRedis) -> None:
    """1,000 sent messages; each real receipt replayed 3 times, all shuffled (so some delivered after read),
    plus unknown ids, applied by 8 concurrent callers with several receipts for one message in flight at once:
    every final status right, one history entry per real change."""
    store = MessageStore(real_arq, retention=timedelta(days=30))
    book = ReceiptBook(store, SubaccountStore(real_arq))
    ids = [f"m-{i}" for i in range(1000)]
    await make_sent(store, ids, "chaos", Channel.WHATSAPP)
    rng = random.Random(7)
    expected: dict[str, S] = {}
    real: dict[str, set[S]] = {}
    deliveries: list[Receipt] = []
    for message_id in ids:
        plan, final = PLANS[rng.randrange(len(PLANS))]
        expected[message_id], real[message_id] = final, set(plan)
        deliveries += [Receipt(f"p-{message_id}", status) for status in plan for _ in range(3)]
    deliveries += [Receipt(f"ghost-{n}", D) for n in range(50)]
    rng.shuffle(deliveries)
    now = utcnow()
    chunks = [deliveries[k : k + 25] for k in range(0, len(deliveries), 25)]
    queue: asyncio.Queue[list[Receipt]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def caller() -> None:
        while not queue.empty():
            await book.apply("chaos", queue.get_nowait(), now)

    await asyncio.gather(*(caller() for _ in range(8)))
    messages = {m.id: m for m in await asyncio.gather(*(store.get(i) for i in ids)) if m is not None}
    wrong = [i for i in ids if messages[i].status is not expected[i]]
    assert wrong == []
    for message_id in ids:
        after_sent = statuses(messages[message_id].history)[4:]
        assert len(after_sent) == len(set(after_sent)), after_sent  # no status entered twice
        assert set(after_sent) <= {s.value for s in real[message_id]}
        assert after_sent[-1] == expected[message_id].value
    # read implies delivered: a delivered that arrived after read left no trace
    assert all(statuses(m.history)[4:] in (["delivered", "read"], ["read"]) for m in messages.values() if m.status is R)
    parked = [await aw(real_arq.llen(f"sendq:early:chaos:ghost-{n}")) for n in range(50)]
    assert parked == [1] * 50  # unknown ids are kept for a while (and logged), never applied anywhere


async def test_concurrent_receipts_for_one_message(
    scheduler: Scheduler, run_worker: RunWorker, book: ReceiptBook
) -> None:
    """Twenty concurrent deliveries of delivered and read for one message: one of each, read last."""
    msg, pmid = await sent_message(scheduler, run_worker, channel=Channel.WHATSAPP, template="t1", body=None)
    now = utcnow()
    await asyncio.gather(*(book.apply("mock", [Receipt(pmid, s)], now) for s in [D, R] * 10))
    got = await scheduler.get(msg.id)
    tail = statuses(got.history)[4:]
    assert tail in (["delivered", "read"], ["read"]) and got.status is R
