"""The store: create with reference dedup, compare-and-set transitions, history, indexes, retention."""

from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis

from sendq import keys
from sendq.channel import Channel
from sendq.message import HistoryEntry, Message, utcnow
from sendq.replies import aw
from sendq.status import MessageStatus as S
from sendq.store import MessageStore
from tests.helpers import new_message, statuses

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(message_id: str = "m1", **overrides: object) -> Message:
    data: dict[str, object] = {
        "id": message_id,
        "subaccount": "acme",
        "channel": "sms",
        "to": "+14155552671",
        "body": "hi",
        "created_at": NOW,
        "valid_until": NOW + timedelta(hours=1),
        "status": S.PROGRAMMED,
        "status_at": NOW,
        "due_at": NOW,
        "history": [HistoryEntry(status=S.PROGRAMMED, at=NOW, reason="created")],
    }
    data.update(overrides)
    return Message.model_validate(data)


async def test_create_and_get_round_trip(store: MessageStore) -> None:
    """Every field survives the round trip through Redis."""
    m = record(batch_id="b1", file_name="f.csv", reference_id="r1", variables={"a": "1"}, send_at=NOW)
    assert await store.create(m) == ("m1", True)
    got = await store.get("m1")
    assert got is not None
    assert got.model_dump(exclude={"history"}) == m.model_dump(exclude={"history"})
    assert statuses(got.history) == ["programmed"]


async def test_a_plain_new_record_is_stored_lean(store: MessageStore) -> None:
    """A new programmed message stores neither its id, nor fields at their defaults or equal to its creation
    time, nor a history list: all of it reads back from the record, and the birth entry is written (at the
    creation time) when the first change comes."""
    await store.create(record())
    stored = await aw(store.redis.hgetall(keys.message("m1")))
    assert not {b"id", b"status_at", b"due_at", b"attempts", b"job_version", b"variables"} & set(stored)
    assert not await store.redis.exists(keys.history("m1"))
    got = await store.get("m1")
    assert got is not None and (got.id, got.status_at, got.due_at, got.attempts, got.job_version) == (
        "m1",
        NOW,
        NOW,
        0,
        1,
    )
    assert [(h.status, h.at, h.reason, h.attempt) for h in got.history] == [(S.PROGRAMMED, NOW, "created", 0)]
    later = NOW + timedelta(seconds=3)
    done = await store.transition(
        "m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=later, lease_until=later, bump_version=True
    )
    assert (done.job_version, done.attempts) == (2, 0)
    changed = await store.get("m1")
    assert changed is not None
    assert [(h.status, h.at, h.reason) for h in changed.history] == [
        (S.PROGRAMMED, NOW, "created"),
        (S.PROCESSING, later, None),
    ]
    assert await aw(store.redis.llen(keys.history("m1"))) == 2


async def test_a_new_record_keeps_a_history_entry_that_says_more(store: MessageStore) -> None:
    """A birth entry with its own reason or time (a rule refused the message) is stored as it is."""
    refused = HistoryEntry(status=S.ERROR, at=NOW, reason="suppressed", detail="opted out")
    await store.create(record(status=S.ERROR, reason="suppressed", history=[refused]))
    late = HistoryEntry(status=S.PROGRAMMED, at=NOW + timedelta(seconds=1), reason="created")
    await store.create(record("m2", history=[late]))
    assert await aw(store.redis.llen(keys.history("m1"))) == 1
    got = await store.get("m1")
    assert got is not None and got.history == [refused]
    again = await store.get("m2")
    assert again is not None and again.history == [late]


async def test_reference_is_unique_per_subaccount(store: MessageStore) -> None:
    """A second create with the same reference returns the first id and writes nothing."""
    await store.create(record("m1", reference_id="r"))
    assert await store.create(record("m2", reference_id="r")) == ("m1", False)
    assert await store.get("m2") is None
    assert await store.create(record("m3", reference_id="r", subaccount="other")) == ("m3", True)
    found = await store.find_by_reference("acme", "r")
    assert found is not None and found.id == "m1"


