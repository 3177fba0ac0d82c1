"""Per-subaccount sending windows: when a message may go out, evaluated on the subaccount's local wall clock.

A message whose send time falls outside its subaccount's windows gets the status "Blocked Time" ("The message has
been set to be delivered at a time that is not allowed by the subaccount"); the dispatch policy then either holds it
or defers it to ``SendingWindows.next_allowed``. This module is the pure time logic: no I/O, no clock reads.

Semantics (the one rule behind all of them: *an instant is allowed when its local wall-clock date and time, in the
configured IANA zone, fall inside an allowed range of that local calendar*):

- Ranges are half-open ``[start, end)`` at minute precision. ``09:00-18:00`` allows 17:59:59.999999, not 18:00.
- ``end <= start`` means the range crosses midnight, and it belongs to the day it starts on: ``mon=22:00-02:00``
  allows Monday 22:00 to Tuesday 02:00 local. ``24:00`` is accepted as an end and means the following midnight.
- All day is spelled ``00:00-24:00`` (stored as start == end == 00:00). Any other ``start == end`` (including
  ``00:00-00:00`` and ``09:00-09:00``) is rejected: it is either a typo or ambiguous between empty and 24 hours.
- ``weekly=None`` means no weekly restriction (every day all day); in a weekly dict a missing weekday, or one mapped
  to ``()``, is closed. Overlapping ranges are allowed and simply union.
- A dated exception replaces the weekly ranges of its local calendar date, and fully describes that date: an
  overnight tail from the previous day is cut at the exception date's midnight, whether the exception closes the
  day or gives it other hours. An exception's own overnight range still spills into the next date unless that date
  is itself an exception. At most one exception per date.
- DST gap (spring forward): wall times inside the gap never occur, so a window starting inside the gap opens at the
  first real instant after it (02:30 on 2026-03-08 in America/New_York opens at 03:00 EDT, 07:00 UTC), and a window
  ending inside the gap ends at the gap.
- DST overlap (fall back): a wall time that occurs twice is allowed both times when it is inside a range (that is
  what "09:00-18:00 local" means to users); a window ending inside the repeated hour therefore reopens for the
  repeated part. ``next_allowed`` returns the earliest such instant.
- ``next_allowed(at)`` is the earliest allowed instant ``>= at`` (``at`` itself when allowed), in UTC, or None when
  there is none before ``at + 400 days``. It never returns an instant ``is_allowed`` rejects, and nothing in
  ``[at, result)`` is allowed. It works range by range over local days and constant-offset stretches of the zone,
  never minute by minute.
- Instants must be timezone-aware; naive datetimes raise ValueError rather than guessing a zone.
"""

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

#: how far ``next_allowed`` looks ahead before giving up
HORIZON = timedelta(days=400)

_DAY = timedelta(days=1)
_MIDNIGHT = time(0, 0)
# UTC offsets are strictly less than a day (zoneinfo enforces it), so an instant is within a day of its wall time.
_MAX_OFFSET = _DAY
# Offsets are sampled this often to find DST transitions; zones never change offset twice within it.
_OFFSET_STEP = timedelta(hours=6)


