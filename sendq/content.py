"""Restricted terms and links in message bodies, checked so that the usual evasions do not get through.

Product rule (help pages): some words or links must be enabled by Support before a message containing them is
sent. sendq keeps a global list of restricted terms and, by default, treats every link as restricted; an
operator enables terms and link domains per subaccount. :func:`check_content` returns one
:class:`ContentViolation` per restricted term or not-enabled domain found (empty list: the message may go).

Everything here is pure: no I/O, no network. Hosts are judged with ``idna`` (UTS #46) and the Public Suffix
List snapshot bundled with ``tldextract``, which is used offline (no suffix-list fetch, no cache directory).

How text is read
================

Two views of the text are built, because terms and links need different things.

*Terms* are matched on :func:`normalise` (format characters removed, NFKC, casefold, evasive combining marks
dropped, Cyrillic/Greek look-alikes mapped to Latin inside mixed-script words), split into words (runs of
letters, marks and digits). A term matches a whole word, never a part of one ("bet" is not in "better"), with
simple plurals ("casinos", "lotteries") and a digit suffix ("bet365") folded. The same words are also looked
for in three derived copies:

* *joined*: ``-``, ``_``, ``.`` and ``'`` between two letters removed ("c-asino", "pay-day");
* *leetspeak*: inside a token that has letters, ``0 1 3 4 5 7 @ $ ! |`` read as ``o i/l e a s t a s i l``
  ("c4s1n0", "l0an", "ca$ino"). A token qualifies only when a digit run sits between letters ("b3t") or the
  token has at least three letters ("casin0"), so that codes, times and amounts ("B37", "10am", "5kg",
  "$12.50", "123456") are never re-read as words;
* *collapsed*: three or more one-character tokens separated by one to three non-word characters are joined
  ("c.a.s.i.n.o", "c a s i n o", "c-a-s-i-n-o", "c_a_s_i_n_o"), and a term anywhere inside the joined run
  matches.

Terms are looked for in the whole text, links included (``bit.ly/casino-night`` contains "casino").

*Links* are found on a second view that keeps the host exactly as a browser would resolve it: format characters
removed, NFKC, the UTS #46 full stops (U+3002, U+FF0E, U+FF61) mapped to ".", ``\\`` read as ``/`` (WHATWG), and
other symbols (emoji, dingbats, U+2215 DIVISION SLASH, ...) turned into spaces. Diacritics and look-alikes are
*not* folded there: a host is judged by its A-label, so ``ñexample.com`` (``xn--example-3za.com``) and
``аpple.com`` with a Cyrillic "а" are simply different, not-enabled domains. Candidates are the union of

* ``scheme://...`` URLs (any scheme; userinfo dropped so ``https://trusted.com@evil.com/`` is ``evil.com``,
  percent-encoding decoded, IP-literal and numeric hosts refused the WHATWG way: ``http://3232235521/``,
  ``http://0x7f.0.0.1/``, ``http://[::1]/``);
* bare hosts ``label(.label)+`` whose last label is a real top-level domain (``www.`` hosts always count), and
  bare dotted-quad / hex IPv4 addresses;
* de-obfuscated dots: ``example[.]com``, ``example(.)com``, ``example(dot)com``, ``example [dot] com`` always;
  ``example dot com``, ``example . com`` and ``example`` + newline + ``.com`` when the next word is a top-level
  domain that is not a common short English word (``the dot is``, ``tap the dot in the corner`` stay text).
  A space on one side only is ordinary punctuation and is not rewritten (``We use .NET``, ``It is done. Com...``).

Each host is IDNA-encoded (failure: refused), and it is allowed iff it equals, or is a subdomain of, a domain
enabled for the subaccount. A violation names the registrable domain (``sub.evil.com`` -> ``evil.com``), which
is what an operator enables. IP hosts, hosts without a public suffix, unparseable ``scheme://`` tokens, more
than ``max_links`` link-like tokens and more than 256 dotted tokens of any kind ("1.5", "e.g", ...: no real
message has that many) fail closed: they cannot be enabled. Every step is linear in the text's length.

Product decisions
=================

* **File names.** A bare ``name.ext`` (two labels, no scheme, no ``www.``, not followed by ``/``, ``:``, ``?``
  or ``#``) whose extension is in :data:`FILE_NAME_TLDS` (``py``, ``md``, ``sh``, ``java``) is a file name,
  not a link: those country domains are rare in SMS (``.java`` is a closed brand TLD) while ``setup.py``,
  ``README.md``, ``install.sh`` and ``Main.java`` appear in developer notifications. ``pl`` and ``rs`` are
  deliberately *not* in the list (Poland's and Serbia's busy domains would all pass), nor are ``app``, ``ai``
  and ``so`` (busy domains too: ``notion.so``), nor ``zip`` and ``mov``: those gTLDs are sold to phishers
  precisely because they look like file names, so ``invoice.zip`` is judged as the domain it is. Extensions
  that are not top-level domains (``pdf``, ``docx``, ``jpg``, ``csv``, ``txt``, ``html``) never look like links.
* **E-mail addresses** in a body are link-like: handsets make them tappable and phishing uses them
  ("write to security@paypa1-help.com"), so ``help@acme.com`` needs ``acme.com`` enabled. The local part is
  never judged (``first.name@acme.com`` does not make ``first.name`` a link).
* **A missing space after a full stop** is judged as written: ``done.Thanks`` is text (``thanks`` is not a
  top-level domain) but ``shipped.Click here`` contains the link-like ``shipped.click`` (``.click`` is a real
  TLD, and a handset would make it tappable). ``e.g.``, ``i.e.``, ``U.S.``, ``Dr. Smith``, ``No.5``, times,
  versions and amounts never form a host.
* **Four-part dotted numbers** (``1.2.0.4``) are IPv4 addresses to a handset's link detector and are refused;
  three-part versions (``v2.3.1``), decimals and times are not.
* **Paths and queries** are not searched for domains (``example.com/see/other.net``): a link is judged by its
  host, and an open redirect on an enabled domain is that domain owner's problem. A nested ``scheme://`` URL
  anywhere (``...?next=https://evil.com``) is still judged on its own.
* **Whole-script Cyrillic or Greek words** are left as they are (``вет``, a Russian abbreviation, is not
  "bet"): only words that mix scripts, or use look-alike letters from outside the Russian/Greek alphabets
  (small capitals, Komi ``ԁ``, ...), are mapped to Latin. An all-Cyrillic "ВЕТ" is therefore not caught.
"""