async def test_transition_is_compare_and_set(store: MessageStore) -> None:
    """A transition from an unexpected status does nothing and reports the current status."""
    await store.create(record())
    ok = await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW)
    assert ok.ok and ok.status is S.PROCESSING
    again = await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW)
    assert not again.ok and again.status is S.PROCESSING
    got = await store.get("m1")
    assert got is not None and statuses(got.history) == ["programmed", "processing"]


async def test_version_guard(store: MessageStore) -> None:
    """A stale job version cannot claim the message; bumping the version moves the guard."""
    await store.create(record())
    bumped = await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROGRAMMED, now=NOW, due_at=NOW, bump_version=True)
    assert bumped.job_version == 2
    stale = await store.transition(
        "m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW, expected_version=1
    )
    assert not stale.ok
    fresh = await store.transition(
        "m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW, expected_version=2
    )
    assert fresh.ok


async def test_missing_message(store: MessageStore) -> None:
    """A transition of an unknown id reports no status."""
    result = await store.transition("nope", from_={S.PROGRAMMED}, to=S.CANCELLED, now=NOW)
    assert not result.ok and result.status is None


async def test_indexes_follow_status(store: MessageStore) -> None:
    """The status index moves with the message; batch, channel and file indexes hold it."""
    await store.create(record(batch_id="b1", file_name="list.csv"))
    assert await store.ids_in_index(keys.index("acme", "status", "programmed")) == ["m1"]
    await store.transition("m1", from_={S.PROGRAMMED}, to=S.CANCELLED, now=NOW)
    assert await store.ids_in_index(keys.index("acme", "status", "programmed")) == []
    assert await store.ids_in_index(keys.index("acme", "status", "cancelled")) == ["m1"]
    for name, value in [("batch", "b1"), ("channel", "sms"), ("file", "list.csv")]:
        assert await store.ids_in_index(keys.index("acme", name, value)) == ["m1"]
    # Every message is in exactly one status index (together they list the subaccount's messages).
    found = [await store.ids_in_index(keys.index("acme", "status", s.value)) for s in S]
    assert sorted(i for ids in found for i in ids) == ["m1"]


async def test_due_and_lease_indexes(store: MessageStore) -> None:
    """Waiting messages are in the due index, leased ones in the inflight index, never both."""
    await store.create(record(due_at=NOW))
    assert await store.waiting_due(NOW, 10) == ["m1"]
    await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW + timedelta(seconds=5))
    assert await store.waiting_due(NOW + timedelta(days=1), 10) == []
    assert await store.lease_expired(NOW, 10) == []
    assert await store.lease_expired(NOW + timedelta(seconds=5), 10) == ["m1"]


async def test_lease_guard(store: MessageStore) -> None:
    """The recovery sweep cannot take a message whose lease has not run out."""
    await store.create(record())
    await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW + timedelta(seconds=5))
    early = await store.transition(
        "m1", from_={S.PROCESSING}, to=S.PROGRAMMED, now=NOW, due_at=NOW, lease_expired_by=NOW + timedelta(seconds=4)
    )
    assert not early.ok
    late = await store.transition(
        "m1", from_={S.PROCESSING}, to=S.PROGRAMMED, now=NOW, due_at=NOW, lease_expired_by=NOW + timedelta(seconds=5)
    )
    assert late.ok


