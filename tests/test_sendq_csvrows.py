"""Reading an uploaded CSV file into messages row by row (sendq/csvrows.py)."""

import csv
import io
import pickle
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from sendq.channel import Channel
from sendq.csvrows import CsvDefaults, CsvFormatError, RowError, open_text, read_rows
from sendq.errors import InvalidInput
from sendq.message import NewMessage

TO = "+14155552671"
TO2 = "+14155552672"
DEFAULTS = CsvDefaults(subaccount="acme", file_name="list.csv", batch_id="b1", created_by="ana")


def upload(data: bytes) -> io.TextIOWrapper:
    """A binary upload opened as the docstring of read_rows asks (strict decoding)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")


def rows(text: str | Iterable[str], *, defaults: CsvDefaults = DEFAULTS, **limits: Any) -> list[tuple[int, object]]:
    stream = io.StringIO(text, newline="") if isinstance(text, str) else text
    return list(read_rows(stream, defaults, **limits))


def messages(text: str, defaults: CsvDefaults = DEFAULTS) -> list[NewMessage]:
    out = []
    for _, item in rows(text, defaults=defaults):
        assert isinstance(item, NewMessage), item
        out.append(item)
    return out


def errors(text: str, **limits: Any) -> list[RowError]:
    return [item for _, item in rows(text, **limits) if isinstance(item, RowError)]


def format_error(text: str | Iterable[str], **limits: Any) -> CsvFormatError:
    with pytest.raises(CsvFormatError) as info:
        rows(text, **limits)
    return info.value


# --- good files ---------------------------------------------------------------------------------------------------


def test_crlf_file_with_bom_through_text_wrapper() -> None:
    data = f"to,body\r\n{TO},hello\r\n{TO2},bye\r\n".encode("utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")
    got = list(read_rows(upload(data), DEFAULTS))
    assert [row for row, _ in got] == [2, 3]
    first, second = (item for _, item in got)
    assert isinstance(first, NewMessage) and isinstance(second, NewMessage)
    assert (first.to, first.body, second.to, second.body) == (TO, "hello", TO2, "bye")
    # The defaults fill in what the file does not say.
    assert first.subaccount == "acme" and first.channel is Channel.SMS and first.send_at is None
    assert (first.file_name, first.batch_id, first.created_by) == ("list.csv", "b1", "ana")


def test_bom_left_by_a_plain_utf8_reader_is_forgiven() -> None:
    stream = io.TextIOWrapper(io.BytesIO(f"to,body\n{TO},hi\n".encode("utf-8-sig")), encoding="utf-8", newline="")
    assert [m.body for _, m in read_rows(stream, DEFAULTS) if isinstance(m, NewMessage)] == ["hi"]


def test_a_plain_list_of_lines_is_a_stream() -> None:
    assert [row for row, _ in rows(["to,body\n", f"{TO},hi\n", f"{TO2},ho"])] == [2, 3]


def test_quoted_commas_quotes_and_newlines_stay_in_the_body() -> None:
    text = f'to,body\r\n{TO},"Hello, world"\r\n{TO},"line one\r\nline two"\r\n{TO},"say ""hi"""\r\n'
    assert [m.body for m in messages(text)] == ["Hello, world", "line one\r\nline two", 'say "hi"']


def test_header_names_are_case_insensitive_and_stripped() -> None:
    (message,) = messages(f" TO , Body ,Reference_ID\n{TO},hi,r-1\n")
    assert (message.to, message.body, message.reference_id) == (TO, "hi", "r-1")


def test_template_variables_from_var_columns() -> None:
    text = f"to,template,var.first_name,VAR_City,var.note\n{TO},welcome,Ana,Lisboa,\n"
    (message,) = messages(text)
    assert message.template == "welcome" and message.body is None
    # The variable name is kept as written (the provider matches it); an empty cell is no variable.
    assert message.variables == {"first_name": "Ana", "City": "Lisboa"}


