"""Bulk writes leave Redis exactly as one call per message would: TRANSITION_MANY (``transition_many``) as
TRANSITION, and CREATE_MANY for many messages (``create_many``) as for one at a time (``create``). Compared:
records, history, status indexes, batch counters, due, lease, receipt and retention indexes, references, events."""

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis

from sendq import keys
from sendq.channel import Channel
from sendq.message import HistoryEntry, Message, to_ms
from sendq.replies import aw
from sendq.status import MessageStatus as S
from sendq.store import BULK_IDS_PER_CALL, MessageStore, Transition

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def _message(message_id: str, subaccount: str, batch: str | None, **extra: Any) -> Message:
    return Message(
        **{
            "id": message_id,
            "subaccount": subaccount,
            "channel": Channel.SMS,
            "to": "+14155552671",
            "body": "hi",
            "batch_id": batch,
            "created_at": NOW,
            "valid_until": NOW + timedelta(days=1),
            "status": S.PROGRAMMED,
            "status_at": NOW,
            "due_at": NOW,
        }
        | extra
    )


async def _to(store: MessageStore, message_id: str, status: S) -> None:
    """Walk a programmed message to ``status`` the way the worker and the sweeps do."""
    t = NOW + timedelta(seconds=1)
    lease = NOW + timedelta(minutes=1)
    if status is S.PROGRAMMED:
        return
    if status is S.BLOCKED_TIME:
        await store.transition(message_id, from_={S.PROGRAMMED}, to=S.BLOCKED_TIME, now=t, due_at=LATER)
        return
    if status is S.CANCELLED:
        await store.transition(message_id, from_={S.PROGRAMMED}, to=S.CANCELLED, now=t)
        return
    await store.transition(
        message_id, from_={S.PROGRAMMED}, to=S.PROCESSING, now=t, lease_until=lease, bump_version=True
    )
    if status is S.PROCESSING:
        return
    await store.transition(message_id, from_={S.PROCESSING}, to=S.SENDING, now=t, lease_until=lease, count_attempt=True)
    if status is S.SENDING:
        return
    await store.transition(
        message_id,
        from_={S.SENDING},
        to=S.SENT,
        now=t,
        receipt_deadline=LATER,
        provider_ref=("mock", f"p-{message_id}"),
    )
    if status is S.DELIVERED:
        await store.transition(message_id, from_={S.SENT}, to=S.DELIVERED, now=t)


#: every status a message can be in when a bulk change comes, in two subaccounts, with and without a batch
SCENE = [
    (f"m{n}-{status.value}", subaccount, batch, status)
    for n, (subaccount, batch) in enumerate([("acme", "b1"), ("acme", "b2"), ("beta", "b1"), ("acme", None)])
    for status in (S.PROGRAMMED, S.BLOCKED_TIME, S.PROCESSING, S.SENDING, S.SENT, S.DELIVERED, S.CANCELLED)
]


async def _build(redis: ArqRedis) -> MessageStore:
    await redis.flushdb()
    store = MessageStore(redis, retention=timedelta(days=7))
    for message_id, subaccount, batch, status in SCENE:
        await store.create(_message(message_id, subaccount, batch))
        await _to(store, message_id, status)
    return store


async def _snapshot(redis: ArqRedis, store: MessageStore) -> dict[str, Any]:
    """Everything the change can touch, read back: records as the model loads them (a bulk change may leave a
    field at its default unwritten), every other key raw, events without their stream ids."""
    out: dict[str, Any] = {}
    for raw_key in sorted(await redis.keys("*")):
        key = raw_key.decode()
        kind = (await redis.type(key)).decode()
        if key.startswith("sendq:msg:") and kind == "hash":
            out[key] = await store.get(key.removeprefix("sendq:msg:"))
        elif kind == "hash":
            out[key] = await aw(redis.hgetall(key))
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[key] = await aw(redis.lrange(key, 0, -1))
        elif kind == "stream":
            out[key] = [fields for _, fields in await redis.xrange(key)]
        else:
            out[key] = await redis.get(key)
    return out


