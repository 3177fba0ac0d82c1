"""The filtered "messages sent" list (``GET /v1/messages``): newest first, cursor pagination, served from the
secondary indexes (``sendq/keys.py``), never from a SCAN.

Every index is a zset of message ids scored by creation ms, so all of them share one total order: score
descending, then id descending (Redis orders equal scores by member bytes). A cursor is a position in that
order, ``(score, id)``, so it does not depend on which index served the page; the next page is everything
strictly after it. New messages are created *now*, so they sort before any cursor handed out earlier: they
never show up on a later page (no duplicates) and they shift nothing the cursor points past (no gaps).

When filters name indexes (status, channel, batch, file), a call picks the *driving* index: the one of them
with the fewest entries in the requested window (``ZCOUNT``, one pipelined round trip). It walks that index
newest first in chunks. When other filters remain, one small read-only script reads a chunk and checks each
entry's membership in the other filters' indexes (``ZSCORE``, inside Redis: several times faster than
pipelining per-candidate commands from Python, and no ids travel back and forth). Only the page's matches
are loaded in full (``MessageStore.get_many``), and checked once more: the record is the truth, so a message
that changed status or was purged between the two reads is left out.

When no filter names an index (no filter at all, or only the created range), there is no index of all of a
subaccount's messages to walk (it would cost memory per message): every message is in exactly one status
index, its current status's (a status change moves it there atomically, with the same score), so the walk
goes over the *union* of the status indexes instead. Each round reads a chunk of every status index from the
same position, all in one ``MULTI``/``EXEC`` (one round trip, and one consistent view: a message changing
status is seen in exactly one of them; an empty index costs next to nothing, and reading every one each round,
not just those found non-empty beforehand, also sees a message that moves into a status that was empty), merges the chunks in Python by (score descending, id bytes
descending) and takes entries only as far as every index's chunk reaches (past the end of a chunk that did
not exhaust its index, entries of that index are unknown yet). The union is exhausted only when every status
index is and no entry was left over. A message that changes status keeps its place in the order, so it is
listed exactly once however it moves between pages.

Batch intake gives every message of a batch the same creation ms, so one tie group can be far larger than a
chunk. When a whole chunk is entries of the cursor's ms already walked, the walk jumps: a binary search
(``_tie_offset``, separate reads) counts the walked part of the group, and the next read starts there. Entries
can leave an index between the search and the read (a message changing status leaves its status index), and
then the count is too high: the read would start past entries not listed yet, and nothing in it would show.
So the read starts one entry earlier, in the same read (the same ``MULTI`` for the union), and the jump counts
only when that first entry is one already walked (then so is everything before it, in that one view); else the
count is made again, a few times at most, and after that the round hands back nothing (charged to the budget,
the next call goes on from the same position). A count that is too low costs nothing: walked entries are
dropped from every chunk anyway.

The work per call is bounded: at most ``SCAN_FACTOR * limit`` (and ``MAX_SCAN``) candidates are examined, in
chunks of at most ``MAX_CHUNK`` so that no script call holds Redis for more than a few ms (the union reads at
most ``limit + 1`` entries of each status index per round). When a selective combination of filters runs the
budget out before ``limit`` matches, the page holds what was found (possibly nothing) and ``next_cursor``
points at the scan position, so the client simply asks again: a short or empty page with a cursor means "keep
going", only ``next_cursor=None`` means there is nothing older.
"""

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, cast

from redis.asyncio import Redis

from sendq import keys
from sendq.channel import Channel
from sendq.message import Message
from sendq.status import MessageStatus
from sendq.store import MessageStore