def test_row_values_win_over_the_defaults() -> None:
    later = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    defaults = CsvDefaults(subaccount="acme", channel="sms", send_at=later)
    text = (
        "to,body,channel,send_at,validity\n"
        f"{TO},a,,,\n"
        f"{TO},b,WhatsApp,2030-02-01T10:00:00+01:00,3600\n"
        f"{TO},c,sms,2030-03-01T08:00:00Z,\n"
    )
    a, b, c = messages(text, defaults)
    assert (a.channel, a.send_at, a.validity) == (Channel.SMS, later, None)
    assert b.channel is Channel.WHATSAPP
    assert b.send_at == datetime(2030, 2, 1, 9, 0, tzinfo=UTC) and b.validity == timedelta(hours=1)
    assert c.send_at == datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


def test_per_row_channel_canonicalises_the_recipient_for_that_channel() -> None:
    (message,) = messages("to,body,channel\n  Ana@Example.COM ,hi,email\n")
    assert message.channel is Channel.EMAIL and message.to.endswith("@example.com")


def test_header_only_is_no_rows() -> None:
    assert rows("to,body\r\n") == []
    assert rows("to,body") == []


def test_blank_lines_and_empty_rows_are_skipped_but_counted() -> None:
    text = f"\nto,body\n{TO},a\n\n,\n  ,  \n{TO},b\n\n"
    assert [row for row, _ in rows(text)] == [3, 7]


# --- bad rows -----------------------------------------------------------------------------------------------------


BAD_ROWS = [
    (f"{TO},hi,,,soon", "validity", "not a number of seconds"),
    (f"{TO},hi,,,nan", "validity", "not a number of seconds"),
    (f"{TO},hi,,,-5", "validity", "must be positive"),
    (f"{TO},hi,,2030-01-31T09:00:00,", "send_at", "must be timezone-aware"),
    (f"{TO},hi,,31/01/2030 09:00,", "send_at", "not an ISO 8601 time"),
    (f"{TO},hi,fax,,", "channel", "'sms'"),
    ("+1 415 555 2671,hi,,,", "to", "E.164"),
    ("+15550001234,hi,,,", "to", ""),
    (",hi,,,", "to", "is empty"),
    (f"{TO},,,,", "row", "exactly one of body or template"),
]


@pytest.mark.parametrize(("line", "field", "reason"), BAD_ROWS)
def test_a_bad_row_names_its_column(line: str, field: str, reason: str) -> None:
    got = rows(f"to,body,channel,send_at,validity\n{TO},fine,,,\n{line}\n{TO},fine too,,,\n")
    assert [row for row, _ in got] == [2, 3, 4]
    error = got[1][1]
    assert isinstance(error, RowError), error
    assert (error.row, error.field) == (3, field) and reason in error.reason
    assert all(isinstance(item, NewMessage) for _, item in (got[0], got[2]))


def test_body_and_template_together_is_a_row_error() -> None:
    assert errors(f"to,body,template\n{TO},hi,welcome\n") == [
        RowError(2, "row", "exactly one of body or template is required")
    ]


def test_variables_without_a_template_in_that_row() -> None:
    (error,) = errors(f"to,body,template,var.name\n{TO},hi,,Ana\n")
    assert (error.row, error.field, error.reason) == (2, "row", "variables are only allowed with a template")


def test_wrong_cell_count_is_a_row_error() -> None:
    assert errors(f"to,body\n{TO},hi,extra\n{TO}\n") == [
        RowError(2, "row", "has 3 cells but the header has 2 columns"),
        RowError(3, "row", "has 1 cells but the header has 2 columns"),
    ]


def test_cell_longer_than_max_field_chars() -> None:
    assert len(TO) <= 12
    (error,) = errors(f"to,template,var.name\n{TO},welcome,{'x' * 13}\n{TO},welcome,{'x' * 12}\n", max_field_chars=12)
    assert error == RowError(2, "var.name", "is longer than 12 characters")


def test_row_numbers_after_multiline_cells_and_blank_lines() -> None:
    text = (
        "to,body\r\n"  # row 1
        f'{TO},"three\r\nline\r\nbody"\r\n'  # row 2, three lines
        "\r\n"  # row 3, blank
        f"{TO},\r\n"  # row 4: no body
        f'{TO},"two\nlines"\r\n'  # row 5
        "\r\n"  # row 6
        "\r\n"  # row 7
        "fax,hi\r\n"  # row 8: bad number
    )
    got = rows(text)
    assert [row for row, _ in got] == [2, 4, 5, 8]
    assert [(e.row, e.field) for _, e in got if isinstance(e, RowError)] == [(4, "row"), (8, "to")]


