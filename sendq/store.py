"""MessageStore: the source of truth. Every status change goes through ``transition`` (one Lua CAS)."""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Required, TypedDict, Unpack

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from sendq import keys, lua
from sendq.batches import batch_key
from sendq.message import HistoryEntry, Message, fields_to_redis, from_ms, to_ms
from sendq.status import FINAL_STATUSES, INITIAL_STATUSES, LEASED_STATUSES, WAITING_STATUSES, MessageStatus

# Fields that hold the record; everything else in Message is derived or kept elsewhere (history).
_DATETIME_FIELDS = frozenset({"send_at", "created_at", "valid_until", "status_at", "due_at"})
_INT_FIELDS = frozenset({"attempts", "job_version", "segments"})
_BOOL_FIELDS = frozenset({"reuse_key", "provider_idempotent"})
_JSON_FIELDS = frozenset({"variables"})


#: fields a new record leaves out when they equal its creation time (read back as ``created_at``)
_CREATION_TIME_FIELDS = ("status_at", "due_at")

#: The reason of a message's first history entry. A message born ``programmed`` with no other detail (the usual
#: case) is stored without a history list: its birth entry is implied by the record (status and ``created_at``)
#: until the first status change, when TRANSITION writes it (with the time in epoch ms) before the new entry.
#: About 300 bytes of Redis memory less per waiting message.
BIRTH_REASON = "created"

#: messages per CREATE_MANY or TRANSITION_MANY call. A call is atomic, so Redis serves nothing else while it
#: runs: some 20 µs per message, so about 5 ms per call; and Lua's ``unpack`` takes at most 8,000 values.
BULK_IDS_PER_CALL = 250


class Change(TypedDict, total=False):
    """The arguments of a status change (``MessageStore.transition``)."""

    #: the statuses the message must be in; any other status refuses the change
    from_: Required[Iterable[MessageStatus]]
    #: the new status
    to: Required[MessageStatus]
    now: Required[datetime]
    reason: str | None
    detail: str | None
    #: also require this job version (a stale arq job then does nothing)
    expected_version: int | None
    #: increment the job version (the caller enqueues the new versioned job)
    bump_version: bool
    #: increment ``attempts`` (a provider call starts)
    count_attempt: bool
    #: required when ``to`` waits on the clock (programmed, a deferred blocked_time); None with
    #: ``to=BLOCKED_TIME`` holds the message for an operator (it leaves the due index)
    due_at: datetime | None
    #: required when ``to`` is leased (processing, sending)
    lease_until: datetime | None
    #: refuse unless the current lease ran out by then (for the recovery sweep)
    lease_expired_by: datetime | None
    #: other record fields to set with the change
    fields: Mapping[str, Any] | None
    #: also return the record after the change (saves a read round trip)
    return_record: bool
    #: with ``to=SENT``: when the timed-out sweep gives up waiting for a final receipt
    receipt_deadline: datetime | None
    #: with ``to=SENT``: (provider, provider message id); receipts find the message by it
    provider_ref: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class Transition:
    """What a compare-and-set did: ``ok`` false means the message was not in an expected state."""

    ok: bool
    #: the status after the call (the new one, or the one that refused the change; None if no such message)
    status: MessageStatus | None
    job_version: int
    attempts: int
    #: the record after the change (without history), when asked for with ``return_record``
    record: Message | None = None


