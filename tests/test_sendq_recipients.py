"""Recipient checks: E.164 only (none of phonenumbers' leniencies), bare e-mail addresses, web-chat ids; no network."""

import re
import socket
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given, strategies as st

from sendq.channel import Channel
from sendq.errors import InvalidInput
from sendq.recipients import canonical_email, canonical_phone, canonical_recipient, canonical_webchat_id


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("recipient checks must not touch the network")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with name resolution and new sockets forbidden (email-validator must not do DNS)."""
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "socket", _no_network)


def test_network_is_really_blocked() -> None:
    with pytest.raises(AssertionError, match="network"):
        socket.getaddrinfo("example.com", 25)


def refusal(check: Callable[[str], str], raw: str) -> str:
    with pytest.raises(InvalidInput) as info:
        check(raw)
    assert info.value.field == "to"
    return info.value.reason


# (number, the region phonenumbers files it under): the table checks itself against phonenumbers' metadata.
GOOD_PHONES = [
    ("+14155552671", "US"),
    ("+12025550143", "US"),
    ("+18003569377", "US"),  # toll-free: the digits of +1-800-FLOWERS
    ("+15062345678", "CA"),
    ("+447400123456", "GB"),
    ("+447911123456", "GG"),  # the classic "UK mobile" example is a Guernsey range in phonenumbers' metadata
    ("+4915123456789", "DE"),
    ("+493012345678", "DE"),
    ("+33612345678", "FR"),
    ("+34612345678", "ES"),
    ("+390612345678", "IT"),  # Italian numbers keep their leading 0 after the country code
    ("+919812345678", "IN"),
    ("+5511961234567", "BR"),
    ("+525512345678", "MX"),
    ("+5491123456789", "AR"),  # Argentine mobile: the 9 after +54 is part of the E.164 form
    ("+61412345678", "AU"),
    ("+819012345678", "JP"),
    ("+8613812345678", "CN"),
    ("+27821234567", "ZA"),
    ("+2348031234567", "NG"),
]


@pytest.mark.parametrize(("number", "region"), GOOD_PHONES)
def test_valid_numbers_are_returned_unchanged(number: str, region: str) -> None:
    parsed = phonenumbers.parse(number, None)
    assert phonenumbers.is_valid_number(parsed) and phonenumbers.region_code_for_number(parsed) == region
    assert canonical_phone(number) == number
    assert canonical_recipient(Channel.SMS, number) == number
    assert canonical_recipient(Channel.WHATSAPP, number) == number


@pytest.mark.parametrize("raw", [" +14155552671", "+14155552671\n", "\t+14155552671 \r\n"])
def test_surrounding_ascii_whitespace_is_forgiven(raw: str) -> None:
    assert canonical_phone(raw) == "+14155552671"


NOT_E164 = "must be an E.164 number: '+' then 2-15 ASCII digits, no spaces or punctuation"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # Every one of these phonenumbers itself reads as +14155552671 (or +18003569377).
        ("＋１４１５５５５２６７１", "U+FF0B FULLWIDTH PLUS SIGN"),
        ("+１４１５５５５２６７１", "U+FF11 FULLWIDTH DIGIT ONE"),
        ("+١٤١٥٥٥٥٢٦٧١", "U+0661 ARABIC-INDIC DIGIT ONE"),
        ("tel:+14155552671", "letters are not allowed"),
        ("+1 415 555 2671", "punctuation are not allowed"),
        ("+1 (415) 555-2671", "punctuation are not allowed"),
        ("+1-415-555-2671", "punctuation are not allowed"),
        ("+1.415.555.2671", "punctuation are not allowed"),
        ("+14155552671\u200b", "U+200B ZERO WIDTH SPACE"),
        ("\u00a0+14155552671", "U+00A0 NO-BREAK SPACE"),
        ("0014155552671", "instead of an international prefix"),
        ("+14155552671 ext. 123", "extensions"),
        ("+14155552671;ext=123", "extensions"),
        ("+14155552671x123", "extensions"),
        ("+1-800-FLOWERS", "vanity"),
        ("++14155552671", "exactly one '+'"),
        ("14155552671", "must start with '+'"),
        ("+0123", "no country calling code starts with 0"),
        ("+", "too short"),
        ("+1234567890123456", "at most 15 digits"),
        ("+1415555267\x00", "punctuation"),
    ],
)
def test_phonenumbers_leniencies_are_refused(raw: str, reason: str) -> None:
    got = refusal(canonical_phone, raw)
    assert got.startswith(NOT_E164) and reason in got, got
    assert f"(got {raw!r}" in got


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("+447700900123", "is not a valid number for any country/region (+447700900123)"),  # Ofcom drama range
        ("+5215512345678", "is not a valid number for any country/region"),  # Mexico's retired mobile "1"
        ("+12", "is not a valid number for any country/region (+12)"),
        ("+999123", "does not start with a known country calling code (+999123)"),
        ("+123456789012345", "is not a valid number"),
        # A national trunk prefix after the country code: phonenumbers drops it and calls the result valid.
        ("+4407400123456", "does not round-trip: +4407400123456 is read as the number +447400123456"),
        ("+330612345678", "does not round-trip: +330612345678 is read as the number +33612345678"),
        ("+115062345678", "does not round-trip: +115062345678 is read as the number +15062345678"),
    ],
)
def test_numbers_that_are_not_canonical_and_valid_are_refused(raw: str, reason: str) -> None:
    assert reason in refusal(canonical_phone, raw)


def test_refusal_escapes_and_truncates_the_value() -> None:
    raw = "+1\x1b[2J\u202e" + "9" * 200
    reason = refusal(canonical_phone, raw)
    assert "\x1b" not in reason and "\u202e" not in reason and "\\x1b" in reason and "\\u202e" in reason
    assert "9" * 60 not in reason and "…" in reason and len(reason) < 250


@pytest.mark.parametrize("raw", [None, 14155552671, b"+14155552671"])
def test_non_strings_are_refused(raw: object) -> None:
    for check in (canonical_phone, canonical_email, canonical_webchat_id):
        assert "must be a string" in refusal(check, raw)  # type: ignore[arg-type]


E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@given(st.one_of(st.text(max_size=30), st.from_regex(r"\A\+[0-9]{1,16}\Z")))
def test_phone_returns_its_stripped_input_or_refuses(raw: str) -> None:
    """Nothing but InvalidInput escapes, and an accepted number is exactly the input, minus surrounding blanks."""
    try:
        got = canonical_phone(raw)
    except InvalidInput as exc:
        assert exc.field == "to" and exc.reason
    else:
        assert E164.fullmatch(got) and got == raw.strip(" \t\n\r\x0b\x0c")


#: 254 characters, the limit: three 63-character labels (the label limit), one of 56 and .com
LONGEST = "a@" + ".".join(["b" * 63] * 3 + ["c" * 56, "com"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a@example.com", "a@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("user@münchen.de", "user@münchen.de"),
        ("user@xn--mnchen-3ya.de", "user@münchen.de"),  # normalized to the Unicode form of the domain
        ("User@Example.COM", "User@example.com"),  # the domain is lowercased, the local part is left alone
        ("o'brien_x-y@example.org", "o'brien_x-y@example.org"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
        (LONGEST, LONGEST),
    ],
)
def test_good_emails(raw: str, expected: str) -> None:
    assert canonical_email(raw) == expected
    assert canonical_recipient(Channel.EMAIL, raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is empty"),
        ("plainaddress", "must have an @-sign"),
        ("a@b", "It should have a period"),
        ("a@@b.com", "invalid characters: '@'"),
        ("Bob <bob@x.com>", "not a display-name form"),
        ("<bob@x.com>", "not a display-name form"),
        ("a b@x.com", "must not contain whitespace"),
        ("a@x.com\n", "must not contain whitespace"),
        (" a@x.com", "must not contain whitespace"),
        ("a@x.com\u200b", "control characters"),
        (".a@x.com", "cannot start with a period"),
        ("a..b@x.com", "two periods in a row"),
        ("a.@x.com", "period"),
        ('"ab"@x.com', "Quoting the part before the @-sign is not allowed"),
        ("a@[192.0.2.1]", "bracketed IP address"),
        ("a@localhost", "It should have a period"),
        ("a@x.test", "special-use or reserved name"),
        ("ü@x.com", "Internationalized characters before the @-sign are not supported"),
        ("ａ@x.com", "Internationalized characters"),  # a fullwidth local part would otherwise pass as SMTPUTF8
        ("a" * 65 + "@example.com", "too long before the @-sign"),
        (LONGEST + "m", "is 255 characters long; an e-mail address has at most 254"),
        # 220 characters as given, but the domain is over 253 once IDNA-encoded (xn--...), as it goes on the wire
        ("a@" + ".".join(["münchen" * 5] * 6) + ".de", "too long after the @-sign"),
    ],
)
def test_bad_emails(raw: str, reason: str) -> None:
    got = refusal(canonical_email, raw)
    assert reason in got, got


@pytest.mark.parametrize("raw", ["abc", "sess:01HZY-8f_x.y~z", "x" * 200, "!", "contact/42?a=b&c=d"])
def test_good_webchat_ids_are_returned_unchanged(raw: str) -> None:
    assert canonical_webchat_id(raw) == raw
    assert canonical_recipient(Channel.WEBCHAT, raw) == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is empty"),
        ("x" * 201, "is 201 characters long; a web-chat id has at most 200"),
        ("a b", "without whitespace"),
        (" abc", "without whitespace"),
        ("abc\n", "without whitespace"),
        ("é", "printable ASCII"),
        ("a\x00b", "printable ASCII"),
        ("a\u200bb", "printable ASCII"),
    ],
)
def test_bad_webchat_ids(raw: str, reason: str) -> None:
    assert reason in refusal(canonical_webchat_id, raw)


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_has_a_rule(channel: Channel) -> None:
    """No channel falls through; each refuses the empty recipient with InvalidInput("to", ...)."""
    assert "is empty" in refusal(lambda raw: canonical_recipient(channel, raw), "")


def test_channels_do_not_accept_each_others_recipients() -> None:
    assert "E.164" in refusal(lambda raw: canonical_recipient(Channel.SMS, raw), "a@example.com")
    assert "E.164" in refusal(lambda raw: canonical_recipient(Channel.WHATSAPP, raw), "a@example.com")
    assert "@-sign" in refusal(lambda raw: canonical_recipient(Channel.EMAIL, raw), "+14155552671")
    # A web-chat id may look like anything printable: it is an opaque token.
    assert canonical_recipient(Channel.WEBCHAT, "+14155552671") == "+14155552671"