Change = Callable[[MessageStore, list[str]], Coroutine[Any, Any, list[Transition]]]


@pytest.mark.parametrize(
    ("to", "reason", "detail"),
    [(S.CANCELLED, "cancelled", "by ops"), (S.BLOCKED_TIME, "held", None), (S.DELIVERED, "receipt", None)],
)
async def test_bulk_change_equals_one_change_per_message(
    real_arq: ArqRedis, to: S, reason: str, detail: str | None
) -> None:
    ids = [message_id for message_id, *_ in SCENE] + ["m-missing"]
    sources = frozenset(S) - {to}
    at = NOW + timedelta(seconds=30)

    async def one_by_one(store: MessageStore, ids: list[str]) -> list[Transition]:
        return [await store.transition(i, from_=sources, to=to, now=at, reason=reason, detail=detail) for i in ids]

    async def bulk(store: MessageStore, ids: list[str]) -> list[Transition]:
        return await store.transition_many(ids, from_=sources, to=to, now=at, reason=reason, detail=detail)

    results = {}
    for name, change in (("one_by_one", one_by_one), ("bulk", bulk)):
        store = await _build(real_arq)
        outcomes = await change(store, ids)
        results[name] = (outcomes, await _snapshot(real_arq, store))
    assert results["bulk"] == results["one_by_one"]
    # the scene covers changes that took and changes that were refused
    outcomes = results["bulk"][0]
    assert any(o.ok for o in outcomes) and any(not o.ok and o.status for o in outcomes)
    assert outcomes[-1].status is None


async def test_bulk_change_spans_several_calls_in_order(real_arq: ArqRedis) -> None:
    """More ids than one script call takes: every message changes once, outcomes come back in the ids' order."""
    store = MessageStore(real_arq, retention=timedelta(days=7))
    n = BULK_IDS_PER_CALL * 2 + 7
    ids = [f"m{i:04d}" for i in range(n)]
    for message_id in ids:
        await store.create(_message(message_id, "acme", "b1"))
    await store.transition(ids[300], from_={S.PROGRAMMED}, to=S.CANCELLED, now=NOW)
    outcomes = await store.transition_many(
        list(reversed(ids)), from_={S.PROGRAMMED}, to=S.CANCELLED, now=LATER, reason="cancelled"
    )
    assert [o.ok for o in outcomes] == [i != ids[300] for i in reversed(ids)]
    assert await real_arq.zcard(keys.index("acme", "status", "cancelled")) == n
    assert await real_arq.zcard(keys.index("acme", "status", "programmed")) == 0
    assert await real_arq.zcard(keys.DUE) == 0
    assert await aw(real_arq.hgetall("sendq:batch:acme:b1")) == {b"n:programmed": b"0", b"n:cancelled": str(n).encode()}
    assert await real_arq.xlen(keys.EVENTS) == 2 * n  # n births and n cancels
    message = await store.get(ids[0])
    assert message is not None and [h.status for h in message.history] == [S.PROGRAMMED, S.CANCELLED]
    assert message.history[1] == HistoryEntry(status=S.CANCELLED, at=LATER, reason="cancelled", attempt=0)


async def test_bulk_change_refuses_targets_that_need_a_lease_or_a_due_time(real_arq: ArqRedis) -> None:
    store = MessageStore(real_arq, retention=timedelta(days=7))
    for to in (S.PROGRAMMED, S.PROCESSING, S.SENDING):
        with pytest.raises(ValueError, match="lease or a due time"):
            await store.transition_many(["m1"], from_={S.BLOCKED_TIME}, to=to, now=NOW)


