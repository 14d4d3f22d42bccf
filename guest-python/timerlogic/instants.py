"""Instants and civil dates, in plain integer arithmetic.

An instant is an integer count of nanoseconds since 1970-01-01T00:00:00Z (the WIT `instant`
is seconds + nanoseconds; see app.py). "Wall seconds" are the same count in seconds of a
local calendar read as if it were UTC: the cron search works on them, and zones.py maps them
to and from real instants.

No `datetime`, no clock: every function here is pure and works for any year.
"""

NS = 1_000_000_000
DAY = 86_400


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(z: int) -> tuple:
    """The date (y, m, d) that is `z` days after 1970-01-01."""
    z += 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def weekday(days: int) -> int:
    """Day of the week of a day number: 0 = Sunday ... 6 = Saturday (1970-01-01 was a Thursday)."""
    return (days + 4) % 7


def is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def month_length(y: int, m: int) -> int:
    return 29 if m == 2 and is_leap(y) else _MONTH_DAYS[m - 1]


def split_seconds(t: int) -> tuple:
    """Wall (or UTC) seconds -> (y, m, d, hh, mm, ss)."""
    days, sod = divmod(t, DAY)
    y, m, d = civil_from_days(days)
    hh, rest = divmod(sod, 3600)
    mm, ss = divmod(rest, 60)
    return y, m, d, hh, mm, ss


def join_seconds(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    return days_from_civil(y, m, d) * DAY + hh * 3600 + mm * 60 + ss


def format_utc(ns: int) -> str:
    """RFC 3339 in UTC with a `Z`; a fraction only when non-zero (3, 6 or 9 digits)."""
    secs, frac = divmod(ns, NS)
    y, m, d, hh, mm, ss = split_seconds(secs)
    text = "%04d-%02d-%02dT%02d:%02d:%02d" % (y, m, d, hh, mm, ss)
    if frac:
        if frac % 1_000_000 == 0:
            text += ".%03d" % (frac // 1_000_000)
        elif frac % 1_000 == 0:
            text += ".%06d" % (frac // 1_000)
        else:
            text += ".%09d" % frac
    return text + "Z"
