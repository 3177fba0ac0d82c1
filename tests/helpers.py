"""Small builders shared by the tests."""

from datetime import datetime
from typing import Any

from sendq.channel import Channel
from sendq.message import NewMessage, utcnow
from sendq.status import MessageStatus as S
from sendq.store import MessageStore


def new_message(**overrides: Any) -> NewMessage:
    data: dict[str, Any] = {"subaccount": "acme", "channel": Channel.SMS, "to": "+14155552671", "body": "hello"}
    data.update(overrides)
    return NewMessage(**data)


def phone(i: int) -> str:
    """The ``i``-th of a run of valid, distinct numbers (+1 555 numbers are not valid)."""
    return f"+1415{2_000_000 + i:07d}"


def statuses(history: list[Any]) -> list[str]:
    return [h.status.value for h in history]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


async def leave_claimed(store: MessageStore, message_id: str, to: S, *, idempotent: bool = True) -> None:
    """Leave the message as a worker killed mid-job would: claimed (and maybe sending), lease running."""
    now = utcnow()
    await store.transition(message_id, from_={S.PROGRAMMED}, to=S.PROCESSING, now=now, lease_until=now)
    if to is S.SENDING:
        await store.transition(
            message_id,
            from_={S.PROCESSING},
            to=S.SENDING,
            now=now,
            lease_until=now,
            count_attempt=True,
            fields={"idempotency_key": f"{message_id}:1", "provider": "mock", "provider_idempotent": idempotent},
        )