#: new messages of every kind intake writes: (message, held)
NEWCOMERS = [
    (_message("n-plain", "acme", "b1"), False),
    (_message("n-later", "acme", "b1", due_at=LATER, send_at=LATER, file_name="list.csv"), False),
    (_message("n-ref", "acme", "b1", reference_id="r1"), False),
    (_message("n-ref-again", "acme", "b1", reference_id="r1"), False),  # answers with n-ref
    (_message("n-ref-beta", "beta", "b1", reference_id="r1"), False),  # another subaccount's reference
    (_message("n-plain", "acme", "b1", body="again"), False),  # the id is taken: nothing written
    (
        _message(
            "n-refused",
            "acme",
            "b1",
            status=S.ERROR,
            reason="suppressed",
            history=[HistoryEntry(status=S.ERROR, at=NOW, reason="suppressed", detail="opted out")],
        ),
        False,
    ),
    (
        _message(
            "n-deferred",
            "acme",
            None,
            status=S.BLOCKED_TIME,
            due_at=LATER,
            history=[HistoryEntry(status=S.BLOCKED_TIME, at=NOW, reason="outside_window")],
        ),
        False,
    ),
    (_message("n-held", "acme", "b2", status=S.BLOCKED_TIME, reason="outside_window"), True),
    (_message("n-mail", "acme", "b2", channel=Channel.EMAIL, to="a@example.com", variables={}), False),
    (_message("n-vars", "acme", "b2", body=None, template="otp", variables={"code": "1"}, attempts=0), False),
]


async def test_bulk_create_equals_one_create_per_message(real_arq: ArqRedis) -> None:
    results = {}
    for name in ("one_by_one", "bulk"):
        await real_arq.flushdb()
        store = MessageStore(real_arq, retention=timedelta(days=7))
        if name == "bulk":
            outcomes = await store.create_many(NEWCOMERS)
        else:
            outcomes = [await store.create(message, held=held) for message, held in NEWCOMERS]
        results[name] = (outcomes, await _snapshot(real_arq, store))
    assert results["bulk"] == results["one_by_one"]
    outcomes = results["bulk"][0]
    assert outcomes[3] == ("n-ref", False) and outcomes[4] == ("n-ref-beta", True)
    assert outcomes[5] == ("n-plain", False)
    assert sum(created for _, created in outcomes) == len(NEWCOMERS) - 2
    # and what they are: a refused message counts towards retention, a held one is not due, the others are
    assert await real_arq.zscore(keys.RETENTION, "n-refused") == to_ms(NOW + timedelta(days=7))
    due = dict(await real_arq.zrange(keys.DUE, 0, -1, withscores=True))
    assert due == {
        m.id.encode(): to_ms(m.due_at)
        for m, held in NEWCOMERS
        if m.status is not S.ERROR and not held and m.id != "n-ref-again" and m.body != "again"
    }
    assert await real_arq.get(keys.reference("acme", "r1")) == b"n-ref"


async def test_bulk_create_spans_several_calls(real_arq: ArqRedis) -> None:
    """More messages than one script call takes: each is stored once, answers come back in order, and a
    reference taken in an earlier call is taken in a later one."""
    store = MessageStore(real_arq, retention=timedelta(days=7))
    n = BULK_IDS_PER_CALL * 2 + 3
    items = [(_message(f"m{i:04d}", "acme", "b1"), False) for i in range(n)]
    items.append((_message("dup", "acme", "b1", reference_id="r"), False))
    items.insert(1, (_message("first", "acme", "b1", reference_id="r"), False))
    outcomes = await store.create_many(items)
    assert outcomes[1] == ("first", True) and outcomes[-1] == ("first", False)
    assert [found for found, _ in outcomes] == [m.id for m, _ in items[:-1]] + ["first"]
    assert await real_arq.zcard(keys.index("acme", "batch", "b1")) == n + 1
    assert await aw(real_arq.hgetall("sendq:batch:acme:b1")) == {b"n:programmed": str(n + 1).encode()}
