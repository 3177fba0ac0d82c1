"""Faster command packing for redis-py's asyncio connections.

redis-py 5 packs every command in pure Python even when hiredis is installed; a batch intake pipeline (one
``EVALSHA`` with ~90 arguments per message) spends about half its CPU there (measured with cProfile in the
batch benchmark). hiredis's ``pack_command`` does the same in C.
"""

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

_FAST: dict[type[AbstractConnection], type[AbstractConnection]] = {}


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # Like redis-py: a command name given with spaces ("CONFIG GET") goes out as separate words.
        if isinstance(first, str) and " " in first or isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


def use_hiredis_packing(redis: Redis) -> None:
    """Make the client's pool open connections that pack with hiredis (connections already open keep theirs)."""
    pool = redis.connection_pool
    base = pool.connection_class
    if issubclass(base, _HiredisPacking):
        return
    fast = _FAST.get(base)
    if fast is None:
        fast = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
        _FAST[base] = fast
    pool.connection_class = fast
