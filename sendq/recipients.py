"""Recipient checks: the one canonical form of a phone number, e-mail address or web-chat id, or a refusal.

Strict on purpose. ``phonenumbers`` on its own reads fullwidth and Arabic-Indic digits, ``tel:`` URIs, spaces and
brackets, trailing zero-width spaces, extensions, vanity letters and a repeated ``+`` as the same number; this
module accepts only the E.164 string itself, so the number a caller sees in its own records is the number that is
dialled, deduplicated and rate-limited. Every refusal is ``InvalidInput("to", reason)`` with a reason that says
what to send instead; the offending value is shown ``repr()``-escaped and truncated.
"""

import re
import string
import unicodedata
from collections.abc import Callable
from typing import Final, assert_never

import email_validator
import phonenumbers

# From sendq.channel, not sendq.message: sendq.message imports this module to check its ``to`` field.
from sendq.channel import Channel
from sendq.errors import InvalidInput
from sendq.phone_validity import surely_valid

_FIELD: Final = "to"
_SHOWN_MAX: Final = 40
#: ASCII digits only: re's \d would also match fullwidth and Arabic-Indic digits
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_E164_RULE: Final = "must be an E.164 number: '+' then 2-15 ASCII digits, no spaces or punctuation"
EMAIL_MAX_LENGTH: Final = 254
WEBCHAT_MAX_LENGTH: Final = 200
#: printable ASCII, no space (the length is checked on its own, for a clearer reason)
_WEBCHAT_ID: Final = re.compile(r"[\x21-\x7e]+")


def _shown(raw: str) -> str:
    """The value for an error message: escaped (no control or bidi characters leak into logs) and short."""
    return repr(raw[:_SHOWN_MAX]) + ("…" if len(raw) > _SHOWN_MAX else "")


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(_FIELD, reason)


def _require_str(raw: object) -> str:
    # Callers are typed, but values often come straight from decoded JSON.
    if not isinstance(raw, str):
        raise _refuse(f"must be a string (got {type(raw).__name__})")
    return raw


# Why a value is not E.164, most telling first; the first that applies goes into the reason.
_E164_HINTS: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (lambda s: s.startswith("00"), "write '+' instead of an international prefix such as '00'"),
    (lambda s: any(c.isalpha() for c in s), "letters are not allowed: no 'tel:' URIs, extensions or vanity numbers"),
    (lambda s: not s.startswith("+"), "it must start with '+' and the country calling code"),
    (lambda s: s.startswith("++"), "it must start with exactly one '+'"),
    (lambda s: not s[1:].isdigit() and s != "+", "spaces, brackets, dashes and other punctuation are not allowed"),
    (lambda s: s.startswith("+0"), "no country calling code starts with 0"),
    (lambda s: len(s) > 16, "E.164 allows at most 15 digits"),
    (lambda s: len(s) < 3, "it is too short"),
)


def _e164_hint(value: str) -> str:
    foreign = next((c for c in value if not c.isascii()), None)
    if foreign is not None:
        # Named, because fullwidth or Arabic-Indic digits look like the ASCII ones in most fonts (and U+200B not at all).
        return f"it contains U+{ord(foreign):04X} {unicodedata.name(foreign, '(unnamed)')}: only ASCII is allowed"
    return next((hint for applies, hint in _E164_HINTS if applies(value)), "")


def canonical_phone(raw: str) -> str:
    """Return the number if ``raw`` is a valid E.164 number exactly as ``phonenumbers`` formats it; else refuse.

    Only surrounding ASCII whitespace (a trailing newline from a form or CSV file) is forgiven.
    """
    value = _require_str(raw).strip(string.whitespace)
    if not value:
        raise _refuse("is empty: expected an E.164 number such as +14155552671")
    if _E164.fullmatch(value) is None:
        hint = _e164_hint(value)
        raise _refuse(f"{_E164_RULE} (got {_shown(raw)}{'; ' + hint if hint else ''})")
    if surely_valid(value):
        return value
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise _refuse(f"does not start with a known country calling code ({value})") from None
        # Too short, too long or no number at all once the country code is taken off.
        raise _refuse(f"is not a valid number for any country/region ({value})") from None
    # The pattern leaves no room for one, but an extension would be silently dropped by the E.164 format below.
    if number.extension:
        raise _refuse(f"must not carry an extension ({_shown(raw)})")
    if not phonenumbers.is_valid_number(number):
        raise _refuse(f"is not a valid number for any country/region ({value})")
    canonical = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if canonical != value:
        # E.g. a national trunk prefix after the country code (+44 0 7400...): phonenumbers drops it silently.
        raise _refuse(
            f"does not round-trip: {value} is read as the number {canonical}; send {canonical} if that is the one"
        )
    return canonical


def canonical_email(raw: str) -> str:
    """Return the normalized form of a bare e-mail address (``email-validator``, syntax only, no DNS).

    Refused: display-name forms, whitespace, quoted local parts, IP-literal domains, special-use domains
    (``.test``, ``.invalid``, ``localhost``...), local parts over 64 characters, and non-ASCII local parts (SMTPUTF8,
    which most sending providers cannot deliver). Internationalized domains are accepted: the normalized form keeps
    the Unicode domain (``user@münchen.de``).
    """
    value = _require_str(raw)
    if not value:
        raise _refuse("is empty: expected an e-mail address such as name@example.com")
    if len(value) > EMAIL_MAX_LENGTH:
        raise _refuse(f"is {len(value)} characters long; an e-mail address has at most {EMAIL_MAX_LENGTH}")
    if "<" in value or ">" in value:
        raise _refuse(f"must be a bare address such as bob@example.com, not a display-name form (got {_shown(value)})")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _refuse(f"must not contain whitespace or control characters (got {_shown(value)})")
    try:
        # Every option is passed explicitly: email_validator's module-level defaults are mutable globals.
        result = email_validator.validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,
            globally_deliverable=True,
            test_environment=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise _refuse(f"is not a valid e-mail address: {exc} (got {_shown(value)})") from None
    return result.normalized


def canonical_webchat_id(raw: str) -> str:
    """Return a web-chat session or contact id unchanged if it is 1-200 printable ASCII characters, no spaces."""
    value = _require_str(raw)
    if not value:
        raise _refuse("is empty: expected a web-chat session or contact id")
    if len(value) > WEBCHAT_MAX_LENGTH:
        raise _refuse(f"is {len(value)} characters long; a web-chat id has at most {WEBCHAT_MAX_LENGTH}")
    if _WEBCHAT_ID.fullmatch(value) is None:
        raise _refuse(f"must be a web-chat id: printable ASCII characters without whitespace (got {_shown(value)})")
    return value


def canonical_recipient(channel: Channel, raw: str) -> str:
    """The canonical recipient for ``channel``: E.164 for SMS and WhatsApp, an address for e-mail, an id for chat."""
    match channel:
        case Channel.SMS | Channel.WHATSAPP:
            return canonical_phone(raw)
        case Channel.EMAIL:
            return canonical_email(raw)
        case Channel.WEBCHAT:
            return canonical_webchat_id(raw)
        case _:
            assert_never(channel)
