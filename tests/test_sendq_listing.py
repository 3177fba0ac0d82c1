"""The filtered message list (``sendq.listing``) on a real redis-server: filters, order, ties, cursors, budget.

Every expectation is computed in Python from the records the test created: the newest first by creation
ms, then by id descending (the order of every index zset). A listing that names no index walks the union of
the status indexes: those tests spread their messages over every status, moved there by the store.
"""

import base64
import random
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given, settings, strategies as st

import sendq.listing
from benchmarks import listing as listing_bench
from sendq import keys
from sendq.channel import Channel
from sendq.listing import (
    MAX_LIMIT,
    SCAN_FACTOR,
    InvalidCursor,
    MessageFilter,
    Page,
    _driving_index,
    _Position,
    _walk_union,
    _window,
    decode_cursor,
    encode_cursor,
    list_messages,
)
from sendq.message import Message, new_message_id, to_ms
from sendq.status import INITIAL_STATUSES, TRANSITIONS, MessageStatus as S
from sendq.store import MessageStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Spec:
    """What a test message is made of (the rest of the record is filler)."""

    id: str
    ms: int  # creation time, in ms after T0
    status: S = S.PROGRAMMED
    channel: Channel = Channel.SMS
    batch_id: str | None = None
    file_name: str | None = None
    subaccount: str = "acme"

    @property
    def created_at(self) -> datetime:
        return T0 + self.ms * MS


def record(spec: Spec) -> Message:
    return Message(
        id=spec.id,
        subaccount=spec.subaccount,
        channel=spec.channel,
        to="+14155552671",
        body="hello",
        batch_id=spec.batch_id,
        file_name=spec.file_name,
        created_at=spec.created_at,
        valid_until=spec.created_at + timedelta(hours=1),
        status=spec.status,
        status_at=spec.created_at,
        due_at=spec.created_at,
    )


#: when the tests' status changes happen (after every creation time the tests use)
MOVED_AT = T0 + timedelta(hours=1)


def route(start: S, goal: S) -> list[S]:
    """The shortest chain of allowed status changes (``TRANSITIONS``) from ``start`` to ``goal``."""
    paths: dict[S, list[S]] = {start: []}
    todo = [start]
    while todo:
        here = todo.pop(0)
        for nxt in sorted(TRANSITIONS[here]):
            if nxt not in paths:
                paths[nxt] = [*paths[here], nxt]
                todo.append(nxt)
    return paths[goal]


async def move(store: MessageStore, message_id: str, start: S, goal: S) -> None:
    """Take a message from ``start`` to ``goal`` through the store, one allowed change at a time."""
    current = start
    for step in route(start, goal):
        done = await store.transition(
            message_id, from_={current}, to=step, now=MOVED_AT, due_at=MOVED_AT, lease_until=MOVED_AT
        )
        assert done.ok, (message_id, current, step)
        current = step


async def create(store: MessageStore, specs: Iterable[Spec]) -> None:
    """Store the messages; one whose status is not an initial one is created programmed and moved there."""
    for spec in specs:
        initial = spec.status if spec.status in INITIAL_STATUSES else S.PROGRAMMED
        created = await store.create(record(replace(spec, status=initial)), held=initial is S.BLOCKED_TIME)
        assert created == (spec.id, True)
        if initial is not spec.status:
            await move(store, spec.id, initial, spec.status)


def expected(specs: Iterable[Spec], flt: MessageFilter) -> list[str]:
    """The ids ``flt`` selects, in listing order, computed without Redis."""
    chosen = [
        s
        for s in specs
        if s.subaccount == flt.subaccount
        and (flt.status is None or s.status is flt.status)
        and (flt.channel is None or s.channel is flt.channel)
        and (flt.batch_id is None or s.batch_id == flt.batch_id)
        and (flt.file_name is None or s.file_name == flt.file_name)
        and (flt.created_from is None or s.created_at >= flt.created_from)
        and (flt.created_to is None or s.created_at < flt.created_to)
    ]
    return [s.id for s in sorted(chosen, key=lambda s: (s.ms, s.id), reverse=True)]


async def pages_with(
    lstore: MessageStore, flt: MessageFilter, limit: int, between: Callable[[], Awaitable[None]]
) -> list[str]:
    """Every page's ids, following the cursors, with ``between()`` run before each next page is asked for."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await list_messages(lstore, flt, limit=limit, cursor=cursor)
        seen += [m.id for m in page.messages]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        await between()


async def collect(store: MessageStore, flt: MessageFilter, limit: int, max_pages: int = 10_000) -> list[str]:
    """Every page's ids, following cursors to the end; checks each page's size."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await list_messages(store, flt, limit=limit, cursor=cursor)
        assert len(page.messages) <= limit
        ids += [m.id for m in page.messages]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


@pytest.fixture
def lstore(real_arq: ArqRedis) -> MessageStore:
    return MessageStore(real_arq, retention=timedelta(days=1))


