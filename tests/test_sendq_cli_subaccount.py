"""`sendq subaccount ...` as an operator uses it, against a private redis-server.

Most cases call ``sendq.cli.main`` in process (fast); the error cases check the one-line contract through a
real subprocess as well.
"""

import json
from collections.abc import Iterator

import pytest
import redis

from sendq.cli import main
from tests.conftest import RedisServer
from tests.test_sendq_cli import assert_one_line_error, sendq


@pytest.fixture
def cli(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[object]:
    """Run ``sendq`` in process against an emptied private Redis; returns (exit code, stdout, stderr)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    monkeypatch.setenv("SENDQ_REDIS_URL", redis_server.url)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    client.close()


def test_unconfigured_subaccount_shows_defaults(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("subaccount", "show", "acme")
    assert code == 0
    assert "windows:             unrestricted (any day, any time)" in out
    assert "blocked time policy: defer" in out and "max SMS segments:    10" in out


def test_set_and_show_round_trip(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(
        "subaccount", "set", "acme",
        "--timezone", "Europe/Madrid",
        "--window", "mon-fri=09:00-13:00,15:00-20:00",
        "--window", "sat=10:00-14:00",
        "--exception", "2026-12-25=closed",
        "--exception", "2026-12-24=09:00-14:00",
        "--blocked-time-policy", "hold",
        "--max-segments", "4",
        "--receipt-timeout", "3600",
        "--channels", "sms,whatsapp",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = cli("subaccount", "show", "acme", "--json")
    doc = json.loads(out)
    assert doc["windows"]["timezone"] == "Europe/Madrid"
    assert len(doc["windows"]["weekly"]["mon"]) == 2 and "sat=10:00-14:00" in cli("subaccount", "show", "acme")[1]
    assert "sun" not in doc["windows"]["weekly"]
    assert {e["day"] for e in doc["windows"]["exceptions"]} == {"2026-12-24", "2026-12-25"}
    assert doc["blocked_time_policy"] == "hold" and doc["max_sms_segments"] == 4
    assert doc["receipt_timeout_s"] == 3600 and sorted(doc["allowed_channels"]) == ["sms", "whatsapp"]
    # A later `set` changes only what it names.
    assert cli("subaccount", "set", "acme", "--max-segments", "6")[0] == 0
    doc = json.loads(cli("subaccount", "show", "acme", "--json")[1])
    assert doc["max_sms_segments"] == 6 and doc["blocked_time_policy"] == "hold"
    assert doc["windows"]["timezone"] == "Europe/Madrid"
    assert cli("subaccount", "list")[1].split() == ["acme"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--timezone", "Mars/Base"], "--timezone"),
        (["--window", "mon=25:00-26:00"], "--window"),
        (["--window", "funday=09:00-10:00"], "--window"),
        (["--exception", "2026-13-01=closed"], "--exception"),
        (["--max-segments", "0"], "--max-segments"),
        (["--receipt-timeout", "1"], "--receipt-timeout"),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(cli, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("subaccount", "set", "acme", "--max-segments", "3")[0] == 0
    code, _, err = cli("subaccount", "set", "acme", *args)
    assert code == 2 and err.startswith(f"sendq: error: {fragment}:") and len(err.strip().splitlines()) == 1
    doc = json.loads(cli("subaccount", "show", "acme", "--json")[1])
    assert doc["max_sms_segments"] == 3 and doc["windows"]["timezone"] == "UTC"


@pytest.mark.parametrize("args", [["--channels", "fax"], ["--blocked-time-policy", "maybe"]])
def test_bad_choices_are_usage_errors(cli, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        cli("subaccount", "set", "acme", *args)
    assert exited.value.code == 2


def test_allowlists(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("subaccount", "allow-term", "acme", "CASINO")[1].strip() == "enabled 'casino' for acme"
    code, out, _ = cli("subaccount", "allow-domain", "acme", "https://Shop.Example.COM/x")
    assert code == 0 and "'shop.example.com'" in out
    assert "already enabled" in cli("subaccount", "allow-domain", "acme", "shop.example.com")[1]
    doc = json.loads(cli("subaccount", "show", "acme", "--json")[1])
    assert doc["allowed_terms"] == ["casino"] and doc["allowed_domains"] == ["shop.example.com"]
    assert cli("subaccount", "revoke", "acme", "--term", "casino")[0] == 0
    code, _, err = cli("subaccount", "revoke", "acme", "--term", "casino")
    assert code == 1 and "was not enabled" in err
    code, _, err = cli("subaccount", "allow-domain", "acme", "co.uk")
    assert code == 2 and err.startswith("sendq: error: domain:")


def test_suppression_list(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("subaccount", "suppress", "acme", "+14155552671", "--channel", "sms", "--reason", "complaint")
    assert code == 0 and "suppressed +14155552671" in out
    listed = cli("subaccount", "suppressed", "acme", "--channel", "sms")[1].strip().split("\t")
    assert listed[:2] == ["+14155552671", "complaint"]
    assert cli("subaccount", "suppressed", "acme", "--channel", "whatsapp")[1] == ""
    code, _, err = cli("subaccount", "suppress", "acme", "+1 415 555 2671", "--channel", "sms")
    assert code == 2 and err.startswith("sendq: error: contact:")
    assert cli("subaccount", "unsuppress", "acme", "+14155552671", "--channel", "sms")[0] == 0
    assert cli("subaccount", "unsuppress", "acme", "+14155552671", "--channel", "sms")[0] == 1


def test_inbound_and_a_whatsapp_send(cli) -> None:  # type: ignore[no-untyped-def]
    send = ["send", "--subaccount", "acme", "--channel", "whatsapp", "--to", "+14155552671", "--body", "hi"]
    code, out, _ = cli(*send)
    assert code == 0
    status = json.loads(cli("status", out.strip(), "--json")[1])
    assert status["status"] == "error" and status["reason"] == "outside_care_window"
    code, out, _ = cli("subaccount", "inbound", "acme", "+14155552671")
    assert code == 0 and "last wrote to acme" in out
    code, out, _ = cli(*send)
    assert json.loads(cli("status", out.strip(), "--json")[1])["status"] == "programmed"


def test_errors_are_one_line_in_a_subprocess(redis_server: RedisServer) -> None:
    assert_one_line_error(sendq("subaccount", "set", "a:b", redis_url=redis_server.url), "subaccount id")
    assert_one_line_error(
        sendq("subaccount", "set", "acme", "--timezone", "Nowhere/Land", redis_url=redis_server.url), "--timezone"
    )
    assert_one_line_error(
        sendq("subaccount", "inbound", "acme", "tel:+14155552671", redis_url=redis_server.url), "contact"
    )
