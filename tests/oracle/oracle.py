"""Independent reference implementation ("oracle") of the timer semantics.

Used only by generate.py to compute the expected fire times that go into tests/cases/*.json.
It shares no code with the component: cron is a small from-scratch evaluator over local wall
time (zoneinfo for time zones), RRULE is python-dateutil, intervals are plain arithmetic.

Semantics implemented (see docs/timer-semantics.md and tests/cases/README.md):
- cron: 5 fields (second 0), 6 fields (seconds first), 7 fields (trailing year); macros;
  names case-insensitive; weekday 0 and 7 = Sunday; `?`; `L`, `LW`, `nW` (day of month),
  `nL` and `n#k` (day of week); dom/dow both restricted -> either matches (OR).
  DST (Vixie cron): if none of the second, minute and hour fields starts with `*` ("fixed
  time": single values, lists and ranges alike; the implicit second of a 5-field expression
  is fixed), a local time in a spring-forward gap fires once at the first instant after the
  gap (several in one gap fire once), and one that occurs twice at fall-back fires once, at
  its first occurrence. Otherwise the expression fires on every
  real instant whose local wall time matches (gap times do not exist, repeated times fire at
  both real instants).
- StackStorm / APScheduler field form converted to the cron model (APScheduler defaults,
  numeric day_of_week 0 = Monday).
- rrule: RFC 5545 via dateutil; DTSTART in the given zone's local time; local times in a
  gap use the offset before the gap, repeated local times their first occurrence (RFC 5545
  3.3.5), which is what zoneinfo's fold=0 gives.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from dateutil import rrule as du_rrule

UTC = dt.timezone.utc

DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
MON_NAMES = {n.upper(): i for i, n in enumerate(calendar.month_abbr) if n}

MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


# ----------------------------------------------------------------------------- time helpers

def parse_instant(s: str) -> dt.datetime:
    """RFC 3339 with offset -> aware UTC datetime."""
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        raise ValueError(f"naive datetime {s!r}")
    return d.astimezone(UTC)


def fmt(d: dt.datetime) -> str:
    """Aware datetime -> RFC 3339 UTC with Z; fractional seconds only when non-zero."""
    d = d.astimezone(UTC)
    if d.microsecond:
        frac = f"{d.microsecond:06d}".rstrip("0")
        # keep millisecond / microsecond groups (like chrono's AutoSi)
        frac = frac.ljust(3 if len(frac) <= 3 else 6, "0")
        return d.strftime("%Y-%m-%dT%H:%M:%S") + "." + frac + "Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def zone(name: str):
    return UTC if name == "UTC" else ZoneInfo(name)


def resolve_local(naive: dt.datetime, tz):
    """Classify a local wall time: ('normal', [u]), ('ambiguous', [first, second]),
    ('gap', [first instant after the gap])."""
    if tz is UTC:
        return "normal", [naive.replace(tzinfo=UTC)]
    a = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if a == b:
        return "normal", [a]
    back_a = a.astimezone(tz).replace(tzinfo=None)
    back_b = b.astimezone(tz).replace(tzinfo=None)
    if back_a == naive and back_b == naive:
        return "ambiguous", sorted([a, b])
    # gap: the transition instant lies between the two candidates; find the first instant
    # whose local wall time is after `naive` (binary search on whole seconds).
    lo, hi = min(a, b), max(a, b)
    while (hi - lo) > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(tz).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    if lo.astimezone(tz).replace(tzinfo=None) > naive:
        hi = lo
    return "gap", [hi]


# ----------------------------------------------------------------------------- interval

def interval_next(started_at: dt.datetime, seconds: int, after: dt.datetime) -> dt.datetime:
    step = dt.timedelta(seconds=seconds)
    if after < started_at + step:
        return started_at + step
    k = (after - started_at) // step + 1
    return started_at + k * step


# ----------------------------------------------------------------------------- cron

def _num(tok: str, names: dict | None) -> int:
    t = tok.upper()
    if names and t in names:
        return names[t]
    if not t.isdigit():
        raise ValueError(f"bad value {tok!r}")
    return int(t)


def _parse_simple(text: str, lo: int, hi: int, names=None, allow_seven_sunday=False) -> set:
    out = set()
    for item in text.split(","):
        step = 1
        if "/" in item:
            item, s = item.split("/")
            step = int(s)
            if step <= 0:
                raise ValueError("step")
        if item in ("*", "?"):
            a, b = lo, hi
        elif "-" in item:
            x, y = item.split("-")
            a, b = _num(x, names), _num(y, names)
        else:
            a = _num(item, names)
            b = hi if step != 1 else a
        top = 7 if allow_seven_sunday else hi
        if not (lo <= a <= top and lo <= b <= top) or a > b:
            raise ValueError(f"out of range {item!r}")
        out.update(range(a, b + 1, step))
    if allow_seven_sunday and 7 in out:
        out.discard(7)
        out.add(0)
    return out


@dataclass
class DomSpec:
    star: bool
    days: set = field(default_factory=set)
    last: bool = False
    last_weekday: bool = False
    nearest: set = field(default_factory=set)

    def matches(self, d: dt.date) -> bool:
        last_day = calendar.monthrange(d.year, d.month)[1]
        if d.day in self.days:
            return True
        if self.last and d.day == last_day:
            return True
        if self.last_weekday:
            ld = dt.date(d.year, d.month, last_day)
            while ld.weekday() >= 5:
                ld -= dt.timedelta(days=1)
            if ld == d:
                return True
        for n in self.nearest:
            if n > last_day:
                continue
            t = dt.date(d.year, d.month, n)
            if t.weekday() == 5:  # Saturday
                t = t - dt.timedelta(days=1) if n > 1 else t + dt.timedelta(days=2)
            elif t.weekday() == 6:  # Sunday
                t = t + dt.timedelta(days=1) if n < last_day else t - dt.timedelta(days=2)
            if t == d:
                return True
        return False


@dataclass
class DowSpec:
    star: bool
    days: set = field(default_factory=set)  # 0 = Sunday
    nth: set = field(default_factory=set)  # (dow, n)
    last: set = field(default_factory=set)  # dow

    def matches(self, d: dt.date) -> bool:
        w = (d.weekday() + 1) % 7  # 0 = Sunday
        if w in self.days:
            return True
        if (w, (d.day - 1) // 7 + 1) in self.nth:
            return True
        if w in self.last and d.day + 7 > calendar.monthrange(d.year, d.month)[1]:
            return True
        return False


def _parse_dom(text: str) -> DomSpec:
    if text in ("*", "?"):
        return DomSpec(star=True)
    spec = DomSpec(star=False)
    for item in text.split(","):
        u = item.upper()
        if u == "L":
            spec.last = True
        elif u == "LW":
            spec.last_weekday = True
        elif u.endswith("W"):
            n = int(u[:-1])
            if not 1 <= n <= 31:
                raise ValueError("W")
            spec.nearest.add(n)
        else:
            spec.days |= _parse_simple(item, 1, 31)
    return spec


def _parse_dow(text: str) -> DowSpec:
    if text in ("*", "?"):
        return DowSpec(star=True)
    spec = DowSpec(star=False)
    for item in text.split(","):
        u = item.upper()
        if "#" in u:
            a, n = u.split("#")
            w = _num(a, DOW_NAMES) % 7
            n = int(n)
            if not 1 <= n <= 5:
                raise ValueError("#")
            spec.nth.add((w, n))
        elif u.endswith("L") and len(u) > 1:
            spec.last.add(_num(u[:-1], DOW_NAMES) % 7)
        else:
            spec.days |= _parse_simple(item, 0, 6, DOW_NAMES, allow_seven_sunday=True)
    return spec


@dataclass
class Cron:
    secs: list
    mins: list
    hours: list
    dom: DomSpec
    months: set
    dow: DowSpec
    years: set | None
    fixed_time: bool

    def day_matches(self, d: dt.date) -> bool:
        if d.month not in self.months:
            return False
        if self.years is not None and d.year not in self.years:
            return False
        if self.dom.star and self.dow.star:
            return True
        if self.dom.star:
            return self.dow.matches(d)
        if self.dow.star:
            return self.dom.matches(d)
        return self.dom.matches(d) or self.dow.matches(d)


def parse_cron(expr: str) -> Cron:
    e = expr.strip()
    if e.lower() in MACROS:
        e = MACROS[e.lower()]
    f = e.split()
    if len(f) == 5:
        f = ["0"] + f
    if len(f) == 6:
        f = f + ["*"]
    if len(f) != 7:
        raise ValueError("field count")
    s, m, h, dom, mon, dow, yr = f
    return Cron(
        secs=sorted(_parse_simple(s, 0, 59)),
        mins=sorted(_parse_simple(m, 0, 59)),
        hours=sorted(_parse_simple(h, 0, 23)),
        dom=_parse_dom(dom),
        months=_parse_simple(mon, 1, 12, MON_NAMES),
        dow=_parse_dow(dow),
        years=None if yr in ("*", "?") else _parse_simple(yr, 1970, 2199),
        fixed_time=not any(t.startswith(("*", "/")) for t in (s, m, h)),
    )


def cron_next(c: Cron, tzname: str, after: dt.datetime, horizon_years: int = 60):
    """First fire strictly after `after` (aware), or None."""
    tz = zone(tzname)
    after_local = after.astimezone(tz).replace(tzinfo=None)
    d = after_local.date() - dt.timedelta(days=1)
    end = d + dt.timedelta(days=366 * horizon_years)
    if c.years is not None:
        end = min(end, dt.date(max(c.years), 12, 31) + dt.timedelta(days=1))
    best = None
    while d <= end:
        if best is not None and d > best.astimezone(tz).date() + dt.timedelta(days=1):
            break
        if c.day_matches(d):
            for h in c.hours:
                for m in c.mins:
                    for s in c.secs:
                        naive = dt.datetime(d.year, d.month, d.day, h, m, s)
                        if naive < after_local - dt.timedelta(hours=6):
                            continue
                        kind, insts = resolve_local(naive, tz)
                        if c.fixed_time:
                            cand = insts[:1]  # gap -> first instant after; double -> first
                        else:
                            cand = [] if kind == "gap" else insts
                        for u in cand:
                            if u > after and (best is None or u < best):
                                best = u
        d += dt.timedelta(days=1)
    return best


# ----------------------------------------------------------------------------- StackStorm

APS_FIELDS = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"]
APS_DEFAULTS = {"year": "*", "month": "1", "day": "1", "week": "*", "day_of_week": "*",
                "hour": "0", "minute": "0", "second": "0"}
APS_DOW = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def stackstorm_to_cron(params: dict) -> tuple[str, str]:
    """APScheduler CronTrigger field params -> (7-field cron in our syntax, timezone)."""
    given = {k: str(params[k]) for k in APS_FIELDS if k in params and k != "week"}
    values = {}
    remaining = set(given)
    assign_defaults = False
    for name in APS_FIELDS:
        if name in given:
            values[name] = given[name]
            remaining.discard(name)
            assign_defaults = not remaining
        elif assign_defaults:
            values[name] = APS_DEFAULTS[name]
        else:
            values[name] = "*"

    def conv_dow(text):
        # APScheduler: 0 = Monday ... 6 = Sunday; names mon..sun. Ours: 0 = Sunday.
        if text in ("*", "?"):
            return "*"
        out = []
        for item in text.split(","):
            def one(t):
                t = t.strip().lower()
                if t.isdigit():
                    return str((int(t) + 1) % 7)
                return str((APS_DOW.index(t[:3]) + 1) % 7)
            if "-" in item:
                a, b = item.split("-")
                a, b = int(one(a)), int(one(b))
                if a <= b:
                    out.append(f"{a}-{b}")
                else:  # wraps through Sunday (e.g. sat-sun)
                    out.append(f"{a}-6")
                    out.append(f"0-{b}")
            else:
                out.append(one(item))
        return ",".join(out)

    expr = " ".join([values["second"], values["minute"], values["hour"], values["day"],
                     values["month"], conv_dow(values["day_of_week"]), values["year"]])
    return expr, params.get("timezone", "UTC")


# ----------------------------------------------------------------------------- rrule

RRULE_ORDER = [
    ("freq", "FREQ"), ("interval", "INTERVAL"), ("count", "COUNT"), ("until", "UNTIL"),
    ("by_day", "BYDAY"), ("by_month_day", "BYMONTHDAY"), ("by_month", "BYMONTH"),
    ("by_year_day", "BYYEARDAY"), ("by_week_no", "BYWEEKNO"), ("by_hour", "BYHOUR"),
    ("by_minute", "BYMINUTE"), ("by_second", "BYSECOND"), ("by_set_pos", "BYSETPOS"),
    ("week_start", "WKST"),
]


def rrule_body(params: dict) -> str:
    raw = params.get("rule")
    if isinstance(raw, str) and raw.strip():
        body = raw.strip()
        if body.upper().startswith("RRULE:"):
            body = body[6:]
        return body
    parts = []
    for key, name in RRULE_ORDER:
        if key not in params or params[key] is None:
            continue
        v = params[key]
        if key == "freq":
            v = str(v).upper()
        elif key == "until":
            v = parse_instant(v).strftime("%Y%m%dT%H%M%SZ")
        elif key in ("by_day", "week_start"):
            v = ",".join(x.upper() for x in v) if isinstance(v, list) else str(v).upper()
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        parts.append(f"{name}={v}")
    return ";".join(parts)


def rrule_next(params: dict, after: dt.datetime):
    tzname = params.get("timezone", "UTC")
    tz = zone(tzname)
    text = params["dtstart"]
    naive = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if naive.tzinfo is None:
        # A naive start is a wall time in the rule's zone; fold=0 reads a time in a gap with
        # the offset before it and a repeated time as its first occurrence (RFC 5545 3.3.5),
        # and dateutil keeps the wall time (02:30) for later days.
        dtstart = naive.replace(tzinfo=tz, fold=0)
    else:
        dtstart = naive.astimezone(tz)
        wall = naive.replace(tzinfo=None)
        if (not text.upper().endswith("Z")
                and naive.utcoffset() == wall.replace(tzinfo=tz, fold=0).utcoffset()
                and resolve_local(wall, tz)[0] == "gap"):
            # Written with the offset before a gap (as digits; a Z time is an instant): the
            # same start as the naive wall time.
            dtstart = wall.replace(tzinfo=tz, fold=0)
    rule = du_rrule.rrulestr(rrule_body(params), dtstart=dtstart)
    # iterate wall-time occurrences from a day before `after` and pick the first real
    # instant strictly after it
    for occ in rule.xafter(after.astimezone(tz) - dt.timedelta(days=2), inc=True):
        u = occ.astimezone(UTC)
        if u > after:
            return u
    return None
