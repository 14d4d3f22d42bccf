"""Cron expressions: parsing and the search for the next fire, written from scratch.

Syntax (docs/timer-semantics.md §3): 5 fields `min hour dom mon dow` (second 0), 6 fields with
seconds first, 7 with a trailing year; the macros; lists, ranges, steps (`*/15`, `10-40/5`,
`5/20` = from 5 to the end); month and weekday names in any case; weekday 0 and 7 = Sunday;
`?` = `*` in the two day fields; `L`, `LW`, `nW` in day-of-month; `nL`, `n#k` in day-of-week.
When both day fields are restricted a day matches if either does (POSIX/Vixie), unless the
expression came from StackStorm fields, where APScheduler requires both (`days_and`).

The search works on local "wall seconds" (instants.py). Time zones (zones.py) enter only in
`next_after`, which applies Vixie cron's daylight-saving rules:
- fixed-time expressions (none of the second, minute and hour fields starts with `*`: single
  values, lists and ranges alike; a 5-field expression's implicit second 0 is fixed) fire once
  per matching wall time: one skipped by a spring-forward gap fires at the first instant after
  the gap (several in one gap fire once), one repeated at fall-back at its first occurrence;
- every other expression fires on the real instants whose wall time matches: within each
  stretch of constant UTC offset, wall time and real time move together, so the search runs
  stretch by stretch (no fire for skipped wall times, two for repeated ones).
"""

import bisect

from .instants import DAY, join_seconds, month_length, split_seconds, weekday, days_from_civil

ACCEPTED = (
    "expected 5 fields (minute hour day-of-month month day-of-week), 6 (second first), "
    "7 (with a trailing year) or one of @yearly, @annually, @monthly, @weekly, @daily, "
    "@midnight, @hourly"
)

MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

MONTHS = {n: i + 1 for i, n in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
WEEKDAYS = {n: i for i, n in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

# Field names (as the 7-field form orders them), used in messages and by StackStorm blame.
FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")

YEAR_MIN, YEAR_MAX = 1970, 4999
# How far the search looks when no year field bounds it: the Gregorian calendar (weekdays
# included) repeats every 400 years, so a day pattern that matches at all matches within it.
HORIZON_YEARS = 401


class CronError(ValueError):
    """A bad expression; `index` is the field at fault (into FIELDS) when one is."""

    def __init__(self, message, index=None):
        super().__init__(message)
        self.index = index


# ----------------------------------------------------------------------------- strict check

EXCERPT_LEN = 60


def excerpt(text):
    """A user's value as messages quote it: control characters escaped, cut to about
    EXCERPT_LEN characters (an ellipsis marks the cut)."""
    out = []
    for i, c in enumerate(text):
        if i == EXCERPT_LEN:
            out.append("\u2026")
            break
        if ord(c) < 32 or ord(c) == 127:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, "\\u{%x}" % ord(c)))
        else:
            out.append(c)
    return "".join(out)


_LAYOUTS = {5: (1, 2, 3, 4, 5), 6: (0, 1, 2, 3, 4, 5), 7: (0, 1, 2, 3, 4, 5, 6)}
_BOUNDS = {0: (0, 59), 1: (0, 59), 2: (0, 23), 3: (1, 31), 4: (1, 12), 5: (0, 7), 6: (YEAR_MIN, YEAR_MAX)}
_FIELD_ACCEPTS = {
    0: "numbers 0-59",
    1: "numbers 0-59",
    2: "numbers 0-23",
    3: "numbers 1-31, L (last day), LW (last weekday), nW (weekday nearest day n) or ? (any)",
    4: "numbers 1-12 or names JAN-DEC",
    5: "numbers 0-7 (0 and 7 are Sunday) or names SUN-SAT, nL (last such weekday of the "
       "month), n#k (k-th such weekday, k 1-5) or ? (any)",
    6: "years 1970-4999",
}


