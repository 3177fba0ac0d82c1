"""An uploaded CSV file, read row by row into ``NewMessage`` values or per-row errors, without holding the file.

The file's text goes through the ``csv`` module one line at a time, so memory is bounded by the longest record
(``max_record_chars``), not by the file: a 100,000-row upload costs what one row costs. Problems come in two kinds:

* a ``RowError`` is yielded for a row that cannot become a message (bad number, unknown channel, wrong cell
  count, ...); the rows around it are still read, so one upload reports every bad row at once;
* a ``CsvFormatError`` is raised when the file as a whole is unusable (no header, missing, unknown or duplicate
  columns, not UTF-8, broken quoting, a record over the size limit, too many rows). Rows yielded before it stay
  valid; whether to keep them is the caller's decision.

Rows are numbered as a spreadsheet shows them: the header is row 1 and the first data row is row 2. Each CSV
record is one row, so a quoted cell spanning several lines does not shift the numbers of the rows after it (its
row is the one where the record starts), and blank lines are skipped but still counted, as a spreadsheet shows
them as empty rows.

Formula injection (cells starting with ``=``, ``+``, ...) is a concern when exporting to a spreadsheet, not when
importing from one: cells are taken as plain text.
"""

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, Final

from pydantic import ValidationError

from sendq.errors import InvalidInput
from sendq.message import NewMessage

#: the columns a file may have besides template variables; a header cell is matched case-insensitively, stripped
COLUMNS: Final = ("to", "body", "template", "channel", "send_at", "reference_id", "validity")
#: the prefixes of template-variable columns: ``var.first_name`` or ``var_first_name``
VAR_PREFIXES: Final = ("var.", "var_")
#: the default limit on one record (all its cells and separators): bounds the memory a single row can take
MAX_RECORD_CHARS: Final = 1_000_000
#: undecodable bytes read with ``errors="surrogateescape"`` come through as lone surrogates
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SHOWN_MAX: Final = 40
_FEW: Final = 5


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row of the file did not become a message.

    ``row`` is the spreadsheet row number: the header is row 1 and the first data row is row 2; a record whose
    quoted cell spans several lines is one row, numbered where it starts; blank lines count as rows.
    ``field`` is the column (``"to"``, ``"send_at"``, ``"var.name"``, ...), or ``"row"`` for a problem of the row
    as a whole (a wrong number of cells, or a rule across columns such as "exactly one of body or template").
    """

    row: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class CsvDefaults:
    """What every message of the file gets unless its row says otherwise (row values win).

    ``subaccount``, ``batch_id``, ``file_name`` and ``created_by`` cannot be set per row: they come from the
    upload (and the subaccount from who uploads), not from the file's contents.
    """

    subaccount: str
    channel: str = "sms"
    #: used when the row has no send_at; None sends at once
    send_at: datetime | None = None
    batch_id: str | None = None
    file_name: str | None = None
    created_by: str | None = None


class CsvFormatError(ValueError):
    """Raised when the file as a whole is unusable; ``row`` is where it was found (None: the file, not a row)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


@dataclass(frozen=True, slots=True)
class _Column:
    #: the name errors use: "to", "send_at", ..., or "var.NAME"
    label: str
    #: the NewMessage field it fills ("variables" for a template variable)
    field: str
    #: the variable name, as the header writes it, for a template-variable column
    var: str | None = None