# --- the file as a whole ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "\r\n , \r\n"])
def test_empty_file(text: str) -> None:
    error = format_error(text)
    assert "empty" in str(error) and error.row is None


@pytest.mark.parametrize("header", ["body\n", "to\n", "to,channel\n", "to,reference_id,validity\n"])
def test_required_columns(header: str) -> None:
    error = format_error(header + TO + "\n")
    assert "must name the columns to and body" in str(error) and error.row == 1


def test_template_alone_is_enough() -> None:
    assert rows("to,template\n") == []


def test_unknown_column_is_named() -> None:
    error = format_error(f"to,body,boddy,subaccount\n{TO},hi,x,y\n")
    assert "unknown column 'boddy', 'subaccount'" in str(error) and error.row == 1


def test_header_errors_name_the_header_row() -> None:
    assert format_error("\n\nto,boddy\n").row == 3


def test_semicolon_separated_file_gets_a_hint() -> None:
    assert "';'" in str(format_error("to;body\n+14155552671;hi\n"))


def test_unnamed_column() -> None:
    assert "no name for column 3:" in str(format_error("to,body,\n"))
    assert "no name for column 3, 4, 5, 6, 7 and 5 more:" in str(format_error("to,body" + "," * 10 + "\n"))


@pytest.mark.parametrize("header", ["to,body,TO", "to,body, Body ", "to,template,var.name,var_name", "to,body,var.x"])
def test_duplicate_columns_and_variables_without_template_column(header: str) -> None:
    message = str(format_error(header + "\n"))
    assert "more than once" in message or "template column" in message


def test_var_prefix_without_a_name() -> None:
    assert "unknown column 'var.'" in str(format_error("to,template,var.\n"))


def test_too_many_rows_after_yielding_the_ones_within_the_limit() -> None:
    text = "to,body\n" + "".join(f"{TO},row {i}\n" for i in range(4))
    seen: list[int] = []
    with pytest.raises(CsvFormatError) as info:
        for row, _ in read_rows(io.StringIO(text, newline=""), DEFAULTS, max_rows=3):
            seen.append(row)
    assert seen == [2, 3, 4] and info.value.row == 5 and "at most 3 data rows" in str(info.value)
    assert len(rows(text, max_rows=4)) == 4


def test_blank_lines_do_not_count_towards_max_rows() -> None:
    assert len(rows(f"to,body\n\n{TO},a\n\n\n{TO},b\n", max_rows=2)) == 2


def test_field_beyond_the_csv_modules_limit_is_a_format_error() -> None:
    limit = csv.field_size_limit()
    error = format_error(f'to,body\n{TO},"{"x" * (limit + 1)}"\n', max_field_chars=limit * 2)
    assert error.row == 2 and "field limit" in str(error)
    assert csv.field_size_limit() == limit  # not changed, for anyone


@pytest.mark.parametrize("through", ["text_stream", "list"])
def test_record_longer_than_the_limit(through: str) -> None:
    text = f"to,body\n{TO},short\n{TO},{'x' * 200}\n{TO},short\n"
    source = upload(text.encode()) if through == "text_stream" else io.StringIO(text, newline="").readlines()
    seen: list[int] = []
    with pytest.raises(CsvFormatError) as info:
        for row, _ in read_rows(source, DEFAULTS, max_field_chars=1000, max_record_chars=100):
            seen.append(row)
    assert seen == [2] and info.value.row == 3 and "longer than 100 characters" in str(info.value)


def test_a_multiline_record_counts_all_its_lines_towards_the_limit() -> None:
    body = "\n".join(["y" * 30] * 4)
    error = format_error(f'to,body\n{TO},"{body}"\n', max_record_chars=100)
    assert error.row == 2


def test_text_stream_is_read_with_a_bounded_readline() -> None:
    """A file with no line break at all is refused without reading it whole."""

    class Huge(io.StringIO):
        largest = 0

        # typeshed gives the io base classes a bytes readline; a text stream returns str
        def readline(self, size: int | None = -1, /) -> str:  # type: ignore[override]
            assert size is not None and size > 0, "an unbounded readline"
            self.largest = max(self.largest, size)
            return "x" * size

    stream = Huge()
    with pytest.raises(CsvFormatError) as info:
        list(read_rows(stream, DEFAULTS, max_record_chars=1000))
    assert info.value.row == 1 and stream.largest == 1001


