"""Sending windows: parsing, weekly/overnight/holiday rules, DST in three zones, and next_allowed's guarantees.

Expected instants are worked out by hand in UTC from the zones' published rules (noted next to each), never from
the code under test. 2026 calendar anchors: Jan 1 is a Thursday, so Jan 5 is a Monday; Dec 25 is a Friday.
"""

import time as clock
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sendq.windows import (
    DayException,
    SendingWindows,
    TimeRange,
    Weekday,
    parse_exception,
    parse_weekly,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def windows(*specs: str, tz: str = "UTC", exceptions: tuple[str, ...] = ()) -> SendingWindows:
    return SendingWindows(
        timezone=tz,
        weekly=parse_weekly(specs),
        exceptions=tuple(parse_exception(e) for e in exceptions),
    )


# --- parsing -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end", "canonical"),
    [
        ("09:00-18:00", time(9), time(18), "09:00-18:00"),
        ("22:00-02:00", time(22), time(2), "22:00-02:00"),
        ("00:00-24:00", time(0), time(0), "00:00-24:00"),
        ("22:00-24:00", time(22), time(0), "22:00-24:00"),
        ("22:00-00:00", time(22), time(0), "22:00-24:00"),
        (" 9:05 - 17:30 ", time(9, 5), time(17, 30), "09:05-17:30"),
    ],
)
def test_time_range_parse_and_str_round_trip(text: str, start: time, end: time, canonical: str) -> None:
    parsed = TimeRange.parse(text)
    assert (parsed.start, parsed.end) == (start, end)
    assert str(parsed) == canonical
    assert TimeRange.parse(str(parsed)) == parsed


def test_time_range_flags() -> None:
    assert TimeRange.parse("00:00-24:00").all_day
    assert not TimeRange.parse("09:00-18:00").all_day
    assert TimeRange.parse("22:00-02:00").crosses_midnight
    assert not TimeRange.parse("09:00-18:00").crosses_midnight


@pytest.mark.parametrize(
    "text",
    ["25:00-26:00", "9-5", "", "09:00", "09:60-10:00", "24:00-02:00", "09:00-09:00", "00:00-00:00", "09:00-24:30"],
)
def test_time_range_junk_is_rejected_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time range") as info:
        TimeRange.parse(text)
    assert repr(text) in str(info.value)


def test_time_range_model_validation() -> None:
    with pytest.raises(ValueError, match="start equals end"):
        TimeRange(start=time(9), end=time(9))
    with pytest.raises(ValueError, match="whole minute"):
        TimeRange(start=time(9, 0, 30), end=time(10))
    with pytest.raises(ValueError, match="naive"):
        TimeRange(start=time(9, tzinfo=UTC), end=time(10))
    # The text form validates too, so configuration can list ranges as strings.
    assert TimeRange.model_validate("08:00-09:30") == TimeRange(start=time(8), end=time(9, 30))


def test_parse_weekly_day_syntax_and_replacement() -> None:
    weekly = parse_weekly(
        ["mon-fri=09:00-13:00,15:00-20:00", "sat=10:00-14:00", "sun=closed", "fri=09:00-12:00", "Wed = closed"]
    )
    morning_evening = (TimeRange.parse("09:00-13:00"), TimeRange.parse("15:00-20:00"))
    assert weekly == {
        Weekday.MON: morning_evening,
        Weekday.TUE: morning_evening,
        Weekday.WED: (),
        Weekday.THU: morning_evening,
        Weekday.FRI: (TimeRange.parse("09:00-12:00"),),
        Weekday.SAT: (TimeRange.parse("10:00-14:00"),),
        Weekday.SUN: (),
    }
    eight_to_nine = (TimeRange.parse("08:00-21:00"),)
    assert parse_weekly(["daily=08:00-21:00"]) == dict.fromkeys(Weekday, eight_to_nine)
    assert set(parse_weekly(["fri-mon=08:00-21:00"])) == {Weekday.FRI, Weekday.SAT, Weekday.SUN, Weekday.MON}
    assert set(parse_weekly(["weekdays=08:00-21:00"])) == {
        Weekday.MON,
        Weekday.TUE,
        Weekday.WED,
        Weekday.THU,
        Weekday.FRI,
    }
    assert set(parse_weekly(["weekend=08:00-21:00"])) == {Weekday.SAT, Weekday.SUN}
    assert set(parse_weekly(["mon,wed-thu=08:00-21:00"])) == {Weekday.MON, Weekday.WED, Weekday.THU}
    assert parse_weekly([]) == {}


