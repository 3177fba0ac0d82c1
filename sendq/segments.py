"""SMS segment counting: how many concatenated SMS parts a text costs, GSM-7 or UCS-2.

A text that fits the GSM 03.38 default alphabet (basic table plus the escape-prefixed extension table) goes out
as 7-bit septets; anything else switches the whole message to UCS-2, counted in UTF-16 code units. One SMS carries
160 septets / 70 units; once a message is split, each part loses room to the concatenation header (UDH) and carries
153 septets / 67 units. The count simulates the packing because a part boundary never splits an escape pair
(ESC + code) nor a UTF-16 surrogate pair, so plain division can come up one part short.
National language shift tables are not used: providers rarely support them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

#: the GSM 03.38 default alphabet, indexed by septet value (16 per row); 0x1B is ESC, the escape to the extension
#: table, not a character of its own. Row 0x10 is Greek capitals (U+0394, U+005F, U+03A6, U+0393, ...): lookalikes
#: such as U+2206 INCREMENT or U+2126 OHM SIGN are not in the alphabet. 0x09 is capital Ç (U+00C7) as in 3GPP TS
#: 23.038; some old tables print it as lowercase ç, which is not in GSM-7 and makes a message UCS-2.
GSM7_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

_ESC: Final = 0x1B

#: the extension table: each is sent as ESC + this code, so it costs 2 septets
GSM7_EXTENSION: Final[Mapping[str, int]] = MappingProxyType(
    {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
)

#: septets per character for every character GSM-7 can carry
_GSM7_WIDTH: Final[Mapping[str, int]] = MappingProxyType(
    {ch: 1 for i, ch in enumerate(GSM7_BASIC) if i != _ESC} | dict.fromkeys(GSM7_EXTENSION, 2)
)

#: the characters that cost one septet each (a text of only these, the common case, needs no packing simulation)
_GSM7_ONE_SEPTET: Final = frozenset(ch for ch, width in _GSM7_WIDTH.items() if width == 1)

GSM7_SINGLE: Final = 160
GSM7_PER_PART: Final = 153
UCS2_SINGLE: Final = 70
UCS2_PER_PART: Final = 67


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """What a text costs as SMS."""

    encoding: Literal["gsm7", "ucs2"]
    #: septets for GSM-7 (an extension character counts 2), UTF-16 code units for UCS-2
    units: int
    #: SMS parts; at least 1 (an empty text is still one SMS)
    segments: int
    #: code points in the text
    characters: int


def count_segments(text: str) -> SegmentCount:
    """Count the encoding, units and SMS parts ``text`` takes."""
    if _GSM7_ONE_SEPTET.issuperset(text):
        # One septet per character: no escape pair to keep whole, so plain division is exact.
        n = len(text)
        return SegmentCount("gsm7", n, 1 if n <= GSM7_SINGLE else -(-n // GSM7_PER_PART), n)
    gsm_widths = [_GSM7_WIDTH.get(ch, 0) for ch in text]
    if 0 not in gsm_widths:
        return SegmentCount("gsm7", sum(gsm_widths), _pack(gsm_widths, GSM7_SINGLE, GSM7_PER_PART), len(text))
    # Outside the BMP a character is a surrogate pair: 2 UTF-16 code units.
    ucs2_widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SegmentCount("ucs2", sum(ucs2_widths), _pack(ucs2_widths, UCS2_SINGLE, UCS2_PER_PART), len(text))


def _pack(widths: Sequence[int], single: int, per_part: int) -> int:
    """Parts needed for characters of these widths; a character never straddles two parts."""
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > per_part:
            # The pair would be cut in two: the rest of this part stays empty and the pair opens the next one.
            parts += 1
            used = 0
        used += width
    return parts
