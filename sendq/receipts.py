"""Delivery receipts applied to messages: ``sent → delivered → read``, ``failed`` with the provider's reason,
and a late receipt after ``timed_out``. Duplicates, replays and out-of-order receipts change nothing, because
each one is a compare-and-set from the statuses the transition table allows into its status (a ``delivered``
after ``read`` finds no edge and is refused).

A receipt is matched by (provider, provider message id) through the link the worker wrote when it recorded the
send, never by anything the caller sends that could reach another subaccount's message. A receipt that arrives
before that link exists (the provider called back before the worker wrote ``sent``) is parked for a while and
applied by the worker right after it records the send; parking and the link are each atomic, so no receipt
falls between them.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog
from redis.asyncio import Redis

from sendq import keys
from sendq.replies import aw, text
from sendq.reports import RECEIPT_STATUSES, Receipt
from sendq.status import MessageStatus, sources_of
from sendq.store import MessageStore, Transition
from sendq.subaccounts import SubaccountStore

log = structlog.get_logger("sendq.receipts")

#: how long a receipt for a not-yet-recorded send is kept waiting for it
PARK_TTL_S: Final = 3600

#: KEYS: link, parking list. ARGV: receipt JSON, ttl seconds. Returns the message id, or false when parked.
_RESOLVE = """
local id = redis.call('GET', KEYS[1])
if id then return id end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return false
"""


@dataclass(slots=True)
class ReceiptReport:
    """What a batch of receipts did."""

    #: a status changed
    applied: int = 0
    #: duplicate, replayed or out of order: nothing changed
    unchanged: int = 0
    #: no message is known under that provider id yet: parked (logged)
    parked: int = 0
    #: intermediate statuses (``sent``) that only confirm what sendq recorded
    ignored: int = 0
    #: contacts put on a suppression list
    suppressed: int = 0
    message_ids: list[str] = field(default_factory=list)

    def add(self, other: "ReceiptReport") -> None:
        self.applied += other.applied
        self.unchanged += other.unchanged
        self.parked += other.parked
        self.ignored += other.ignored
        self.suppressed += other.suppressed
        self.message_ids += other.message_ids


def _to_json(receipt: Receipt) -> str:
    values: dict[str, Any] = asdict(receipt)
    values["status"] = receipt.status.value
    values["at"] = receipt.at.isoformat() if receipt.at else None
    return json.dumps(values, separators=(",", ":"))


def _from_json(raw: str) -> Receipt:
    values = json.loads(raw)
    values["status"] = MessageStatus(values["status"])
    values["at"] = datetime.fromisoformat(values["at"]) if values["at"] else None
    return Receipt(**values)


class ReceiptBook:
    """Applies receipts through the store (one pipelined round trip per step for a callback's receipts)."""

    def __init__(self, store: MessageStore, subaccounts: SubaccountStore) -> None:
        self.store = store
        self.subaccounts = subaccounts
        self.redis: Redis = store.redis
        self._resolve = self.redis.register_script(_RESOLVE)
        self._loaded = False

    async def apply(self, provider: str, receipts: Sequence[Receipt], now: datetime) -> ReceiptReport:
        """Apply a callback's receipts (from a verified request of ``provider``)."""
        report = ReceiptReport()
        wanted = [r for r in receipts if r.status in RECEIPT_STATUSES and r.status is not MessageStatus.SENT]
        report.ignored = len(receipts) - len(wanted)
        if not wanted:
            return report
        if not self._loaded:  # see MessageStore._load_scripts: the dev server drops the connection on NOSCRIPT
            await self.redis.script_load(_RESOLVE)
            self._loaded = True
        async with self.redis.pipeline(transaction=False) as pipe:
            for receipt in wanted:
                await self._resolve(
                    keys=[
                        keys.provider_message(provider, receipt.provider_message_id),
                        keys.early_receipts(provider, receipt.provider_message_id),
                    ],
                    args=[_to_json(receipt), PARK_TTL_S],
                    client=pipe,
                )
            found = await pipe.execute()
        known: list[tuple[str, Receipt]] = []
        for receipt, message_id in zip(wanted, found, strict=True):
            if message_id:
                known.append((text(message_id), receipt))
            else:
                report.parked += 1
                log.info(
                    "receipt.unknown_message",
                    provider=provider,
                    provider_message_id=receipt.provider_message_id,
                    status=receipt.status,
                )
        if known:
            report.add(await self._apply_known(provider, known, now))
        return report

    async def apply_parked(self, provider: str, provider_message_id: str, now: datetime) -> ReceiptReport:
        """Apply the receipts that arrived before the send was recorded (the worker calls this right after)."""
        key = keys.early_receipts(provider, provider_message_id)
        raw = await aw(self.redis.lrange(key, 0, -1))
        if not raw:
            return ReceiptReport()
        # Applied first, deleted after: an error on the way leaves them for another try (applying twice is
        # harmless). None can be added meanwhile: the link exists now, so new receipts find the message.
        report = await self.apply(provider, [_from_json(text(r)) for r in raw], now)
        await self.redis.delete(key)
        return report

    async def _apply_known(self, provider: str, items: list[tuple[str, Receipt]], now: datetime) -> ReceiptReport:
        report = ReceiptReport()
        calls = [_transition_args(provider, message_id, receipt, now) for message_id, receipt in items]
        outcomes = await self.store.transitions(calls)
        to_suppress: list[tuple[Receipt, Transition, str]] = []
        for (message_id, receipt), outcome in zip(items, outcomes, strict=True):
            if outcome.ok:
                report.applied += 1
                report.message_ids.append(message_id)
            else:
                report.unchanged += 1
            if receipt.suppress and outcome.status is not None:
                to_suppress.append((receipt, outcome, message_id))
        for receipt, outcome, message_id in to_suppress:
            record = outcome.record or await self.store.get(message_id)
            if record is not None and await self.subaccounts.suppress_recipient(
                record, reason=receipt.reason, source=f"receipt:{provider}", code=receipt.code, at=now
            ):
                report.suppressed += 1
        return report


def _transition_args(provider: str, message_id: str, receipt: Receipt, now: datetime) -> dict[str, Any]:
    # The change is stamped with this clock, so a history is always in order and retention counts from when
    # sendq learned it; the provider's own time (its clock may be skewed, or zone-less) goes in the detail.
    failed = receipt.status is MessageStatus.FAILED
    notes = []
    if failed:
        notes.append(f"{provider} reported failure" + (f" code {receipt.code}" if receipt.code else ""))
    if receipt.at is not None:
        notes.append(f"{provider} time {receipt.at.isoformat()}")
    args: dict[str, Any] = {
        "message_id": message_id,
        "from_": sources_of(receipt.status),
        "to": receipt.status,
        "now": now,
        "reason": (receipt.reason or "delivery_failed") if failed else None,
        "detail": "; ".join(notes) or None,
        "return_record": receipt.suppress,
    }
    if failed:
        args["fields"] = {"last_error_code": receipt.code, "last_error": receipt.reason}
    return args
