"""Redis key names and arq job names: every key sendq writes starts with ``sendq:``.

Keys are built from ids inside Lua too (``sendq/lua.py``), so sendq runs on one Redis primary (or a
Sentinel-managed one), like arq itself, not on Redis Cluster.
"""

from enum import StrEnum
from typing import Final

PREFIX: Final = "sendq:"
#: zset: waiting messages (programmed, blocked_time) by due time in ms
DUE: Final = "sendq:due"
#: zset: leased messages (processing, sending) by lease deadline in ms
INFLIGHT: Final = "sendq:inflight"
#: zset: final messages by the time their retention ends, in ms
RETENTION: Final = "sendq:retention"
#: stream: one entry per status change (for webhooks and audit)
EVENTS: Final = "sendq:events"


class JobName(StrEnum):
    """arq function names; stored in every queued job, so they never change."""

    #: send one message: args (message_id, version)
    DISPATCH = "dispatch"
    #: recovery, re-drive and retention sweeps
    SWEEP = "sweep"


def message(message_id: str) -> str:
    return f"sendq:msg:{message_id}"


def history(message_id: str) -> str:
    return f"sendq:msg:{message_id}:history"


def reference(subaccount: str, reference_id: str) -> str:
    return f"sendq:ref:{subaccount}:{reference_id}"


def index(subaccount: str, name: str, value: str) -> str:
    """Secondary index (zset of message ids scored by creation ms): status, batch, channel, file, all."""
    return f"sendq:idx:{subaccount}:{name}:{value}"


def index_all(subaccount: str) -> str:
    return f"sendq:idx:{subaccount}:all"
