"""The fast yes of ``phone_validity.surely_valid`` against ``phonenumbers`` itself: it may only say yes where the full
check says yes, and it must say yes for the valid numbers it is meant to take (else it is no fast path at all)."""

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from sendq.errors import InvalidInput
from sendq.phone_validity import surely_valid
from sendq.recipients import canonical_phone

#: the sizes of phonenumbers' country calling codes (1 to 3 digits)
_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
)


def full_check(value: str) -> bool:
    """What ``canonical_phone`` asked of phonenumbers before the fast path: valid, and ``value`` is its E.164 form."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        not number.extension
        and phonenumbers.is_valid_number(number)
        and phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == value
    )


def _examples() -> list[str]:
    """phonenumbers' example number of every region and number type, and of every non-geographic code."""
    found = [
        phonenumbers.example_number_for_type(region, kind)
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in _TYPES
    ]
    found += [
        phonenumbers.example_number_for_non_geo_entity(c)
        for c in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)
    ]
    return sorted({phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in found if n is not None})


EXAMPLES = _examples()


def _near(value: str, rng: random.Random) -> str:
    """``value`` with one digit changed, added or dropped: numbers on the edges of the patterns."""
    digits = list(value[1:])
    digits[rng.randrange(1, len(digits))] = str(rng.randrange(10))
    roll = rng.random()
    if roll < 0.2:
        digits.append(str(rng.randrange(10)))
    elif roll < 0.4 and len(digits) > 3:
        digits.pop()
    return "+" + "".join(digits)


def _random_number(rng: random.Random) -> str:
    code = str(rng.choice(_CODES))
    return "+" + code + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 16 - len(code))))


def test_every_example_number_is_valid_to_the_full_check() -> None:
    # The ground the other tests stand on: phonenumbers' examples are valid E.164 numbers.
    assert len(EXAMPLES) > 1000
    assert all(full_check(v) for v in EXAMPLES)


def test_the_fast_path_takes_the_example_numbers_it_is_meant_for() -> None:
    """Everything but the two cases it leaves to phonenumbers (a leading zero or a national prefix after the
    country code)."""
    taken = [v for v in EXAMPLES if surely_valid(v)]
    assert len(taken) > 0.95 * len(EXAMPLES)
    left = sorted(set(EXAMPLES) - set(taken))
    # Italy's fixed lines keep their leading zero; +1's national prefix "1" never starts a NANP number.
    assert "+390212345678" in left
    assert "+12015550123" in taken
    assert "+447400123456" in taken


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_says_yes_only_where_the_full_check_does(seed: int) -> None:
    rng = random.Random(seed)
    values = [_near(v, rng) for v in EXAMPLES for _ in range(3)] + [_random_number(rng) for _ in range(10_000)]
    yes = [v for v in values if surely_valid(v)]
    assert [v for v in yes if not full_check(v)] == []
    # The random ones include valid numbers the fast path takes, so the check above is not vacuous.
    assert len(yes) > 1000


def test_canonical_phone_answers_as_before_on_both_paths() -> None:
    rng = random.Random(7)
    for value in EXAMPLES + [_near(v, rng) for v in EXAMPLES]:
        try:
            accepted = canonical_phone(value) == value
        except InvalidInput:
            accepted = False
        assert accepted == full_check(value), value


def test_the_metadata_has_what_the_fast_path_relies_on() -> None:
    """Guards for a phonenumbers upgrade: the fast path joins each region's type patterns into one alternation and
    reads an absent leading-digits rule as "decide by validity", as phonenumbers does with None (not with "")."""
    descs = ["general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number"]
    descs += ["voip", "pager", "uan", "voicemail"]
    for code, names in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for name in names:
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, name)
            if metadata is None:
                continue
            assert metadata.leading_digits != "", (code, name)
            for attr in descs:
                desc = getattr(metadata, attr)
                pattern = desc.national_number_pattern if desc is not None else None
                if not pattern:
                    continue
                # Named groups, back-references, inline flags or anchors would not survive the joining.
                for construct in ("(?P", "(?i", "(?x", "(?s", "(?m", "^", "$") + tuple(f"\\{n}" for n in range(1, 10)):
                    assert construct not in pattern, (code, name, attr, pattern)