def mixed_specs() -> list[Spec]:
    """40 messages over 12 distinct ms (ties of up to 5), every initial status, channel, 3 batches, 2 files."""
    specs = []
    initial = [S.PROGRAMMED, S.ERROR, S.BLOCKED_TIME]
    channels = list(Channel)
    for n in range(40):
        specs.append(
            Spec(
                id=f"m{(n * 7) % 40:03d}",  # ids not in creation order, so ties are ordered by id, not by insertion
                ms=(n * 5) % 12 * 10,
                status=initial[n % 3],
                channel=channels[n % 4],
                batch_id=[None, "b1", "b2", "b3"][n % 4 if n % 5 else 0],
                file_name=[None, "a.csv", "b.csv"][n % 3 if n % 2 else 0],
            )
        )
    return specs


FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "status": {"status": S.ERROR},
    "status blocked": {"status": S.BLOCKED_TIME},
    "channel": {"channel": Channel.WHATSAPP},
    "batch": {"batch_id": "b2"},
    "file": {"file_name": "a.csv"},
    "status+channel": {"status": S.PROGRAMMED, "channel": Channel.SMS},
    "batch+file": {"batch_id": "b1", "file_name": "b.csv"},
    "all four": {"status": S.ERROR, "channel": Channel.EMAIL, "batch_id": "b3", "file_name": "a.csv"},
    "range": {"created_from": T0 + 30 * MS, "created_to": T0 + 90 * MS},
    "range+status": {"created_from": T0 + 20 * MS, "status": S.PROGRAMMED},
    "to only": {"created_to": T0 + 50 * MS},
    "no match": {"batch_id": "nope"},
    "empty combination": {"batch_id": "b1", "channel": Channel.SMS},  # b1 messages are all webchat
}


@pytest.mark.parametrize("fields", FILTERS.values(), ids=FILTERS.keys())
async def test_filters_alone_and_combined(lstore: MessageStore, fields: dict[str, Any]) -> None:
    """Every filter, alone and combined: one big page and every page size give the expected list exactly."""
    specs = mixed_specs()
    await create(lstore, specs)
    flt = MessageFilter(subaccount="acme", **fields)
    want = expected(specs, flt)
    page = await list_messages(lstore, flt, limit=MAX_LIMIT)
    assert [m.id for m in page.messages] == want
    assert page.next_cursor is None
    for limit in (1, 2, 3, 7, 40):
        assert await collect(lstore, flt, limit) == want, limit
    assert all(flt.matches(m) for m in page.messages)


async def test_records_come_back_whole(lstore: MessageStore) -> None:
    """The page holds the stored records (without history), not just ids."""
    spec = Spec("x1", 5, batch_id="b", file_name="f.csv", channel=Channel.WHATSAPP)
    await create(lstore, [spec])
    page = await list_messages(lstore, MessageFilter("acme", batch_id="b"))
    assert [m.model_dump() for m in page.messages] == [record(spec).model_dump()]


async def test_ties_in_one_ms_are_ordered_by_id(lstore: MessageStore) -> None:
    """Messages sharing a creation ms are neither skipped nor repeated by any page size."""
    specs = [Spec(f"t{n:02d}", 7) for n in range(9)] + [Spec("a", 8), Spec("z", 6), Spec("zz", 7)]
    await create(lstore, specs)
    flt = MessageFilter("acme")
    want = ["a", "zz", *[f"t{n:02d}" for n in reversed(range(9))], "z"]
    assert want == expected(specs, flt)
    for limit in range(1, 13):
        assert await collect(lstore, flt, limit) == want


@pytest.mark.parametrize("fields", [{}, {"status": S.PROGRAMMED, "channel": Channel.SMS}], ids=["index", "checked"])
async def test_tie_group_larger_than_a_chunk(lstore: MessageStore, fields: dict[str, Any]) -> None:
    """A tie group bigger than a whole chunk is jumped over, not paged through or repeated."""
    specs = [Spec(new_message_id(to_ms(T0)), 0) for _ in range(150)] + [Spec("0-older", -1), Spec("z-newer", 1)]
    await create(lstore, specs)
    flt = MessageFilter("acme", **fields)
    want = expected(specs, flt)
    for limit in (1, 2, 5, 100):
        assert await collect(lstore, flt, limit) == want


async def test_created_range_bounds(lstore: MessageStore) -> None:
    """created_from is inclusive, created_to exclusive, to the ms; sub-ms bounds round the right way."""
    specs = [Spec(f"m{ms}{s}", ms) for ms in (10, 11, 12, 13) for s in "ab"]
    await create(lstore, specs)

    async def ids(lo: datetime | None, hi: datetime | None) -> list[str]:
        return await collect(lstore, MessageFilter("acme", created_from=lo, created_to=hi), limit=3)

    at = T0 + 11 * MS
    assert await ids(at, T0 + 13 * MS) == ["m12b", "m12a", "m11b", "m11a"]
    assert await ids(at, at) == []
    assert await ids(at, at + MS) == ["m11b", "m11a"]
    assert await ids(T0 + 13 * MS, T0 + 11 * MS) == []
    half = timedelta(microseconds=500)
    # 11.5 ms: the messages of ms 11 were created before it, those of ms 12 after it
    assert await ids(at + half, None) == ["m13b", "m13a", "m12b", "m12a"]
    assert await ids(None, at + half) == ["m11b", "m11a", "m10b", "m10a"]
    # any timezone: the same instant
    plus2 = at.astimezone(UTC).astimezone(datetime.fromisoformat("2026-01-01T00:00+02:00").tzinfo)
    assert await ids(plus2, plus2 + MS) == ["m11b", "m11a"]