def open_text(binary: IO[bytes]) -> io.TextIOWrapper:
    """Wrap an uploaded binary file the way ``read_rows`` needs it.

    UTF-8 with or without a byte-order mark (``utf-8-sig``: spreadsheet programs often write one); ``newline=""``
    so that line ends inside quoted cells reach the ``csv`` module untranslated; ``surrogateescape`` so that an
    undecodable byte is reported at its own row (a strict decoder fails on the whole 8 KiB chunk it is in, which
    may start rows earlier). Closing the wrapper, or dropping the last reference to it, closes ``binary``; call
    ``detach()`` on it first to keep ``binary`` open.
    """
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def read_rows(
    stream: Iterable[str],
    defaults: CsvDefaults,
    *,
    max_rows: int = 100_000,
    max_field_chars: int = 20_000,
    max_record_chars: int = MAX_RECORD_CHARS,
) -> Iterator[tuple[int, NewMessage | RowError]]:
    """Read a CSV file lazily: yield ``(row, message)`` for each good data row and ``(row, RowError)`` for each bad one.

    ``stream`` yields the file's lines as text. Open an uploaded file with ``open_text`` or, equivalently,
    ``io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")`` (``errors="surrogateescape"`` recommended):
    without ``newline=""`` line ends inside quoted cells are changed; without ``utf-8-sig`` a byte-order mark
    would stick to the first column's name (forgiven here; other readers may not forgive it). A text stream is read
    with a bounded ``readline``, so even a file with no line breaks costs at most ``max_record_chars``; any other
    iterable is taken line by line as it comes.

    The header is required: column names are case-insensitive and stripped; ``to`` and at least one of ``body`` /
    ``template`` are required; ``channel``, ``send_at`` (ISO 8601 with an offset), ``reference_id``, ``validity``
    (seconds) and template variables (``var.NAME`` or ``var_NAME``) are optional; any other column is an error, so
    that a misspelt column is never silently ignored. An empty cell means "not given" (the default applies); a
    row whose cells are all empty is skipped like a blank line.

    Arguments are checked (and the defaults validated) when this is called; the file is read only as the result is
    iterated, one record per step.

    Raises:
        InvalidInput: a default is invalid (for example a subaccount id or a naive ``send_at``); raised at once.
        CsvFormatError: during iteration, when the file as a whole is unusable; ``max_rows`` exceeded is raised at
            the first row beyond the limit, after the rows before it were yielded: the caller decides whether to
            keep them.
    """
    if isinstance(stream, str | bytes):
        # Iterating a str gives characters, which the csv module would take for one-character lines.
        raise TypeError("stream must yield lines (a text file or a list of lines), not one str or bytes")
    for name, value in (("max_rows", max_rows), ("max_field_chars", max_field_chars)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if max_record_chars < 1:
        raise ValueError(f"max_record_chars must be positive, got {max_record_chars}")
    _check_defaults(defaults)
    lines = _Lines(stream, max_record_chars)
    return _rows(lines, defaults, max_rows=max_rows, max_field_chars=max_field_chars)


def _check_defaults(defaults: CsvDefaults) -> None:
    """Validate the defaults once, so that a bad one is one clear error rather than the same error on every row."""
    probe: dict[str, Any] = {
        "subaccount": defaults.subaccount,
        "channel": defaults.channel,
        "to": "",  # a placeholder; its error is ignored below
        "body": "-",
        "send_at": defaults.send_at,
        "batch_id": defaults.batch_id,
        "file_name": defaults.file_name,
        "created_by": defaults.created_by,
    }
    try:
        NewMessage.model_validate(probe)
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"] and err["loc"][0] != "to":
                raise InvalidInput(str(err["loc"][0]), _reason(err["msg"])) from None


class _Lines:
    """The stream's lines, each checked before the ``csv`` module sees it: size of the record, and valid text."""

    def __init__(self, stream: Iterable[str], max_record_chars: int) -> None:
        self._text = stream if isinstance(stream, io.TextIOBase) else None
        self._lines = iter(stream)
        self._max = max_record_chars
        #: the row of the record being read, and how many characters of it were read so far; set by the reader
        self.row = 1
        self.record_chars = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            if self._text is not None:
                # Bounded: one more character than the record may still take, so that too long is detectable.
                line = self._text.readline(self._max - self.record_chars + 1)
                if not line:
                    raise StopIteration
            else:
                line = next(self._lines)
        except UnicodeDecodeError:
            # A strict decoder fails on the chunk it decodes ahead of the reader, so the bytes may be rows later.
            raise CsvFormatError(f"not UTF-8 at or after row {self.row}", self.row) from None
        self.record_chars += len(line)
        if self.record_chars > self._max:
            raise CsvFormatError(f"row {self.row} is longer than {self._max} characters", self.row)
        if not line.isascii() and _SURROGATE.search(line):
            raise CsvFormatError(f"not UTF-8 at row {self.row}", self.row)
        return line

    def start_record(self, row: int) -> None:
        self.row = row
        self.record_chars = 0


def _records(lines: _Lines) -> Iterator[tuple[int, list[str]]]:
    """The CSV records with their row numbers, blank ones included (they count as rows)."""
    # strict: broken quoting (an unclosed quote, text after a closing quote) is refused rather than guessed at,
    # since the rows after it could not be trusted. The field_size_limit stays global and untouched.
    reader = csv.reader(lines, strict=True)
    row = 1
    while True:
        lines.start_record(row)
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvFormatError(f"not valid CSV at row {row}: {exc}", row) from None
        yield row, record
        row += 1


def _blank(record: list[str]) -> bool:
    return not any(map(str.strip, record))


def _rows(
    lines: _Lines, defaults: CsvDefaults, *, max_rows: int, max_field_chars: int
) -> Iterator[tuple[int, NewMessage | RowError]]:
    for row, record, columns in _data_records(lines, max_rows=max_rows):
        yield row, _message(row, record, columns, defaults, max_field_chars)


def _data_records(lines: _Lines, *, max_rows: int) -> Iterator[tuple[int, list[str], list[_Column]]]:
    """The data records with their row numbers and the header's columns; raises ``CsvFormatError`` for a problem
    of the whole file (header, quoting, encoding, size). Row contents are not checked here."""
    records = _records(lines)
    columns: list[_Column] | None = None
    count = 0
    for row, record in records:
        if _blank(record):
            continue
        if columns is None:
            columns = _header(row, record)
            continue
        count += 1
        if count > max_rows:
            raise CsvFormatError(f"too many rows: at most {max_rows} data rows are allowed (row {row} is beyond)", row)
        yield row, record, columns
    if columns is None:
        raise CsvFormatError("the file is empty: the first row must be a header (to, body, ...)")


def _shown(name: str) -> str:
    # Header cells come from the upload: escaped (no control characters in logs) and short.
    return repr(name[:_SHOWN_MAX]) + ("…" if len(name) > _SHOWN_MAX else "")


def _column(name: str) -> _Column | None:
    lowered = name.lower()
    if lowered in COLUMNS:
        return _Column(lowered, lowered)
    if lowered.startswith(VAR_PREFIXES):
        var = name[len("var.") :].strip()
        return _Column(f"var.{var}", "variables", var) if var else None
    return None


def _header(row: int, record: list[str]) -> list[_Column]:
    """The columns the header names, or a ``CsvFormatError`` saying what is wrong with it."""
    # Forgiven: a byte-order mark left by a stream opened as "utf-8" rather than "utf-8-sig".
    names = [cell.strip() for cell in [record[0].removeprefix("\ufeff"), *record[1:]]]
    unnamed = [str(i) for i, name in enumerate(names, start=1) if not name]
    if unnamed:
        raise CsvFormatError(f"the header has no name for column {_few(unnamed)}: name it or remove it", row)
    found = [(name, _column(name)) for name in names]
    unknown = [name for name, column in found if column is None]
    if unknown:
        raise CsvFormatError(_unknown_message(unknown), row)
    columns = [column for _, column in found if column is not None]
    seen: set[str] = set()
    for column in columns:
        # var.Name and var_name are the same column written twice, most likely by mistake.
        key = column.label.casefold()
        if key in seen:
            raise CsvFormatError(f"the header names column {_shown(column.label)} more than once", row)
        seen.add(key)
    fields = {column.field for column in columns}
    if "to" not in fields or not fields & {"body", "template"}:
        raise CsvFormatError("the header must name the columns to and body (or template for template messages)", row)
    if "variables" in fields and "template" not in fields:
        raise CsvFormatError("var. columns are template variables: the header must also name a template column", row)
    return columns


def _few(items: list[str]) -> str:
    # A header can have thousands of cells; an error message names the first few.
    more = f" and {len(items) - _FEW} more" if len(items) > _FEW else ""
    return ", ".join(items[:_FEW]) + more


def _unknown_message(unknown: list[str]) -> str:
    shown = _few([_shown(name) for name in unknown])
    hint = ""
    if any(";" in name or "\t" in name for name in unknown):
        hint = " (the file seems to use ';' or tabs between cells: save it as comma-separated)"
    known = ", ".join(COLUMNS)
    return f"unknown column {shown}{hint}; the columns are {known}, and var.NAME for template variables"


def _message(
    row: int, record: list[str], columns: list[_Column], defaults: CsvDefaults, max_field_chars: int
) -> NewMessage | RowError:
    """One data row as a message, or the first problem with it."""
    if len(record) != len(columns):
        return RowError(row, "row", f"has {len(record)} cells but the header has {len(columns)} columns")
    given: dict[str, str] = {}
    variables: dict[str, str] = {}
    for column, cell in zip(columns, record, strict=True):
        if len(cell) > max_field_chars:
            return RowError(row, column.label, f"is longer than {max_field_chars} characters")
        if not cell.strip():
            continue  # empty means not given
        if column.var is not None:
            variables[column.var] = cell
        else:
            given[column.field] = cell
    if "to" not in given:
        return RowError(row, "to", "is empty: every row needs a recipient")
    try:
        data = _data(given, variables, defaults)
    except InvalidInput as exc:
        return RowError(row, exc.field, exc.reason)
    try:
        return NewMessage.model_validate(data)
    except ValidationError as exc:
        return _row_error(row, exc)


def _data(given: dict[str, str], variables: dict[str, str], defaults: CsvDefaults) -> dict[str, Any]:
    """The NewMessage input of a row: its non-empty cells over the defaults."""
    data: dict[str, Any] = {
        "subaccount": defaults.subaccount,
        "channel": defaults.channel,
        "send_at": defaults.send_at,
        "batch_id": defaults.batch_id,
        "file_name": defaults.file_name,
        "created_by": defaults.created_by,
        **given,
    }
    if "channel" in given:
        # Spreadsheet users write "SMS" or "WhatsApp"; the channel names are lower case.
        data["channel"] = given["channel"].strip().lower()
    if "send_at" in given:
        data["send_at"] = _time(given["send_at"])
    if "validity" in given:
        data["validity"] = _seconds(given["validity"])
    if variables:
        data["variables"] = variables
    return data


def _time(text: str) -> datetime:
    # Parsed here rather than by pydantic, which would also take a bare number as a Unix time and word a
    # spreadsheet's "31/01/2026 09:00" less helpfully. A naive time is refused by NewMessage, in its own words.
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            "send_at", f"is not an ISO 8601 time such as 2026-01-31T09:00:00+01:00 (got {_shown(text)})"
        ) from None


