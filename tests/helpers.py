"""Small builders shared by the tests."""

from datetime import datetime
from typing import Any

from sendq.channel import Channel
from sendq.message import NewMessage


def new_message(**overrides: Any) -> NewMessage:
    data: dict[str, Any] = {"subaccount": "acme", "channel": Channel.SMS, "to": "+14155552671", "body": "hello"}
    data.update(overrides)
    return NewMessage(**data)


def statuses(history: list[Any]) -> list[str]:
    return [h.status.value for h in history]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