async def test_status_filter_follows_transitions(lstore: MessageStore) -> None:
    """A message moved by the store leaves its old status's list and joins the new one, in creation order."""
    specs = [Spec(f"m{n}", n) for n in range(6)]
    await create(lstore, specs)
    now = T0 + timedelta(seconds=1)
    for message_id in ("m1", "m4"):
        done = await lstore.transition(message_id, from_={S.PROGRAMMED}, to=S.PROCESSING, now=now, lease_until=now)
        assert done.ok
    assert (await lstore.transition("m2", from_={S.PROGRAMMED}, to=S.CANCELLED, now=now)).ok
    assert await collect(lstore, MessageFilter("acme", status=S.PROCESSING), 1) == ["m4", "m1"]
    assert await collect(lstore, MessageFilter("acme", status=S.CANCELLED), 1) == ["m2"]
    assert await collect(lstore, MessageFilter("acme", status=S.PROGRAMMED), 2) == ["m5", "m3", "m0"]
    both = MessageFilter("acme", status=S.PROCESSING, channel=Channel.SMS)
    assert await collect(lstore, both, 1) == ["m4", "m1"]


async def test_new_messages_between_pages(lstore: MessageStore) -> None:
    """Messages created while a client pages through never appear later on, and none older is skipped."""
    specs = mixed_specs()
    await create(lstore, specs)
    newest = 1000
    variants: list[dict[str, Any]] = [{}, {"status": S.ERROR}, {"channel": Channel.SMS, "status": S.PROGRAMMED}]
    for fields in variants:
        flt = MessageFilter("acme", **fields)
        want = expected(specs, flt)

        async def arrive() -> None:
            # Newer messages of every kind, some sharing one ms, arrive before the next page is asked for.
            nonlocal newest
            newest += 1
            fresh = [
                Spec(new_message_id(to_ms(T0) + newest), newest, status=status, channel=channel)
                for status in (S.PROGRAMMED, S.ERROR)
                for channel in (Channel.SMS, Channel.EMAIL)
            ]
            await create(lstore, fresh)
            specs.extend(fresh)  # the next listing from the top sees them

        assert await pages_with(lstore, flt, 3, arrive) == want, fields


async def test_other_subaccounts_are_invisible(lstore: MessageStore) -> None:
    """Another subaccount's messages, with the same batch, file, status and channel, never show."""
    mine = [Spec(f"a{n}", n, batch_id="b", file_name="f") for n in range(5)]
    theirs = [Spec(f"z{n}", n, batch_id="b", file_name="f", subaccount="other") for n in range(5)]
    await create(lstore, mine + theirs)
    variants: list[dict[str, Any]] = [{}, {"batch_id": "b"}, {"file_name": "f", "status": S.PROGRAMMED}]
    for fields in variants:
        assert await collect(lstore, MessageFilter("acme", **fields), 2) == ["a4", "a3", "a2", "a1", "a0"]
        assert await collect(lstore, MessageFilter("nobody", **fields), 2) == []


async def test_scan_budget_returns_a_cursor(lstore: MessageStore) -> None:
    """When the filters are selective, a call stops after its budget with a cursor at the scan position."""
    # Both indexes of the filter hold 121 entries; only the oldest message is in both.
    specs = [Spec(f"e{n:03d}", 10 + n, status=S.ERROR) for n in range(120)]
    specs += [Spec(f"w{n:03d}", 10 + n, channel=Channel.WHATSAPP) for n in range(120)]
    specs.append(Spec("match", 0, status=S.ERROR, channel=Channel.WHATSAPP))
    await create(lstore, specs)
    flt = MessageFilter("acme", status=S.ERROR, channel=Channel.WHATSAPP)
    first = await list_messages(lstore, flt, limit=1)
    assert first.messages == [] and first.next_cursor is not None
    # the cursor stands SCAN_FACTOR entries down the index: on the 50th newest message of the driving index
    score, _ = decode_cursor(first.next_cursor)
    assert score == to_ms(T0) + 10 + 120 - SCAN_FACTOR
    assert await collect(lstore, flt, 1) == ["match"]
    assert await collect(lstore, flt, 10) == ["match"]


async def test_budget_cursor_is_the_scan_position(lstore: MessageStore) -> None:
    """A page cut short by the budget resumes past the entries it already turned down, not at its last match."""
    specs = [Spec(f"e{n:03d}", 10 + n, status=S.ERROR) for n in range(120)]
    specs += [Spec(f"w{n:03d}", 10 + n, channel=Channel.WHATSAPP) for n in range(120)]
    specs += [Spec(f"match{ms}", ms, status=S.ERROR, channel=Channel.WHATSAPP) for ms in (0, 500)]
    await create(lstore, specs)
    flt = MessageFilter("acme", status=S.ERROR, channel=Channel.WHATSAPP)
    first = await list_messages(lstore, flt, limit=2)
    assert [m.id for m in first.messages] == ["match500"] and first.next_cursor is not None
    # 2 x SCAN_FACTOR entries walked: the newest match, then e119 down to e021
    assert decode_cursor(first.next_cursor) == (to_ms(T0) + 10 + 120 - 2 * SCAN_FACTOR + 1, "e021")
    second = await list_messages(lstore, flt, limit=2, cursor=first.next_cursor)
    assert [m.id for m in second.messages] == ["match0"] and second.next_cursor is None