def _check_value(text, index, range_end=False):
    lo, hi = _BOUNDS[index]
    if text.isdigit():
        v = int(text)
        if not lo <= v <= hi:
            raise ValueError("%s is out of range %d-%d" % (excerpt(text), lo, hi))
        return v
    if index == 4 and text in MONTHS:
        return MONTHS[text]
    if index == 5 and text in WEEKDAYS:
        v = WEEKDAYS[text]
        return 7 if v == 0 and range_end else v
    if index == 4:
        raise ValueError("'%s' is not a month number or name" % excerpt(text))
    if index == 5:
        raise ValueError("'%s' is not a weekday number or three-letter name" % excerpt(text))
    if not text:
        raise ValueError("an empty value")
    raise ValueError("'%s' is not a number" % excerpt(text))


def _check_item(item, index):
    if index == 3:
        if item in ("L", "LW"):
            return
        if item.endswith("W"):
            day = item[:-1]
            if not (day.isdigit() and 1 <= int(day) <= 31):
                raise ValueError("'%s' is not a valid nW (n a day 1-31)" % excerpt(item))
            return
    if index == 5:
        if item == "L":
            raise ValueError("'L' alone is not a weekday; use nL for the last such weekday of "
                             "the month (5L: the last Friday), or L in the day-of-month field "
                             "for the month's last day")
        if "#" in item:
            day, _, nth = item.partition("#")
            _check_value(day, index)
            if not ((nth.isdigit() and 1 <= int(nth) <= 5) or nth == "L"):
                raise ValueError("'#%s' after a weekday: n#k takes k from 1 to 5" % excerpt(nth))
            return
        if item.endswith("L"):
            _check_value(item[:-1], index)
            return
    rng, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        raise ValueError("step '/%s' is not a whole number of at least 1" % excerpt(step))
    if rng == "*" or (not rng and slash):
        return
    if "-" in rng:
        low, _, high = rng.partition("-")
        if _check_value(low, index) > _check_value(high, index, range_end=True):
            raise ValueError("'%s-%s' is a reversed range (%s is after %s); ranges go from low "
                             "to high (for a range across the end, list two: e.g. 22-23,0-2)"
                             % (low, high, low, high))
        return
    _check_value(rng, index)


def check_syntax(text):
    """The strict check of a (non-macro) expression, as the Rust component makes it: names
    only in the month and day-of-week fields, no empty list items, no reversed ranges, `n#k`
    and `nL` not mixed. Raises CronError naming the field, its value and what it accepts."""
    fields = text.split()
    layout = _LAYOUTS.get(len(fields))
    if layout is None:
        raise CronError("it has %d field%s; %s" % (len(fields), "" if len(fields) == 1 else "s",
                                                   ACCEPTED))
    for raw, index in zip(fields, layout):
        body = raw.upper()
        if index == 5 and body.startswith("+"):
            body = body[1:]
        try:
            if body == "?":
                if index not in (3, 5):
                    raise ValueError("'?' is only for the day fields")
            elif not body:
                raise ValueError("empty")
            else:
                listed = "," in body
                for item in body.split(","):
                    if not item:
                        raise ValueError("an empty list item (a stray comma)")
                    try:
                        _check_item(item, index)
                    except ValueError as e:
                        if listed:
                            raise ValueError("in item '%s': %s" % (excerpt(item), e))
                        raise
        except ValueError as e:
            message = ("the %s field '%s': %s; that field accepts %s, as a single value, a range "
                       "(a-b), a list (a,b) or a step (*/n, a/n, a-b/n)"
                       % (FIELDS[index], excerpt(raw), e, _FIELD_ACCEPTS[index]))
            if len(fields) == 6:
                message += (" (with 6 fields the first is the second: second minute hour "
                            "day-of-month month day-of-week)")
            raise CronError(message, index)


# ----------------------------------------------------------------------------- parsing

def _value(token, lo, hi, names, index):
    t = token.upper()
    if names and t in names:
        return names[t]
    if not t.isdigit():
        raise CronError("%s: %r is not a number%s" % (
            FIELDS[index], token, " or a name" if names else ""), index)
    v = int(t)
    if not lo <= v <= hi:
        raise CronError("%s: %d is out of range %d-%d" % (FIELDS[index], v, lo, hi), index)
    return v