import contextlib
import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal, NamedTuple
from urllib.parse import unquote

import idna
import tldextract

__all__ = [
    "DEFAULT_RESTRICTED_TERMS",
    "FILE_NAME_TLDS",
    "ContentRules",
    "ContentViolation",
    "check_content",
    "normalise",
    "normalise_domain",
    "normalise_term",
]

DEFAULT_RESTRICTED_TERMS: tuple[str, ...] = (
    # Gambling: carriers refuse gambling traffic that is not age-gated and registered (CTIA messaging principles,
    # US 10DLC "prohibited / restricted content"). Plain "bet" is left out on purpose: "I bet", "your best bet".
    "casino",
    "sportsbook",
    "betting",
    "roulette",
    "lottery",  # also the classic "you have won the lottery" scam
    # High-risk financial services (carrier prohibited content: payday and short-term loans, crypto, forex).
    # Plain "loan" is left out on purpose: banks legitimately send "your loan payment is due".
    "payday loan",
    "bitcoin",
    "crypto",  # the word only; "cryptography" is another word
    "forex",
    # Sex and prescription-drug spam (the "S" of SHAFT; unlicensed pharmacy).
    "porn",
    "viagra",
    "cialis",
    # Cannabis: federally illegal in the US; carriers block it regardless of state law. "weed" (gardening) and
    # "cbd" (central business district) are ordinary words and are left out.
    "cannabis",
    "marijuana",
)

#: extensions that are also top-level domains and are read as file names in a bare ``name.ext`` (see above)
FILE_NAME_TLDS: frozenset[str] = frozenset({"py", "md", "sh", "java"})

ViolationKind = Literal["restricted_term", "restricted_link"]

#: value of the fail-closed violation when a text has more link-like tokens than ``max_links``
TOO_MANY_LINKS = "too many links"
#: value of the fail-closed violation for a ``scheme://`` token or host that cannot be parsed
UNPARSEABLE_LINK = "unparseable link"


@dataclass(frozen=True, slots=True)
class ContentRules:
    """What one subaccount may send. Terms are in :func:`normalise_term` form, domains in
    :func:`normalise_domain` form (entries that are not are normalised once, and dropped if invalid)."""

    restricted_terms: frozenset[str]
    allowed_terms: frozenset[str]
    allowed_domains: frozenset[str]
    links_restricted: bool = True
    max_links: int = 10

    def __post_init__(self) -> None:
        if self.max_links < 0:
            raise ValueError(f"max_links must be >= 0, got {self.max_links}")


@dataclass(frozen=True, slots=True)
class ContentViolation:
    """One reason a message is refused: a restricted term, or a link host that is not enabled.

    ``value`` is the normalised term, the registrable domain to enable, or, for the fail-closed cases that no
    operator can enable, a short description ("unparseable link", "numeric IP host 3232235521",
    "too many links", "host without a public suffix localhost", "public suffix host github.io").
    """

    kind: ViolationKind
    value: str

    @property
    def reason(self) -> str:
        return self.kind

    def detail(self, subaccount: str) -> str:
        """One sentence for the sender: what was found, and how (or whether) it can be enabled."""
        sub = shlex.quote(subaccount)
        value = shlex.quote(self.value)
        if self.kind == "restricted_term":
            return (
                f"contains the restricted term '{self.value}'; "
                f"ask an operator to enable it: sendq subaccount allow-term {sub} {value}"
            )
        if _enableable(self.value):
            shown = self.value
            if "xn--" in shown:
                with contextlib.suppress(UnicodeError, ValueError):
                    shown = f"{self.value} ({idna.decode(self.value)})"
            return (
                f"links to {shown}, which is not enabled for this subaccount; "
                f"ask an operator: sendq subaccount allow-domain {sub} {value}"
            )
        if self.value == TOO_MANY_LINKS:
            return (
                "contains too many links to check; this cannot be enabled (fail closed): "
                "send fewer links in one message"
            )
        return (
            f"contains a link that cannot be enabled ({self.value}); links to IP addresses, to hosts outside "
            "the public domain system and links that cannot be parsed are always refused (fail closed)"
        )


# --- character tables --------------------------------------------------------------------------------------