async def test_driving_index_is_the_smallest_in_the_window(lstore: MessageStore) -> None:
    """The walk follows the filter index with the fewest entries in the window (and below the cursor)."""
    specs = [Spec(f"ps{n:02d}", n) for n in range(20)]
    specs += [Spec(f"ew{n:02d}", 100 + n, status=S.ERROR, channel=Channel.WHATSAPP) for n in range(5)]
    specs += [Spec(f"es{n:02d}", 200 + n, status=S.ERROR) for n in range(30)]
    specs += [Spec(f"pw{n:02d}", 300 + n, channel=Channel.WHATSAPP) for n in range(40)]
    await create(lstore, specs)  # in all: error 35, whatsapp 45
    error = keys.index("acme", "status", "error")
    whatsapp = keys.index("acme", "channel", "whatsapp")

    async def driving(cursor: str | None = None, **fields: Any) -> str | None:
        flt = MessageFilter("acme", status=S.ERROR, channel=Channel.WHATSAPP, **fields)
        start = _window(flt, cursor)
        assert start is not None
        found = await _driving_index(lstore.redis, flt, *start)
        if found is None:
            return None
        assert sorted([found[0], *found[1]]) == sorted(flt.index_keys())  # the others get checked
        return found[0]

    assert await driving() == error
    assert await driving(created_to=T0 + 250 * MS) == whatsapp  # 5 against 35 in the window
    assert await driving(encode_cursor(to_ms(T0) + 250, "x")) == whatsapp
    assert await driving(created_from=T0 + 150 * MS) == error  # 30 against 40
    assert await driving(created_from=T0 + 400 * MS) is None  # nothing in the window: no walk at all
    assert await driving(batch_id="none") is None
    assert await collect(lstore, MessageFilter("acme", status=S.ERROR, channel=Channel.WHATSAPP), 2) == [
        f"ew{n:02d}" for n in reversed(range(5))
    ]


async def test_purged_records_are_skipped(lstore: MessageStore, real_arq: ArqRedis) -> None:
    """An index entry whose record is gone (purged between the two reads) is left out, not an error."""
    specs = [Spec(f"m{n}", n, status=S.ERROR, channel=Channel.EMAIL) for n in range(6)]
    await create(lstore, specs)
    await real_arq.delete(keys.message("m4"), keys.message("m1"))
    assert await collect(lstore, MessageFilter("acme"), 2) == ["m5", "m3", "m2", "m0"]
    assert await collect(lstore, MessageFilter("acme", status=S.ERROR, channel=Channel.EMAIL), 2) == [
        "m5",
        "m3",
        "m2",
        "m0",
    ]
    # and a purge by the retention sweep takes the index entries with the records
    assert await lstore.purge_expired(T0 + timedelta(days=2)) == 6
    assert (await list_messages(lstore, MessageFilter("acme"))) == Page([], None)


async def test_embedded_server(store: MessageStore) -> None:
    """The same listing works on fakeredis, the embedded server of ``sendq dev`` (its Lua included)."""
    specs = mixed_specs()
    await create(store, specs)
    for fields in FILTERS.values():
        flt = MessageFilter("acme", **fields)
        assert await collect(store, flt, 3) == expected(specs, flt), fields


