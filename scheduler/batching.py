"""Batch intake: many messages of one trigger programmed concurrently, in chunks, under one batch.

The JSON batch endpoint, the CSV upload and ``sendq import`` all feed items through ``BatchIntake`` a chunk at
a time, so a 100,000-row file never has to be in memory at once. An item that is refused (malformed, or past
its validity) is reported with its number and never stored; valid items are accepted even when others fail.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from scheduler.intake import Scheduler
from sendq.batches import Batch, BatchStore
from sendq.errors import InvalidInput
from sendq.message import Message, NewMessage, utcnow

#: concurrent ``program`` calls per chunk: enough to hide Redis round trips, few enough to bound memory
CHUNK = 200


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
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            results += await asyncio.gather(*(self._one(number, item) for number, item in chunk))
        for r in results:
            if r.message is None:
                self.batch.rejected += 1
                continue
            self.batch.accepted += 1
            self._channels.add(r.message.channel.value)
            if self.batch.content is None:
                self.batch.content = r.message.body if r.message.body is not None else r.message.template
        return results

    async def _one(self, number: int, item: NewMessage | InvalidInput) -> ItemResult:
        if isinstance(item, InvalidInput):
            return ItemResult(number, error=item)
        stamped = item.model_copy(
            update={
                "subaccount": self.batch.subaccount,
                "batch_id": self.batch.id,
                "file_name": self.batch.file_name or item.file_name,
                "created_by": item.created_by or self.batch.created_by,
            }
        )
        try:
            done = await self.scheduler.program(stamped, now=self.now)
        except InvalidInput as exc:
            return ItemResult(number, error=exc)
        return ItemResult(number, message=done.message, created=done.created)

    async def finish(self) -> Batch:
        """Save the summary; the batch as the API shows it."""
        channels = sorted(self._channels)
        self.batch.channel = channels[0] if len(channels) == 1 else ("mixed" if channels else None)
        await self.batches.save(self.batch)
        found = await self.batches.get(self.batch.subaccount, self.batch.id)
        return found or self.batch