#: ASCII controls other than \n and \t become spaces
_ASCII_CONTROLS: dict[int, str] = {i: " " for i in (*range(0x20), 0x7F) if chr(i) not in "\n\t"}
#: the link view also reads "\" as "/" (WHATWG URL parsing of special schemes)
_ASCII_LINK_TABLE: dict[int, str] = {**_ASCII_CONTROLS, ord("\\"): "/"}
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: invisible letters that are not category Cf (combining grapheme joiner, Hangul fillers, Mongolian FVS)
_INVISIBLE = frozenset({0x034F, 0x115F, 0x1160, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0})
#: bases on which a combining mark is decoration, not spelling: Latin, Greek, Cyrillic and ASCII punctuation
#: (the combining-mark blocks themselves excluded)
_LATIN_BASE = "\x00-\u02ff\u0370-\u0482\u048a-\u052f\u1d00-\u1dbf\u1e00-\u1fff\u2c60-\u2c7f\ua720-\ua7ff"


def _char_class(code_points: list[int]) -> str:
    """A regular-expression character class body for sorted code points, as ranges."""
    parts: list[str] = []
    i = 0
    while i < len(code_points):
        j = i
        while j + 1 < len(code_points) and code_points[j + 1] == code_points[j] + 1:
            j += 1
        first, last = code_points[i], code_points[j]
        parts.append(f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}")
        i = j + 1
    return "".join(parts)


_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


class _Tables(NamedTuple):
    """Character classes of the Basic Multilingual Plane, as regular expressions (a class with ranges beyond the
    BMP makes ``re`` test ranges one by one; characters beyond it are classified one by one, when present)."""

    #: format characters (Cf), variation selectors and other invisible letters: removed
    invisible: re.Pattern[str]
    #: non-ASCII characters that are not letters, marks, numbers or spaces: read as spaces
    symbols: re.Pattern[str]
    #: runs of non-spacing marks after a Latin/Greek/Cyrillic base (after NFKD): removed
    stray_marks: re.Pattern[str]
    #: the class body of the BMP non-spacing marks
    nonspacing: str
    #: any BMP non-spacing mark
    any_mark: re.Pattern[str]


def _is_invisible(cp: int, category: str) -> bool:
    return (
        category == "Cf"
        or cp in _INVISIBLE
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0xE0000 <= cp <= 0xE01EF  # tag characters, variation selectors supplement
    )


@cache
def _tables() -> _Tables:
    """Built once, from the running interpreter's Unicode database."""
    invisible: list[int] = []
    marks: list[int] = []
    nonspacing: list[int] = []
    for cp in range(0x80, 0x10000):
        category = unicodedata.category(chr(cp))
        if _is_invisible(cp, category):
            invisible.append(cp)
        elif category[0] == "M":
            marks.append(cp)
            if category != "Mc":
                nonspacing.append(cp)
    return _Tables(
        invisible=re.compile(f"[{_char_class(invisible)}]+"),
        symbols=re.compile(f"[^\\x00-\\x7f\\w\\s{_char_class(marks)}\\U00010000-\\U0010ffff]"),
        stray_marks=re.compile(f"(?<=[{_LATIN_BASE}])[{_char_class(nonspacing)}]+"),
        nonspacing=_char_class(nonspacing),
        any_mark=re.compile(f"[{_char_class(nonspacing)}]"),
    )


@lru_cache(maxsize=8192)
def _category(c: str) -> str:
    return unicodedata.category(c)


def _astral_table(text: str, classify: Callable[[int, str], str | None]) -> dict[int, str | None]:
    """A ``str.translate`` table for the characters beyond the BMP in ``text`` that ``classify`` maps (it gets
    the code point and category, and returns the replacement, or ``"keep"``)."""
    table: dict[int, str | None] = {}
    if _ASTRAL_RE.search(text):
        for c in set(_ASTRAL_RE.findall(text)):
            replacement = classify(ord(c), _category(c))
            if replacement != "keep":
                table[ord(c)] = replacement
    return table


def _clean(text: str) -> str:
    """Format and invisible characters removed; control characters other than \\n and \\t made spaces."""
    text = _CONTROL_RE.sub(" ", _tables().invisible.sub("", text))
    table = _astral_table(text, lambda cp, category: None if _is_invisible(cp, category) else "keep")
    return text.translate(table) if table else text


def _dots(text: str) -> str:
    """UTS #46 label separators as "."; NFKC (run before) folds U+2024, U+FE52 and U+FF0E, and U+FF61 to U+3002."""
    if "\u3002" in text or "\uff61" in text or "\uff0e" in text:
        return text.replace("\u3002", ".").replace("\uff61", ".").replace("\uff0e", ".")
    return text


def _symbols_to_spaces(text: str) -> str:
    """Every non-ASCII character that is not a letter, mark, number or space becomes a space."""
    text = _tables().symbols.sub(" ", text)
    table = _astral_table(text, lambda cp, category: "keep" if category[0] in "LMN" else " ")
    return text.translate(table) if table else text


# Look-alikes mapped to Latin for term matching. Keys are case-specific because the mapping runs before
# casefolding: Greek capital Nu looks like "N", small nu like "v"; capital Eta like "H", small eta like "n".
# fmt: off
_SMALL_AND_CAPITAL_CONFUSABLES: dict[int, str] = str.maketrans(
    {
        # Cyrillic capitals
        "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
        "Х": "x", "У": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ӏ": "l", "Ԛ": "q", "Ԝ": "w", "Ү": "y",
        # Cyrillic small letters (в к м н т look like small capitals b k m h t)
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
        "х": "x", "у": "y", "ѕ": "s", "і": "i", "ј": "j", "ӏ": "l", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h",
        "ү": "y",
        # Greek capitals
        "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
        "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
        # Greek small letters
        "α": "a", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
        "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
        # Latin small capitals and look-alike IPA letters
        "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
        "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u",
        "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ɡ": "g", "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i",
    }
)
# fmt: on


