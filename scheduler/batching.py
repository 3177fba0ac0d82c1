"""Batch intake: many messages of one trigger programmed concurrently, in chunks, under one batch.

The JSON batch endpoint, the CSV upload and ``sendq import`` all feed items through ``BatchIntake`` a chunk at
a time, so a 100,000-row file never has to be in memory at once. An item that is refused (malformed, or past
its validity) is reported with its number and never stored; valid items are accepted even when others fail.
"""

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from scheduler.intake import BatchStamp, Prepared, Scheduler
from sendq import keys
from sendq.batches import Batch, BatchStore
from sendq.errors import InvalidInput, MessageNotFound
from sendq.message import Message, NewMessage, utcnow
from sendq.store import Transition

#: messages per pipelined ``program_many`` call: large enough to amortise round trips, small enough to bound
#: memory and how long one call holds the event loop
CHUNK = 500
#: message ids read (and cancelled in one pipeline) per step of a batch cancel
CANCEL_PAGE = 2000


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item of a batch: its message, or why it was refused (``field`` names the input field)."""

    number: int
    message: Message | None = None
    #: False when a reference_id matched an existing message (returned instead of a new one)
    created: bool = True
    error: InvalidInput | None = None


@dataclass(slots=True)
class BatchIntake:
    """Programs the items of one batch and keeps its summary (counts, channel, content preview)."""

    scheduler: Scheduler
    batches: BatchStore
    batch: Batch
    now: datetime = field(default_factory=utcnow)
    _channels: set[str] = field(default_factory=set)

    @classmethod
    async def start(
        cls,
        scheduler: Scheduler,
        subaccount: str,
        *,
        created_by: str | None = None,
        file_name: str | None = None,
        now: datetime | None = None,
    ) -> "BatchIntake":
        now = now or utcnow()
        batches = BatchStore(scheduler.store.redis)
        batch = await batches.create(subaccount, created_by=created_by, file_name=file_name, now=now)
        return cls(scheduler, batches, batch, now)

    async def add(self, items: Sequence[tuple[int, NewMessage | InvalidInput]]) -> list[ItemResult]:
        """Program a chunk of numbered items; refused ones come back with their error."""
        results: list[ItemResult] = []
        # Two stages: while one chunk is being stored (Redis runs its scripts), the next is built and judged. The
        # stores run one after another in order, so of two items with one reference_id the first is stored.
        storing: asyncio.Task[list[ItemResult]] | None = None
        try:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                valid = [item for _, item in chunk if not isinstance(item, InvalidInput)]
                prepared = await self.scheduler.prepare_many(valid, now=self.now, stamp=self._stamp)
                if storing is not None:
                    results += await storing
                storing = asyncio.create_task(self._store(chunk, prepared))
            if storing is not None:
                results += await storing
                storing = None
        finally:
            if storing is not None:  # an error on the way: do not leave a chunk being stored unobserved
                storing.cancel()
        for r in results:
            if r.message is None:
                self.batch.rejected += 1
                continue
            self.batch.accepted += 1
            self._channels.add(r.message.channel.value)
            if self.batch.content is None:
                self.batch.content = r.message.body if r.message.body is not None else r.message.template
        return results

    @property
    def _stamp(self) -> BatchStamp:
        """What the items take as messages of this batch."""
        batch = self.batch
        return BatchStamp(batch.subaccount, batch.id, batch.file_name, batch.created_by)

    async def _store(
        self, items: Sequence[tuple[int, NewMessage | InvalidInput]], prepared: Prepared
    ) -> list[ItemResult]:
        valid = [n for n, item in items if not isinstance(item, InvalidInput)]
        done = dict(zip(valid, await self.scheduler.store_prepared(prepared), strict=True))
        out = []
        for number, item in items:
            outcome = item if isinstance(item, InvalidInput) else done[number]
            if isinstance(outcome, InvalidInput):
                out.append(ItemResult(number, error=outcome))
            else:
                out.append(ItemResult(number, message=outcome.message, created=outcome.created))
        return out

    async def finish(self) -> Batch:
        """Save the summary; the batch as the API shows it."""
        channels = sorted(self._channels)
        self.batch.channel = channels[0] if len(channels) == 1 else ("mixed" if channels else None)
        await self.batches.save(self.batch)
        found = await self.batches.get(self.batch.subaccount, self.batch.id)
        return found or self.batch


@dataclass(frozen=True, slots=True)
class BatchCancel:
    cancelled: int
    #: messages that could not be cancelled, by the status that prevented it
    not_cancelled: dict[str, int]


async def cancel_batch(scheduler: Scheduler, subaccount: str, batch_id: str, *, by: str | None = None) -> BatchCancel:
    """Cancel every cancellable message of a batch, a page of pipelined compare-and-sets at a time.

    Two pages are in flight at once: Redis runs one page's scripts while this process builds the next.
    """
    index = keys.index(subaccount, "batch", batch_id)
    cancelled, kept = 0, Counter[str]()

    def count(outcomes: list[Transition]) -> None:
        nonlocal cancelled
        for outcome in outcomes:
            if outcome.ok:
                cancelled += 1
            elif outcome.status is not None:
                kept[outcome.status.value] += 1

    start = 0
    previous: asyncio.Task[list[Transition]] | None = None
    try:
        while True:
            ids = [i.decode() for i in await scheduler.store.redis.zrange(index, start, start + CANCEL_PAGE - 1)]
            if not ids:
                break
            current = asyncio.create_task(scheduler.cancel_many(ids, by=by))
            if previous is not None:
                count(await previous)
            previous = current
            start += len(ids)
        if previous is not None:
            count(await previous)
            previous = None
    finally:
        if previous is not None:  # an error on the way: do not leave a page running unobserved
            previous.cancel()
    return BatchCancel(cancelled, dict(kept))


async def reschedule_messages(scheduler: Scheduler, ids: list[str], at: datetime) -> tuple[int, Counter[str]]:
    """Move the programmed and blocked messages to ``at``: (how many moved, the others by why not).

    Why not: ``not_waiting`` (sent, cancelled, ... already), ``outside_window`` (``at`` is outside the
    subaccount's sending windows), ``purged``.

    Raises:
        InvalidInput: ``at`` is too far ahead (field ``at``); nothing is moved.
    """
    done, skipped = 0, Counter[str]()

    async def one(message_id: str) -> str | None:
        try:
            await scheduler.reschedule(message_id, at)
        except MessageNotFound:
            return "purged"
        except InvalidInput as exc:
            if exc.field == "at" and "outside the sending windows" in exc.reason:
                return "outside_window"
            if exc.field == "at":  # the horizon: the same for every message, so checked before any moved
                raise
            return "not_waiting"
        return None

    for start in range(0, len(ids), CHUNK):
        for why in await asyncio.gather(*(one(i) for i in ids[start : start + CHUNK])):
            if why is None:
                done += 1
            else:
                skipped[why] += 1
    return done, skipped
