"""A fast yes for the common case of ``recipients.canonical_phone``: is an E.164 string a valid number, exactly as
``phonenumbers`` formats it?

Batch intake checks every recipient, and ``phonenumbers.parse`` plus ``is_valid_number`` cost 20-40 µs a number
(pure Python: a generic front end for any way of writing a number, then one regular expression per number type
and region, for +1 up to 25 regions). This module answers the same question from phonenumbers' own metadata
with a few dictionary look-ups and one or two regular expressions, but only ever says yes: whatever it is not sure
of (a national prefix or a leading zero after the country code, a number it finds invalid) goes the full way, so
refusals and their reasons stay phonenumbers'. ``tests/test_sendq_phone_validity.py`` holds it to
``phonenumbers`` on every region's example numbers and on random digit strings.
"""

import functools
import re
from typing import Final, NamedTuple

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc
from phonenumbers.phonenumberutil import _extract_country_code

#: the number types ``phonenumbers``' type check tries, in its order; mobile counts only where its pattern is not
#: the fixed-line one (with the same pattern, phonenumbers does not try it on its own)
_TYPES: Final = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
#: phonenumbers refuses a national number shorter than this
_MIN_NATIONAL_DIGITS: Final = 2


class _Region(NamedTuple):
    """One region's validity test: the general pattern, then any number type's pattern for the number's length."""

    general: re.Pattern[str]
    general_lengths: frozenset[int]
    #: per length, the alternation of the patterns of the number types that allow it (None: no type does)
    by_length: dict[int, re.Pattern[str] | None]
    #: the region owns a number of a shared country code whose start matches this (None: by full validity)
    leading_digits: re.Pattern[str] | None

    def is_valid(self, national: str) -> bool:
        """``phonenumbers``' number type is not UNKNOWN."""
        n = len(national)
        if self.general_lengths and n not in self.general_lengths:
            return False
        if self.general.fullmatch(national) is None:
            return False
        pattern = self.by_length.get(n)
        return pattern is not None and pattern.fullmatch(national) is not None


def _region(metadata: PhoneMetadata) -> _Region:
    found: list[PhoneNumberDesc | None] = [getattr(metadata, name) for name in _TYPES]
    if not metadata.same_mobile_and_fixed_line_pattern:
        found.append(metadata.mobile)
    descs = [d for d in found if d is not None and d.national_number_pattern]
    general = metadata.general_desc
    assert general is not None  # every region's metadata has one
    lengths = {n for d in descs for n in d.possible_length} | set(general.possible_length)
    by_length: dict[int, re.Pattern[str] | None] = {}
    for n in lengths:
        # A type without lengths of its own fits any length (phonenumbers then checks its pattern only); lengths
        # no one names are left out, which can only turn a yes into "not known".
        fits = [d.national_number_pattern for d in descs if not d.possible_length or n in d.possible_length]
        # Fullmatch of an alternation is a fullmatch of any one of its branches.
        by_length[n] = re.compile("|".join(f"(?:{p})" for p in fits)) if fits else None
    return _Region(
        general=re.compile(general.national_number_pattern or "(?!)"),
        general_lengths=frozenset(general.possible_length),
        by_length=by_length,
        leading_digits=re.compile(metadata.leading_digits) if metadata.leading_digits else None,
    )


class _CountryCode(NamedTuple):
    #: the national prefix phonenumbers would strip after the country code (None: it has none)
    national_prefix: re.Pattern[str] | None
    #: the regions of the code that have metadata, in phonenumbers' order (the main one first)
    regions: tuple[_Region, ...]
    #: the code has one region (phonenumbers then skips the search for the number's region)
    single: bool


@functools.cache
def _country_code(code: int) -> _CountryCode:
    names = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    regions = []
    for name in names:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, name)
        if metadata is not None:
            regions.append(_region(metadata))
    main = PhoneMetadata.metadata_for_region_or_calling_code(code, names[0])
    prefix = main.national_prefix_for_parsing if main is not None else None
    return _CountryCode(re.compile(prefix) if prefix else None, tuple(regions), single=len(names) == 1)


def surely_valid(value: str) -> bool:
    """True only if ``value`` ('+' then ASCII digits, no leading 0) is a valid number whose E.164 form is
    ``value`` itself. False means "not known": the caller asks ``phonenumbers``."""
    # phonenumbers' own split of the digits after '+' into country calling code and national number (code 0: none)
    code, national = _extract_country_code(value[1:])
    if code == 0:
        return False
    if len(national) < _MIN_NATIONAL_DIGITS or national[0] == "0":
        return False  # leading zeros are kept apart by phonenumbers; not worth a fast path
    country = _country_code(code)
    if country.national_prefix is not None and country.national_prefix.match(national):
        return False  # phonenumbers may strip it (and then the E.164 form differs)
    if country.single:
        return bool(country.regions) and country.regions[0].is_valid(national)
    # A shared code (+1, +7, +44...): the first region that claims the number by its leading digits, or else by
    # full validity, is its region (phonenumbers' region_code_for_number); the number must be valid there.
    for region in country.regions:
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return region.is_valid(national)
        elif region.is_valid(national):
            return True
    return False