def _with_capitals(table: dict[int, str]) -> dict[int, str]:
    """Adds the capital of each small look-alike that has one and is not listed (casefolding would turn it into
    the look-alike later, e.g. U+A7AC into "ɡ")."""
    out = dict(table)
    for code_point, latin in table.items():
        capital = chr(code_point).upper()
        if len(capital) == 1 and capital >= "\x80":
            out.setdefault(ord(capital), latin)
    return out


_CONFUSABLES = _with_capitals(_SMALL_AND_CAPITAL_CONFUSABLES)
_CONF = _char_class(sorted(_CONFUSABLES))
#: look-alikes outside the Greek and basic Cyrillic alphabets: a word using one is mapped whatever its script
_CONF_OTHER = _char_class(sorted(cp for cp in _CONFUSABLES if not 0x370 <= cp <= 0x45F))
_CONF_RE = re.compile(f"[{_CONF}]")
_LW = "[^\\W_]"  # a letter or digit
_LATIN = "[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"
# A word is mapped when it mixes Latin with Greek or Cyrillic (digits may stand between them: "с4sino"), mixes
# Greek with Cyrillic, or contains a look-alike from outside those alphabets. Whole Greek or Cyrillic words are
# left alone. The search finds such a letter pair; the word around it is then mapped whole.
_GC = "[\u0370-\u045f]"
_MIXED_RE = re.compile(
    f"{_LATIN}\\d*{_GC}|{_GC}\\d*{_LATIN}"
    "|[\u0370-\u03ff]\\d*[\u0400-\u045f]|[\u0400-\u045f]\\d*[\u0370-\u03ff]"
    f"|[{_CONF_OTHER}]"
)
_WORD_TAIL_RE = re.compile(f"{_LW}*")


def _skeleton(text: str) -> str:
    """Mixed-script look-alike letters mapped to Latin (see the module notes); other words unchanged."""
    if not _CONF_RE.search(text):
        return text
    match = _MIXED_RE.search(text)
    if match is None:
        return text  # whole Greek or Cyrillic words only: a cheap, common case
    out: list[str] = []
    done = 0
    while match is not None:
        start = match.start()
        while start > done and text[start - 1].isalnum():
            start -= 1
        tail = _WORD_TAIL_RE.match(text, match.start())
        end = max(tail.end() if tail else 0, match.end())
        out += (text[done:start], text[start:end].translate(_CONFUSABLES))
        done = end
        match = _MIXED_RE.search(text, end)
    out.append(text[done:])
    return "".join(out)


def _strip_marks(text: str) -> str:
    """Combining marks on Latin/Greek/Cyrillic letters dropped ("c̲a̲s̲i̲n̲o̲", "cäsino"); other scripts keep theirs.

    ``text`` must be NFKC already."""
    decomposed = unicodedata.normalize("NFKD", text)
    if not _tables().any_mark.search(decomposed) and not _ASTRAL_RE.search(decomposed):
        return text
    stripped = _tables().stray_marks.sub("", decomposed)
    if _ASTRAL_RE.search(stripped):
        astral = [c for c in set(_ASTRAL_RE.findall(stripped)) if _category(c) in ("Mn", "Me")]
        if astral:
            marks = _tables().nonspacing + "".join(astral)
            stripped = re.sub(f"(?<=[{_LATIN_BASE}])[{marks}]+", "", stripped)
    return text if stripped == decomposed else unicodedata.normalize("NFKC", stripped)


def _fold(text: str) -> str:
    s = _dots(unicodedata.normalize("NFKC", _clean(text)))
    s = _skeleton(_strip_marks(s))
    return _strip_marks(unicodedata.normalize("NFKC", s.casefold()))


def _settled(folded: str) -> bool:
    """A cheap sufficient test that ``_fold`` would return ``folded`` unchanged: it is casefolded already (so
    NFKC and mark stripping, which ran last, hold) and has no word for the look-alike mapping."""
    return folded.casefold() == folded and not (_CONF_RE.search(folded) and _MIXED_RE.search(folded))


def normalise(text: str) -> str:
    """The form restricted terms are matched in: format characters removed, controls as spaces, NFKC, casefold,
    UTS #46 dots as ".", stray combining marks dropped, mixed-script look-alikes mapped to Latin. Idempotent."""
    if text.isascii():
        return text.translate(_ASCII_CONTROLS).lower()
    s = _fold(text)
    for _ in range(4):
        if s.isascii() or _settled(s):
            return s
        t = _fold(s)
        if t == s:
            return s
        s = t
    return s


# --- terms -------------------------------------------------------------------------------------------------