@pytest.mark.parametrize(
    "spec",
    [
        "mon=",
        "xyz=09:00-10:00",
        "mon",
        "=09:00-10:00",
        "mon=09:00-09:00",
        "mon=25:00-26:00",
        "mon-xyz=closed",
        "mon=9-5",
    ],
)
def test_parse_weekly_junk_names_the_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid weekly spec") as info:
        parse_weekly(["mon=09:00-10:00", spec])
    assert repr(spec) in str(info.value)


def test_parse_exception() -> None:
    assert parse_exception("2026-12-25=closed") == DayException(day=date(2026, 12, 25))
    assert parse_exception("2026-12-24=09:00-14:00,16:00-18:00") == DayException(
        day=date(2026, 12, 24), ranges=(TimeRange.parse("09:00-14:00"), TimeRange.parse("16:00-18:00"))
    )
    assert str(parse_exception("2026-12-24=09:00-14:00")) == "2026-12-24=09:00-14:00"
    assert DayException.model_validate("2026-12-25=closed") == DayException(day=date(2026, 12, 25))


@pytest.mark.parametrize("spec", ["2026-13-01=closed", "2026-12-25", "20261225=closed", "2026-12-25=", "x=closed"])
def test_parse_exception_junk_names_the_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid exception spec") as info:
        parse_exception(spec)
    assert repr(spec) in str(info.value)


def test_unknown_timezone_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown IANA time zone 'Mars/Base'"):
        SendingWindows(timezone="Mars/Base")
    for bad in ["", "../etc/passwd", "America"]:
        with pytest.raises(ValueError, match="unknown IANA time zone"):
            SendingWindows(timezone=bad)


def test_duplicate_exception_dates_are_rejected() -> None:
    with pytest.raises(ValueError, match="more than one exception for 2026-12-25"):
        windows(exceptions=("2026-12-25=closed", "2026-12-25=09:00-10:00"))


def test_model_round_trips_through_json_and_accepts_text_forms() -> None:
    built = windows("mon-fri=09:00-18:00", "sat=22:00-02:00", tz="Europe/Berlin", exceptions=("2026-12-25=closed",))
    assert SendingWindows.model_validate_json(built.model_dump_json()) == built
    from_text = SendingWindows.model_validate(
        {
            "timezone": "Europe/Berlin",
            "weekly": {"mon": ["09:00-18:00"], "tue": ["09:00-18:00"], "wed": ["09:00-18:00"], "thu": ["09:00-18:00"]}
            | {"fri": ["09:00-18:00"], "sat": ["22:00-02:00"]},
            "exceptions": ["2026-12-25=closed"],
        }
    )
    assert from_text == built


def test_restricted_and_describe() -> None:
    assert not SendingWindows().restricted
    assert SendingWindows().describe() == "unrestricted (any day, any time)"
    assert SendingWindows(weekly={}).restricted
    assert SendingWindows(exceptions=(parse_exception("2026-12-25=closed"),)).restricted
    assert (
        windows(
            "mon-fri=09:00-18:00", "sat=10:00-14:00", tz="Europe/Berlin", exceptions=("2026-12-25=closed",)
        ).describe()
        == "Europe/Berlin: mon-fri=09:00-18:00 sat=10:00-14:00 sun=closed; exceptions: 2026-12-25=closed"
    )
    assert windows("daily=08:00-21:00").describe() == "UTC: daily=08:00-21:00"
    assert (
        SendingWindows(
            exceptions=(parse_exception("2026-12-25=closed"), parse_exception("2026-12-24=09:00-14:00"))
        ).describe()
        == "UTC: daily=00:00-24:00; exceptions: 2026-12-24=09:00-14:00 2026-12-25=closed"
    )


# --- is_allowed on ordinary days -----------------------------------------------------------------------------------


def test_unrestricted_allows_everything() -> None:
    assert SendingWindows().is_allowed(utc(2026, 1, 5, 3, 17))
    assert SendingWindows(timezone="Europe/Berlin").next_allowed(utc(2026, 1, 5, 3, 17)) == utc(2026, 1, 5, 3, 17)