def _parse_list(text, lo, hi, index, names=None, top=None):
    """A comma list of `*`, `a`, `a-b`, each optionally `/step`. `top` is a larger value
    accepted when written explicitly (7 for Sunday)."""
    top = hi if top is None else top
    out = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError("%s: bad step in %r" % (FIELDS[index], item), index)
            step = int(step_text)
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            x, _, y = base.partition("-")
            a, b = _value(x, lo, top, names, index), _value(y, lo, top, names, index)
            if a > b:
                raise CronError("%s: reversed range %r" % (FIELDS[index], item), index)
        elif base:
            a = _value(base, lo, top, names, index)
            b = hi if slash else a
        else:
            raise CronError("%s: empty item in %r" % (FIELDS[index], text), index)
        out.update(range(a, b + 1, step))
    return out


class DaysOfMonth:
    def __init__(self, text):
        self.days, self.last, self.last_weekday, self.nearest = set(), False, False, set()
        for item in text.split(","):
            u = item.upper()
            if u == "L":
                self.last = True
            elif u == "LW":
                self.last_weekday = True
            elif u.endswith("W") and u[:-1].isdigit():
                self.nearest.add(_value(u[:-1], 1, 31, None, 3))
            else:
                self.days |= _parse_list(item, 1, 31, 3)

    def add_matches(self, out, first, n):
        """Adds to `out` the matching days of a month of `n` days whose 1st is day `first`."""
        out.update(d for d in self.days if d <= n)
        if self.last:
            out.add(n)
        if self.last_weekday:
            w = weekday(first + n - 1)
            out.add(n - (1 if w == 6 else 2 if w == 0 else 0))
        for d in self.nearest:
            if d > n:
                continue
            w = weekday(first + d - 1)
            if w == 6:  # Saturday: the Friday before, or the Monday after the 1st
                d = d - 1 if d > 1 else d + 2
            elif w == 0:  # Sunday: the Monday after, or the Friday before the month's end
                d = d + 1 if d < n else d - 2
            out.add(d)


class DaysOfWeek:
    def __init__(self, text):
        self.days, self.nth, self.last = set(), set(), set()
        for item in text.split(","):
            u = item.upper()
            if "#" in u:
                w, _, k = u.partition("#")
                w = _value(w, 0, 7, WEEKDAYS, 5) % 7
                if not k.isdigit() or not 1 <= int(k) <= 5:
                    raise CronError("day-of-week: %r: the n in #n must be 1-5" % item, 5)
                self.nth.add((w, int(k)))
            elif len(u) > 1 and u.endswith("L"):
                self.last.add(_value(u[:-1], 0, 7, WEEKDAYS, 5) % 7)
            else:
                self.days |= {d % 7 for d in _parse_list(item, 0, 6, 5, WEEKDAYS, top=7)}

    def add_matches(self, out, first, n):
        w1 = weekday(first)
        for w in self.days:
            out.update(range(1 + (w - w1) % 7, n + 1, 7))
        for w, k in self.nth:
            d = 1 + (w - w1) % 7 + 7 * (k - 1)
            if d <= n:
                out.add(d)
        for w in self.last:
            out.add(n - (weekday(first + n - 1) - w) % 7)