#: a word of the words view: ASCII letters and digits, and any non-ASCII letter, mark or number
_W = "0-9A-Za-z\u0080-\U0010ffff"
_WORD_RE = re.compile(f"[{_W}]+")
_TERM_RE = re.compile(f"[{_W}]+(?: [{_W}]+)*")
_JOIN_RE = re.compile(f"[-_.'](?<=[{_W}][-_.'])(?=[{_W}])")
_LEET_CHARS = "0-9@$!|"
_LEET_HINT_RE = re.compile(f"[^\\W\\d_][{_LEET_CHARS}]|[{_LEET_CHARS}][^\\W\\d_]")
_T = f"{_W}@$!|"
_LEET_TOKEN_RE = re.compile(f"(?<![{_T}])[{_T}]*?(?:[^\\W\\d_][{_LEET_CHARS}]|[{_LEET_CHARS}][^\\W\\d_])[{_T}]*+")
_LEET_INTERIOR_RE = re.compile(f"[^\\W\\d_][{_LEET_CHARS}]+[^\\W\\d_]")
_LEET_I = str.maketrans("013457@$!|", "oieastasil")
_LEET_L = str.maketrans("013457@$!|", "oleastasil")
_NOT_LETTERS = str.maketrans("", "", "0123456789@$!|")
_COLLAPSE_RE = re.compile(f"(?<![{_W}])[{_W}](?:[^{_W}\\n]{{1,3}}[{_W}](?![{_W}])){{2,}}")
_NOT_WORD_RE = re.compile(f"[^{_W}]+")
_MAX_TERM_WORDS = 4
_MAX_TERM_CHARS = 64


def _words_view(norm: str) -> str:
    return norm if norm.isascii() else _symbols_to_spaces(norm)


def normalise_term(raw: str) -> str:
    """A restricted or allowed term as typed by an operator, in matching form ("  CASINO " -> "casino").

    Raises ``ValueError`` unless it is one to four words of letters and digits, 2 to 64 characters in all."""
    norm = " ".join(normalise(raw).split())
    if not norm:
        raise ValueError("a term must not be empty")
    if _words_view(norm) != norm or not _TERM_RE.fullmatch(norm):
        raise ValueError(f"a term is one or more words of letters and digits (no punctuation or symbols): {raw!r}")
    if not 2 <= len(norm) <= _MAX_TERM_CHARS or norm.count(" ") >= _MAX_TERM_WORDS:
        raise ValueError(f"a term has 2 to {_MAX_TERM_CHARS} characters and at most {_MAX_TERM_WORDS} words: {raw!r}")
    return norm


@dataclass(frozen=True, slots=True)
class _TermIndex:
    single: frozenset[str]
    multi: tuple[tuple[int, frozenset[tuple[str, ...]]], ...]
    multi_first: frozenset[str]
    #: every word of the multi-word terms
    multi_words: frozenset[str]
    #: (term without spaces, term) for matching inside collapsed runs
    flat: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        return not self.single and not self.multi


def _normalised_set(values: Iterable[str], fn: Callable[[str], str]) -> frozenset[str]:
    out: set[str] = set()
    for value in values:
        try:
            out.add(fn(value))
        except ValueError:
            continue
    return frozenset(out)


@lru_cache(maxsize=256)
def _term_index(restricted: frozenset[str], allowed: frozenset[str]) -> _TermIndex:
    terms = _normalised_set(restricted, normalise_term) - _normalised_set(allowed, normalise_term)
    by_size: dict[int, set[tuple[str, ...]]] = {}
    for term in terms:
        words = tuple(term.split(" "))
        if len(words) > 1:
            by_size.setdefault(len(words), set()).add(words)
    return _TermIndex(
        single=frozenset(t for t in terms if " " not in t),
        multi=tuple((k, frozenset(v)) for k, v in sorted(by_size.items())),
        multi_first=frozenset(words[0] for group in by_size.values() for words in group),
        multi_words=frozenset(word for group in by_size.values() for words in group for word in words),
        flat=tuple(sorted((t.replace(" ", ""), t) for t in terms)),
    )


def _bases(word: str, *, strip_digits: bool) -> list[str]:
    """The word, and what it may be a plural or a digit-suffixed form of."""
    out = [word]
    n = len(word)
    if n > 3 and word[-1] == "s":
        out.append(word[:-1])
        if n > 4 and word[-2] == "e":
            out.append(word[:-2])
            if word[-3] == "i":
                out.append(word[:-3] + "y")
    if strip_digits and word[-1].isdigit():
        stem = word.rstrip("0123456789")
        if len(stem) >= 2:
            out.append(stem)
    return out


def _note(base: str, index: _TermIndex, hits: set[str]) -> bool:
    """Records ``base`` if it is a single-word term; tells whether it is a word of a multi-word term."""
    if base in index.single:
        hits.add(base)
    return base in index.multi_words


def _check_word(word: str, index: _TermIndex, hits: set[str], *, strip_digits: bool) -> bool:
    """:func:`_note` for the word and each base in :func:`_bases` (written out: this runs for every word)."""
    touches = _note(word, index, hits)
    n = len(word)
    if n > 3 and word[-1] == "s":
        touches |= _note(word[:-1], index, hits)
        if n > 4 and word[-2] == "e":
            touches |= _note(word[:-2], index, hits)
            if word[-3] == "i":
                touches |= _note(word[:-3] + "y", index, hits)
    if strip_digits and word[-1].isdigit():
        stem = word.rstrip("0123456789")
        if len(stem) >= 2:
            touches |= _note(stem, index, hits)
    return touches


def _match_words(view: str, index: _TermIndex, hits: set[str], seen: set[str], *, strip_digits: bool) -> None:
    """Terms among the words of ``view``; words in ``seen`` (checked in an earlier view) are skipped."""
    words = _WORD_RE.findall(view)
    new = set(words) - seen
    seen |= new
    touches_multi = False
    for word in new:
        touches_multi |= _check_word(word, index, hits, strip_digits=strip_digits)
    if not touches_multi or index.multi_first.isdisjoint(words):
        return
    for i, word in enumerate(words):
        if word not in index.multi_first:
            continue
        for size, grams in index.multi:
            if i + size > len(words):
                break
            head = tuple(words[i : i + size - 1])
            for base in _bases(words[i + size - 1], strip_digits=False):
                if (*head, base) in grams:
                    hits.add(" ".join((*head, base)))