#: the largest page a client may ask for
MAX_LIMIT: Final = 1000
#: at most this many index entries are examined per requested message before the call returns a cursor...
SCAN_FACTOR: Final = 50
#: ...and at most this many in all (a limit-1000 page of a selective filter would otherwise take ~0.2 s)
MAX_SCAN: Final = 20_000
#: the first chunk read from the driving index when other filters remain: ``CHUNK_FACTOR * limit``, at least
#: ``MIN_CHUNK``; later chunks are sized from the share of matches so far, at most ``MAX_CHUNK`` (one script
#: call holds Redis for a few ms at most)
CHUNK_FACTOR: Final = 4
MIN_CHUNK: Final = 64
MAX_CHUNK: Final = 1024

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
#: KEYS: 1 the driving index, 2.. the other filters' indexes. ARGV: max, min, offset, count.
#: Returns {the driving index's entries as ``ZREVRANGEBYSCORE ... WITHSCORES LIMIT offset count`` gives them,
#: one '1'/'0' per entry: whether it is in every other index}. A ZSCORE in each other index is cheaper than
#: reading the record's fields (about half the time on a million messages), and the indexes change in the
#: same atomic step as the record. Read-only; only equality is used (Lua's string ``<`` follows the server's
#: locale, not Redis's byte order, so ordering stays in Python).
_RANGE: Final = """
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', ARGV[3], ARGV[4])
local flags = {}
for i = 1, #rows, 2 do
  local ok = '1'
  for k = 2, #KEYS do
    if not redis.call('ZSCORE', KEYS[k], rows[i]) then ok = '0' break end
  end
  flags[#flags + 1] = ok
end
return {rows, table.concat(flags)}
"""
#: decoded cursor: creation ms (no leading zeros, below 2**53 so a zset score holds it exactly), then the id; any
#: id of up to 255 characters (other listings, such as batches, put their own ids in these cursors)
_CURSOR_PAYLOAD: Final = re.compile(r"(0|[1-9][0-9]{0,15}):(.{1,255})", re.DOTALL)
#: base64url without padding of the longest payload (16 digits, ":", 255 four-byte characters)
_CURSOR_TEXT: Final = re.compile(r"[A-Za-z0-9_-]{2,1400}")
_MAX_SCORE: Final = 2**53
#: how many times a jump over a tie group is worked out before the round gives up (see the module docstring)
_JUMP_TRIES: Final = 3