def _str(value: bytes | str | int) -> str:
    """Redis replies arrive as bytes (arq's client does not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in raw.items()}


def _history_prefix(status: MessageStatus, at: datetime, reason: str | None, detail: str | None) -> str:
    entry = json.dumps(
        {"status": status.value, "at": at.isoformat(), "reason": reason, "detail": detail}, separators=(",", ":")
    )
    return entry[:-1] + ',"attempt":'


class MessageStore:
    """Messages in Redis under ``sendq:`` keys.

    Args:
        redis: a redis-py asyncio client (arq's ``ArqRedis`` is one).
        retention: how long final messages are kept before the retention sweep deletes them.
    """

    def __init__(self, redis: Redis, *, retention: timedelta) -> None:
        self.redis = redis
        self.retention = retention
        self._create_many = redis.register_script(lua.CREATE_MANY)
        self._transition = redis.register_script(lua.TRANSITION)
        self._transition_many = redis.register_script(lua.TRANSITION_MANY)
        self._purge = redis.register_script(lua.PURGE)
        self._loaded = False

    async def _load_scripts(self) -> None:
        # Load before the first EVALSHA instead of relying on the NOSCRIPT fallback: the embedded server of
        # `sendq dev` closes the connection on any error reply, which would fail the first call.
        if not self._loaded:
            for script in (self._create_many, self._transition, self._transition_many, self._purge):
                await self.redis.script_load(script.script)
            self._loaded = True

    async def create(self, message: Message, *, held: bool = False) -> tuple[str, bool]:
        """Store a new message in its initial status. Returns ``(id, created)``.

        A ``programmed`` or deferred ``blocked_time`` message is listed as due at ``due_at``; a held
        ``blocked_time`` one (``held=True``) waits for an operator; an ``error`` one (refused by a rule) is
        final from birth and counts towards retention.

        When the subaccount already has a message with the same ``reference_id``, nothing is written and the
        existing message's id comes back with ``created=False``.
        """
        (result,) = await self.create_many([(message, held)])
        return result

    async def create_many(self, items: Sequence[tuple[Message, bool]]) -> list[tuple[str, bool]]:
        """``create`` for many (message, held) pairs, in order, in one pipelined round trip: each call of
        CREATE_MANY stores up to ``BULK_IDS_PER_CALL`` of them, each message whole or not at all. Of two items
        with one reference, the first is stored and the second answers with it."""
        if not items:
            return []
        entries = [self._create_entry(message, held) for message, held in items]
        call_keys = [keys.DUE, keys.EVENTS, keys.RETENTION]
        calls = [
            (call_keys, [arg for entry in entries[i : i + BULK_IDS_PER_CALL] for arg in entry])
            for i in range(0, len(entries), BULK_IDS_PER_CALL)
        ]
        results: list[tuple[str, bool]] = []
        for flat in await self._evalsha_all(self._create_many.sha, calls):
            results += ((_str(found), bool(created)) for created, found in zip(flat[::2], flat[1::2], strict=True))
        return results

    def _create_entry(self, message: Message, held: bool) -> list[str]:
        """One message's part of CREATE_MANY's arguments (see ``lua.CREATE_MANY``)."""
        status = message.status
        if status not in INITIAL_STATUSES:
            raise ValueError(f"a new message must start in one of {sorted(INITIAL_STATUSES)}, not {status}")
        if held and status is not MessageStatus.BLOCKED_TIME:
            raise ValueError("only a blocked_time message can be held")
        sub = message.subaccount
        index_keys = [keys.index(sub, "status", status.value), keys.index(sub, "channel", message.channel.value)]
        if message.batch_id:
            index_keys.append(keys.index(sub, "batch", message.batch_id))
        if message.file_name:
            index_keys.append(keys.index(sub, "file", message.file_name))
        entry = message.history[0] if message.history else None
        created = str(to_ms(message.created_at))
        pairs = _record_pairs(message, created)
        return [
            message.id,
            keys.reference(sub, message.reference_id) if message.reference_id else "",
            created,
            str(to_ms(message.due_at)) if status in WAITING_STATUSES and not held else "",
            "" if entry is None or _is_plain_birth(entry, message) else entry.model_dump_json(),
            status.value,
            str(to_ms(message.created_at + self.retention)) if status in FINAL_STATUSES else "",
            batch_key(sub, message.batch_id) if message.batch_id else "",
            str(len(index_keys)),
            *index_keys,
            str(len(pairs) // 2),
            *pairs,
        ]

    async def get(self, message_id: str) -> Message | None:
        """The message with its history, or None."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.message(message_id))
            pipe.lrange(keys.history(message_id), 0, -1)
            raw, history = await pipe.execute()
        if not raw:
            return None
        return self._load(message_id, _decode(raw), history)

    async def get_many(self, message_ids: Iterable[str], *, history: bool = False) -> list[Message]:
        """The messages that exist, in the order asked (with their history if asked), with one round trip."""
        ids = list(message_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for message_id in ids:
                pipe.hgetall(keys.message(message_id))
                if history:
                    pipe.lrange(keys.history(message_id), 0, -1)
            replies = await pipe.execute()
        pairs = zip(replies[::2], replies[1::2], strict=True) if history else ((raw, None) for raw in replies)
        return [self._load(i, _decode(raw), entries) for i, (raw, entries) in zip(ids, pairs, strict=True) if raw]

    async def ids_by_reference(self, subaccount: str, reference_ids: Sequence[str]) -> list[str]:
        """The ids of the subaccount's messages with these client references (unknown ones left out), in order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for reference_id in reference_ids:
                pipe.get(keys.reference(subaccount, reference_id))
            found = await pipe.execute()
        return [_str(i) for i in found if i is not None]

    async def find_by_reference(self, subaccount: str, reference_id: str) -> Message | None:
        """The subaccount's message with this client reference, or None."""
        found = await self.redis.get(keys.reference(subaccount, reference_id))
        if found is None:
            return None
        return await self.get(_str(found))

    async def transition(self, message_id: str, **change: Unpack[Change]) -> Transition:
        """Compare-and-set the status, with its history entry, index and event, atomically (``Change`` lists
        the arguments).

        Returns:
            What happened; ``ok`` is false when the message was not in ``from_`` (or not at that version).
        """
        await self._load_scripts()
        call_keys, args = self._transition_call(message_id, **change)
        return self._outcome(message_id, await self._transition(keys=call_keys, args=args))

    async def transition_many(
        self,
        message_ids: Sequence[str],
        *,
        from_: Iterable[MessageStatus],
        to: MessageStatus,
        now: datetime,
        reason: str | None = None,
        detail: str | None = None,
    ) -> list[Transition]:
        """The same compare-and-set for many messages, for bulk operations such as cancelling a batch: each
        message's change is what ``transition`` would do, and a call of TRANSITION_MANY changes up to
        ``BULK_IDS_PER_CALL`` messages at once (all pipelined in one round trip). Only for targets that need
        no due time or lease."""
        if to in LEASED_STATUSES or to is MessageStatus.PROGRAMMED:
            raise ValueError(f"{to} needs a lease or a due time: use transition")
        if not message_ids:
            return []
        fields = fields_to_redis({"reason": reason})
        retention = to_ms(now + self.retention) if to in FINAL_STATUSES else None
        shared = [
            " ".join(s.value for s in from_),
            to.value,
            "0",  # no version bump: the caller's jobs stay as they are (a bulk change makes them no-ops)
            str(to_ms(now)),
            _history_prefix(to, now, reason, detail),
            "0",  # no attempt counted
            "" if retention is None else str(retention),
            "keep" if to is MessageStatus.DELIVERED else "",
            str(len(fields)),
            *(item for pair in fields.items() for item in pair),
        ]
        call_keys = [keys.DUE, keys.INFLIGHT, keys.RETENTION, keys.EVENTS, keys.AWAITING]
        chunks = [message_ids[i : i + BULK_IDS_PER_CALL] for i in range(0, len(message_ids), BULK_IDS_PER_CALL)]
        replies = await self._evalsha_all(
            self._transition_many.sha, [(call_keys, [*shared, *chunk]) for chunk in chunks]
        )
        outcomes: list[Transition] = []
        for chunk, flat in zip(chunks, replies, strict=True):
            outcomes += (self._outcome(i, flat[n * 4 : n * 4 + 4]) for n, i in enumerate(chunk))
        return outcomes

    async def transitions(self, calls: Sequence[Mapping[str, Any]]) -> list[Transition]:
        """Several ``transition`` calls (each a mapping of its keyword arguments plus ``message_id``) in one
        pipelined round trip; each stays atomic, and the outcomes come back in order."""
        return await self._run_transitions(self._transition_call(**call) for call in calls)

    async def _run_transitions(self, calls: Iterable[tuple[list[str], list[str]]]) -> list[Transition]:
        built = list(calls)
        replies = await self._evalsha_all(self._transition.sha, built)
        return [self._outcome(args[0], r) for (_, args), r in zip(built, replies, strict=True)]

    async def _evalsha_all(self, sha: str, calls: Sequence[tuple[list[str], list[str]]]) -> list[Any]:
        """One script for each (keys, args), pipelined, with EVALSHA directly (``Script.__call__`` costs more
        than the call itself on a bulk path)."""
        for tries_left in (1, 0):
            await self._load_scripts()
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call_keys, args in calls:
                        pipe.evalsha(sha, len(call_keys), *call_keys, *args)
                    replies: list[Any] = await pipe.execute()
                return replies
            except NoScriptError:
                # Redis restarted or failed over (the script cache is not replicated): nothing ran; load, retry.
                self._loaded = False
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    def _transition_call(
        self,
        message_id: str,
        *,
        from_: Iterable[MessageStatus],
        to: MessageStatus,
        now: datetime,
        reason: str | None = None,
        detail: str | None = None,
        expected_version: int | None = None,
        bump_version: bool = False,
        count_attempt: bool = False,
        due_at: datetime | None = None,
        lease_until: datetime | None = None,
        lease_expired_by: datetime | None = None,
        fields: Mapping[str, Any] | None = None,
        return_record: bool = False,
        receipt_deadline: datetime | None = None,
        provider_ref: tuple[str, str] | None = None,
    ) -> tuple[list[str], list[str]]:
        if to is MessageStatus.PROGRAMMED and due_at is None:
            raise ValueError(f"due_at is required to enter {to}")
        if to in LEASED_STATUSES and lease_until is None:
            raise ValueError(f"lease_until is required to enter {to}")
        values: dict[str, Any] = {"reason": reason}
        if due_at is not None:
            values["due_at"] = due_at
        if fields:
            values.update(fields)
        pairs: list[str] = []
        for field, value in fields_to_redis(values).items():
            pairs += [field, value]
        retention = to_ms(now + self.retention) if to in FINAL_STATUSES else None
        if receipt_deadline is not None:
            awaiting = str(to_ms(receipt_deadline))
        else:
            # A delivered message may still be waiting for its read receipt (the sweep decides by channel).
            awaiting = "keep" if to is MessageStatus.DELIVERED else ""
        call_keys = [
            keys.message(message_id),
            keys.history(message_id),
            keys.DUE,
            keys.INFLIGHT,
            keys.RETENTION,
            keys.EVENTS,
            keys.AWAITING,
        ]
        if provider_ref is not None:
            call_keys.append(keys.provider_message(*provider_ref))
        return (
            call_keys,
            [
                message_id,
                " ".join(s.value for s in from_),
                to.value,
                "" if expected_version is None else str(expected_version),
                "1" if bump_version else "0",
                str(to_ms(now)),
                _history_prefix(to, now, reason, detail),
                "1" if count_attempt else "0",
                str(to_ms(due_at)) if due_at is not None and to in WAITING_STATUSES else "",
                str(to_ms(lease_until)) if lease_until is not None and to in LEASED_STATUSES else "",
                "" if retention is None else str(retention),
                "" if lease_expired_by is None else str(to_ms(lease_expired_by)),
                "1" if return_record else "0",
                awaiting,
                *pairs,
            ],
        )

    def _outcome(self, message_id: str, result: list[Any]) -> Transition:
        code, status, version, attempts = result[:4]
        status_s = _str(status)
        record = None
        if len(result) > 4:
            flat = result[4]
            record = self._load(message_id, _decode(dict(zip(flat[::2], flat[1::2], strict=True))), None)
        outcome = Transition(
            ok=int(code) == 1,
            status=MessageStatus(status_s) if status_s else None,
            job_version=int(version),
            attempts=int(attempts),
            record=record,
        )
        return outcome

    async def waiting_due(self, until: datetime, limit: int, offset: int = 0) -> list[str]:
        """Ids of programmed or blocked messages due by ``until``, oldest first (``offset`` pages on)."""
        ids = await self.redis.zrangebyscore(keys.DUE, "-inf", to_ms(until), start=offset, num=limit)
        return [_str(i) for i in ids]

    async def due_entries(
        self, until: datetime, limit: int, offset: int = 0, *, after_ms: int | None = None
    ) -> list[tuple[str, datetime]]:
        """``waiting_due`` with each message's due time; only those due after ``after_ms`` when given."""
        low = "-inf" if after_ms is None else f"({after_ms}"
        rows = await self.redis.zrangebyscore(keys.DUE, low, to_ms(until), start=offset, num=limit, withscores=True)
        return [(_str(i), from_ms(int(score))) for i, score in rows]

    async def waiting_versions(self, message_ids: Sequence[str]) -> dict[str, int]:
        """The job version of each message that is waiting (programmed or blocked_time); the others, and records
        that cannot be read, are left out. Reads two fields, not the record (the hand-over runs every second)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for message_id in message_ids:
                pipe.hmget(keys.message(message_id), ["status", "job_version"])
            replies = await pipe.execute()
        waiting = {s.value for s in WAITING_STATUSES}
        out: dict[str, int] = {}
        for message_id, (status, version) in zip(message_ids, replies, strict=True):
            if status is not None and _str(status) in waiting:
                try:
                    out[message_id] = int(version) if version is not None else 1  # absent: the default
                except ValueError:
                    continue  # not a record sendq wrote; never let one stop every hand-over
        return out

    async def awaiting_receipt(self, until: datetime, limit: int) -> list[str]:
        """Ids of messages whose receipt deadline passed by ``until``, oldest deadline first."""
        ids = await self.redis.zrangebyscore(keys.AWAITING, "-inf", to_ms(until), start=0, num=limit)
        return [_str(i) for i in ids]

    async def stop_awaiting(self, message_ids: Sequence[str]) -> None:
        """Drop messages from the receipt-deadline index (a delivered SMS waits for no read receipt)."""
        if message_ids:
            await self.redis.zrem(keys.AWAITING, *message_ids)

    async def find_by_provider_id(self, provider: str, provider_message_id: str) -> str | None:
        """The id of the message a provider knows as ``provider_message_id``, or None."""
        found = await self.redis.get(keys.provider_message(provider, provider_message_id))
        return None if found is None else _str(found)

    async def extend_lease(self, message_id: str, until: datetime) -> None:
        """Move a leased message's lease deadline (only if it is still leased: ``XX``)."""
        await self.redis.zadd(keys.INFLIGHT, {message_id: to_ms(until)}, xx=True)

    async def lease_expired(self, now: datetime, limit: int) -> list[str]:
        """Ids of processing or sending messages whose worker lease ran out by ``now``."""
        ids = await self.redis.zrangebyscore(keys.INFLIGHT, "-inf", to_ms(now), start=0, num=limit)
        return [_str(i) for i in ids]

    async def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        """Delete final messages whose retention ran out (with their history and index entries)."""
        await self._load_scripts()
        return int(await self._purge(keys=[keys.RETENTION], args=[to_ms(now), limit]))

    async def ids_in_index(self, key: str, limit: int = 100, newest_first: bool = True) -> list[str]:
        """Message ids in a secondary index (see ``sendq.keys.index``)."""
        if newest_first:
            ids = await self.redis.zrevrange(key, 0, limit - 1)
        else:
            ids = await self.redis.zrange(key, 0, limit - 1)
        return [_str(i) for i in ids]

    @staticmethod
    def _load(message_id: str, raw: dict[str, str], history: list[bytes] | list[str] | None) -> Message:
        """The record from its hash; ``history`` None when it was not read (the message then has none)."""
        values: dict[str, Any] = {"id": message_id}
        for field, value in raw.items():
            if field in _DATETIME_FIELDS:
                values[field] = from_ms(value) if value else None
            elif field in _INT_FIELDS:
                values[field] = int(value) if value else None
            elif field in _BOOL_FIELDS:
                values[field] = value == "1"
            elif field in _JSON_FIELDS:
                values[field] = json.loads(value) if value else {}
            else:
                values[field] = value if value != "" else None
        for field in _CREATION_TIME_FIELDS:
            if values.get(field) is None:
                values[field] = values["created_at"]
        entries = [HistoryEntry.model_validate_json(h) for h in history or ()]
        if history is not None and not entries:
            # Born plain and not changed since: the implied birth entry (BIRTH_REASON).
            entries = [HistoryEntry(status=values["status"], at=values["created_at"], reason=BIRTH_REASON)]
        values["history"] = entries
        return Message.model_validate(values)


#: (name, default) of the record fields ``_record_pairs`` may write, in the model's order
_RECORD_FIELDS: tuple[tuple[str, Any], ...] = tuple(
    (name, info.get_default(call_default_factory=True))
    for name, info in Message.model_fields.items()
    if name not in ("id", "history")
)


def _record_pairs(message: Message, created_ms: str) -> list[str]:
    """The field/value pairs of a new record (bulk intake encodes one per message, so this is kept lean: the
    fields are read one by one, not through ``model_dump``, which costs as much again).

    Left out, and read back as their default or the creation time (a stored message costs less memory): the id
    (it is in the key name), fields that are None or at their model default (``_load`` fills them back in; the
    Lua scripts read an absent job_version as 1 and absent attempts as 0), and ``_CREATION_TIME_FIELDS`` equal
    to ``created_at``.
    """
    pairs: list[str] = []
    for field, default in _RECORD_FIELDS:
        value = getattr(message, field)
        if value is None or value == default:
            continue
        if isinstance(value, str):  # text, and the StrEnums (channel, status)
            pairs += (field, str(value))
            continue
        if type(value) is datetime:
            encoded = str(to_ms(value))
            if encoded == created_ms and field in _CREATION_TIME_FIELDS:
                continue
        elif type(value) is int:  # segments
            encoded = str(value)
        else:
            encoded = fields_to_redis({field: value})[field]
        pairs += (field, encoded)
    return pairs


def _is_plain_birth(entry: HistoryEntry, message: Message) -> bool:
    """Whether a new message's first history entry says no more than its record does (so it is not stored)."""
    return (entry.status, entry.at, entry.reason, entry.detail, entry.attempt) == (
        message.status,
        message.created_at,
        BIRTH_REASON,
        None,
        0,
    )