def _leet_qualifies(core: str) -> bool:
    """Leetspeak is read only in a token with a digit run between letters or with three letters or more."""
    letters = len(core.translate(_NOT_LETTERS))
    return letters >= 3 or (letters > 0 and _LEET_INTERIOR_RE.search(core) is not None)


def _match_leet(view: str, index: _TermIndex, hits: set[str], seen: set[str]) -> None:
    """Terms spelt in leetspeak. Each distinct qualifying token with a digit or symbol next to a letter is read
    with "1" as "i" and as "l"; when that spells a word of a multi-word term, multi-word terms are matched on a
    copy of the view with those tokens read."""
    multi: dict[str, str] = {}
    for token in set(_LEET_TOKEN_RE.findall(view)):
        core = token.strip("@$!|")
        if not _leet_qualifies(core):
            continue
        for table in (_LEET_I, _LEET_L):
            word = core.translate(table)
            if word != core and _check_word(word, index, hits, strip_digits=False):
                multi[core] = word
    if multi:
        pattern = re.compile("|".join(sorted(map(re.escape, multi), key=len, reverse=True)))
        _match_words(pattern.sub(lambda m: multi[m.group()], view), index, hits, seen, strip_digits=False)


def _match_collapsed(view: str, index: _TermIndex, hits: set[str]) -> None:
    runs = _COLLAPSE_RE.findall(view)
    if not runs:
        return
    pieces: list[str] = []
    for run in runs:
        joined = _skeleton(_NOT_WORD_RE.sub("", run))
        pieces.append(joined)
        if _LEET_HINT_RE.search(joined):
            pieces += (joined.translate(_LEET_I), joined.translate(_LEET_L))
    haystack = "\x00".join(pieces)
    for flat, term in index.flat:
        if flat in haystack:
            hits.add(term)


def _find_terms(text: str, rules: ContentRules) -> set[str]:
    index = _term_index(rules.restricted_terms, rules.allowed_terms)
    if index.empty:
        return set()
    view = _words_view(normalise(text))
    hits: set[str] = set()
    seen: set[str] = set()
    _match_words(view, index, hits, seen, strip_digits=True)
    joined = _JOIN_RE.sub("", view)
    if joined != view:
        _match_words(joined, index, hits, seen, strip_digits=True)
    if _LEET_HINT_RE.search(view):
        _match_leet(view, index, hits, seen)
    _match_collapsed(view, index, hits)
    return hits


# --- links -------------------------------------------------------------------------------------------------


