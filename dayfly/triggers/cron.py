"""Schedule expressions and their next fire times.

    */5 * * * *              5-field cron (minute hour day-of-month month day-of-week; 0/7=Sun)
    cron(0 12 * * ? *)       EventBridge: 6 fields (+ year), day-of-week 1-7 = SUN-SAT, one of
                             the two day fields must be `?`; L, LW, 15W, 6L, 2#3 supported
    rate(5 minutes)          every N minutes/hours/days from the schedule's creation;
                             `rate(N seconds)` is a dayfly extension (for tests and demos)
    @hourly @daily @weekly @monthly @yearly

Cron fields are read in the schedule's time zone; local times that do not exist (a DST gap)
are skipped, and ambiguous ones fire once.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ..errors import InvalidParameter

RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+?)s?\s*\)$")
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG",
                                      "SEP", "OCT", "NOV", "DEC"), 1)}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
SEARCH_DAYS = 366 * 8


def _bad(expr: str, why: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid schedule expression {expr!r}: {why}",
                            hint='e.g. "*/5 * * * *", "cron(0 12 * * ? *)", "rate(5 minutes)"')


@dataclass(frozen=True, slots=True)
class Rate:
    """Every `seconds`, counted from `anchor` (the schedule's creation)."""

    seconds: int
    anchor: float = 0.0

    def next_after(self, t: float) -> float | None:
        return self.anchor + (math.floor((t - self.anchor) / self.seconds) + 1) * self.seconds


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression; day-of-week uses 0 = Sunday internally."""

    tz: ZoneInfo
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dom: frozenset[int]
    months: frozenset[int]
    dow: frozenset[int]
    dom_any: bool
    dow_any: bool
    dom_special: tuple[str, ...] = ()  # "L", "LW", "15W"
    dow_special: tuple[tuple[int, int], ...] = ()  # (weekday, n): n = 1..5 for "#n", -1 for "L"
    years: frozenset[int] | None = None

    def next_after(self, t: float) -> float | None:
        start = datetime.fromtimestamp(t, self.tz)
        day = start.date()
        for _ in range(SEARCH_DAYS):
            if self.years is not None and day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later:
                    return None
                day = date(min(later), 1, 1)
            if self._day_ok(day):
                for h in self.hours:
                    for m in self.minutes:
                        local = datetime(day.year, day.month, day.day, h, m, tzinfo=self.tz)
                        ts = local.timestamp()
                        if ts > t and _exists(local, ts):
                            return ts
            day += timedelta(days=1)
        return None

    def _day_ok(self, d: date) -> bool:
        if d.month not in self.months or (self.years is not None and d.year not in self.years):
            return False
        dom_ok = d.day in self.dom or any(_special_dom(s, d) for s in self.dom_special)
        wd = (d.weekday() + 1) % 7
        dow_ok = wd in self.dow or any(_nth_weekday(w, n, d) for w, n in self.dow_special)
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow_ok
        if self.dow_any:
            return dom_ok
        return dom_ok or dow_ok


def _exists(local: datetime, ts: float) -> bool:
    """False for a wall-clock time inside a DST gap."""
    back = datetime.fromtimestamp(ts, local.tzinfo)
    return (back.hour, back.minute) == (local.hour, local.minute)


def _special_dom(spec: str, d: date) -> bool:
    last = calendar.monthrange(d.year, d.month)[1]
    if spec == "L":
        return d.day == last
    if spec == "LW":
        target = date(d.year, d.month, last)
        while target.weekday() > 4:
            target -= timedelta(days=1)
        return d == target
    n = min(int(spec[:-1]), last)  # "15W": the weekday nearest the 15th, within the month
    target = date(d.year, d.month, n)
    if target.weekday() == 5:
        target += timedelta(days=-1) if n > 1 else timedelta(days=2)
    elif target.weekday() == 6:
        target += timedelta(days=1) if n < last else timedelta(days=-2)
    return d == target


def _nth_weekday(wd: int, n: int, d: date) -> bool:
    if (d.weekday() + 1) % 7 != wd:
        return False
    if n == -1:
        return d.day + 7 > calendar.monthrange(d.year, d.month)[1]
    return (d.day - 1) // 7 + 1 == n


def _values(expr: str, field: str, label: str, lo: int, hi: int,
            names: dict[str, int] | None = None, shift: int = 0) -> set[int]:
    """One comma-separated cron field: *, a, a-b, */s, a/s, a-b/s (names allowed)."""
    out: set[int] = set()

    def num(tok: str) -> int:
        if names and tok.upper() in names:
            return names[tok.upper()] + shift
        if not tok.isdigit():
            raise _bad(expr, f"{tok!r} is not a valid {label} value")
        return int(tok)

    for item in field.split(","):
        rng, _, step_s = item.partition("/")
        step = int(step_s) if step_s.isdigit() and int(step_s) > 0 else None
        if step_s and step is None:
            raise _bad(expr, f"bad step {step_s!r} in the {label} field")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = num(a_s), num(b_s)
        else:
            a = num(rng)
            b = hi if step else a
        if not (lo <= a <= hi and lo <= b <= hi) or a > b:
            raise _bad(expr, f"{item!r} is out of range {lo}-{hi} in the {label} field")
        out.update(range(a, b + 1, step or 1))
    return out


def _parse_cron(expr: str, fields: list[str], eventbridge: bool, tz: ZoneInfo) -> Cron:
    minute, hour, dom_f, month, dow_f = fields[:5]
    dom_any, dow_any = dom_f in ("*", "?"), dow_f in ("*", "?")
    if eventbridge and (dom_f == "?") == (dow_f == "?"):
        raise _bad(expr, "exactly one of day-of-month and day-of-week must be '?'")
    dom_special, dom_items = [], []
    for item in dom_f.split(","):
        if re.fullmatch(r"L|LW|\d{1,2}W", item):
            if item[:-1].isdigit() and not 1 <= int(item[:-1]) <= 31:
                raise _bad(expr, f"{item!r} is out of range in the day-of-month field")
            dom_special.append(item)
        elif item != "?":
            dom_items.append(item)
    dow_special, dow_items = [], []
    shift = 1 if eventbridge else 0  # EventBridge: 1 = SUN
    for item in dow_f.split(","):
        m = re.fullmatch(r"(\w{1,3})(L|#([1-5]))", item)
        if m:
            wd = _values(expr, m.group(1), "day-of-week", shift, 7, DAYS, shift).pop() - shift
            dow_special.append((wd % 7, -1 if m.group(2) == "L" else int(m.group(3))))
        elif item != "?":
            dow_items.append(item)
    dom = _values(expr, ",".join(dom_items), "day-of-month", 1, 31) if dom_items else set()
    dow: set[int] = set()
    if dow_items and eventbridge:
        dow = {v - 1 for v in _values(expr, ",".join(dow_items), "day-of-week", 1, 7, DAYS, 1)}
    elif dow_items:
        dow = {v % 7 for v in _values(expr, ",".join(dow_items), "day-of-week", 0, 7, DAYS)}
    years = None
    if eventbridge and fields[5] not in ("*", "?"):
        years = frozenset(_values(expr, fields[5], "year", 1970, 2199))
    return Cron(tz, tuple(sorted(_values(expr, minute, "minute", 0, 59))),
                tuple(sorted(_values(expr, hour, "hour", 0, 23))), frozenset(dom),
                frozenset(_values(expr, month, "month", 1, 12, MONTHS)), frozenset(dow),
                dom_any and not dom_special, dow_any and not dow_special,
                tuple(dom_special), tuple(dow_special), years)


def parse_expression(expr: str, tz: str | None = None, anchor: float = 0.0) -> Rate | Cron:
    """Parse any accepted schedule expression; raise InvalidParameter with the reason."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidParameter("A schedule expression is required")
    text = expr.strip()
    zone = zone_info(tz)
    m = RATE_RE.match(text)
    if m:
        value, unit = int(m.group(1)), m.group(2)
        if unit not in RATE_UNITS:
            raise _bad(expr, "the unit must be second(s), minute(s), hour(s) or day(s)")
        if value < 1:
            raise _bad(expr, "the rate must be at least 1")
        return Rate(value * RATE_UNITS[unit], anchor)
    if text.startswith("rate("):
        raise _bad(expr, "expected rate(N unit), e.g. rate(5 minutes)")
    eventbridge = text.startswith("cron(") and text.endswith(")")
    body = MACROS.get(text.lower(), text[5:-1] if eventbridge else text)
    fields = body.split()
    if len(fields) != (6 if eventbridge else 5):
        raise _bad(expr, "cron(...) needs 6 fields (minute hour day-of-month month day-of-week "
                         "year)" if eventbridge else "a cron expression needs 5 fields (minute "
                         "hour day-of-month month day-of-week)")
    cron = _parse_cron(expr, fields, eventbridge, zone)
    if cron.next_after(max(anchor, time.time())) is None:
        raise _bad(expr, "it never fires")
    return cron


def zone_info(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ValueError, KeyError, OSError):
        raise InvalidParameter(f"Unknown time zone {tz!r}",
                               hint="use an IANA name such as Europe/Paris or UTC") from None