async def test_attempts_and_history_entries(store: MessageStore) -> None:
    """Counting an attempt increments it, and the history entry carries it with the reason."""
    await store.create(record())
    await store.transition("m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW)
    sending = await store.transition(
        "m1", from_={S.PROCESSING}, to=S.SENDING, now=NOW, lease_until=NOW, count_attempt=True
    )
    assert sending.attempts == 1
    await store.transition("m1", from_={S.SENDING}, to=S.ERROR, now=NOW, reason="provider_rejected", detail="x")
    got = await store.get("m1")
    assert got is not None
    last = got.history[-1]
    assert (last.status, last.reason, last.detail, last.attempt) == (S.ERROR, "provider_rejected", "x", 1)
    assert got.reason == "provider_rejected" and got.attempts == 1


async def test_retention_purges_final_messages_only(store: MessageStore) -> None:
    """Past retention, final messages go with their indexes and reference; waiting ones stay."""
    await store.create(record("m1", reference_id="r1", batch_id="b"))
    await store.create(record("m2"))
    await store.transition("m1", from_={S.PROGRAMMED}, to=S.CANCELLED, now=NOW)
    assert await store.purge_expired(NOW + store.retention - timedelta(seconds=1)) == 0
    assert await store.purge_expired(NOW + store.retention) == 1
    assert await store.get("m1") is None
    assert await store.find_by_reference("acme", "r1") is None
    assert await store.ids_in_index(keys.index("acme", "batch", "b")) == []
    assert await store.ids_in_index(keys.index("acme", "status", "cancelled")) == []
    assert await store.ids_in_index(keys.index("acme", "status", "programmed")) == ["m2"]
    assert await store.get("m2") is not None


async def test_new_message_validation() -> None:
    """Naive send times, missing content and bad subaccounts are refused by the model."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="timezone-aware"):
        new_message(send_at=datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match="exactly one of body or template"):
        new_message(body=None)
    with pytest.raises(ValidationError):
        new_message(subaccount="a:b")
    with pytest.raises(ValidationError):
        new_message(channel="fax")
    assert new_message(send_at=utcnow()).send_at is not None


async def test_transition_can_return_the_record(store: MessageStore) -> None:
    """With return_record the changed record comes back in the same call; a refused change returns none."""
    await store.create(record())
    claim = await store.transition(
        "m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW, return_record=True
    )
    assert claim.record is not None and claim.record.status is S.PROCESSING and claim.record.body == "hi"
    refused = await store.transition(
        "m1", from_={S.PROGRAMMED}, to=S.PROCESSING, now=NOW, lease_until=NOW, return_record=True
    )
    assert not refused.ok and refused.record is None


@pytest.mark.redis
async def test_bulk_transitions_survive_a_flushed_script_cache(real_arq: ArqRedis) -> None:
    """After a Redis restart or failover the script cache is empty: a bulk cancel loads the script again."""
    store = MessageStore(real_arq, retention=timedelta(days=1))
    message = Message(
        id="m-flush",
        subaccount="acme",
        channel=Channel.SMS,
        to="+14155552671",
        body="x",
        created_at=utcnow(),
        valid_until=utcnow() + timedelta(days=1),
        status=S.PROGRAMMED,
        status_at=utcnow(),
        due_at=utcnow(),
    )
    await store.create(message)
    await real_arq.script_flush()
    (outcome,) = await store.transition_many(["m-flush"], from_={S.PROGRAMMED}, to=S.CANCELLED, now=utcnow())
    assert outcome.ok and outcome.status is S.CANCELLED


def test_transition_script_names_the_waiting_and_leased_statuses() -> None:
    """TRANSITION leaves the due index only from a waiting status and the lease index only from a leased one;
    the statuses it names are the model's."""
    import re

    from sendq import lua
    from sendq.status import LEASED_STATUSES, WAITING_STATUSES

    named = re.findall(
        r"elseif cur == '(\w+)' or cur == '(\w+)' then\n  redis.call\('ZREM', KEYS\[(\d)\]", lua.TRANSITION
    )
    assert {key: {S(a), S(b)} for a, b, key in named} == {"3": set(WAITING_STATUSES), "4": set(LEASED_STATUSES)}


def test_bulk_transition_script_names_the_waiting_and_leased_statuses() -> None:
    """TRANSITION_MANY too: the statuses whose messages leave the due and lease indexes are the model's."""
    import re

    from sendq import lua
    from sendq.status import LEASED_STATUSES, WAITING_STATUSES

    named = re.findall(r"if cur == '(\w+)' or cur == '(\w+)' then table.insert\((\w+), id\)", lua.TRANSITION_MANY)
    assert {key: {S(a), S(b)} for a, b, key in named} == {
        "left_due": set(WAITING_STATUSES),
        "left_lease": set(LEASED_STATUSES),
    }