class Weekday(StrEnum):
    """Days of the week, in ``date.weekday()`` order."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS: tuple[Weekday, ...] = tuple(Weekday)

_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _clock(text: str, hours: str, minutes: str, *, is_end: bool) -> time:
    hour, minute = int(hours), int(minutes)
    if is_end and (hour, minute) == (24, 0):
        return _MIDNIGHT
    if hour > 23 or minute > 59:
        raise ValueError(
            f"invalid time range {text!r}: {hours}:{minutes} is not a valid time "
            "(hours 00-23, minutes 00-59; 24:00 only as an end)"
        )
    return time(hour, minute)


def _parse_range(text: str) -> tuple[time, time]:
    match = _RANGE_RE.match(text)
    if match is None:
        raise ValueError(f"invalid time range {text!r}: expected HH:MM-HH:MM (e.g. 09:00-18:00, 22:00-02:00)")
    start = _clock(text, match[1], match[2], is_end=False)
    end = _clock(text, match[3], match[4], is_end=True)
    if start == end and not (start == _MIDNIGHT and match[3] == "24"):
        raise ValueError(f"invalid time range {text!r}: start equals end (write 00:00-24:00 for all day)")
    return start, end


class TimeRange(BaseModel):
    """A local wall-clock range ``[start, end)``; ``end <= start`` crosses midnight, 00:00-24:00 is all day.

    Validates from the text form too (``"09:00-18:00"``), so configuration can list ranges as strings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    #: 00:00 here is the following midnight; with start 00:00 too, the range is all day
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            start, end = _parse_range(data)
            return {"start": start, "end": end}
        return data

    @field_validator("start", "end")
    @classmethod
    def _whole_minutes(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("must be a naive local wall-clock time (the zone belongs to the sending windows)")
        if value.second or value.microsecond:
            raise ValueError("must be a whole minute")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        # start == end is all day at midnight and rejected elsewhere: "09:00-09:00" is a typo, not 24 hours.
        if self.start == self.end and self.start != _MIDNIGHT:
            raise ValueError(f"start equals end ({self.start:%H:%M}); write 00:00-24:00 for all day")
        return self

    @classmethod
    def parse(cls, text: str) -> "TimeRange":
        """``"09:00-18:00"``, ``"22:00-02:00"`` (overnight), ``"00:00-24:00"`` (all day). ValueError on junk."""
        start, end = _parse_range(text)
        return cls(start=start, end=end)

    @property
    def all_day(self) -> bool:
        return self.start == self.end

    @property
    def crosses_midnight(self) -> bool:
        """True when the range ends on the next day (all day included: it ends at the next midnight)."""
        return self.end <= self.start

    def __str__(self) -> str:
        end = "24:00" if self.end == _MIDNIGHT else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


def _parse_ranges(text: str) -> tuple[TimeRange, ...]:
    """``"closed"`` or comma-separated ranges."""
    text = text.strip()
    if text.lower() == "closed":
        return ()
    if not text:
        raise ValueError("no ranges given (write 'closed' for a closed day)")
    return tuple(TimeRange.parse(part) for part in text.split(","))


def _format_ranges(ranges: tuple[TimeRange, ...]) -> str:
    return ",".join(str(r) for r in ranges) if ranges else "closed"


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DayException(BaseModel):
    """A dated exception (a holiday): closed all day (no ranges), or these hours instead of the weekly ones.

    Validates from the text form too (``"2026-12-25=closed"``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: date
    #: empty = closed the whole local date
    ranges: tuple[TimeRange, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            parsed = parse_exception(data)
            return {"day": parsed.day, "ranges": parsed.ranges}
        return data

    def __str__(self) -> str:
        return f"{self.day.isoformat()}={_format_ranges(self.ranges)}"


_ALL_DAY = TimeRange(start=_MIDNIGHT, end=_MIDNIGHT)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} is naive; pass a timezone-aware datetime (e.g. with tzinfo=UTC)")


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


class _Calendar:
    """The allowed local wall-clock intervals of each local date, for one configuration."""

    def __init__(self, weekly: dict[Weekday, tuple[TimeRange, ...]] | None, exceptions: tuple[DayException, ...]):
        self._weekly = weekly
        self._exceptions = {e.day: e.ranges for e in exceptions}

    def ranges(self, day: date) -> tuple[TimeRange, ...]:
        if day in self._exceptions:
            return self._exceptions[day]
        if self._weekly is None:
            return (_ALL_DAY,)
        return self._weekly.get(_WEEKDAYS[day.weekday()], ())

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """Naive local ``[start, end)`` intervals of the ranges that start on ``day``."""
        ranges = self.ranges(day)
        if not ranges:
            return []
        next_day = day + _DAY
        # An exception date is fully described by its exception, so tails from the day before stop at its midnight.
        cut = datetime.combine(next_day, _MIDNIGHT) if next_day in self._exceptions else None
        out = []
        for r in ranges:
            start = datetime.combine(day, r.start)
            end = datetime.combine(next_day if r.crosses_midnight else day, r.end)
            out.append((start, end if cut is None else min(end, cut)))
        return out

    def allows(self, wall: datetime) -> bool:
        # A range lasts under 24 hours (all day: exactly 24), so only ranges of this date and the day before reach.
        today = wall.date()
        return any(start <= wall < end for day in (today - _DAY, today) for start, end in self.intervals(day))


class _OffsetTimeline:
    """The zone's UTC offset as constant-offset stretches ``[start, end)`` of naive-UTC time, found lazily.

    zoneinfo has no public transition list, so offsets are sampled every ``_OFFSET_STEP`` and a change is
    bisected down to the microsecond: only a handful of bisections over the 400-day horizon.
    """

    def __init__(self, zone: ZoneInfo, start: datetime, stop: datetime):
        self._zone = zone
        self._stop = stop
        self._closed: list[tuple[datetime, datetime, timedelta]] = []
        self._open_start = start
        self._cursor = start
        self._offset = self._offset_at(start)

    def _offset_at(self, instant: datetime) -> timedelta:
        offset = instant.replace(tzinfo=UTC).astimezone(self._zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has an offset
        return offset

    def _extend(self, until: datetime) -> None:
        until = min(until, self._stop)
        while self._cursor < until:
            probe = min(self._cursor + _OFFSET_STEP, self._stop)
            if self._offset_at(probe) == self._offset:
                self._cursor = probe
                continue
            low, high = self._cursor, probe
            while high - low > timedelta(microseconds=1):
                mid = low + (high - low) // 2
                if self._offset_at(mid) == self._offset:
                    low = mid
                else:
                    high = mid
            self._closed.append((self._open_start, high, self._offset))
            self._open_start = self._cursor = high
            self._offset = self._offset_at(high)

    def covering(self, low: datetime, high: datetime) -> Iterator[tuple[datetime, datetime, timedelta]]:
        """The stretches overlapping ``[low, high)``, clipped to the timeline's ``[start, stop)``."""
        self._extend(high)
        for stretch in (*self._closed, (self._open_start, self._cursor, self._offset)):
            if stretch[0] < high and stretch[1] > low:
                yield stretch


class SendingWindows(BaseModel):
    """When a subaccount's messages may go out: weekly local ranges plus dated exceptions, in one IANA zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: IANA zone name the ranges are read in
    timezone: str = "UTC"
    #: None = no weekly restriction; in a dict, a missing weekday is closed
    weekly: dict[Weekday, tuple[TimeRange, ...]] | None = None
    exceptions: tuple[DayException, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown IANA time zone {value!r} (expected a name like 'Europe/Berlin', 'America/New_York', 'UTC')"
            ) from exc
        return value

    @field_validator("exceptions")
    @classmethod
    def _one_per_date(cls, value: tuple[DayException, ...]) -> tuple[DayException, ...]:
        seen: set[date] = set()
        for exception in value:
            if exception.day in seen:
                raise ValueError(f"more than one exception for {exception.day.isoformat()}")
            seen.add(exception.day)
        return value

    @property
    def restricted(self) -> bool:
        """False when nothing restricts sending (no weekly ranges and no exceptions)."""
        return self.weekly is not None or bool(self.exceptions)

    @property
    def _never_open(self) -> bool:
        return (
            self.weekly is not None
            and not any(self.weekly.values())
            and not any(exception.ranges for exception in self.exceptions)
        )

    def _calendar(self) -> _Calendar:
        return _Calendar(self.weekly, self.exceptions)

    def is_allowed(self, at: datetime) -> bool:
        """Whether a message may go out at the aware instant ``at``."""
        _require_aware(at)
        if not self.restricted:
            return True
        wall = at.astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None)
        return self._calendar().allows(wall)

    def next_allowed(self, at: datetime) -> datetime | None:
        """The earliest allowed instant ``>= at`` (``at`` itself when allowed), in UTC; None if none within 400 days."""
        _require_aware(at)
        if not self.restricted or self.is_allowed(at):
            return at.astimezone(UTC)
        if self._never_open:
            return None
        zone = ZoneInfo(self.timezone)
        calendar = self._calendar()
        start = _naive_utc(at)
        stop = start + HORIZON
        timeline = _OffsetTimeline(zone, start, stop)
        best: datetime | None = None
        # Two days back: a fall-back transition can move the wall clock backwards, into ranges of earlier dates.
        day = at.astimezone(zone).date() - 2 * _DAY
        while True:
            # Every interval of `day` maps to instants after local midnight minus the largest possible offset.
            earliest = datetime.combine(day, _MIDNIGHT) - _MAX_OFFSET
            if earliest >= stop or (best is not None and earliest >= best):
                break
            for wall_start, wall_end in calendar.intervals(day):
                found = _first_instant(timeline, wall_start, wall_end, start, stop)
                if found is not None and (best is None or found < best):
                    best = found
            day += _DAY
        return None if best is None else best.replace(tzinfo=UTC)

    def describe(self) -> str:
        """A one-line summary in the spec syntax, e.g. ``Europe/Berlin: mon-fri=09:00-18:00 sat=closed ...``."""
        if not self.restricted:
            return "unrestricted (any day, any time)"
        parts = ["daily=00:00-24:00"] if self.weekly is None else _describe_weekly(self.weekly)
        text = f"{self.timezone}: {' '.join(parts)}"
        if self.exceptions:
            text += "; exceptions: " + " ".join(str(e) for e in sorted(self.exceptions, key=lambda e: e.day))
        return text


def _first_instant(
    timeline: _OffsetTimeline, wall_start: datetime, wall_end: datetime, start: datetime, stop: datetime
) -> datetime | None:
    """The earliest naive-UTC instant in ``[start, stop)`` whose wall time lies in ``[wall_start, wall_end)``.

    Within a constant-offset stretch, wall time is instant + offset, so the interval maps to one instant interval
    per stretch. A gap start therefore opens at the transition, and a repeated hour maps twice.
    """
    best: datetime | None = None
    for stretch_start, stretch_end, offset in timeline.covering(wall_start - _MAX_OFFSET, wall_end + _MAX_OFFSET):
        low = max(start, wall_start - offset, stretch_start)
        high = min(stop, wall_end - offset, stretch_end)
        if low < high and (best is None or low < best):
            best = low
    return best


def _describe_weekly(weekly: dict[Weekday, tuple[TimeRange, ...]]) -> list[str]:
    # Consecutive weekdays (Monday first, no wrap) with identical ranges are grouped: mon-fri=09:00-18:00.
    parts: list[str] = []
    index = 0
    while index < len(_WEEKDAYS):
        ranges = weekly.get(_WEEKDAYS[index], ())
        last = index
        while last + 1 < len(_WEEKDAYS) and weekly.get(_WEEKDAYS[last + 1], ()) == ranges:
            last += 1
        if last - index == 6:
            days = "daily"
        else:
            days = _WEEKDAYS[index] if last == index else f"{_WEEKDAYS[index]}-{_WEEKDAYS[last]}"
        parts.append(f"{days}={_format_ranges(ranges)}")
        index = last + 1
    return parts


_DAY_ALIASES: dict[str, tuple[Weekday, ...]] = {
    "daily": _WEEKDAYS,
    "weekdays": _WEEKDAYS[:5],
    "weekend": _WEEKDAYS[5:],
}


def _parse_day(text: str) -> Weekday:
    try:
        return Weekday(text.strip().lower())
    except ValueError:
        raise ValueError(f"unknown day {text.strip()!r} (mon..sun, daily, weekdays, weekend)") from None


def _parse_days(text: str) -> list[Weekday]:
    """``mon``, ``mon-fri``, ``fri-mon`` (wraps past Sunday), ``daily``/``weekdays``/``weekend``, comma-separated."""
    days: list[Weekday] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item in _DAY_ALIASES:
            days.extend(_DAY_ALIASES[item])
        elif "-" in item:
            first, _, last = item.partition("-")
            begin, end = _WEEKDAYS.index(_parse_day(first)), _WEEKDAYS.index(_parse_day(last))
            days.extend(_WEEKDAYS[(begin + step) % 7] for step in range((end - begin) % 7 + 1))
        else:
            days.append(_parse_day(item))
    return days


def parse_weekly(specs: Sequence[str]) -> dict[Weekday, tuple[TimeRange, ...]]:
    """Weekly ranges from specs such as ``mon-fri=09:00-13:00,15:00-20:00``, ``sun=closed``, ``daily=08:00-21:00``.

    Days: ``mon``..``sun``, ranges ``mon-fri`` (``fri-mon`` wraps past Sunday), ``daily``, ``weekdays``,
    ``weekend``, or a comma list of these. Later specs replace earlier ones for the same day. Days no spec names are
    missing from the result, i.e. closed; no specs at all give ``{}`` (closed every day), so a caller that means
    "no restriction" passes ``weekly=None`` instead. ValueError names the offending spec.
    """
    weekly: dict[Weekday, tuple[TimeRange, ...]] = {}
    for spec in specs:
        days_text, sep, ranges_text = spec.partition("=")
        try:
            if not sep or not days_text.strip():
                raise ValueError("expected DAYS=RANGES (e.g. mon-fri=09:00-18:00, sun=closed)")
            days = _parse_days(days_text)
            ranges = _parse_ranges(ranges_text)
        except ValueError as exc:
            raise ValueError(f"invalid weekly spec {spec!r}: {exc}") from None
        for day in days:
            weekly[day] = ranges
    return weekly


def parse_exception(spec: str) -> DayException:
    """A dated exception from ``2026-12-25=closed`` or ``2026-12-24=09:00-14:00,16:00-18:00``."""
    day_text, sep, ranges_text = spec.partition("=")
    try:
        if not sep or not _DATE_RE.match(day_text.strip()):
            raise ValueError("expected YYYY-MM-DD=RANGES (e.g. 2026-12-25=closed, 2026-12-24=09:00-14:00)")
        day = date.fromisoformat(day_text.strip())
        ranges = _parse_ranges(ranges_text)
    except ValueError as exc:
        raise ValueError(f"invalid exception spec {spec!r}: {exc}") from None
    return DayException(day=day, ranges=ranges)
