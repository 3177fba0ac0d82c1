"""`sendq messages`, `sendq batch show|cancel|reschedule` and `sendq import` against a private redis-server.

The commands run in process through their own parser (``sendq.cli_ops.add_parser``) and ``cli_ops.run`` with the
real ``_with_scheduler``; the one-line error contract of ``sendq.cli.main`` is checked in a subprocess once the
commands are wired into ``sendq.cli``.
"""

import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from sendq import cli as sendq_cli, cli_ops, keys
from sendq.errors import InvalidInput
from sendq.settings import Settings
from tests.conftest import RedisServer
from tests.test_sendq_cli import assert_one_line_error, sendq

pytestmark = pytest.mark.redis

LATER = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
NUMBER = "+14155552671"


def number(i: int) -> str:
    return f"+1415{2000000 + i:07d}"


class Ops:
    """``sendq <args>`` in process; ``__call__`` returns (exit code, stdout, stderr)."""

    def __init__(self, settings: Settings, capsys: pytest.CaptureFixture[str], client: redis.Redis) -> None:
        self.settings = settings
        self.capsys = capsys
        self.redis = client
        parser = sendq_cli._Parser(prog="sendq")
        sub = parser.add_subparsers(dest="command", required=True, parser_class=sendq_cli._Parser)
        cli_ops.add_parser(sub, sendq_cli._aware)
        self.parser = parser

    def __call__(self, *args: str) -> tuple[int, str, str]:
        ns = self.parser.parse_args(list(args))
        try:
            code = cli_ops.run(self.settings, ns, sendq_cli._with_scheduler)
        finally:
            out, err = self.capsys.readouterr()
        return code, out, err

    def records(self, *args: str) -> list[dict[str, Any]]:
        """The messages ``sendq messages --json`` lists (first page)."""
        code, out, err = self("messages", "--json", "--limit", "1000", *args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    def import_(self, path: Path, *args: str) -> str:
        """Import a file that must succeed; the batch id."""
        code, out, err = self("import", str(path), "--subaccount", "acme", *args)
        assert code == 0, (out, err)
        found = re.search(r"^batch:\s+(\S+)$", out, re.MULTILINE)
        assert found, out
        return found[1]


@pytest.fixture
def ops(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Ops]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    monkeypatch.setenv("SENDQ_REDIS_URL", redis_server.url)
    yield Ops(Settings(), capsys, client)
    client.close()


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --- import ----------------------------------------------------------------------------------------------------


def test_import_reports_good_and_bad_rows_by_row_number(ops: Ops, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mixed.csv",
        "to,body",
        [
            f"{number(1)},hello one",  # row 2
            "+15550000000,invalid number",  # row 3
            f"{number(2)},",  # row 4: empty body
            f"{number(3)},too,many",  # row 5: three cells
            f"{number(4)},win at the casino",  # row 6: stored, with status error (restricted content)
            f"{number(5)},hello five",  # row 7
        ],
    )
    code, out, err = ops("import", str(path), "--subaccount", "acme", "--at", LATER.isoformat(), "--created-by", "ana")
    assert code == 0, err
    lines = out.splitlines()
    assert "accepted:  3" in lines and "rejected:  3" in lines
    assert "file:      mixed.csv" in lines
    assert any(line.startswith("row 3: to: ") for line in lines), out
    assert "row 4: row: exactly one of body or template is required" in lines or any(
        line.startswith("row 4: ") for line in lines
    )
    assert any(line.startswith("row 5: row: has 3 cells") for line in lines), out
    assert not any(line.startswith(("row 2:", "row 6:", "row 7:")) for line in lines)
    assert "statuses:  programmed 2, error 1" in lines
    records = ops.records("--subaccount", "acme")
    assert sorted(r["to"] for r in records) == [number(1), number(4), number(5)]
    assert {r["file_name"] for r in records} == {"mixed.csv"} and {r["created_by"] for r in records} == {"ana"}
    assert {r["send_at"] for r in records if r["status"] == "programmed"} == {LATER.isoformat().replace("+00:00", "Z")}


def test_import_shows_the_first_twenty_errors_and_counts_the_rest(ops: Ops, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", "to,body", [f"{number(0)},ok"] + [f"+1555000{i:04d},x" for i in range(25)])
    code, out, _ = ops("import", str(path), "--subaccount", "acme")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("row ")]
    assert len(rows) == 20 and rows[0].startswith("row 3: to:") and rows[-1].startswith("row 22: to:")
    assert "... and 5 more rejected rows" in out and "rejected:  25" in out


def test_import_with_every_row_rejected_exits_1(ops: Ops, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "none.csv", "to,body", ["+15550000000,x", "nobody,y"])
    code, out, _ = ops("import", str(path), "--subaccount", "acme")
    assert code == 1 and "accepted:  0" in out and "rejected:  2" in out


def test_a_header_only_file_imports_nothing(ops: Ops, tmp_path: Path) -> None:
    code, out, err = ops("import", str(write_csv(tmp_path / "empty.csv", "to,body", [])), "--subaccount", "acme")
    assert code == 1 and out == "" and "no data rows" in err
    assert ops.redis.keys("sendq:batch:*") == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("number,text\n+14155552671,hi\n", "unknown column"),
        ("", "the file is empty"),
        # Broken quoting on the last row: found by the first pass, so the rows before it are not programmed.
        ("to,body\n" + "".join(f"{number(i)},hi\n" for i in range(600)) + '+14155552671,"unclosed\n', "not valid CSV"),
        (b"to,body\n+14155552671,caf\xe9\n", "not UTF-8 at row 2"),
    ],
)
def test_a_file_level_error_is_one_line_and_programs_nothing(
    ops: Ops, tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = ops("import", str(path), "--subaccount", "acme")
    assert code == 2 and out == ""
    assert err.startswith(f"sendq: error: {path}: ") and fragment in err and len(err.strip().splitlines()) == 1
    assert ops.redis.keys("sendq:*") == []


def test_too_many_rows_is_a_file_level_error(ops: Ops, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "long.csv", "to,body", [f"{number(i)},hi" for i in range(5)])
    code, _, err = ops("import", str(path), "--subaccount", "acme", "--max-rows", "4")
    assert code == 2 and "too many rows" in err and ops.redis.keys("sendq:*") == []


@pytest.mark.parametrize("name", ["missing.csv", "."])
def test_a_missing_file_is_one_line(ops: Ops, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    code, out, err = ops("import", str(path), "--subaccount", "acme")
    assert code == 2 and out == "" and err.startswith(f"sendq: error: {path}: ") and len(err.splitlines()) == 1


def test_a_bad_default_names_its_flag(ops: Ops, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "to,body", [f"{NUMBER},hi"])
    with pytest.raises(InvalidInput) as refused:
        ops("import", str(path), "--subaccount", "acme", "--created-by", "x" * 201)
    assert refused.value.field == "--created-by"


def test_the_progress_bar_goes_to_stderr_when_it_is_a_terminal(
    ops: Ops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "bar.csv", "to,body", [f"{number(i)},hi" for i in range(1200)])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = ops("import", str(path), "--subaccount", "acme")
    assert code == 0 and "accepted:  1200" in out
    assert "importing bar.csv" in err and "checking bar.csv" in err


def test_a_large_import(ops: Ops, tmp_path: Path) -> None:
    rows = 20_000
    path = write_csv(tmp_path / "large.csv", "to,body", [f"{number(i)},hello {i}" for i in range(rows)])
    started = time.monotonic()
    code, out, err = ops("import", str(path), "--subaccount", "acme", "--at", LATER.isoformat())
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert f"accepted:  {rows}" in out and "rejected:  0" in out and f"statuses:  programmed {rows}" in out
    assert elapsed < 40, elapsed
    batch_id = re.search(r"^batch:\s+(\S+)$", out, re.MULTILINE)[1]  # type: ignore[index]
    assert ops.redis.zcard(f"sendq:idx:acme:batch:{batch_id}") == rows
    show = json.loads(ops("batch", "show", batch_id, "--subaccount", "acme", "--json")[1])
    assert show["accepted"] == rows and show["counts"] == {"programmed": rows}


# --- messages --------------------------------------------------------------------------------------------------


@pytest.fixture
def two_files(ops: Ops, tmp_path: Path) -> dict[str, str]:
    """a.csv: 3 sms messages (one refused for its content); w.csv: 2 whatsapp (outside the care window)."""
    a = write_csv(tmp_path / "a.csv", "to,body", [f"{number(1)},one", f"{number(2)},casino night", f"{number(3)},x"])
    w = write_csv(tmp_path / "w.csv", "to,body", [f"{number(4)},hi", f"{number(5)},hi"])
    return {
        "a": ops.import_(a, "--at", LATER.isoformat()),
        "w": ops.import_(w, "--channel", "whatsapp", "--at", LATER.isoformat()),
    }


def test_messages_filters(ops: Ops, two_files: dict[str, str]) -> None:
    every = ops.records("--subaccount", "acme")
    assert len(every) == 5
    # newest first: the second import's messages come first
    assert [r["channel"] for r in every] == ["whatsapp"] * 2 + ["sms"] * 3
    assert {r["to"] for r in ops.records("--subaccount", "acme", "--channel", "whatsapp")} == {number(4), number(5)}
    assert {r["to"] for r in ops.records("--subaccount", "acme", "--file-name", "a.csv")} == {
        number(1),
        number(2),
        number(3),
    }
    assert {r["batch_id"] for r in ops.records("--subaccount", "acme", "--batch", two_files["w"])} == {two_files["w"]}
    errors = ops.records("--subaccount", "acme", "--status", "error")
    assert sorted(r["to"] for r in errors) == [number(2), number(4), number(5)]
    assert {r["reason"] for r in errors} == {"restricted_content", "outside_care_window"} or len(errors) == 3
    both = ops.records("--subaccount", "acme", "--status", "error", "--channel", "sms")
    assert [r["to"] for r in both] == [number(2)]
    assert ops.records("--subaccount", "acme", "--status", "sent") == []
    assert ops.records("--subaccount", "other") == []
    created = min(datetime.fromisoformat(r["created_at"]) for r in every)
    assert len(ops.records("--subaccount", "acme", "--from", created.isoformat())) == 5
    assert ops.records("--subaccount", "acme", "--to", created.isoformat()) == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert len(ops.records("--subaccount", "acme", "--to", future)) == 5


def test_messages_table(ops: Ops, two_files: dict[str, str]) -> None:
    code, out, err = ops("messages", "--subaccount", "acme", "--file-name", "a.csv")
    assert code == 0 and err == ""
    header = out.splitlines()[0].split()
    assert header == ["ID", "CREATED", "STATUS", "REASON", "CHANNEL", "TO", "BATCH", "FILE", "ATTEMPTS"]
    body = [line.split() for line in out.splitlines()[2:] if line.strip()]
    assert len(body) == 3
    assert {row[5] for row in body} == {number(1), number(2), number(3)}
    assert {row[6] for row in body} == {two_files["a"]} and {row[7] for row in body} == {"a.csv"}
    assert sorted(row[2] for row in body) == ["error", "programmed", "programmed"]
    code, out, err = ops("messages", "--subaccount", "nobody")
    assert code == 0 and out == "" and err.strip() == "sendq: no messages"


def test_messages_pagination_through_the_printed_cursor(ops: Ops, tmp_path: Path) -> None:
    ops.import_(write_csv(tmp_path / "p.csv", "to,body", [f"{number(i)},hi" for i in range(7)]))
    expected = [r["id"] for r in ops.records("--subaccount", "acme")]
    seen: list[str] = []
    args = ["messages", "--subaccount", "acme", "--limit", "3", "--json"]
    pages = 0
    while True:
        code, out, err = ops(*args)
        assert code == 0
        pages += 1
        seen += [json.loads(line)["id"] for line in out.splitlines()]
        found = re.search(r"--cursor (\S+)", err)
        if found is None:
            break
        args = [*args[:6], "--json", "--cursor", found[1]]
    # A page may be short (the listing's scan budget) but the pages together are the whole list, once each.
    assert seen == expected and len(seen) == 7 and pages >= 3
    # the table prints the same hint
    code, out, err = ops("messages", "--subaccount", "acme", "--limit", "5")
    assert code == 0 and "sendq: more messages: repeat with --cursor " in err
    shown = [i for i in expected if i in out]
    assert 1 <= len(shown) <= 5 and shown == expected[: len(shown)]


@pytest.mark.parametrize("cursor", ["nonsense!", "abcd", "x" * 400])
def test_messages_refuses_an_invalid_cursor(ops: Ops, cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ops("messages", "--subaccount", "acme", "--cursor", cursor)
    assert refused.value.field == "--cursor"


@pytest.mark.parametrize(
    "args",
    [["--status", "lost"], ["--channel", "fax"], ["--limit", "0"], ["--limit", "1001"], ["--from", "2026-01-01"]],
)
def test_messages_bad_arguments_are_usage_errors(ops: Ops, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ops("messages", "--subaccount", "acme", *args)
    assert exited.value.code == 2


# --- batch -----------------------------------------------------------------------------------------------------


@pytest.fixture
def batch_id(ops: Ops, tmp_path: Path) -> str:
    """An imported batch of 5 messages: 4 programmed for later, 1 refused for its content (status error)."""
    rows = [f"{number(i)},hello {i}" for i in range(4)] + [f"{number(9)},crypto tips"]
    path = write_csv(tmp_path / "campaign.csv", "to,body", rows + ["+15550000000,bad"])
    return ops.import_(path, "--at", LATER.isoformat(), "--created-by", "ana")


def test_batch_show(ops: Ops, batch_id: str) -> None:
    code, out, _ = ops("batch", "show", batch_id, "--subaccount", "acme")
    assert code == 0
    assert f"batch:       {batch_id}" in out and "subaccount:  acme" in out
    assert "file:        campaign.csv" in out and "channel:     sms" in out
    assert "content:     'hello 0'" in out and " by ana" in out
    assert "messages:    5 (and 1 refused at intake, never stored)" in out
    assert "statuses:    programmed 4, error 1" in out
    assert "first sent:  -" in out
    doc = json.loads(ops("batch", "show", batch_id, "--subaccount", "acme", "--json")[1])
    assert doc["id"] == batch_id and doc["accepted"] == 5 and doc["rejected"] == 1
    assert doc["counts"] == {"programmed": 4, "error": 1} and doc["created_by"] == "ana"


def test_batch_reschedule_then_cancel(ops: Ops, batch_id: str) -> None:
    new_time = LATER + timedelta(days=1)
    code, out, _ = ops("batch", "reschedule", batch_id, "--subaccount", "acme", "--at", new_time.isoformat())
    assert code == 0
    assert out.splitlines() == [
        f"rescheduled 4 of 5 messages of batch {batch_id} to {new_time.isoformat()}",
        "skipped: not_waiting 1",
    ]
    records = ops.records("--subaccount", "acme", "--batch", batch_id)
    moved = {r["send_at"] for r in records if r["status"] == "programmed"}
    assert moved == {new_time.isoformat().replace("+00:00", "Z")}

    code, out, _ = ops("batch", "cancel", batch_id, "--subaccount", "acme", "--by", "ops")
    assert code == 0
    assert out.splitlines() == [f"cancelled 4 of 5 messages of batch {batch_id}", "not cancelled: error 1"]
    show = json.loads(ops("batch", "show", batch_id, "--subaccount", "acme", "--json")[1])
    assert show["counts"] == {"cancelled": 4, "error": 1}
    cancelled = ops.records("--subaccount", "acme", "--status", "cancelled")
    assert len(cancelled) == 4 and "history" not in cancelled[0]
    for r in cancelled:
        last = ops.redis.lrange(keys.history(r["id"]), -1, -1)
        assert isinstance(last, list) and b"by ops" in last[0]

    # Nothing left to change: refused, like `sendq cancel` of a sent message.
    code, out, _ = ops("batch", "cancel", batch_id, "--subaccount", "acme")
    assert code == 1 and "cancelled 0 of 5" in out and "not cancelled: cancelled 4, error 1" in out
    code, out, _ = ops("batch", "reschedule", batch_id, "--subaccount", "acme", "--at", new_time.isoformat())
    assert code == 1 and "skipped: not_waiting 5" in out


def test_batch_reschedule_too_far_ahead_moves_nothing(ops: Ops, batch_id: str) -> None:
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    with pytest.raises(InvalidInput) as refused:
        ops("batch", "reschedule", batch_id, "--subaccount", "acme", "--at", far)
    assert refused.value.field == "--at" and "ahead" in refused.value.reason
    records = ops.records("--subaccount", "acme", "--batch", batch_id)
    assert {r["send_at"] for r in records} == {LATER.isoformat().replace("+00:00", "Z")}


@pytest.mark.parametrize("action", [["show"], ["cancel"], ["reschedule", "--at", "2030-01-01T00:00:00Z"]])
def test_an_unknown_batch_is_one_line_and_exit_1(ops: Ops, batch_id: str, action: list[str]) -> None:
    for bid, sub in (("01nosuchbatch", "acme"), (batch_id, "other")):
        code, out, err = ops("batch", action[0], bid, "--subaccount", sub, *action[1:])
        assert code == 1 and out == "" and err == f"sendq: no batch {bid!r} in subaccount {sub}\n"


# --- through `sendq` itself, once wired into sendq.cli ---------------------------------------------------------

wired = pytest.mark.skipif(
    not set(cli_ops.COMMANDS) <= set(sendq_cli.COMMANDS), reason="cli_ops is not wired into sendq.cli yet"
)


@wired
def test_errors_are_one_line_in_a_subprocess(redis_server: RedisServer, tmp_path: Path) -> None:
    url = redis_server.url
    missing = tmp_path / "missing.csv"
    assert_one_line_error(sendq("import", str(missing), "--subaccount", "acme", redis_url=url), str(missing))
    bad = tmp_path / "bad.csv"
    bad.write_text("number,text\n+14155552671,hi\n")
    assert_one_line_error(sendq("import", str(bad), "--subaccount", "acme", redis_url=url), "unknown column")
    assert_one_line_error(
        sendq("messages", "--subaccount", "acme", "--cursor", "nonsense!", redis_url=url), "--cursor:"
    )
    assert_one_line_error(sendq("batch", "show", "nope", "--subaccount", "acme", redis_url=url), "no batch", code=1)
