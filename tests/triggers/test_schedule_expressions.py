"""Schedule expressions: 5-field cron, EventBridge cron(...)/rate(...), time zones, DST."""

from __future__ import annotations

from datetime import datetime

import pytest

from dayfly.errors import InvalidParameter
from dayfly.triggers.cron import parse_expression


def fires(expr: str, start: str, n: int = 3, tz: str | None = None) -> list[str]:
    e = parse_expression(expr, tz)
    t = datetime.fromisoformat(start).timestamp()
    out = []
    for _ in range(n):
        t = e.next_after(t)
        out.append(datetime.fromtimestamp(t, e.tz if hasattr(e, "tz") else None).isoformat()
                   if hasattr(e, "tz") else t)
    return out


@pytest.mark.parametrize("expr,start,expected", [
    ("*/5 * * * *", "2026-03-28T23:58:00+00:00",
     ["2026-03-29T00:00:00+00:00", "2026-03-29T00:05:00+00:00", "2026-03-29T00:10:00+00:00"]),
    ("cron(0 12 * * ? *)", "2026-01-01T12:00:00+00:00",
     ["2026-01-02T12:00:00+00:00", "2026-01-03T12:00:00+00:00", "2026-01-04T12:00:00+00:00"]),
    ("cron(15 10 ? * MON-FRI *)", "2026-11-27T11:00:00+00:00",  # a Friday
     ["2026-11-30T10:15:00+00:00", "2026-12-01T10:15:00+00:00", "2026-12-02T10:15:00+00:00"]),
    ("cron(0 10 ? * 6#3 *)", "2026-04-01T00:00:00+00:00",  # third Friday (1 = SUN)
     ["2026-04-17T10:00:00+00:00", "2026-05-15T10:00:00+00:00", "2026-06-19T10:00:00+00:00"]),
    ("cron(0 10 L * ? *)", "2026-02-01T00:00:00+00:00",
     ["2026-02-28T10:00:00+00:00", "2026-03-31T10:00:00+00:00", "2026-04-30T10:00:00+00:00"]),
    ("cron(0 8 LW * ? *)", "2026-05-01T00:00:00+00:00",  # May 31 2026 is a Sunday
     ["2026-05-29T08:00:00+00:00", "2026-06-30T08:00:00+00:00", "2026-07-31T08:00:00+00:00"]),
    ("0 0 1,15 * MON", "2026-03-28T00:00:00+00:00",  # both day fields set: either matches
     ["2026-03-30T00:00:00+00:00", "2026-04-01T00:00:00+00:00", "2026-04-06T00:00:00+00:00"]),
    ("@hourly", "2026-01-01T00:30:00+00:00",
     ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00", "2026-01-01T03:00:00+00:00"]),
    ("cron(0 0 1 JAN ? 2030)", "2026-01-01T00:00:00+00:00", ["2030-01-01T00:00:00+00:00"]),
])
def test_cron_next_fire_times(expr, start, expected):
    assert fires(expr, start, len(expected)) == expected


def test_time_zone_and_daylight_saving():
    # 02:30 does not exist in Paris on 2026-03-29 (clocks jump 02:00 -> 03:00): skipped
    assert fires("30 2 * * *", "2026-03-28T12:00:00+00:00", 2, "Europe/Paris") == [
        "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    # 02:30 happens twice on 2026-10-25 (03:00 -> 02:00): fires once
    assert fires("30 2 * * *", "2026-10-24T12:00:00+00:00", 2, "Europe/Paris") == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert fires("0 9 * * *", "2026-06-01T00:00:00+00:00", 1, "America/New_York") == [
        "2026-06-01T09:00:00-04:00"]


def test_rate_counts_from_the_anchor():
    e = parse_expression("rate(5 minutes)", anchor=1000.0)
    assert e.next_after(1000.0) == 1300.0
    assert e.next_after(1299.9) == 1300.0
    assert e.next_after(1300.0) == 1600.0
    assert parse_expression("rate(1 minute)").seconds == 60
    assert parse_expression("rate(2 hours)").seconds == 7200
    assert parse_expression("rate(1 day)").seconds == 86400
    assert parse_expression("rate(2 seconds)").seconds == 2  # dayfly-only granularity


@pytest.mark.parametrize("expr,why", [
    ("* * * *", "needs 5 fields"),
    ("cron(0 12 * * *)", "needs 6 fields"),
    ("cron(0 12 * * * *)", "must be '?'"),
    ("61 * * * *", "out of range 0-59 in the minute field"),
    ("0 24 * * *", "out of range 0-23 in the hour field"),
    ("cron(0 0 ? * 9 *)", "out of range 1-7 in the day-of-week field"),
    ("0 0 * FOO *", "'FOO' is not a valid month value"),
    ("*/0 * * * *", "bad step"),
    ("5-1 * * * *", "out of range"),
    ("0 0 31 2 *", "never fires"),
    ("rate(0 minutes)", "at least 1"),
    ("rate(5 weeks)", "the unit must be"),
    ("rate(five minutes)", "expected rate(N unit)"),
    ("", "required"),
])
def test_bad_expressions_are_refused_with_the_reason(expr, why):
    with pytest.raises(InvalidParameter) as info:
        parse_expression(expr)
    assert why in info.value.message


def test_unknown_time_zone():
    with pytest.raises(InvalidParameter, match="Unknown time zone"):
        parse_expression("* * * * *", "Mars/Olympus")
