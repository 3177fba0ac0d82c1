"""``sendq messages``, ``sendq batch show|cancel|reschedule`` and ``sendq import``: an operator's view of what
was sent, and whole batches and CSV files handled from the shell. They talk to Redis directly, like the other
commands.

Output: tables and reports go to stdout; notes (the next page's cursor, "nothing found") and the progress bar go
to stderr, so that ``sendq messages --json | jq`` and ``sendq import ... > report.txt`` stay clean.

``sendq import`` reads the file twice: a first pass checks the file as a whole (header, encoding, quoting, size),
so a file that is broken at row 30,000 programs nothing, instead of 29,998 messages that a fixed re-import would
send a second time; the second pass programs the rows, 500 at a time, through one ``BatchIntake``. Both passes
stream the file, so its size does not matter. Rows that are bad on their own (a wrong number, an empty body) do
not stop the import: they are counted and reported by row number.
"""

import argparse
import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from scheduler import batching
from scheduler.batching import BatchIntake, ItemResult, cancel_batch
from sendq import keys
from sendq.batches import Batch, BatchStore
from sendq.channel import Channel
from sendq.cli_args import subaccount_id
from sendq.csvrows import CsvDefaults, CsvFormatError, batch_items, check_file, open_text, read_rows
from sendq.errors import InvalidInput
from sendq.listing import MAX_LIMIT, InvalidCursor, MessageFilter, decode_cursor, list_messages
from sendq.message import Message, utcnow
from sendq.settings import Settings
from sendq.status import MessageStatus

#: the top-level commands this module adds
COMMANDS: Final = ("messages", "batch", "import")
#: rows read from the file before they are programmed (bounds memory; one progress update per chunk)
ROWS_PER_CHUNK: Final = 500
#: row errors listed after an import; the rest are counted
SHOWN_ERRORS: Final = 20
#: concurrent cancel / reschedule calls on a batch's messages
_CONCURRENCY: Final = 200
_EXIT_USAGE: Final = 2

WithRedis = Callable[[Settings, Any], Coroutine[Any, Any, int]]


# --- argument types --------------------------------------------------------------------------------------------