def test_invalid_utf8_through_a_strict_text_wrapper() -> None:
    data = b"to,body\r\n" + f"{TO},café\r\n".encode() + f"{TO},bad ".encode() + b"\xff\xfe\r\n"
    error = format_error(upload(data))
    # A strict decoder fails on the chunk it reads ahead, so the row is where reading stopped.
    assert str(error).startswith("not UTF-8 at or after row") and error.row is not None


def test_invalid_utf8_through_open_text_names_its_row() -> None:
    data = b"to,body\r\n" + f"{TO},café\r\n".encode() * 3 + f"{TO},bad ".encode() + b"\xff\r\n"
    seen: list[int] = []
    with pytest.raises(CsvFormatError) as info:
        for row, item in read_rows(open_text(io.BytesIO(data)), DEFAULTS):
            assert isinstance(item, NewMessage) and item.body == "café"
            seen.append(row)
    assert seen == [2, 3, 4] and info.value.row == 5 and str(info.value) == "not UTF-8 at row 5"


@pytest.mark.parametrize(("text", "detail"), [(f'to,body\n{TO},"open\n', "end of data"), (f'to,body\n{TO},"a"b\n', "")])
def test_broken_quoting_is_a_format_error(text: str, detail: str) -> None:
    error = format_error(text)
    assert error.row == 2 and "not valid CSV at row 2" in str(error) and detail in str(error)


def test_format_error_pickles_with_its_row() -> None:
    error = pickle.loads(pickle.dumps(CsvFormatError("not UTF-8 at row 4", 4)))
    assert (str(error), error.row) == ("not UTF-8 at row 4", 4)


# --- arguments ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defaults", "field"),
    [
        (CsvDefaults(subaccount="a:b"), "subaccount"),
        (CsvDefaults(subaccount="acme", channel="fax"), "channel"),
        (CsvDefaults(subaccount="acme", send_at=datetime(2030, 1, 1)), "send_at"),  # naive on purpose
        (CsvDefaults(subaccount="acme", file_name="x" * 256), "file_name"),
    ],
)
def test_bad_defaults_are_refused_before_reading(defaults: CsvDefaults, field: str) -> None:
    source = never_read()
    with pytest.raises(InvalidInput) as info:
        read_rows(source, defaults)
    assert info.value.field == field


def never_read() -> Iterator[str]:
    raise AssertionError("read")
    yield ""  # pragma: no cover


def test_a_str_is_not_a_stream() -> None:
    with pytest.raises(TypeError):
        read_rows("to,body\n", DEFAULTS)


# --- streaming ----------------------------------------------------------------------------------------------------


def test_100k_rows_are_read_as_they_are_consumed() -> None:
    total = 100_000
    produced = 0

    def source() -> Iterator[str]:
        nonlocal produced
        produced += 1
        yield "to,body\r\n"
        for i in range(total):
            produced += 1
            yield f"+1415{2000000 + i:07d},message {i}\r\n"

    lazy = read_rows(source(), DEFAULTS)
    assert produced == 0  # nothing read until iterated
    for _ in range(10):
        next(lazy)
    assert produced <= 12, produced
    last: tuple[int, object] = (0, None)
    for last in lazy:
        # Never more than the row being yielded (plus the header) has been read: the file is never held.
        assert produced <= last[0] + 1
    row, item = last
    assert isinstance(item, NewMessage) and item.to == f"+1415{2000000 + total - 1:07d}"
    assert row == total + 1 and produced == total + 1


# --- property: whatever csv.writer writes comes back ------------------------------------------------------------


cell_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None)
@given(bodies=st.lists(cell_text, min_size=1, max_size=8))
def test_bodies_written_by_csv_writer_round_trip(bodies: list[str]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["to", "body"])
    writer.writerows([TO, body] for body in bodies)
    got = list(read_rows(open_text(io.BytesIO(out.getvalue().encode("utf-8-sig"))), DEFAULTS))
    assert [row for row, _ in got] == list(range(2, len(bodies) + 2))
    assert [m.body for _, m in got if isinstance(m, NewMessage)] == bodies
