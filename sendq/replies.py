"""Two helpers for redis-py replies, shared by the stores."""

from collections.abc import Awaitable
from typing import TypeVar, cast

T = TypeVar("T")


def aw(value: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types its commands as sync-or-async; on the asyncio client they are always awaitables."""
    return cast(Awaitable[T], value)


def text(value: bytes | str) -> str:
    """Redis replies arrive as bytes (arq's client does not decode)."""
    return value.decode() if isinstance(value, bytes) else value