def _channel(value: str) -> Channel:
    try:
        return Channel(value.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown channel {value!r} (one of {', '.join(Channel)})") from None


def _status(value: str) -> MessageStatus:
    try:
        return MessageStatus(value.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown status {value!r} (one of {', '.join(MessageStatus)})") from None


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_LIMIT}, got {limit}")
    return limit


def _max_rows(value: str) -> int:
    try:
        rows = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if rows < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {rows}")
    return rows


def _nonempty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value.strip()


def add_parser(sub: Any, aware: Callable[[str], datetime]) -> None:
    """Add ``messages``, ``batch`` and ``import`` to the ``sendq`` parser (``aware``: the ISO 8601 time type)."""
    messages = sub.add_parser("messages", help="a subaccount's messages, newest first, filtered (a table)")
    messages.add_argument("--subaccount", type=subaccount_id, required=True)
    messages.add_argument("--status", type=_status, help=f"one of {', '.join(MessageStatus)}")
    messages.add_argument("--batch", type=_nonempty, metavar="ID", help="only this batch's messages")
    messages.add_argument("--channel", type=_channel, help=f"one of {', '.join(Channel)}")
    messages.add_argument("--file-name", type=_nonempty, help="only messages of an imported or uploaded file")
    messages.add_argument(
        "--from", dest="created_from", type=aware, metavar="ISO", help="created at or after (ISO 8601 with offset)"
    )
    messages.add_argument("--to", dest="created_to", type=aware, metavar="ISO", help="created before (ISO 8601)")
    messages.add_argument("--limit", type=_limit, default=50, help=f"messages per page, 1-{MAX_LIMIT} (default 50)")
    messages.add_argument("--cursor", help="the next page: the cursor a previous call printed")
    messages.add_argument(
        "--json", action="store_true", help="one JSON record per line (no history) instead of a table"
    )

    batch = sub.add_parser("batch", help="a batch: preview, cancel or reschedule all its messages")
    cmds = batch.add_subparsers(dest="action", required=True, parser_class=type(batch))
    show = cmds.add_parser("show", help="content, channel, counts per status, first and last sent time")
    cancel = cmds.add_parser("cancel", help="cancel every message of the batch that can still be cancelled")
    reschedule = cmds.add_parser("reschedule", help="a new send time for its programmed and blocked messages")
    for p in (show, cancel, reschedule):
        p.add_argument("id", help="the batch id (printed by `sendq import`)")
        p.add_argument("--subaccount", type=subaccount_id, required=True)
    show.add_argument("--json", action="store_true")
    cancel.add_argument("--by", help="who cancels (kept in each message's history)")
    reschedule.add_argument("--at", type=aware, required=True, help="the new send time, ISO 8601 with offset")

    imp = sub.add_parser("import", help="program a CSV file's rows as one batch (columns: to, body, ...)")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--subaccount", type=subaccount_id, required=True)
    imp.add_argument("--at", type=aware, help="send time of rows without send_at (default: now)")
    imp.add_argument("--channel", type=_channel, default=Channel.SMS, help="channel of rows without one (sms)")
    imp.add_argument("--created-by", help="who imports (kept on the batch and its messages)")
    imp.add_argument(
        "--max-rows", type=_max_rows, default=1_000_000, help="refuse files with more data rows (default 1000000)"
    )


def run(settings: Settings, ns: argparse.Namespace, with_redis: WithRedis) -> int:
    """Run ``messages``, ``batch`` or ``import``; ``with_redis`` is ``sendq.cli._with_scheduler``."""
    if ns.command == "import":
        return _import(settings, ns, with_redis)
    if ns.command == "messages":
        _check_listing_args(ns)  # before connecting: a bad cursor is an error even without Redis

    async def act(scheduler: Any) -> int:
        if ns.command == "messages":
            return await _messages(scheduler, ns)
        return await _batch(scheduler, ns)

    return asyncio.run(with_redis(settings, act))


def commands(with_redis: WithRedis) -> dict[str, Callable[[Settings, argparse.Namespace], int]]:
    """``sendq.cli.COMMANDS`` entries for this module's commands."""

    def command(settings: Settings, ns: argparse.Namespace) -> int:
        return run(settings, ns, with_redis)

    return dict.fromkeys(COMMANDS, command)


# --- sendq messages --------------------------------------------------------------------------------------------


def _check_listing_args(ns: argparse.Namespace) -> None:
    if ns.cursor is not None:
        try:
            decode_cursor(ns.cursor)
        except InvalidCursor:
            raise InvalidInput("--cursor", "not a cursor printed by `sendq messages` (copy it whole)") from None
    if ns.created_from is not None and ns.created_to is not None and ns.created_to <= ns.created_from:
        raise InvalidInput("--to", "must be after --from")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or redirected: not cut to 80 columns; the table is as wide as its cells.
        console = Console(highlight=False, width=400)
    return console


def message_table(messages: Iterable[Message]) -> Table:
    """The table of ``sendq messages``: one row per message, in the given order."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("ID", "CREATED", "STATUS", "REASON", "CHANNEL", "TO", "BATCH", "FILE"):
        table.add_column(name, no_wrap=name in ("ID", "CREATED", "STATUS", "CHANNEL"), overflow="fold")
    table.add_column("ATTEMPTS", justify="right")
    for m in messages:
        # Text, not str: a file name or reason is shown as written, never read as rich markup.
        cells = (m.id, _when(m.created_at), m.status.value, m.reason, m.channel.value, m.to, m.batch_id, m.file_name)
        table.add_row(*(Text(c or "-") for c in cells), Text(str(m.attempts)))
    return table


async def _messages(scheduler: Any, ns: argparse.Namespace) -> int:
    flt = MessageFilter(
        subaccount=ns.subaccount,
        status=ns.status,
        batch_id=ns.batch,
        channel=ns.channel,
        file_name=ns.file_name,
        created_from=ns.created_from,
        created_to=ns.created_to,
    )
    try:
        page = await list_messages(scheduler.store, flt, limit=ns.limit, cursor=ns.cursor)
    except InvalidCursor:  # checked before connecting; kept for callers of `_messages` alone
        raise InvalidInput("--cursor", "not a cursor printed by `sendq messages` (copy it whole)") from None
    if ns.json:
        for m in page.messages:
            # get_many loads no history: leaving it out says so (`sendq status ID --json` has it).
            print(m.model_dump_json(exclude={"history"}))
    elif page.messages:
        _stdout().print(message_table(page.messages))
    if not page.messages:
        print("sendq: no messages" + (" on this page" if page.next_cursor else ""), file=sys.stderr)
    if page.next_cursor:
        print(f"sendq: more messages: repeat with --cursor {page.next_cursor}", file=sys.stderr)
    return 0


# --- sendq batch -----------------------------------------------------------------------------------------------
# The two functions below do what sendq/api/batches.py does for POST /v1/batches/{id}/reschedule; they do not
# depend on the CLI and belong next to ``cancel_batch`` in scheduler/batching.py, shared by both.


async def batch_message_ids(redis: Any, subaccount: str, batch_id: str) -> list[str]:
    """The ids of a batch's messages (oldest first), from its index."""
    raw = await redis.zrange(keys.index(subaccount, "batch", batch_id), 0, -1)
    return [i.decode() if isinstance(i, bytes) else i for i in raw]


def _counts(counter: Counter[str] | dict[str, int] | dict[MessageStatus, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def batch_lines(batch: Batch) -> list[str]:
    """The preview of ``sendq batch show``."""
    total = sum(batch.counts.values())
    rejected = f" (and {batch.rejected} refused at intake, never stored)" if batch.rejected else ""
    content = batch.content or "-"
    if len(content) > 200:
        content = content[:200] + "…"
    return [
        f"batch:       {batch.id}",
        f"subaccount:  {batch.subaccount}",
        f"created:     {_when(batch.created_at)} by {batch.created_by or '-'}",
        f"file:        {batch.file_name or '-'}",
        f"channel:     {batch.channel or '-'}",
        f"content:     {content!r}" if batch.content else "content:     -",
        f"messages:    {total}{rejected}",
        f"statuses:    {_counts(batch.counts)}",
        f"first sent:  {_when(batch.first_sent_at)}",
        f"last sent:   {_when(batch.last_sent_at)}",
    ]


async def _batch(scheduler: Any, ns: argparse.Namespace) -> int:
    store = BatchStore(scheduler.store.redis)
    batch = await store.get(ns.subaccount, ns.id)
    if batch is None:
        print(f"sendq: no batch {ns.id!r} in subaccount {ns.subaccount}", file=sys.stderr)
        return 1
    if ns.action == "show":
        print(batch.model_dump_json(indent=2) if ns.json else "\n".join(batch_lines(batch)))
        return 0
    if ns.action == "reschedule":
        try:  # once, so that a bad --at moves nothing
            scheduler.check_horizon("at", ns.at, utcnow())
        except InvalidInput as exc:
            raise InvalidInput("--at", exc.reason) from None
    if ns.action == "cancel":
        done = await cancel_batch(scheduler, ns.subaccount, ns.id, by=ns.by)
        changed, others = done.cancelled, done.not_cancelled
        print(f"cancelled {changed} of {changed + sum(others.values())} messages of batch {ns.id}")
        if others:
            print(f"not cancelled: {_counts(others)}")
    else:
        ids = await batch_message_ids(store.redis, ns.subaccount, ns.id)
        try:
            changed, others = await batching.reschedule_messages(scheduler, ids, ns.at)
        except InvalidInput as exc:
            raise InvalidInput("--at", exc.reason) from None
        print(f"rescheduled {changed} of {len(ids)} messages of batch {ns.id} to {ns.at.isoformat()}")
        if others:
            print(f"skipped: {_counts(others)}")
    # Refused like `sendq cancel` when the batch had messages and none of them could be changed.
    return 1 if others and not changed else 0


# --- sendq import ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportReport:
    """What ``sendq import`` prints at the end: the counts and the first few row errors."""

    accepted: int = 0
    rejected: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, results: list[ItemResult]) -> None:
        for r in results:
            if r.message is not None:
                self.accepted += 1
                continue
            self.rejected += 1
            if r.error is not None and len(self.errors) < SHOWN_ERRORS:
                self.errors.append((r.number, r.error.field, r.error.reason))

    def lines(self, batch: Batch) -> list[str]:
        out = [
            f"batch:     {batch.id}",
            f"file:      {batch.file_name}",
            f"accepted:  {self.accepted}",
            f"rejected:  {self.rejected}",
        ]
        if batch.counts:
            out.append(f"statuses:  {_counts(batch.counts)}")
        out += [f"row {row}: {name}: {reason}" for row, name, reason in self.errors]
        if self.rejected > len(self.errors):
            out.append(f"... and {self.rejected - len(self.errors)} more rejected rows")
        return out


def _usage_error(message: str) -> int:
    print(f"sendq: error: {message}", file=sys.stderr)
    return _EXIT_USAGE


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )


def _defaults(ns: argparse.Namespace, file_name: str) -> CsvDefaults:
    defaults = CsvDefaults(
        subaccount=ns.subaccount,
        channel=str(ns.channel),
        send_at=ns.at,
        file_name=file_name,
        created_by=ns.created_by,
    )
    try:
        read_rows([], defaults)  # validates the defaults at once (reads nothing)
    except InvalidInput as exc:
        flag = {"send_at": "--at"}.get(exc.field, "--" + exc.field.replace("_", "-"))
        raise InvalidInput(flag, exc.reason) from None
    return defaults


def _import(settings: Settings, ns: argparse.Namespace, with_redis: WithRedis) -> int:
    path: str = ns.file
    name = os.path.basename(path.rstrip("/"))[:255] or "import.csv"
    defaults = _defaults(ns, name)
    try:
        binary = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        return _usage_error(f"{path}: {exc.strerror or exc}")
    with binary:
        if not binary.seekable():
            return _usage_error(f"{path}: not a regular file (the file is read twice: checked, then imported)")
        size = os.fstat(binary.fileno()).st_size
        with _progress() as progress:
            check = progress.add_task(f"checking {escape(name)}", total=size)
            try:
                rows = check_file(
                    binary,
                    defaults,
                    max_rows=ns.max_rows,
                    every_chunk=lambda: progress.update(check, completed=binary.tell()),
                    chunk=ROWS_PER_CHUNK,
                )
            except CsvFormatError as exc:
                return _usage_error(f"{path}: {exc}")
            if rows == 0:
                print(f"sendq: {path} has a header but no data rows: nothing to import", file=sys.stderr)
                return 1
            binary.seek(0)
            task = progress.add_task(f"importing {escape(name)}", total=size)

            async def act(scheduler: Any) -> int:
                return await _program_file(scheduler, binary, defaults, ns, progress, task)

            return asyncio.run(with_redis(settings, act))


async def _program_file(
    scheduler: Any, binary: IO[bytes], defaults: CsvDefaults, ns: argparse.Namespace, progress: Progress, task: TaskID
) -> int:
    """The second pass: program every row through one ``BatchIntake``; print the report."""
    intake = await BatchIntake.start(
        scheduler, defaults.subaccount, created_by=defaults.created_by, file_name=defaults.file_name
    )
    report = ImportReport()
    late: CsvFormatError | None = None
    text = open_text(binary)
    try:
        rows = read_rows(text, defaults, max_rows=ns.max_rows)
        while chunk := batch_items(rows):
            report.add(await intake.add(chunk))
            progress.update(task, completed=binary.tell())
    except CsvFormatError as exc:  # the file changed after it was checked
        late = exc
    except BaseException:
        # Interrupted (Ctrl-C) or Redis went away: what was programmed stays; say which batch holds it.
        with contextlib.suppress(Exception):
            await intake.finish()
        print(
            f"sendq: import stopped after {report.accepted} accepted rows, in batch {intake.batch.id} "
            f"(`sendq batch cancel {intake.batch.id} --subaccount {defaults.subaccount}` cancels them)",
            file=sys.stderr,
        )
        raise
    finally:
        text.detach()
    batch = await intake.finish()
    progress.stop()  # the report goes below the finished bar
    print("\n".join(report.lines(batch)))
    if late is not None:
        return _usage_error(f"{ns.file}: {late} (the file changed while it was imported; the rows above were kept)")
    return 0 if report.accepted else 1