class InvalidCursor(ValueError):
    """The cursor was not made by ``encode_cursor`` (or was altered)."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What to list: one subaccount's messages, narrowed by any combination of the other fields.

    ``created_from`` is inclusive and ``created_to`` exclusive; both must be timezone-aware.
    """

    subaccount: str
    status: MessageStatus | None = None
    batch_id: str | None = None
    channel: Channel | None = None
    file_name: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def __post_init__(self) -> None:
        if not self.subaccount:
            raise ValueError("subaccount is required")
        # Messages without a batch or file are in no batch/file index; an empty value would list nothing.
        for name, value in (("batch_id", self.batch_id), ("file_name", self.file_name)):
            if value == "":
                raise ValueError(f"{name} must not be empty (leave it out to list every {name})")
        for name, when in (("created_from", self.created_from), ("created_to", self.created_to)):
            if when is not None and (when.tzinfo is None or when.tzinfo.utcoffset(when) is None):
                raise ValueError(f"{name} must be timezone-aware")

    def index_keys(self) -> list[str]:
        """The indexes that each hold a superset of the matches (empty: no filter names one)."""
        sub = self.subaccount
        found = []
        if self.status is not None:
            found.append(keys.index(sub, "status", self.status.value))
        if self.channel is not None:
            found.append(keys.index(sub, "channel", self.channel.value))
        if self.batch_id is not None:
            found.append(keys.index(sub, "batch", self.batch_id))
        if self.file_name is not None:
            found.append(keys.index(sub, "file", self.file_name))
        return found

    def matches(self, message: Message) -> bool:
        """Whether a loaded record passes every filter."""
        return (
            message.subaccount == self.subaccount
            and (self.status is None or message.status is self.status)
            and (self.channel is None or message.channel is self.channel)
            and (self.batch_id is None or message.batch_id == self.batch_id)
            and (self.file_name is None or message.file_name == self.file_name)
            and (self.created_from is None or message.created_at >= self.created_from)
            and (self.created_to is None or message.created_at < self.created_to)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page, newest first. ``next_cursor`` is None when nothing older matches.

    A page can be shorter than the limit (even empty) while ``next_cursor`` is set: the scan budget ran out,
    or a message changed or was purged between the index read and the record read. Keep following the cursor.
    """

    messages: list[Message]
    next_cursor: str | None


def encode_cursor(score_ms: int, message_id: str) -> str:
    """An opaque, URL-safe cursor for the position ``(score_ms, message_id)``: the next page starts after it."""
    payload = f"{score_ms}:{message_id}"
    if not _CURSOR_PAYLOAD.fullmatch(payload) or score_ms >= _MAX_SCORE:
        raise ValueError(f"cannot make a cursor of ({score_ms!r}, {message_id!r})")
    return _b64(payload.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The ``(score_ms, message_id)`` a cursor stands for.

    Raises:
        InvalidCursor: on anything ``encode_cursor`` could not have made (and on nothing else).
    """
    # The alphabet is checked first: the base64 decoder would silently drop characters outside it.
    if not isinstance(cursor, str) or not _CURSOR_TEXT.fullmatch(cursor):
        raise InvalidCursor("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = raw.decode()
    except (binascii.Error, ValueError):  # an impossible length, or bytes that are not UTF-8
        raise InvalidCursor("invalid cursor") from None
    found = _CURSOR_PAYLOAD.fullmatch(payload)
    # Only the one canonical spelling is accepted (base64 tolerates stray low bits in the last character).
    if found is None or int(found[1]) >= _MAX_SCORE or _b64(raw) != cursor:
        raise InvalidCursor("invalid cursor")
    return int(found[1]), found[2]


def _ceil_ms(when: datetime) -> int:
    """The first whole ms at or after ``when``: stored creation times are whole ms (integer maths, no floats)."""
    micros = (when - _EPOCH) // _MICROSECOND
    return -(-micros // 1000)


#: an index entry as walked: (message id, creation ms, whether it passes the other filters)
_Row = tuple[bytes, int, bool]


@dataclass(slots=True)
class _Position:
    """Where a walk down an index stands: entries strictly after ``(score, member)``.

    ``score`` None is the top (+inf); ``member`` None takes every entry with that score.
    """

    score: int | None
    member: bytes | None

    def ahead(self, member: bytes, score: int) -> bool:
        """Whether the index entry ``(member, score)`` is still ahead of this position (not walked yet)."""
        if self.score is None or score < self.score:
            return True
        return score == self.score and (self.member is None or member < self.member)

    def walked(self, rows: Sequence[_Row]) -> int:
        """How many leading rows (newest first) share this position's score and sort before its id: walked
        already."""
        skip = 0
        while skip < len(rows) and not self.ahead(rows[skip][0], rows[skip][1]):
            skip += 1
        return skip


async def _tie_offset(redis: Redis, key: str, score: int, member: bytes) -> int:
    """How many entries with ``score`` sort before ``member`` or are it (id descending): binary search over the
    group.

    Needed only when more messages share one creation ms than a whole chunk holds; each probe is a
    ``ZREVRANGEBYSCORE ... LIMIT offset 1`` within that single score, so new messages (created later) cannot
    shift it. Messages of the group that join the index meanwhile can only make the count too low (harmless),
    but walked ones that leave it, between the probes or before the read that uses the count, make it too
    high: such a read must be checked (``_jump``, ``_landed``).
    """
    low, high = 0, int(await redis.zcount(key, score, score))
    while low < high:
        mid = (low + high) // 2
        probe = await redis.zrevrangebyscore(key, score, score, start=mid, num=1)
        if probe and probe[0] >= member:
            low = mid + 1
        else:
            high = mid
    return low


def _jump(offset: int, count: int) -> tuple[int, int]:
    """Where to read (start, number of entries) for ``count`` entries past the first ``offset`` of the walk,
    as ``_tie_offset`` counted them: from the last of those ``offset`` on, so ``_landed`` can check the count."""
    return (offset - 1, count + 1) if offset else (0, count)


def _landed(pos: _Position, rows: list[_Row], offset: int) -> list[_Row] | None:
    """The rows of a read made with ``_jump(offset, ...)`` past its first one, when that one was walked
    already (so is every entry before it: nothing unlisted was jumped over); None when it was not, or there is
    none (walked entries left the index after they were counted: the count is too high)."""
    if not offset:
        return rows
    if rows and not pos.ahead(rows[0][0], rows[0][1]):
        return rows[1:]
    return None


#: a walk's next step: up to ``count`` entries strictly after a position, newest first, and whether nothing is
#: past them
_Walk = Callable[[_Position, int], Awaitable[tuple[list[_Row], bool]]]


def _bounds(pos: _Position, bottom: int | None) -> tuple[str, str]:
    """The ``ZREVRANGEBYSCORE`` max and min of a walk from ``pos`` down to ``bottom``."""
    return "+inf" if pos.score is None else str(pos.score), "-inf" if bottom is None else str(bottom)


async def _walk(
    redis: Redis, key: str, others: list[str], pos: _Position, bottom: int | None, count: int
) -> tuple[list[_Row], bool]:
    """Up to ``count`` entries of ``key`` strictly after ``pos`` with score >= ``bottom``, newest first, each
    checked for membership in every index of ``others``.

    Returns the entries and whether the index is exhausted (nothing past them).
    """
    top, low = _bounds(pos, bottom)

    async def read(start: int, num: int) -> list[_Row]:
        if not others:
            rows = await redis.zrevrangebyscore(key, top, low, start=start, num=num, withscores=True)
            return [(member, int(score), True) for member, score in rows]
        # One script call reads the chunk and checks it: no candidate ids travel back and forth.
        # EVAL, not EVALSHA: the script is small, and a NOSCRIPT error reply would drop the connection to the
        # embedded server of `sendq dev` (see MessageStore._load_scripts). redis-py types ``eval`` as its sync
        # client's; on the asyncio client it returns an awaitable.
        reply = redis.eval(_RANGE, 1 + len(others), key, *others, top, low, str(start), str(num))
        flat, flags = await cast("Awaitable[tuple[list[bytes], bytes]]", reply)
        return [(flat[i], int(float(flat[i + 1])), flags[i // 2] == ord("1")) for i in range(0, len(flat), 2)]

    rows = await read(0, count)
    if pos.walked(rows) == count and pos.score is not None and pos.member is not None:
        # The whole chunk was one tie group at or before the position: jump past it instead of paging through,
        # from the last entry counted as walked, which must still be one (see the module docstring).
        for _ in range(_JUMP_TRIES):
            offset = await _tie_offset(redis, key, pos.score, pos.member)
            landed = _landed(pos, await read(*_jump(offset, count)), offset)
            if landed is not None:
                rows = landed
                break
        else:
            # Walked entries kept leaving the group under the search: no jump is safe, and the chunk from the
            # position holds only walked entries. Nothing this round; the caller charges it to its budget.
            return [], False
    exhausted = len(rows) < count
    # The group may have changed between the reads; never hand back an entry already walked.
    return rows[pos.walked(rows) :], exhausted


async def _read_chunks(
    redis: Redis, reads: Sequence[tuple[str, int, int]], pos: _Position, bottom: int | None
) -> list[list[_Row]]:
    """For each ``(key, start, num)``: up to ``num`` entries of ``key`` from ``pos`` down to ``bottom``, from
    ``start`` on (``ZREVRANGEBYSCORE ... LIMIT start num``), all in one ``MULTI``/``EXEC``: one round trip, and
    one consistent view of every key (a message moving between them is in exactly one of the chunks)."""
    top, low = _bounds(pos, bottom)
    async with redis.pipeline(transaction=True) as pipe:
        for key, start, num in reads:
            pipe.zrevrangebyscore(key, top, low, start=start, num=num, withscores=True)
        replies = await pipe.execute()
    return [[(member, int(score), True) for member, score in rows] for rows in replies]


async def _jump_union(
    redis: Redis, union: Sequence[str], pos: _Position, bottom: int | None, count: int, chunks: list[list[_Row]]
) -> list[list[_Row]] | None:
    """Every key's chunk read again in one view: from ``pos`` for most, but past the walked part of its tie
    group for a key whose chunk in ``chunks`` (read from ``pos``) holds only walked entries, as ``_walk`` does
    (from the last entry counted as walked, which must still be one). None when no jump could be checked
    (see the module docstring)."""
    if pos.score is None or pos.member is None:
        return chunks  # a position without an id has walked nothing: there is no walked part to jump over
    reads = [(key, 0, count) for key in union]
    jumps = [i for i, chunk in enumerate(chunks) if pos.walked(chunk) == count]
    offsets: dict[int, int] = {}
    for _ in range(_JUMP_TRIES):
        for i in jumps:
            if i not in offsets:  # the first time, or the count was found too high: count again
                offsets[i] = await _tie_offset(redis, union[i], pos.score, pos.member)
                reads[i] = (union[i], *_jump(offsets[i], count))
        jumped = await _read_chunks(redis, reads, pos, bottom)
        for i in jumps:
            landed = _landed(pos, jumped[i], offsets[i])
            if landed is None:
                del offsets[i]
            else:
                jumped[i] = landed
        if len(offsets) == len(jumps):
            return jumped
    return None


async def _walk_union(
    redis: Redis, union: Sequence[str], pos: _Position, bottom: int | None, count: int
) -> tuple[list[_Row], bool]:
    """Up to ``count`` entries of the union of the zsets ``union`` strictly after ``pos`` with score >=
    ``bottom``, newest first (score descending, then id bytes descending); an id found in two of them (it
    cannot be, with one consistent read of indexes that a message leaves and joins atomically) counts once.

    Returns the entries and whether the union is exhausted (every key is, and no entry was left over).
    """
    chunks = await _read_chunks(redis, [(key, 0, count) for key in union], pos, bottom)
    if any(pos.walked(c) == count for c in chunks):
        # A key's whole chunk was one tie group at or before the position: jump past it in that key.
        jumped = await _jump_union(redis, union, pos, bottom, count, chunks)
        if jumped is None:
            # Walked entries kept leaving a group under the search: no jump is safe this round (see ``_walk``).
            return [], False
        chunks = jumped
    merged: list[_Row] = []
    #: the newest end among the chunks of keys with more past them: beyond it the union is not known yet
    reach: tuple[int, bytes] | None = None
    exhausted = True
    for chunk in chunks:
        # The group may have changed between the reads; never hand back an entry already walked.
        rows = chunk[pos.walked(chunk) :]
        merged += rows
        if len(chunk) < count:
            continue
        exhausted = False
        if not rows:
            # Only entries already walked, with more past them (a tie group changed under the jump): nothing
            # of the union is known for sure this round. The caller charges it to its budget.
            return [], False
        end = (rows[-1][1], rows[-1][0])
        if reach is None or end > reach:
            reach = end
    merged.sort(key=lambda row: (row[1], row[0]), reverse=True)
    taken: list[_Row] = []
    for row in merged:
        if reach is not None and (row[1], row[0]) < reach:
            break  # past a chunk's end: the next round reads from the last entry taken
        if taken and taken[-1][:2] == row[:2]:
            continue  # the same entry twice
        if len(taken) == count:
            return taken, False  # left over: the next round reads it again
        taken.append(row)
    return taken, exhausted


def _window(flt: MessageFilter, cursor: str | None) -> tuple[_Position, int | None] | None:
    """Where the walk starts and the lowest score it may reach; None when the window is empty."""
    bottom = None if flt.created_from is None else _ceil_ms(flt.created_from)
    pos = _Position(None if flt.created_to is None else _ceil_ms(flt.created_to) - 1, None)
    if cursor is not None:
        score, message_id = decode_cursor(cursor)
        # A cursor above the window (made under another filter) just starts at the window's top.
        if pos.score is None or score <= pos.score:
            pos = _Position(score, message_id.encode())
    if pos.score is not None and bottom is not None and pos.score < bottom:
        return None
    return pos, bottom


async def _driving_index(
    redis: Redis, flt: MessageFilter, pos: _Position, bottom: int | None
) -> tuple[str, list[str]] | None:
    """The filters' index with the fewest entries left in the window, and the others (its entries must be in
    them too); None when one of them has no entry there, so nothing can match. The filter names at least one
    index (without, the walk goes over the union of the status indexes: ``_walk_union``)."""
    candidates = flt.index_keys()
    assert candidates, "no filter names an index"
    if len(candidates) == 1:
        return candidates[0], []
    # ZCOUNT rather than ZCARD: O(log n) all the same, and it sees the created range and the cursor.
    async with redis.pipeline(transaction=False) as pipe:
        for key in candidates:
            pipe.zcount(key, "-inf" if bottom is None else bottom, "+inf" if pos.score is None else pos.score)
        sizes = [int(n) for n in await pipe.execute()]
    smallest = min(sizes)
    if smallest == 0:
        return None
    driving = candidates.pop(sizes.index(smallest))
    return driving, candidates


def _next_chunk(chunk: int, need: int, found: int, scanned: int) -> int:
    """How many entries to read next for ``need`` more matches, from the share that matched so far."""
    if not found:
        return min(2 * chunk, MAX_CHUNK)
    expected = need * scanned // found
    return max(MIN_CHUNK, min(expected + expected // 4, MAX_CHUNK))  # a quarter more: one round, usually


async def _scan(walk: _Walk, checked: bool, pos: _Position, limit: int) -> tuple[list[bytes], tuple[int, bytes] | None]:
    """Walk from ``pos`` for up to ``limit`` entries that pass the walk's check, within the budget; ``checked``:
    whether some fail it (other filters remain), or every entry matches.

    Returns the matching ids, newest first, and the position the next page starts after (None: nothing older).
    """
    budget = min(SCAN_FACTOR * limit, MAX_SCAN)
    # Without other filters every entry matches: read just one more than the page.
    chunk = min(max(MIN_CHUNK, CHUNK_FACTOR * limit), MAX_CHUNK) if checked else limit + 1
    scanned = 0
    found: list[bytes] = []
    last: tuple[int, bytes] | None = None
    # Scanning goes on to a (limit + 1)-th match when the budget allows: finding one proves there is more, and
    # running out of entries first ends the listing here instead of with an extra, empty page.
    while True:
        rows, exhausted = await walk(pos, min(chunk, budget - scanned))
        for member, score, ok in rows:
            if ok and len(found) == limit:
                return found, last  # more matches exist: the next page starts after this page's last message
            scanned += 1
            pos = _Position(score, member)
            if ok:
                found.append(member)
                last = (score, member)
        if exhausted:
            return found, None
        if not rows:
            # Only entries already walked came back: a tie group changed under the search. Charge the round to
            # the budget so a call always ends; the client's next call starts from this same position.
            scanned += chunk
        if scanned >= budget:
            # Out of budget: resume at the scan position (everything after the last match failed the filters).
            # The position is a walked entry, or a cursor's (only a position with an id makes empty rounds).
            assert pos.score is not None and pos.member is not None
            return found, (pos.score, pos.member)
        chunk = _next_chunk(chunk, limit + 1 - len(found), len(found), scanned) if checked else limit + 1 - len(found)


async def list_messages(store: MessageStore, flt: MessageFilter, *, limit: int = 50, cursor: str | None = None) -> Page:
    """One page of the subaccount's messages that pass ``flt``, newest first (creation time, then id).

    Args:
        limit: page size, 1 to ``MAX_LIMIT``.
        cursor: ``next_cursor`` of the previous page; None for the first page.

    Raises:
        ValueError: ``limit`` out of range.
        InvalidCursor: the cursor is not one this module made.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    window = _window(flt, cursor)
    if window is None:
        return Page([], None)
    pos, bottom = window
    redis = store.redis
    walk: _Walk
    if flt.index_keys():
        driving = await _driving_index(redis, flt, pos, bottom)
        if driving is None:
            return Page([], None)
        key, others = driving

        async def walk(at: _Position, count: int) -> tuple[list[_Row], bool]:
            return await _walk(redis, key, others, at, bottom, count)

        checked = bool(others)
    else:
        # No index of all of a subaccount's messages: every message is in exactly one status index.
        union = [keys.index(flt.subaccount, "status", status.value) for status in MessageStatus]

        async def walk(at: _Position, count: int) -> tuple[list[_Row], bool]:
            return await _walk_union(redis, union, at, bottom, count)

        checked = False
    found, after = await _scan(walk, checked, pos, limit)
    # The record is the truth: one that changed (status) or went (purge) since its index entry was read is left out.
    messages = [m for m in await store.get_many(member.decode() for member in found) if flt.matches(m)]
    return Page(messages, None if after is None else encode_cursor(after[0], after[1].decode()))
