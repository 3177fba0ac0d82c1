"""Batches: every trigger (an API call, a file upload, an import) creates one, with its own id (seed 001).

A batch is a small record plus counters the store's Lua scripts keep in step with its messages (messages per
status, first and last ``sent`` time), so its preview never reads its messages one by one.

Keys: hash ``sendq:batch:{subaccount}:{id}`` (field ``record`` = JSON, ``n:{status}`` counters,
``first_sent_ms``, ``last_sent_ms``); zsets ``sendq:idx:{subaccount}:batches`` and
``sendq:idx:{subaccount}:batches:file:{name}`` scored by creation ms.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from sendq.message import from_ms, new_message_id, to_ms, utcnow
from sendq.replies import aw, text
from sendq.status import MessageStatus


def batch_key(subaccount: str, batch_id: str) -> str:
    return f"sendq:batch:{subaccount}:{batch_id}"


def batches_index(subaccount: str, file_name: str | None = None) -> str:
    base = f"sendq:idx:{subaccount}:batches"
    return base if file_name is None else f"{base}:file:{file_name}"


class Batch(BaseModel):
    """One trigger's messages, with what the "messages sent" preview shows."""

    model_config = ConfigDict(extra="forbid")

    id: str
    subaccount: str
    created_at: datetime
    created_by: str | None = None
    #: the uploaded file's name, for a file trigger
    file_name: str | None = None
    #: channel of the messages (the first message's; ``mixed`` when they differ)
    channel: str | None = None
    #: the content preview: the first message's body, or its template name
    content: str | None = None
    #: messages stored, and items refused at the door (malformed rows never became messages)
    accepted: int = 0
    rejected: int = 0
    #: messages per status now
    counts: dict[MessageStatus, int] = Field(default_factory=dict)
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None


class BatchStore:
    """Batch records and their counters."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(
        self,
        subaccount: str,
        *,
        created_by: str | None = None,
        file_name: str | None = None,
        now: datetime | None = None,
    ) -> Batch:
        """A new, empty batch; its messages name it in ``batch_id``."""
        now = now or utcnow()
        batch = Batch(
            id=new_message_id(to_ms(now)),
            subaccount=subaccount,
            created_at=now,
            created_by=created_by,
            file_name=file_name,
        )
        await self.save(batch, new=True)
        return batch

    async def save(self, batch: Batch, *, new: bool = False) -> None:
        """Write the record (not the counters, which the store's scripts own)."""
        record = batch.model_dump_json(exclude={"counts", "first_sent_at", "last_sent_at"})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(batch_key(batch.subaccount, batch.id), "record", record)
            if new:
                score = to_ms(batch.created_at)
                pipe.zadd(batches_index(batch.subaccount), {batch.id: score})
                if batch.file_name:
                    pipe.zadd(batches_index(batch.subaccount, batch.file_name), {batch.id: score})
            await pipe.execute()

    async def get(self, subaccount: str, batch_id: str) -> Batch | None:
        raw = await aw(self.redis.hgetall(batch_key(subaccount, batch_id)))
        # Counters without a record: messages that named a batch id no trigger created (`sendq send --batch`).
        return self._load(raw) if raw and b"record" in raw else None

    async def ids(
        self, subaccount: str, *, file_name: str | None = None, limit: int = 50, before_ms: int | None = None
    ) -> list[tuple[str, int]]:
        """(id, created ms) of the subaccount's batches, newest first, created before ``before_ms``."""
        top = "+inf" if before_ms is None else f"({before_ms}"
        rows = await self.redis.zrevrangebyscore(
            batches_index(subaccount, file_name), top, "-inf", start=0, num=limit, withscores=True
        )
        return [(text(i), int(score)) for i, score in rows]

    async def get_many(self, subaccount: str, batch_ids: list[str]) -> list[Batch]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hgetall(batch_key(subaccount, batch_id))
            raws = await pipe.execute()
        return [self._load(raw) for raw in raws if raw and b"record" in raw]

    @staticmethod
    def _load(raw: dict[bytes, bytes]) -> Batch:
        fields = {text(k): text(v) for k, v in raw.items()}
        batch = Batch.model_validate_json(fields.pop("record"))
        counts = {MessageStatus(k[2:]): int(v) for k, v in fields.items() if k.startswith("n:") and int(v)}
        first, last = fields.get("first_sent_ms"), fields.get("last_sent_ms")
        return batch.model_copy(
            update={
                "counts": counts,
                "first_sent_at": from_ms(first) if first else None,
                "last_sent_at": from_ms(last) if last else None,
            }
        )
