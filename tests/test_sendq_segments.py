"""SMS segment counting: the GSM 03.38 tables, the part boundaries, and packing that never splits a pair."""

import pytest
from hypothesis import given, strategies as st

from sendq.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentCount, count_segments

# The test's own view of the alphabet, by category, so the reference packer below does not reuse the module's
# tables: a character's category decides its encoding and width.
BASIC_SAMPLE = "aZ09 @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà\n\r"
EXTENSION = "^{}\\[~]|€\f"
# ç (only Ç is GSM), ∆ INCREMENT and Ω OHM SIGN (lookalikes of GSM's Greek capitals), a bare ESC
BMP_NOT_GSM = "çж中`ÿ\u00a0\u2019\u2206\u2126\x1b"
ASTRAL = "😀𝄞👍"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SegmentCount("gsm7", 0, 1, 0)),
        ("a", SegmentCount("gsm7", 1, 1, 1)),
        ("a" * 160, SegmentCount("gsm7", 160, 1, 160)),
        ("a" * 161, SegmentCount("gsm7", 161, 2, 161)),
        ("a" * 306, SegmentCount("gsm7", 306, 2, 306)),
        ("a" * 307, SegmentCount("gsm7", 307, 3, 307)),
        ("a" * 459, SegmentCount("gsm7", 459, 3, 459)),
        ("a" * 460, SegmentCount("gsm7", 460, 4, 460)),
        ("ж" * 70, SegmentCount("ucs2", 70, 1, 70)),
        ("ж" * 71, SegmentCount("ucs2", 71, 2, 71)),
        ("ж" * 134, SegmentCount("ucs2", 134, 2, 134)),
        ("ж" * 135, SegmentCount("ucs2", 135, 3, 135)),
        ("ж" * 201, SegmentCount("ucs2", 201, 3, 201)),
        ("ж" * 202, SegmentCount("ucs2", 202, 4, 202)),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_boundaries(text: str, expected: SegmentCount) -> None:
    """160 / 153 septets, 70 / 67 units: one more unit opens the next part."""
    assert count_segments(text) == expected


def test_extension_characters_cost_two_septets() -> None:
    assert count_segments("€") == SegmentCount("gsm7", 2, 1, 1)
    for ch in EXTENSION:
        assert count_segments(ch) == SegmentCount("gsm7", 2, 1, 1), repr(ch)
    # 80 euro signs fill one SMS exactly; the 81st needs a second part.
    assert count_segments("€" * 80) == SegmentCount("gsm7", 160, 1, 80)
    assert count_segments("€" * 81).segments == 2


def test_escape_pair_is_not_split() -> None:
    """An extension character starting at septet 153 does not fit its part's last septet: it moves on."""
    # 152 + 2 + 152 = 306 septets, which division says fits 2 parts; packing leaves septet 153 empty and needs 3.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text) == SegmentCount("gsm7", 306, 3, 305)
    # One fewer trailing character and the second part holds 2 + 151 = 153: two parts.
    assert count_segments("a" * 152 + "€" + "a" * 151).segments == 2
    # Starting at septet 152 the pair fits (152 + 153), so the same 306 septets take 2 parts.
    assert count_segments("a" * 151 + "€" + "a" * 153) == SegmentCount("gsm7", 306, 2, 305)


def test_surrogate_pair_is_not_split() -> None:
    """An emoji outside the BMP is 2 UTF-16 units and never straddles the 67-unit boundary."""
    assert count_segments("😀") == SegmentCount("ucs2", 2, 1, 1)
    assert count_segments("😀" * 35) == SegmentCount("ucs2", 70, 1, 35)
    # 66 + 2 + 66 = 134 units fits 2 x 67 by division, but the emoji cannot take unit 67 of the first part.
    assert count_segments("ж" * 66 + "😀" + "ж" * 66) == SegmentCount("ucs2", 134, 3, 133)
    assert count_segments("ж" * 65 + "😀" + "ж" * 67) == SegmentCount("ucs2", 134, 2, 133)


def test_one_non_gsm_character_switches_everything_to_ucs2() -> None:
    assert count_segments("ç") == SegmentCount("ucs2", 1, 1, 1)
    assert count_segments("Ç") == SegmentCount("gsm7", 1, 1, 1)
    # 159 GSM characters plus ç: 160 UCS-2 units is 3 parts, not 1.
    assert count_segments("a" * 159 + "ç") == SegmentCount("ucs2", 160, 3, 160)
    # In UCS-2 the extension characters are single units again.
    assert count_segments("€" * 69 + "ç") == SegmentCount("ucs2", 70, 1, 70)
    for ch in BMP_NOT_GSM:
        assert count_segments(ch).encoding == "ucs2", repr(ch)