async def test_limit_bounds(lstore: MessageStore) -> None:
    await create(lstore, [Spec("m1", 1)])
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            await list_messages(lstore, MessageFilter("acme"), limit=bad)
    for good in (1, MAX_LIMIT):
        assert [m.id for m in (await list_messages(lstore, MessageFilter("acme"), limit=good)).messages] == ["m1"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


JUNK_CURSORS = [
    "",
    "a",
    "abcde",  # a base64 length that cannot be
    "!!!!",
    "AAAA=",
    "AA AA",
    "é" * 8,
    "A" * 1000,
    b64(b"12"),
    b64(b"12:"),
    b64(b":abc"),
    b64(b"-1:abc"),
    b64(b"012:abc"),
    b64(b"1.5:abc"),
    b64(b"12:" + b"x" * 256),
    b64(b"12:\xff\xfe"),
    b64(b"99999999999999999999:abc"),
    b64(b"12:ab")[:-1] + "J",  # a stray low bit in the last character
    b64(b"\x00\x00\x00"),
]


@pytest.mark.parametrize("cursor", JUNK_CURSORS)
async def test_invalid_cursors(lstore: MessageStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
    with pytest.raises(InvalidCursor):
        await list_messages(lstore, MessageFilter("acme"), cursor=cursor)


@given(st.text(max_size=80) | st.text(string.ascii_letters + string.digits + "-_", max_size=80))
def test_decode_cursor_raises_only_invalid_cursor(cursor: str) -> None:
    try:
        score, message_id = decode_cursor(cursor)
    except InvalidCursor:
        return
    assert encode_cursor(score, message_id) == cursor.rstrip("=")


@given(
    st.integers(min_value=0, max_value=2**53 - 1),
    st.from_regex(r"\A[0-9a-z]{26}\Z") | st.text(st.characters(codec="utf-8"), min_size=1, max_size=255),
)
def test_cursor_round_trip(score: int, message_id: str) -> None:
    cursor = encode_cursor(score, message_id)
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert decode_cursor(cursor) == (score, message_id)


def test_filter_validation() -> None:
    bad_fields: list[dict[str, Any]] = [
        {"created_from": datetime(2026, 1, 1)},
        {"created_to": datetime(2026, 1, 1)},
        {"batch_id": ""},
        {"file_name": ""},
        {"subaccount": ""},
    ]
    for bad in bad_fields:
        with pytest.raises(ValueError):
            MessageFilter(**{"subaccount": "acme", **bad})


async def test_benchmark_data_is_what_the_store_writes(real_arq: ArqRedis, redis_server: RedisServer) -> None:
    """The listing benchmark's bulk fill reads back as valid records with history, listed by every index."""
    figures = await listing_bench.run(redis_server.url, n=2000, calls=2)
    assert figures["first_page_found"] == figures["deep_page_found"] == 50
    assert figures["first_page_ms_p50"] > 0 and figures["memory_per_message_b"] > 0
    store = MessageStore(real_arq, retention=timedelta(days=1))
    everything = await collect(store, MessageFilter(listing_bench.SUBACCOUNT), MAX_LIMIT)
    assert len(everything) == len(set(everything)) == 2000
    sample = await store.get(everything[777])
    assert sample is not None and sample.history and sample.history[-1].status is sample.status
    async with real_arq.pipeline(transaction=False) as pipe:
        pipe.hkeys(keys.message(sample.id))
        (stored,) = await pipe.execute()
    stored_fields = {f.decode() for f in stored}
    # the fields create writes (the id is in the key name: the record does not repeat it)
    assert stored_fields == set(Message.model_fields) - {"history", "id"}
    flt = MessageFilter(
        listing_bench.SUBACCOUNT, status=sample.status, channel=sample.channel, file_name=sample.file_name
    )
    assert sample.id in await collect(store, flt, MAX_LIMIT)


# --- no filter naming an index: the union of the status indexes ------------------------------------------

ALL_STATUSES = list(S)


def spread_specs(n: int = 66) -> list[Spec]:
    """``n`` messages over 9 distinct ms (ties of up to 8), in every status in turn, ids not in creation order."""
    return [
        Spec(id=f"u{(k * 17) % n:03d}", ms=(k * 4) % 9 * 10, status=ALL_STATUSES[k % len(ALL_STATUSES)])
        for k in range(n)
    ]


async def only_status_indexes(redis: ArqRedis, subaccount: str = "acme") -> None:
    """Delete every index of the subaccount but its status indexes (any other all-messages index included): what
    follows shows that a listing naming no index needs nothing else."""
    prefix = keys.index(subaccount, "status", "")
    others = [
        k async for k in redis.scan_iter(match=keys.index(subaccount, "*", "*")) if not k.decode().startswith(prefix)
    ]
    assert others  # channel indexes at least
    await redis.delete(*others)


async def test_unfiltered_walks_every_status(lstore: MessageStore, real_arq: ArqRedis) -> None:
    """With no filter (or only a created range), the list is every message, whatever its status, exactly once
    and in order, for every page size; only the status indexes are read."""
    specs = spread_specs()
    await create(lstore, specs)
    for status in ALL_STATUSES:  # each status index holds some of them
        assert await real_arq.zcard(keys.index("acme", "status", status.value)) == 6, status
    await only_status_indexes(real_arq)
    ranges: list[dict[str, Any]] = [{}, {"created_from": T0 + 20 * MS}, {"created_to": T0 + 60 * MS}]
    for fields in ranges:
        flt = MessageFilter("acme", **fields)
        want = expected(specs, flt)
        assert len(want) == len(set(want)) > 0
        page = await list_messages(lstore, flt, limit=MAX_LIMIT)
        assert [m.id for m in page.messages] == want and page.next_cursor is None
        for limit in (1, 2, 3, 5, 7, 11, 12, len(want) - 1, len(want)):
            assert await collect(lstore, flt, limit) == want, (fields, limit)
    # every record comes back as stored, in its current status
    listed = (await list_messages(lstore, MessageFilter("acme"), limit=MAX_LIMIT)).messages
    assert {m.id: m.status for m in listed} == {s.id: s.status for s in specs}


async def test_unfiltered_page_is_one_round_trip(lstore: MessageStore, real_arq: ArqRedis) -> None:
    """A page of the union reads every status index in one MULTI/EXEC (then loads its records): no ZCOUNT, no
    script, no per-index round trips."""
    specs = spread_specs()
    await create(lstore, specs)
    flt = MessageFilter("acme", created_to=T0 + 75 * MS)
    cursor = None
    for _ in range(3):  # the first page, then pages that start at a cursor
        await real_arq.config_resetstat()
        page = await list_messages(lstore, flt, limit=10, cursor=cursor)
        stats = await real_arq.info("commandstats")
        assert len(page.messages) == 10 and page.next_cursor is not None
        assert stats["cmdstat_exec"]["calls"] == 1
        assert stats["cmdstat_zrevrangebyscore"]["calls"] == len(ALL_STATUSES)
        assert not {"cmdstat_zcount", "cmdstat_eval", "cmdstat_evalsha"} & set(stats)
        cursor = page.next_cursor


async def test_unfiltered_pages_while_messages_arrive_and_move(lstore: MessageStore) -> None:
    """While a client pages through, new messages arrive and messages (listed already or not yet) change
    status. A message keeps its place in the order whatever its status, so the unfiltered list is exactly
    the one of the first call: no newcomer, nothing twice, nothing skipped. A status list gets no newcomer
    and nothing twice either: it holds every message that stayed in that status, in order, and none that
    was never in it."""
    rng = random.Random(7)
    specs = spread_specs()
    await create(lstore, specs)
    newest = 1000
    for fields in ({}, {"status": S.PROGRAMMED}, {"created_from": T0 + 10 * MS, "created_to": T0 + 80 * MS}):
        flt = MessageFilter("acme", **fields)
        order = expected(specs, MessageFilter("acme"))  # every message, in listing order
        status_now = {s.id: s.status for s in specs}
        ever_in = {i for i, status in status_now.items() if flt.status in (None, status)}
        stayed = set(ever_in)
        want = expected(specs, flt)
        arrived: list[Spec] = []
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await list_messages(lstore, flt, limit=4, cursor=cursor)
            seen += [m.id for m in page.messages]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            # Newer messages in several statuses, some sharing one ms, arrive before the next page is asked for...
            newest += 1
            fresh = [
                Spec(new_message_id(to_ms(T0) + newest), newest, status=s) for s in (S.PROGRAMMED, S.SENT, S.ERROR)
            ]
            await create(lstore, fresh)
            arrived += fresh
            # ...and a few older messages, some listed already and some not yet, move to another status.
            movable = [i for i in order if TRANSITIONS[status_now[i]]]  # not in a terminal status
            for message_id in rng.sample(movable, min(3, len(movable))):
                goal = rng.choice(sorted(TRANSITIONS[status_now[message_id]]))
                await move(lstore, message_id, status_now[message_id], goal)
                status_now[message_id] = goal
                if flt.status is not None:
                    if goal is flt.status:
                        ever_in.add(message_id)
                    else:
                        stayed.discard(message_id)
        assert len(seen) == len(set(seen)), fields
        if flt.status is None:
            assert seen == want, fields
        else:
            assert seen == [i for i in order if i in seen]  # in order
            assert stayed <= set(seen) <= ever_in, fields
        # The next variant, from the top, sees every message in its current status.
        specs = [replace(s, status=status_now[s.id]) for s in specs] + arrived


async def test_union_tie_group_larger_than_a_chunk(lstore: MessageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """One creation ms shared by more messages than a chunk, spread unevenly over several statuses: every page
    size lists them once each, in id order, jumping over the walked part of each status's group."""
    group = [S.PROGRAMMED] * 150 + [S.ERROR] * 60 + [S.BLOCKED_TIME] * 25 + [S.SENT] * 10 + [S.CANCELLED] * 5
    specs = [Spec(new_message_id(to_ms(T0)), 0, status=status) for status in group]
    specs += [Spec("0-older", -1, status=S.ERROR), Spec("z-newer", 1, status=S.DELIVERED)]
    await create(lstore, specs)
    jumps = 0
    tie_offset = sendq.listing._tie_offset

    async def counted(*args: Any) -> int:
        nonlocal jumps
        jumps += 1
        return await tie_offset(*args)

    monkeypatch.setattr(sendq.listing, "_tie_offset", counted)
    ranges: list[dict[str, Any]] = [{}, {"created_from": T0, "created_to": T0 + MS}]
    for fields in ranges:
        flt = MessageFilter("acme", **fields)
        want = expected(specs, flt)
        for limit in (1, 2, 5, 100, 149):
            assert await collect(lstore, flt, limit) == want, (fields, limit)
    assert jumps > 0  # the groups were jumped over, not paged through


@pytest.mark.parametrize("races", [1, 1000], ids=["once", "every-time"])
@pytest.mark.parametrize(
    "fields",
    [{}, {"status": S.PROGRAMMED}, {"status": S.PROGRAMMED, "channel": Channel.SMS}],
    ids=["union", "index", "checked"],
)
async def test_tie_jump_while_listed_messages_leave(
    lstore: MessageStore, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], races: int
) -> None:
    """A batch's messages share one creation ms. While a page jumps over the listed part of that tie group,
    between the count of the listed part (``_tie_offset``) and the read that uses it, some messages already
    listed are cancelled: they leave the programmed index, so the count is too high for it. Nothing that
    stayed is skipped, nothing is listed twice: the jump is checked, counted again (``once``: the next count
    holds) and, when the count keeps going stale (``every-time``), the round gives up and the next call goes
    on from the same place."""
    specs = [Spec(f"b{(n * 37) % 150:03d}", 0) for n in range(150)]
    specs += [Spec("0-older", -1), Spec("z-newer", 1)]
    await create(lstore, specs)
    flt = MessageFilter("acme", **fields)
    want = expected(specs, flt)  # every message cancelled below was listed before, so the list stays the same
    seen: list[str] = []
    cancelled: set[str] = set()
    tie_offset = sendq.listing._tie_offset
    stale = 0

    async def racing(redis: Any, key: str, score: int, member: bytes) -> int:
        nonlocal stale
        offset = await tie_offset(redis, key, score, member)
        listed = [i for i in seen if i.startswith("b") and i not in cancelled][:3]  # in the group, still programmed
        if stale < races and key == keys.index("acme", "status", S.PROGRAMMED.value) and listed:
            stale += 1
            for message_id in listed:
                await move(lstore, message_id, S.PROGRAMMED, S.CANCELLED)
                cancelled.add(message_id)
        return offset

    monkeypatch.setattr(sendq.listing, "_tie_offset", racing)
    cursor: str | None = None
    for _ in range(1000):
        page = await list_messages(lstore, flt, limit=10, cursor=cursor)
        seen += [m.id for m in page.messages]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    else:
        raise AssertionError("pagination did not end")
    assert stale > 0 and cancelled  # the race did happen
    assert len(seen) == len(set(seen))
    assert seen == want


async def test_union_created_range(lstore: MessageStore) -> None:
    """created_from (inclusive) and created_to (exclusive) alone bound the union to the ms, from any cursor."""
    specs = [
        Spec(f"m{ms}{s}", ms, status=status)
        for ms in (10, 11, 12, 13)
        for s, status in zip("abc", (S.SENT, S.PROGRAMMED, S.READ), strict=True)
    ]
    await create(lstore, specs)

    async def ids(lo: datetime | None, hi: datetime | None, limit: int = 2) -> list[str]:
        return await collect(lstore, MessageFilter("acme", created_from=lo, created_to=hi), limit=limit)

    at = T0 + 11 * MS
    assert await ids(at, T0 + 13 * MS) == ["m12c", "m12b", "m12a", "m11c", "m11b", "m11a"]
    assert await ids(at, at + MS, 1) == ["m11c", "m11b", "m11a"]
    assert await ids(T0 + 13 * MS, None) == ["m13c", "m13b", "m13a"]
    assert await ids(None, at) == ["m10c", "m10b", "m10a"]
    assert await ids(at, at) == []
    assert await ids(T0 + 14 * MS, None) == []
    assert await ids(None, T0 + 10 * MS) == []
    half = timedelta(microseconds=500)
    assert await ids(at + half, T0 + 12 * MS + half, 5) == ["m12c", "m12b", "m12a"]
    # a cursor from an unbounded listing, inside and above the window
    flt = MessageFilter("acme", created_from=at, created_to=T0 + 13 * MS)
    inside = await list_messages(lstore, flt, limit=2, cursor=encode_cursor(to_ms(T0) + 12, "m12b"))
    assert [m.id for m in inside.messages] == ["m12a", "m11c"] and inside.next_cursor is not None
    above = await list_messages(lstore, flt, limit=2, cursor=encode_cursor(to_ms(T0) + 13, "m13c"))
    assert [m.id for m in above.messages] == ["m12c", "m12b"]
    # the last page ends the listing, with no extra empty page
    last = await list_messages(lstore, flt, limit=3, cursor=encode_cursor(to_ms(T0) + 12, "m12a"))
    assert [m.id for m in last.messages] == ["m11c", "m11b", "m11a"] and last.next_cursor is None


async def test_union_orders_ties_by_id_bytes(lstore: MessageStore) -> None:
    """Within one ms the union is ordered by id bytes, as each index is (not by case or locale), across
    statuses."""
    names = ["a", "B", "b", "Z", "_", "é", "~", "A1", "a0", "ab", "AB", "0", "ü", "Ab"]
    specs = [Spec(name, 3, status=ALL_STATUSES[n % len(ALL_STATUSES)]) for n, name in enumerate(names)]
    await create(lstore, specs)
    want = sorted(names, key=str.encode, reverse=True)
    assert want == expected(specs, MessageFilter("acme"))
    for limit in (1, 2, 3, 13):
        assert await collect(lstore, MessageFilter("acme"), limit) == want


async def test_walk_union_reports_exhaustion_only_when_nothing_is_left(lstore: MessageStore) -> None:
    """One round of the union: entries up to where every chunk reaches, and "exhausted" only when every index
    is and nothing was left over."""
    await create(lstore, [Spec("p3", 3), Spec("p1", 1), Spec("e2", 2, status=S.ERROR), Spec("e0", 0, status=S.ERROR)])
    union = [keys.index("acme", "status", status.value) for status in (S.PROGRAMMED, S.ERROR, S.SENT)]
    top = _Position(None, None)

    async def walk(pos: _Position, count: int) -> tuple[list[str], bool]:
        rows, exhausted = await _walk_union(lstore.redis, union, pos, None, count)
        return [row[0].decode() for row in rows], exhausted

    assert await walk(top, 4) == (["p3", "e2", "p1", "e0"], True)
    assert await walk(top, 5) == (["p3", "e2", "p1", "e0"], True)
    assert await walk(top, 3) == (["p3", "e2", "p1"], False)  # e0 is left over
    # each index's chunk of 1 ends at its newest entry: only the newer of the two is known to come first
    assert await walk(top, 1) == (["p3"], False)
    assert await walk(_Position(to_ms(T0) + 3, b"p3"), 1) == (["e2"], False)
    assert await walk(_Position(to_ms(T0) + 1, b"p1"), 2) == (["e0"], True)
    assert await walk(_Position(to_ms(T0) + 2, None), 2) == (["e2", "p1"], False)  # the whole ms 2 is ahead
    assert await walk(_Position(to_ms(T0), b"e0"), 3) == ([], True)
    # an id in two status indexes (it cannot be, but if it were) still counts once
    await lstore.redis.zadd(keys.index("acme", "status", S.SENT.value), {"e2": to_ms(T0) + 2})
    assert await walk(top, 4) == (["p3", "e2", "p1", "e0"], True)
    assert await walk(top, 3) == (["p3", "e2", "p1"], False)


async def test_empty_subaccount(lstore: MessageStore) -> None:
    """A subaccount with no message, or none in the window or past the cursor, lists nothing, and says so."""
    await create(lstore, [Spec(f"o{n}", n, status=status, subaccount="other") for n, status in enumerate(S)])
    await create(lstore, [Spec("old", 5, status=S.SENT), Spec("new", 50, status=S.CANCELLED)])
    nothing = Page([], None)
    ranges: list[dict[str, Any]] = [{}, {"created_from": T0}, {"created_to": T0 + 100 * MS}]
    for fields in ranges:
        assert await list_messages(lstore, MessageFilter("nobody", **fields)) == nothing
        assert (
            await list_messages(lstore, MessageFilter("nobody", **fields), cursor=encode_cursor(to_ms(T0) + 9, "x"))
            == nothing
        )
    assert (
        await list_messages(lstore, MessageFilter("acme", created_from=T0 + 6 * MS, created_to=T0 + 50 * MS)) == nothing
    )
    assert await list_messages(lstore, MessageFilter("acme", created_from=T0 + 51 * MS)) == nothing
    assert await list_messages(lstore, MessageFilter("acme"), cursor=encode_cursor(to_ms(T0) + 5, "old")) == nothing
    assert await collect(lstore, MessageFilter("acme"), 1) == ["new", "old"]


# --- random data sets ---------------------------------------------------------------------------------------

SPECS = st.lists(
    st.builds(
        Spec,
        id=st.text("0123456789abcdefghjkmnpqrstvwxyz", min_size=1, max_size=3),
        ms=st.integers(0, 8),
        status=st.sampled_from([S.PROGRAMMED, S.ERROR, S.BLOCKED_TIME]),
        channel=st.sampled_from([Channel.SMS, Channel.WHATSAPP]),
        batch_id=st.sampled_from([None, "b1", "b2"]),
        file_name=st.sampled_from([None, "f"]),
        subaccount=st.sampled_from(["acme", "acme", "acme", "other"]),
    ),
    max_size=30,
    unique_by=lambda s: s.id,
)
FILTER_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([S.PROGRAMMED, S.ERROR, S.BLOCKED_TIME]),
        "channel": st.sampled_from([Channel.SMS, Channel.WHATSAPP]),
        "batch_id": st.sampled_from(["b1", "b2"]),
        "file_name": st.just("f"),
        "created_from": st.integers(0, 9).map(lambda ms: T0 + ms * MS),
        "created_to": st.integers(0, 9).map(lambda ms: T0 + ms * MS),
    },
)