def test_naive_datetimes_are_rejected() -> None:
    w = windows("mon=09:00-18:00")
    with pytest.raises(ValueError, match="naive"):
        w.is_allowed(datetime(2026, 1, 5, 10))
    with pytest.raises(ValueError, match="naive"):
        w.next_allowed(datetime(2026, 1, 5, 10))


def test_weekday_windows_several_ranges_closed_days_and_half_open_ends() -> None:
    w = windows("mon-fri=09:00-13:00,15:00-20:00", "sat=10:00-14:00", "sun=closed")
    assert not w.is_allowed(utc(2026, 1, 5, 8, 59, 59))
    assert w.is_allowed(utc(2026, 1, 5, 9))
    assert w.is_allowed(datetime(2026, 1, 5, 12, 59, 59, 999999, tzinfo=UTC))
    assert not w.is_allowed(utc(2026, 1, 5, 13))  # half-open: the end is excluded
    assert not w.is_allowed(utc(2026, 1, 5, 14))
    assert w.is_allowed(utc(2026, 1, 5, 15))
    assert not w.is_allowed(utc(2026, 1, 5, 20))
    assert w.is_allowed(utc(2026, 1, 10, 11))  # Saturday
    assert not w.is_allowed(utc(2026, 1, 10, 15))
    assert not w.is_allowed(utc(2026, 1, 11, 11))  # Sunday, explicitly closed
    # A weekday missing from the dict is closed.
    assert not windows("mon=09:00-18:00").is_allowed(utc(2026, 1, 6, 10))


def test_evaluation_is_on_local_wall_clock() -> None:
    w = windows("mon=09:00-18:00", tz="Asia/Kolkata")  # UTC+05:30, no DST
    assert not w.is_allowed(utc(2026, 1, 5, 3, 29))  # 08:59 IST
    assert w.is_allowed(utc(2026, 1, 5, 3, 30))  # 09:00 IST
    assert w.is_allowed(datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))))
    assert not w.is_allowed(utc(2026, 1, 5, 12, 30))  # 18:00 IST


def test_all_day_range() -> None:
    w = windows("mon=00:00-24:00")
    assert w.is_allowed(utc(2026, 1, 5, 0))
    assert w.is_allowed(datetime(2026, 1, 5, 23, 59, 59, 999999, tzinfo=UTC))
    assert not w.is_allowed(utc(2026, 1, 6, 0))
    assert not w.is_allowed(datetime(2026, 1, 4, 23, 59, 59, 999999, tzinfo=UTC))


# --- overnight ranges ----------------------------------------------------------------------------------------------


def test_overnight_range_belongs_to_its_start_day() -> None:
    w = windows("mon=22:00-02:00")
    assert not w.is_allowed(utc(2026, 1, 5, 21, 59))
    assert w.is_allowed(utc(2026, 1, 5, 22))
    assert w.is_allowed(utc(2026, 1, 6, 1, 59))  # Tuesday, the Monday range's tail
    assert not w.is_allowed(utc(2026, 1, 6, 2))
    assert not w.is_allowed(utc(2026, 1, 5, 1))  # Monday 01:00 would be Sunday's tail: Sunday is closed
    assert not w.is_allowed(utc(2026, 1, 6, 22, 30))  # Tuesday evening: Tuesday has no range


def test_sunday_overnight_wraps_into_monday() -> None:
    w = windows("sun=23:00-01:00")
    assert w.is_allowed(utc(2026, 1, 4, 23, 30))  # Sunday
    assert w.is_allowed(utc(2026, 1, 5, 0, 30))  # Monday
    assert not w.is_allowed(utc(2026, 1, 5, 1))
    assert w.next_allowed(utc(2026, 1, 5, 1)) == utc(2026, 1, 11, 23)


def test_range_ending_at_24_00() -> None:
    w = windows("mon=22:00-24:00")
    assert w.is_allowed(datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC))
    assert not w.is_allowed(utc(2026, 1, 6, 0))


# --- holidays ------------------------------------------------------------------------------------------------------