def test_basic_table_is_exact() -> None:
    """Spot checks against 3GPP TS 23.038, section 6.2.1 (positions by septet value)."""
    assert len(GSM7_BASIC) == 128 and len(set(GSM7_BASIC)) == 128
    positions = {
        0x00: "@", 0x01: "£", 0x02: "$", 0x03: "¥", 0x04: "è", 0x05: "é", 0x06: "ù", 0x07: "ì", 0x08: "ò",
        0x09: "\u00c7", 0x0A: "\n", 0x0B: "Ø", 0x0C: "ø", 0x0D: "\r", 0x0E: "Å", 0x0F: "å",
        0x10: "\u0394", 0x11: "_", 0x12: "\u03a6", 0x13: "\u0393", 0x14: "\u039b", 0x15: "\u03a9", 0x16: "\u03a0",
        0x17: "\u03a8", 0x18: "\u03a3", 0x19: "\u0398", 0x1A: "\u039e", 0x1B: "\x1b", 0x1C: "Æ", 0x1D: "æ",
        0x1E: "ß", 0x1F: "É", 0x20: " ", 0x24: "¤", 0x40: "¡", 0x5B: "Ä", 0x5C: "Ö", 0x5D: "Ñ", 0x5E: "Ü",
        0x5F: "§", 0x60: "¿", 0x7B: "ä", 0x7C: "ö", 0x7D: "ñ", 0x7E: "ü", 0x7F: "à",
    }  # fmt: skip
    for septet, ch in positions.items():
        assert GSM7_BASIC[septet] == ch, hex(septet)
    assert GSM7_BASIC[0x41:0x5B] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert GSM7_BASIC[0x61:0x7B] == "abcdefghijklmnopqrstuvwxyz"
    assert GSM7_BASIC[0x30:0x40] == "0123456789:;<=>?"
    assert dict(GSM7_EXTENSION) == {
        "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
    }  # fmt: skip
    # Every basic character but ESC costs one septet; ESC itself is not a character one can send.
    for ch in GSM7_BASIC.replace("\x1b", ""):
        assert count_segments(ch) == SegmentCount("gsm7", 1, 1, 1), repr(ch)
    assert count_segments("\x1b").encoding == "ucs2"


def test_printable_ascii_is_gsm_except_backtick() -> None:
    for code in range(0x20, 0x7F):
        expected = "ucs2" if chr(code) == "`" else "gsm7"
        assert count_segments(chr(code)).encoding == expected, chr(code)


ESC = object()


def reference_count(text: str) -> tuple[str, int, int]:
    """Encode to real units, cut every 153/67, and step a cut back when it would leave ESC or a high surrogate."""
    if all(ch in BASIC_SAMPLE or ch in EXTENSION for ch in text):
        units: list[object] = []
        for ch in text:
            units.extend([ESC, ch] if ch in EXTENSION else [ch])
        encoding, single, per_part = "gsm7", 160, 153

        def opens_pair(unit: object) -> bool:
            return unit is ESC
    else:
        raw = text.encode("utf-16-be")
        units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        encoding, single, per_part = "ucs2", 70, 67

        def opens_pair(unit: object) -> bool:
            return isinstance(unit, int) and 0xD800 <= unit <= 0xDBFF

    if len(units) <= single:
        return encoding, len(units), 1
    parts, start = 0, 0
    while start < len(units):
        end = min(start + per_part, len(units))
        if end < len(units) and opens_pair(units[end - 1]):
            end -= 1
        parts += 1
        start = end
    return encoding, len(units), parts


MIXED = st.sampled_from(BASIC_SAMPLE + EXTENSION + BMP_NOT_GSM + ASTRAL)
GSM_ONLY = st.sampled_from(BASIC_SAMPLE + EXTENSION)


@st.composite
def pairs_near_boundaries(draw: st.DrawFn) -> str:
    """Runs of filler a few units short of a part, each closed by a pair, so pairs keep landing on part boundaries.

    Packing and plain division disagree when pairs pushed to the next part waste w units and the total is within
    w of a multiple of the part size; the tail aims there. Uniformly random text hardly ever does.
    """
    pair, filler, per_part = draw(st.sampled_from([("€", "a", 153), ("😀", "ж", 67)]))
    runs = draw(st.lists(st.integers(per_part - 4, per_part), min_size=1, max_size=5))
    units = sum(runs) + 2 * len(runs)
    tail = max(0, (-units) % per_part - draw(st.integers(0, 4)))
    return "".join(filler * run + pair for run in runs) + filler * tail


TEXTS = st.one_of(
    pairs_near_boundaries(),
    st.text(GSM_ONLY, max_size=700),
    st.text(MIXED, max_size=400),
    st.text(st.sampled_from("ж" + ASTRAL), max_size=400),
)


@given(TEXTS)
def test_matches_reference_packer(text: str) -> None:
    got = count_segments(text)
    assert (got.encoding, got.units, got.segments) == reference_count(text)
    assert got.characters == len(text)
    single, per_part = (160, 153) if got.encoding == "gsm7" else (70, 67)
    assert (got.segments == 1) == (got.units <= single)
    if got.segments > 1:
        # Each part but the last is full or one unit short (a pair moved on); the last is not empty.
        assert (got.segments - 1) * (per_part - 1) < got.units <= got.segments * per_part


@given(TEXTS, st.text(MIXED, min_size=1, max_size=50))
def test_appending_never_lowers_the_count(text: str, more: str) -> None:
    before, after = count_segments(text), count_segments(text + more)
    assert after.segments >= before.segments
    assert after.characters == before.characters + len(more)
    if before.encoding == "ucs2":
        assert after.encoding == "ucs2"