async def _pages_match_the_model(real_arq: ArqRedis, specs: list[Spec], fields: dict[str, Any], limit: int) -> None:
    """Store ``specs`` on an emptied Redis; all pages of the filtered list together are the model's list."""
    await real_arq.flushdb()
    store = MessageStore(real_arq, retention=timedelta(days=1))
    await create(store, specs)
    flt = MessageFilter("acme", **fields)
    assert await collect(store, flt, limit) == expected(specs, flt)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SPECS, FILTER_FIELDS, st.integers(1, 6))
async def test_random_pagination_matches_the_model(
    real_arq: ArqRedis, specs: list[Spec], fields: dict[str, Any], limit: int
) -> None:
    """Over random data sets (many ties) and filters, all pages together are exactly the expected list."""
    await _pages_match_the_model(real_arq, specs, fields, limit)


UNION_SPECS = st.lists(
    st.builds(
        Spec,
        id=st.text("0123456789abcdefghjkmnpqrstvwxyz", min_size=1, max_size=3),
        ms=st.integers(0, 6),
        status=st.sampled_from(ALL_STATUSES),
    ),
    max_size=40,
    unique_by=lambda s: s.id,
)
RANGE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "created_from": st.integers(0, 7).map(lambda ms: T0 + ms * MS),
        "created_to": st.integers(0, 7).map(lambda ms: T0 + ms * MS),
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(UNION_SPECS, RANGE_FIELDS, st.integers(1, 6))
async def test_random_union_matches_the_model(
    real_arq: ArqRedis, specs: list[Spec], fields: dict[str, Any], limit: int
) -> None:
    """Over random data sets spread over every status (many ties), with or without a created range, all
    pages of the union together are exactly the expected list."""
    await _pages_match_the_model(real_arq, specs, fields, limit)