def _new_extractor() -> tldextract.TLDExtract:
    """tldextract on its bundled Public Suffix List snapshot only: no fetch (no URLs), no cache directory."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


_EXTRACTOR = _new_extractor()


@cache
def _tlds() -> frozenset[str]:
    """Every top-level label of the Public Suffix List, in Unicode and A-label form."""
    out: set[str] = set()
    for suffix in _EXTRACTOR.tlds:
        label = suffix.rsplit(".", 1)[-1].lower()
        if label and label[0] not in "*!":
            out.add(label)
            if not label.isascii():
                with contextlib.suppress(UnicodeError, ValueError):
                    out.add(idna.encode(label, uts46=True).decode("ascii"))
    return frozenset(out)


#: common short words that are also TLDs: after " dot " or " . " they are text, not a domain
_WEAK_DOT_STOP = frozenset(
    {"at", "in", "to", "is", "it", "my", "no", "so", "be", "by", "do", "as", "am", "an", "on", "or", "of", "one"}
    | {"now", "new", "top", "win", "day", "fun", "run", "car", "cat", "man", "art", "here", "free", "help", "buy"}
)
_L = f"{_W}\\-"
_SPAN_END_RE = re.compile("[\\s\"'<>`]")
_STRONG_DOT_RE = re.compile(r"(?<!\s)\s*[\[({<]\s*(?:\.|dot)\s*[\])}>]\s*", re.IGNORECASE)
_WEAK_DOT_RE = re.compile(
    f"(?<=[{_W}])(?:\\s++\\.\\s++|[^\\S\\n]*+\\n\\s*+\\.\\s*+|\\s++dot\\s++)(?=([{_W}][{_L}]*+))", re.IGNORECASE
)
_DOT_WORD_RE = re.compile(r"\bdot\b", re.IGNORECASE)
# Cheap searches (they start with a character class) that tell whether the two rewrites above can apply.
_STRONG_DOT_HINT_RE = re.compile(r"[\[({<]\s*(?:\.|dot)", re.IGNORECASE)
_WEAK_DOT_HINT_RE = re.compile(r"\s(?:\.|dot\s)", re.IGNORECASE)  # every weak form has a space just before
_BARE_RE = re.compile(f"(?<![{_L}._])(?:[{_L}]++\\.)+[{_L}]++")
_NUMERIC_LABEL_RE = re.compile(r"0x[0-9a-f]*|[0-9]+", re.IGNORECASE)
_WWW_RE = re.compile(r"www\d{0,3}", re.IGNORECASE)
#: 2 to 4 dotted numbers (decimal or 0x-hex): an IPv4 address to a handset, or a version, a date, a decimal
_BARE_NUMERIC_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){1,3}", re.IGNORECASE)
#: after a host, these start a port or a path
_PATH_STARTS = frozenset("/:?#")
#: more dotted tokens than this in one text (no message has them: an SMS has at most ~1,600 characters) are
#: not examined one by one: the text fails closed with "too many links"
_MAX_DOTTED_TOKENS = 256
_TRAILING_PUNCT = ".,;:!?*'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _link_view(text: str) -> str:
    if text.isascii():
        return text.translate(_ASCII_LINK_TABLE)
    s = _dots(unicodedata.normalize("NFKC", _clean(text)))
    return _symbols_to_spaces(s).replace("\\", "/")


def _weak_dot(match: re.Match[str]) -> str:
    word = match.group(1).lower()
    if word in _tlds() and word not in _WEAK_DOT_STOP:
        return "."
    return match.group()


class _Host(NamedTuple):
    kind: Literal["ok", "ip", "unparseable", "no_suffix", "public_suffix"]
    ascii: str
    #: the violation value: the registrable domain, or the fail-closed description
    value: str


def _is_numeric_host(host: str) -> bool:
    """WHATWG "ends in a number": such a host is parsed as IPv4 (or the URL is invalid)."""
    return _NUMERIC_LABEL_RE.fullmatch(host.rpartition(".")[2]) is not None


@lru_cache(maxsize=4096)
def _classify_host(host: str) -> _Host:
    host = host.rstrip(".")
    if not host or len(host) > 253:
        return _Host("unparseable", "", UNPARSEABLE_LINK)
    if host.startswith("[") or _is_numeric_host(host):
        return _Host("ip", "", f"numeric IP host {host}")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower().rstrip(".")
    except (UnicodeError, ValueError, IndexError):
        return _Host("unparseable", "", UNPARSEABLE_LINK)
    if not ascii_host:
        return _Host("unparseable", "", UNPARSEABLE_LINK)
    if _is_numeric_host(ascii_host):
        return _Host("ip", "", f"numeric IP host {host}")
    parts = _EXTRACTOR.extract_str(ascii_host)
    if not parts.suffix:
        return _Host("no_suffix", ascii_host, f"host without a public suffix {ascii_host}")
    if not parts.domain:
        return _Host("public_suffix", ascii_host, f"public suffix host {ascii_host}")
    return _Host("ok", ascii_host, parts.top_domain_under_public_suffix)


def _host_of(url_rest: str) -> str:
    """The host of what follows ``scheme:`` (slashes already stripped): userinfo, port and path removed."""
    authority = url_rest
    for stop in "/?#":
        authority = authority.partition(stop)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return unquote(host.partition(":")[0])


def normalise_domain(raw: str) -> str:
    """A link domain as typed by an operator, as the lowercase A-label host it enables (subdomains included).

    Accepts "Example.COM", "https://example.com/x", "münchen.de", "www.example.com."; raises ``ValueError`` for
    an IP address, a bare public suffix ("com", "co.uk", "github.io"), a host outside the Public Suffix List, or
    anything that is not a host name."""
    view = _link_view(raw).strip()
    if not view:
        raise ValueError("a domain must not be empty")
    rest = view.partition("://")[2] if "://" in view else view
    host = _host_of(rest.lstrip("/"))
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"not a domain name: {raw!r}")
    verdict = _classify_host(host)
    if verdict.kind == "ip":
        raise ValueError(f"{raw!r} is an IP address; links to IP addresses cannot be enabled")
    if verdict.kind == "public_suffix":
        raise ValueError(
            f"{raw!r} is a public suffix (like com, co.uk or github.io), shared by unrelated owners; "
            "enable a domain under it instead"
        )
    if verdict.kind == "no_suffix":
        raise ValueError(f"{raw!r} is not under a public suffix of the Public Suffix List")
    if verdict.kind == "unparseable":
        raise ValueError(f"not a valid domain name: {raw!r}")
    return verdict.ascii


def _enableable(value: str) -> bool:
    try:
        return normalise_domain(value) == value
    except ValueError:
        return False


@lru_cache(maxsize=256)
def _allowed_index(allowed_domains: frozenset[str]) -> frozenset[str]:
    return _normalised_set(allowed_domains, normalise_domain)


def _is_allowed(host: str, allowed: frozenset[str]) -> bool:
    if host in allowed:
        return True
    dot = host.find(".")
    while dot != -1:
        if host[dot + 1 :] in allowed:
            return True
        dot = host.find(".", dot + 1)
    return False


def _scheme_url(view: str, sep: int) -> tuple[int, int, str]:
    """(start, end, host) of the URL whose ``://`` is at ``sep``; the span starts at ``://`` (any scheme counts,
    and what stands before it is still searched for hosts: ``evil.com://x`` is judged twice)."""
    start = sep
    stop = _SPAN_END_RE.search(view, sep + 3)
    end = stop.start() if stop else len(view)
    span = view[sep + 3 : end]
    while span:
        last = span[-1]
        if last in _TRAILING_PUNCT or (last in _CLOSERS and span.count(_CLOSERS[last]) < span.count(last)):
            span = span[:-1]
        else:
            break
    return start, end, _host_of(span.lstrip("/"))


def _bare_ip(candidate: str) -> bool:
    """A dotted hex IPv4 (``0x7f.0.0.1``), or a dotted quad without leading zeros (``192.168.0.1``)."""
    labels = candidate.split(".")
    if "0x" in candidate.lower():
        return True
    return len(labels) == 4 and all(
        len(label) <= 3 and int(label) <= 255 and (label == "0" or label[0] != "0") for label in labels
    )