MAX_EXPRESSION_LEN = 1000
# The longest each month can be (February: in leap years).
_MAX_MONTH_LENGTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class Cron:
    def __init__(self, expression, days_and=False):
        text = expression.strip()
        if not text:
            raise CronError("the expression is empty; " + ACCEPTED)
        if len(text) > MAX_EXPRESSION_LEN:
            raise CronError("it is longer than %d characters" % MAX_EXPRESSION_LEN)
        if text.startswith("@"):
            if text.lower() not in MACROS:
                raise CronError("unknown macro; expected one of %s" % ", ".join(MACROS))
            fields = MACROS[text.lower()].split()
            fixed_fields = fields[:3]
        else:
            check_syntax(text)
            fields = text.split()
            fixed_fields = (["0"] + fields)[:3] if len(fields) == 5 else fields[:3]
        if len(fields) == 5:
            fields = ["0"] + fields + ["*"]
        elif len(fields) == 6:
            fields = fields + ["*"]
        elif len(fields) != 7:
            raise CronError("it has %d fields" % len(fields))
        s, m, h, dom, mon, dow, yr = fields
        for i in (0, 1, 2, 4, 6):
            if fields[i] == "?":
                raise CronError("%s: '?' is only allowed in the day fields" % FIELDS[i], i)
        self.seconds = sorted(_parse_list(s, 0, 59, 0))
        self.minutes = sorted(_parse_list(m, 0, 59, 1))
        self.hours = sorted(_parse_list(h, 0, 23, 2))
        self.dom = None if dom in ("*", "?") else DaysOfMonth(dom)
        self.months = sorted(_parse_list(mon, 1, 12, 4, MONTHS))
        self.dow = None if dow in ("*", "?") else DaysOfWeek(dow)
        self.years = None if yr == "*" else sorted(_parse_list(yr, YEAR_MIN, YEAR_MAX, 6))
        self.days_and = days_and
        # Vixie cron: fixed local times unless one of these fields starts with `*` (a bare
        # `/n` is `*/n`).
        self.fixed_time = not any(f.startswith(("*", "/")) for f in fixed_fields)
        self._can_match = self.days_can_match()
        self._month_set = set(self.months)
        self._year_set = None if self.years is None else set(self.years)
        self._days_cache = {}

    def days_can_match(self):
        """False when the day-of-month field names only days that none of the months ever
        has (`30 2`, `31 4,6,9,11`) and the day-of-week field cannot rescue it: such an
        expression never fires, and saying so needs no search."""
        dom = self.dom
        if dom is None or dom.last or dom.last_weekday or (self.dow is not None and not self.days_and):
            return True
        smallest = min(dom.days | dom.nearest)
        return any(smallest <= _MAX_MONTH_LENGTH[m - 1] for m in self.months)

    # ------------------------------------------------------------------------- the search

    def _days(self, y, m):
        """The matching days of month m of year y, sorted."""
        key = y * 12 + m
        hit = self._days_cache.get(key)
        if hit is None:
            n = month_length(y, m)
            first = days_from_civil(y, m, 1)
            if self.dom is None and self.dow is None:
                hit = range(1, n + 1)
            else:
                a, b = set(), set()
                if self.dom is not None:
                    self.dom.add_matches(a, first, n)
                if self.dow is not None:
                    self.dow.add_matches(b, first, n)
                if self.dom is None:
                    days = b
                elif self.dow is None:
                    days = a
                else:
                    days = (a & b) if self.days_and else (a | b)
                hit = sorted(days)
            if len(self._days_cache) > 4096:
                self._days_cache.clear()
            self._days_cache[key] = hit
        return hit

    def _time_from(self, hh, mm, ss):
        """The first (h, m, s) of the day at or after hh:mm:ss, or None."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect.bisect_left(hours, hh)
        if i == len(hours):
            return None
        if hours[i] > hh:
            return hours[i], minutes[0], seconds[0]
        j = bisect.bisect_left(minutes, mm)
        if j < len(minutes):
            if minutes[j] > mm:
                return hh, minutes[j], seconds[0]
            k = bisect.bisect_left(seconds, ss)
            if k < len(seconds):
                return hh, mm, seconds[k]
            if j + 1 < len(minutes):
                return hh, minutes[j + 1], seconds[0]
        if i + 1 < len(hours):
            return hours[i + 1], minutes[0], seconds[0]
        return None

    def next_wall(self, t):
        """The first matching wall time at or after wall second t, or None."""
        y, mo, d, hh, mm, ss = split_seconds(t)
        limit = self.years[-1] if self.years is not None else y + HORIZON_YEARS
        while y <= limit:
            if self._year_set is not None and y not in self._year_set:
                i = bisect.bisect_right(self.years, y)
                if i == len(self.years):
                    return None
                y, mo, d, hh, mm, ss = self.years[i], 1, 1, 0, 0, 0
                continue
            if mo not in self._month_set:
                i = bisect.bisect_right(self.months, mo)
                if i == len(self.months):
                    y, mo, d, hh, mm, ss = y + 1, self.months[0], 1, 0, 0, 0
                else:
                    mo, d, hh, mm, ss = self.months[i], 1, 0, 0, 0
                continue
            days = self._days(y, mo)
            i = bisect.bisect_left(days, d)
            if i == len(days):
                y, mo, d, hh, mm, ss = (y, mo + 1, 1, 0, 0, 0) if mo < 12 else (y + 1, 1, 1, 0, 0, 0)
                continue
            if days[i] != d:
                d, hh, mm, ss = days[i], 0, 0, 0
            hms = self._time_from(hh, mm, ss)
            if hms is None:
                d, hh, mm, ss = d + 1, 0, 0, 0
                continue
            return join_seconds(y, mo, d, *hms)
        return None

    def next_after(self, zone, after):
        """The first fire strictly after instant `after` (whole seconds) in `zone`, or None."""
        if not self._can_match:
            return None
        if self.fixed_time:
            # Resolving wall times never goes backwards as the wall clock advances, and no
            # wall time before `after`'s own resolves after it: walk the matches from there.
            t = after + zone.offset_at(after)
            while True:
                wall = self.next_wall(t)
                if wall is None:
                    return None
                u = zone.resolve_fixed(wall)
                if u > after:
                    return u
                t = wall + 1
        u = after + 1
        while True:
            offset, end = zone.segment(u)
            wall = self.next_wall(u + offset)
            if wall is None:
                return None
            candidate = wall - offset
            if end is None or candidate < end:
                return candidate
            # No wall time in [u + offset, wall) matches. A later instant v can still match
            # with a wall time before u + offset only if an offset drop repeats it, which needs
            # v - u below the largest drop (< 2 days in any zone); otherwise its wall time is
            # >= wall, so v >= wall - (its offset) > wall - 2 days. Far from u, skip ahead.
            u = max(end, candidate - 2 * DAY) if end - u > 2 * DAY else end


# ----------------------------------------------------------------------------- StackStorm

# APScheduler CronTrigger fields, most significant first, and the defaults it gives the
# fields below the least significant one given.
STACKSTORM_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
_APS_DEFAULTS = {"year": "*", "month": "1", "day": "1", "week": "*", "day_of_week": "*",
                 "hour": "0", "minute": "0", "second": "0"}
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_APS_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Our field index -> StackStorm field name, for blaming.
STACKSTORM_BLAME = {0: "second", 1: "minute", 2: "hour", 3: "day", 4: "month",
                    5: "day_of_week", 6: "year"}


def _aps_weekday(token):
    """An APScheduler weekday (0 = Monday or a name) -> ours (0 = Sunday)."""
    t = token.strip().lower()
    if t.isdigit() and int(t) <= 6:
        return (int(t) + 1) % 7
    for i, name in enumerate(_APS_WEEKDAYS):
        if t == name or t == _APS_WEEKDAY_NAMES[i]:
            return (i + 1) % 7
    raise CronError("day_of_week: %r is not a weekday (0-6 from Monday, or mon-sun)" % token, 5)


def _aps_day_of_week(text):
    if text in ("*", "?"):
        return "*"
    out = []
    for item in text.split(","):
        if "-" in item:
            a, _, b = item.partition("-")
            a, b = _aps_weekday(a), _aps_weekday(b)
            out.append("%d-%d" % (a, b) if a <= b else "%d-6,0-%d" % (a, b))
        else:
            out.append(str(_aps_weekday(item)))
    return ",".join(out)


def from_stackstorm(values):
    """APScheduler field values {name: text} -> a 7-field expression in our syntax.
    Raises CronError with the index of the field at fault."""
    fields = {}
    remaining = set(values)
    defaults = False
    for name in STACKSTORM_FIELDS:
        if name in values:
            fields[name] = values[name].strip()
            remaining.discard(name)
            defaults = not remaining
        else:
            fields[name] = _APS_DEFAULTS[name] if defaults else "*"
    day = "L" if fields["day"].lower() == "last" else fields["day"]
    return " ".join([fields["second"], fields["minute"], fields["hour"], day,
                     fields["month"], _aps_day_of_week(fields["day_of_week"]), fields["year"]])