def _seconds(text: str) -> timedelta:
    try:
        seconds = float(text)
        if not math.isfinite(seconds):
            raise ValueError(text)
        return timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise InvalidInput("validity", f"is not a number of seconds such as 3600 (got {_shown(text)})") from None


def _reason(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _row_error(row: int, exc: ValidationError) -> RowError:
    """The first validation error of a row, named by its column (as the file names it)."""
    err = exc.errors(include_url=False)[0]
    loc = err["loc"]
    if not loc:
        field = "row"  # a rule across columns, e.g. exactly one of body or template
    elif loc[0] == "variables" and len(loc) > 1:
        field = f"var.{loc[1]}"
    else:
        field = str(loc[0])
    return RowError(row, field, _reason(err["msg"]))


def batch_items(
    rows: Iterator[tuple[int, NewMessage | RowError]], n: int = 500
) -> list[tuple[int, NewMessage | InvalidInput]]:
    """The next ``n`` rows of ``read_rows`` as batch-intake items (a bad row becomes its ``InvalidInput``);
    empty when the file is done. Callers loop, so a large file is programmed a chunk at a time."""
    out: list[tuple[int, NewMessage | InvalidInput]] = []
    for number, row in rows:
        out.append((number, InvalidInput(row.field, row.reason) if isinstance(row, RowError) else row))
        if len(out) >= n:
            break
    return out


def check_file(
    binary: IO[bytes],
    defaults: CsvDefaults,
    *,
    max_rows: int,
    every_chunk: Callable[[], None] | None = None,
    chunk: int = 500,
) -> int:
    """The first pass over an upload or import: read every row, write nothing, count the data rows.

    A file that breaks at row 30,000 (bad quoting, not UTF-8, too many rows) must program nothing, or fixing and
    re-sending it would send its first rows twice. Raises ``CsvFormatError``; leaves ``binary`` open (at its end)
    for the caller to rewind. ``every_chunk`` is called every ``chunk`` rows and at the end (progress bars).
    """
    _check_defaults(defaults)
    text = open_text(binary)
    try:
        rows = 0
        # Only what can break the whole file is checked here; each row's contents are checked (and its problems
        # reported by row) when the file is read again to program it, so the costly part runs once per row.
        for rows, _ in enumerate(_data_records(_Lines(text, MAX_RECORD_CHARS), max_rows=max_rows), start=1):
            if every_chunk is not None and rows % chunk == 0:
                every_chunk()
        if every_chunk is not None:
            every_chunk()
        return rows
    finally:
        text.detach()