def test_holiday_closed_all_day_and_different_hours() -> None:
    w = windows("mon-fri=09:00-18:00", exceptions=("2026-12-25=closed", "2026-12-24=09:00-14:00,16:00-17:00"))
    assert w.is_allowed(utc(2026, 12, 23, 17))  # ordinary Wednesday
    assert w.is_allowed(utc(2026, 12, 24, 13, 59))
    assert not w.is_allowed(utc(2026, 12, 24, 14))
    assert w.is_allowed(utc(2026, 12, 24, 16, 30))
    assert not w.is_allowed(utc(2026, 12, 24, 17))
    assert not w.is_allowed(utc(2026, 12, 25, 10))  # Friday holiday
    # An exception can open a day the weekly plan keeps closed.
    assert windows("mon-fri=09:00-18:00", exceptions=("2026-12-27=10:00-11:00",)).is_allowed(utc(2026, 12, 27, 10))


def test_closed_holiday_cuts_an_overnight_tail_at_midnight() -> None:
    w = windows("mon=22:00-02:00", exceptions=("2026-01-06=closed",))
    assert w.is_allowed(utc(2026, 1, 5, 23, 59))
    assert not w.is_allowed(utc(2026, 1, 6, 0))
    assert not w.is_allowed(utc(2026, 1, 6, 1))


def test_exception_with_hours_also_cuts_the_previous_days_tail() -> None:
    w = windows("mon=22:00-02:00", exceptions=("2026-01-06=09:00-10:00",))
    assert w.is_allowed(utc(2026, 1, 5, 23))
    assert not w.is_allowed(utc(2026, 1, 6, 1))
    assert w.is_allowed(utc(2026, 1, 6, 9, 30))


def test_closed_start_day_removes_its_overnight_range() -> None:
    w = windows("mon=22:00-02:00", exceptions=("2026-01-05=closed",))
    assert not w.is_allowed(utc(2026, 1, 5, 23))
    assert not w.is_allowed(utc(2026, 1, 6, 1))  # the tail belonged to the closed Monday


def test_exceptions_own_overnight_range_spills_into_an_ordinary_day() -> None:
    w = windows("fri=09:00-17:00", exceptions=("2026-12-31=20:00-02:00",))
    assert w.is_allowed(utc(2026, 12, 31, 23))
    assert w.is_allowed(utc(2027, 1, 1, 1, 30))  # Friday, not an exception
    assert not w.is_allowed(utc(2027, 1, 1, 2))
    cut = windows("fri=09:00-17:00", exceptions=("2026-12-31=20:00-02:00", "2027-01-01=closed"))
    assert not cut.is_allowed(utc(2027, 1, 1, 1, 30))


def test_unrestricted_weekly_with_a_holiday() -> None:
    w = SendingWindows(timezone="Europe/Berlin", exceptions=(parse_exception("2026-12-25=closed"),))
    # Berlin is UTC+1 in December: the local holiday is 2026-12-24 23:00 UTC to 2026-12-25 23:00 UTC.
    assert w.is_allowed(utc(2026, 12, 24, 22, 59))
    assert not w.is_allowed(utc(2026, 12, 24, 23))
    assert not w.is_allowed(utc(2026, 12, 25, 22, 59))
    assert w.next_allowed(utc(2026, 12, 25, 10)) == utc(2026, 12, 25, 23)


# --- DST -----------------------------------------------------------------------------------------------------------
# America/New_York 2026: EST (UTC-5) until 2026-03-08 07:00 UTC (02:00 EST -> 03:00 EDT), EDT (UTC-4) until
# 2026-11-01 06:00 UTC (02:00 EDT -> 01:00 EST). Both dates are Sundays.