def _is_host_at(view: str, at: int) -> bool:
    """Whether a dotted name under a top-level domain starts at ``at``."""
    match = _BARE_RE.match(view, at)
    return match is not None and match.group().rpartition(".")[2].lower() in _tlds()


def _bare_candidate(view: str, match: re.Match[str]) -> tuple[str, str, int] | None:
    """("host", host, end) or ("ip", value, end) for a link-like bare token, None for text."""
    end = match.end()
    if view[end : end + 1] == "@" and _is_host_at(view, end + 1):
        return None  # the local part of an e-mail address: its domain is judged on its own
    candidate = match.group()
    if len(candidate) > 253:
        return "ip", UNPARSEABLE_LINK, end  # longer than any host name: fail closed, cheaply
    if _BARE_NUMERIC_RE.fullmatch(candidate):
        return ("ip", f"numeric IP host {candidate}", end) if _bare_ip(candidate) else None
    begin = match.start()
    if candidate[0] == "-":
        stripped = candidate.lstrip("-")
        begin += len(candidate) - len(stripped)
        candidate = stripped
    labels = candidate.split(".")
    tlds = _tlds()
    top = len(labels) - 1
    while top >= 1 and labels[top].lower() not in tlds:
        top -= 1
    www = _WWW_RE.fullmatch(labels[0]) is not None
    if top < 1:
        if not www:
            return None
        top = len(labels) - 1
    host = ".".join(labels[: top + 1])
    end = begin + len(host)
    if not www and top == 1 and labels[1].lower() in FILE_NAME_TLDS and view[end : end + 1] not in _PATH_STARTS:
        return None
    return "host", host, end


class _TooManyLinks(Exception):
    pass


class _LinkScan:
    """Judges link candidates for one text; raises ``_TooManyLinks`` past ``max_links`` link-like tokens."""

    def __init__(self, rules: ContentRules) -> None:
        self.allowed = _allowed_index(rules.allowed_domains)
        self.max_links = rules.max_links
        self.count = 0
        self.found: set[str] = set()

    def judge(self, kind: str, value: str) -> None:
        self.count += 1
        if self.count > self.max_links:
            self.found.add(TOO_MANY_LINKS)
            raise _TooManyLinks
        if kind == "ip":
            self.found.add(value)
            return
        verdict = _classify_host(value)
        if verdict.kind != "ok" or not _is_allowed(verdict.ascii, self.allowed):
            self.found.add(verdict.value)


def _scan_scheme_urls(view: str, scan: _LinkScan) -> list[tuple[int, int]]:
    """Judges every ``scheme://`` URL; returns their (merged) spans, in which bare hosts are not looked for."""
    spans: list[tuple[int, int]] = []
    sep = view.find("://")
    while sep != -1:
        start, end, host = _scheme_url(view, sep)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
        scan.judge("host", host)
        sep = view.find("://", sep + 3)
    return spans


def _scan_bare(view: str, spans: list[tuple[int, int]], scan: _LinkScan) -> None:
    """Judges bare hosts and IPv4 addresses outside URL spans and outside the path of an earlier bare host."""
    skip_until = 0
    span_index = 0
    tlds = _tlds()
    examined = 0
    for match in _BARE_RE.finditer(view):
        at = match.start()
        if at < skip_until:
            continue
        while span_index < len(spans) and spans[span_index][1] <= at:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= at:
            continue
        examined += 1
        if examined > _MAX_DOTTED_TOKENS:
            scan.found.add(TOO_MANY_LINKS)
            raise _TooManyLinks
        token = match.group()
        last = token[token.rfind(".") + 1 :]
        if last.lower() not in tlds and not last[0].isdigit() and token.count(".") == 1 and token[:3].lower() != "www":
            continue  # the common case of text: one dot, no top-level domain, not a number (a cheap test)
        candidate = _bare_candidate(view, match)
        if candidate is None:
            continue
        kind, value, end = candidate
        scan.judge(kind, value)
        if view[end : end + 1] in _PATH_STARTS:
            stop = _SPAN_END_RE.search(view, end)
            skip_until = stop.start() if stop else len(view)


def _find_links(text: str, rules: ContentRules) -> set[str]:
    view = _link_view(text)
    if "." not in view and "://" not in view and not _DOT_WORD_RE.search(view):
        return set()
    if _STRONG_DOT_HINT_RE.search(view):
        view = _STRONG_DOT_RE.sub(".", view)
    if _WEAK_DOT_HINT_RE.search(view):
        view = _WEAK_DOT_RE.sub(_weak_dot, view)
    scan = _LinkScan(rules)
    with contextlib.suppress(_TooManyLinks):
        _scan_bare(view, _scan_scheme_urls(view, scan), scan)
    return scan.found


# --- the check ---------------------------------------------------------------------------------------------


def check_content(text: str, rules: ContentRules) -> list[ContentViolation]:
    """Every restricted term and every not-enabled link domain in ``text``; an empty list means it may be sent.

    Terms come first, then links, each sorted by value; each value appears once."""
    violations = [ContentViolation("restricted_term", term) for term in sorted(_find_terms(text, rules))]
    if rules.links_restricted:
        violations += [ContentViolation("restricted_link", value) for value in sorted(_find_links(text, rules))]
    return violations