def test_new_york_window_starting_in_the_spring_gap_opens_after_it() -> None:
    w = windows("sun=02:30-04:00", tz="America/New_York")
    assert not w.is_allowed(utc(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    assert w.is_allowed(utc(2026, 3, 8, 7))  # 03:00 EDT, first instant after the gap
    assert w.is_allowed(utc(2026, 3, 8, 7, 59))  # 03:59 EDT
    assert not w.is_allowed(utc(2026, 3, 8, 8))  # 04:00 EDT
    assert w.next_allowed(utc(2026, 3, 8, 5)) == utc(2026, 3, 8, 7)
    # The next Sunday has no gap: 02:30 EDT = 06:30 UTC.
    assert w.next_allowed(utc(2026, 3, 8, 8)) == utc(2026, 3, 15, 6, 30)


def test_window_entirely_inside_the_spring_gap_does_not_happen_that_day() -> None:
    w = windows("sun=02:15-02:45", tz="America/New_York")
    assert not w.is_allowed(utc(2026, 3, 8, 7))  # 03:00 EDT
    assert w.next_allowed(utc(2026, 3, 8, 5)) == utc(2026, 3, 15, 6, 15)  # 02:15 EDT a week later
    lord_howe = windows("sun=02:05-02:25", tz="Australia/Lord_Howe")  # its gap is 02:00-02:30 on 2026-10-04
    assert lord_howe.next_allowed(utc(2026, 10, 3, 12)) == utc(2026, 10, 10, 15, 5)  # 02:05 LHDT (UTC+11)


def test_new_york_window_ending_in_the_spring_gap_ends_at_it() -> None:
    w = windows("sun=01:00-02:30", tz="America/New_York")
    assert w.is_allowed(utc(2026, 3, 8, 6))  # 01:00 EST
    assert w.is_allowed(utc(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    assert not w.is_allowed(utc(2026, 3, 8, 7))  # 03:00 EDT
    assert w.next_allowed(utc(2026, 3, 8, 7)) == utc(2026, 3, 15, 5)  # 01:00 EDT next Sunday


def test_new_york_overnight_range_across_the_spring_gap() -> None:
    w = windows("sat=22:00-04:00", tz="America/New_York")
    assert not w.is_allowed(utc(2026, 3, 8, 2, 59))  # Sat 21:59 EST
    assert w.is_allowed(utc(2026, 3, 8, 3))  # Sat 22:00 EST
    assert w.is_allowed(utc(2026, 3, 8, 7, 59))  # Sun 03:59 EDT
    assert not w.is_allowed(utc(2026, 3, 8, 8))  # Sun 04:00 EDT: only five real hours this night


def test_new_york_repeated_hour_is_allowed_both_times() -> None:
    w = windows("sun=01:15-01:45", tz="America/New_York")
    assert not w.is_allowed(utc(2026, 11, 1, 5, 14))  # 01:14 EDT
    assert w.is_allowed(utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    assert not w.is_allowed(utc(2026, 11, 1, 5, 50))  # 01:50 EDT
    assert not w.is_allowed(utc(2026, 11, 1, 6))  # 01:00 EST
    assert w.is_allowed(utc(2026, 11, 1, 6, 30))  # 01:30 EST
    assert not w.is_allowed(utc(2026, 11, 1, 6, 45))  # 01:45 EST
    assert w.next_allowed(utc(2026, 11, 1, 5)) == utc(2026, 11, 1, 5, 15)  # the earlier occurrence
    assert w.next_allowed(utc(2026, 11, 1, 5, 50)) == utc(2026, 11, 1, 6, 15)  # the repeat


def test_new_york_window_ending_in_the_repeated_hour_reopens_at_the_transition() -> None:
    w = windows("sun=00:00-01:30", tz="America/New_York")
    assert w.is_allowed(utc(2026, 11, 1, 4))  # 00:00 EDT
    assert not w.is_allowed(utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    assert w.next_allowed(utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 1, 6)  # 01:00 EST, wall clock went back
    assert not w.is_allowed(utc(2026, 11, 1, 6, 30))  # 01:30 EST


def test_new_york_business_hours_around_both_transitions() -> None:
    w = windows("mon-fri=09:00-18:00", tz="America/New_York")
    # Fri 2026-03-06 18:00 EST = 23:00 UTC; Mon 2026-03-09 09:00 EDT = 13:00 UTC.
    assert w.next_allowed(utc(2026, 3, 6, 23)) == utc(2026, 3, 9, 13)
    # Fri 2026-10-30 18:00 EDT = 22:00 UTC; Mon 2026-11-02 09:00 EST = 14:00 UTC.
    assert w.next_allowed(utc(2026, 10, 30, 22)) == utc(2026, 11, 2, 14)


# Europe/Berlin 2026: CET (UTC+1) until 2026-03-29 01:00 UTC (02:00 CET -> 03:00 CEST), CEST (UTC+2) until
# 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET).


def test_berlin_spring_gap() -> None:
    w = windows("sun=02:15-03:30", tz="Europe/Berlin")
    assert not w.is_allowed(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert w.is_allowed(utc(2026, 3, 29, 1))  # 03:00 CEST
    assert not w.is_allowed(utc(2026, 3, 29, 1, 30))  # 03:30 CEST
    assert w.next_allowed(utc(2026, 3, 29)) == utc(2026, 3, 29, 1)


def test_berlin_repeated_hour() -> None:
    w = windows("sun=02:30-02:45", tz="Europe/Berlin")
    assert w.is_allowed(utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert not w.is_allowed(utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert not w.is_allowed(utc(2026, 10, 25, 1))  # 02:00 CET
    assert w.is_allowed(utc(2026, 10, 25, 1, 44, 59))  # 02:44:59 CET
    assert not w.is_allowed(utc(2026, 10, 25, 1, 45))
    assert w.next_allowed(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert w.next_allowed(utc(2026, 10, 25, 0, 50)) == utc(2026, 10, 25, 1, 30)


def test_berlin_business_hours_across_spring_forward() -> None:
    w = windows("mon-fri=09:00-18:00", tz="Europe/Berlin")
    # Fri 2026-03-27 18:30 CET = 17:30 UTC; Mon 2026-03-30 09:00 CEST = 07:00 UTC.
    assert w.next_allowed(utc(2026, 3, 27, 17, 30)) == utc(2026, 3, 30, 7)
    assert not w.is_allowed(utc(2026, 3, 30, 6, 59))


# Australia/Lord_Howe 2026: half-hour DST. LHDT (UTC+11) until 2026-04-04 15:00 UTC (Sun 02:00 -> 01:30 LHST,
# UTC+10:30); LHST until 2026-10-03 15:30 UTC (Sun 02:00 -> 02:30 LHDT).


def test_lord_howe_half_hour_gap() -> None:
    w = windows("sun=02:10-03:00", tz="Australia/Lord_Howe")
    assert not w.is_allowed(utc(2026, 10, 3, 15, 29))  # 01:59 LHST
    assert w.is_allowed(utc(2026, 10, 3, 15, 30))  # 02:30 LHDT
    assert not w.is_allowed(utc(2026, 10, 3, 16))  # 03:00 LHDT
    assert w.next_allowed(utc(2026, 10, 3, 12)) == utc(2026, 10, 3, 15, 30)


def test_lord_howe_half_hour_overlap() -> None:
    w = windows("sun=01:40-01:50", tz="Australia/Lord_Howe")
    assert w.is_allowed(utc(2026, 4, 4, 14, 45))  # 01:45 LHDT
    assert not w.is_allowed(utc(2026, 4, 4, 15))  # 01:30 LHST
    assert w.is_allowed(utc(2026, 4, 4, 15, 15))  # 01:45 LHST
    assert w.next_allowed(utc(2026, 4, 4, 14, 55)) == utc(2026, 4, 4, 15, 10)


# America/Santiago 2026: clocks change at local midnight. CLT (UTC-3) until 2026-04-05 03:00 UTC (Sat 24:00 ->
# Sat 23:00 UTC-4, so Saturday's last hour repeats); UTC-4 until 2026-09-06 04:00 UTC (Sat 24:00 -> Sun 01:00 UTC-3,
# so Sunday 2026-09-06 has no 00:00-01:00).


def test_santiago_repeated_hour_before_midnight() -> None:
    w = windows("sat=23:15-23:45", tz="America/Santiago")
    assert w.is_allowed(utc(2026, 4, 5, 2, 15))  # Sat 23:15 UTC-3
    assert not w.is_allowed(utc(2026, 4, 5, 2, 50))  # Sat 23:50 UTC-3
    assert w.is_allowed(utc(2026, 4, 5, 3, 15))  # Sat 23:15 UTC-4, the repeat
    assert w.next_allowed(utc(2026, 4, 5, 2, 50)) == utc(2026, 4, 5, 3, 15)
    cut = windows("sat=22:00-02:00", tz="America/Santiago", exceptions=("2026-04-05=closed",))
    assert cut.is_allowed(utc(2026, 4, 5, 3, 59))  # Sat 23:59 UTC-4
    assert not cut.is_allowed(utc(2026, 4, 5, 4))  # Sun 00:00 UTC-4: the holiday


def test_santiago_day_that_starts_at_one() -> None:
    w = windows("sat=22:00-24:00", "sun=00:00-02:00", tz="America/Santiago")
    assert w.is_allowed(utc(2026, 9, 6, 3, 59))  # Sat 23:59 UTC-4
    assert w.is_allowed(utc(2026, 9, 6, 4))  # Sun 01:00 UTC-3, the first instant of Sunday
    assert not w.is_allowed(utc(2026, 9, 6, 5))  # Sun 02:00 UTC-3
    assert windows("sun=00:00-02:00", tz="America/Santiago").next_allowed(utc(2026, 9, 5, 12)) == utc(2026, 9, 6, 4)
    cut = windows("sat=22:00-02:00", tz="America/Santiago", exceptions=("2026-09-06=closed",))
    assert cut.is_allowed(utc(2026, 9, 6, 3, 59))
    assert not cut.is_allowed(utc(2026, 9, 6, 4))


# --- next_allowed --------------------------------------------------------------------------------------------------


def test_next_allowed_basics() -> None:
    w = windows("mon-fri=09:00-13:00,15:00-20:00", "sat=10:00-14:00", exceptions=("2026-01-09=closed",))
    inside = datetime(2026, 1, 5, 10, 11, 12, 131415, tzinfo=UTC)
    assert w.next_allowed(inside) == inside
    same_instant_elsewhere = inside.astimezone(ZoneInfo("Asia/Tokyo"))
    result = w.next_allowed(same_instant_elsewhere)
    assert result == inside and result is not None and result.tzinfo is UTC
    assert w.next_allowed(utc(2026, 1, 5, 7)) == utc(2026, 1, 5, 9)  # before today's first range
    assert w.next_allowed(utc(2026, 1, 5, 13)) == utc(2026, 1, 5, 15)  # between ranges
    assert w.next_allowed(utc(2026, 1, 5, 20)) == utc(2026, 1, 6, 9)  # after the last range
    assert w.next_allowed(utc(2026, 1, 8, 21)) == utc(2026, 1, 10, 10)  # Friday holiday skipped to Saturday
    assert w.next_allowed(utc(2026, 1, 10, 14)) == utc(2026, 1, 12, 9)  # closed Sunday skipped


def test_next_allowed_none_when_never_open() -> None:
    started = clock.perf_counter()
    assert SendingWindows(weekly={}).next_allowed(utc(2026, 1, 5)) is None
    assert windows("sun=closed", exceptions=("2026-12-25=closed",)).next_allowed(utc(2026, 1, 5)) is None
    # Only a past exception opens anything: a full 400-day scan that must still be quick.
    assert windows(exceptions=("2025-12-25=09:00-10:00",)).next_allowed(utc(2026, 1, 5)) is None
    assert clock.perf_counter() - started < 1.0


def test_next_allowed_horizon_is_400_days() -> None:
    at = utc(2026, 1, 5, 12)
    near = at + timedelta(days=399)  # 2027-02-08
    assert windows(exceptions=(f"{near.date()}=12:00-13:00",)).next_allowed(at) == near
    far = at + timedelta(days=401)
    assert windows(exceptions=(f"{far.date()}=12:00-13:00",)).next_allowed(at) is None


# --- properties ----------------------------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Santiago",
]
# DST changes of the zones above in 2026-2027, where the interesting cases cluster.
TRANSITIONS = [
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
    utc(2027, 3, 14, 7),
    utc(2027, 10, 31, 1),
    utc(2026, 4, 4, 14),
    utc(2026, 9, 26, 14),
    utc(2026, 4, 5, 3),
    utc(2026, 9, 6, 4),
]
MINUTES = st.one_of(st.integers(0, 24 * 60 - 1), st.sampled_from([0, 60, 90, 105, 120, 135, 150, 180, 210, 1380]))


def _range(start: int, end: int) -> TimeRange:
    return TimeRange(start=time(*divmod(start, 60)), end=time(*divmod(end, 60)))


RANGES = st.one_of(
    st.tuples(MINUTES, MINUTES).filter(lambda pair: pair[0] != pair[1]).map(lambda pair: _range(*pair)),
    st.just(TimeRange.parse("00:00-24:00")),
)
RANGE_TUPLES = st.lists(RANGES, max_size=3).map(tuple)
INSTANTS = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda base, seconds: base + timedelta(seconds=seconds),
        st.sampled_from(TRANSITIONS),
        st.integers(-36 * 3600, 36 * 3600),
    ),
)


@st.composite
def configurations(draw: st.DrawFn) -> tuple[SendingWindows, datetime]:
    zone = draw(st.sampled_from(ZONES))
    at = draw(INSTANTS)
    weekly = draw(st.none() | st.dictionaries(st.sampled_from(list(Weekday)), RANGE_TUPLES, max_size=7))
    local_day = at.astimezone(ZoneInfo(zone)).date()
    offsets = draw(st.lists(st.integers(-2, 10), max_size=4, unique=True))
    exceptions = tuple(
        DayException(day=local_day + timedelta(days=offset), ranges=draw(RANGE_TUPLES)) for offset in offsets
    )
    return SendingWindows(timezone=zone, weekly=weekly, exceptions=exceptions), at


def oracle_allowed(w: SendingWindows, at: datetime) -> bool:
    """The documented rules, written independently: local wall time inside a range of its date or the day before."""
    wall = at.astimezone(ZoneInfo(w.timezone)).replace(tzinfo=None)
    exceptions = {e.day: e.ranges for e in w.exceptions}
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    def ranges_of(day: date) -> tuple[TimeRange, ...]:
        if day in exceptions:
            return exceptions[day]
        if w.weekly is None:
            return (TimeRange.parse("00:00-24:00"),)
        return w.weekly.get(Weekday(names[day.weekday()]), ())

    for day in (wall.date() - timedelta(days=1), wall.date()):
        for r in ranges_of(day):
            begin = datetime.combine(day, r.start)
            minutes = (r.end.hour * 60 + r.end.minute - r.start.hour * 60 - r.start.minute) % (24 * 60) or 24 * 60
            end = begin + timedelta(minutes=minutes)
            if day < wall.date() and wall.date() in exceptions:
                end = min(end, datetime.combine(wall.date(), time(0)))
            if begin <= wall < end:
                return True
    return False


def minute_boundaries(start: datetime, stop: datetime, step_minutes: int = 1) -> list[datetime]:
    first = start.replace(second=0, microsecond=0)
    if first < start:
        first += timedelta(minutes=1)
    count = max(0, (stop - first) // timedelta(minutes=step_minutes) + 1)
    return [t for t in (first + timedelta(minutes=step_minutes * i) for i in range(count)) if t < stop]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_next_allowed_is_the_earliest_allowed_instant(config: tuple[SendingWindows, datetime]) -> None:
    w, at = config
    assert w.is_allowed(at) == oracle_allowed(w, at)
    result = w.next_allowed(at)
    if result is None:
        # Nothing opens: no minute boundary (all openings are on one: ranges and offsets are whole minutes) allows.
        for t in [at, *minute_boundaries(at, at + timedelta(days=4), step_minutes=7)]:
            assert not oracle_allowed(w, t), t
        return
    assert result.tzinfo is UTC
    assert at <= result < at + timedelta(days=400)
    assert w.is_allowed(result) and oracle_allowed(w, result)
    assert w.next_allowed(result) == result
    # Every opening lies on a minute boundary, so checking them all (plus the ends) proves [at, result) is closed;
    # for very long waits a spread sample has to do.
    before = [at, result - timedelta(microseconds=1), result - timedelta(seconds=1)]
    if result - at <= timedelta(days=2):
        before += minute_boundaries(at, result)
    else:
        before += [at + (result - at) * k / 500 for k in range(500)] + minute_boundaries(at, at + timedelta(days=1))
    for t in before:
        if at <= t < result:
            assert not w.is_allowed(t), t
            assert not oracle_allowed(w, t), t


@settings(max_examples=150, deadline=None)
@given(configurations(), st.integers(0, 3 * 24 * 60))
def test_is_allowed_matches_the_documented_rules(config: tuple[SendingWindows, datetime], minutes: int) -> None:
    w, at = config
    t = at + timedelta(minutes=minutes)
    assert w.is_allowed(t) == oracle_allowed(w, t)
