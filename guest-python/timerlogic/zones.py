"""IANA time zones from TZif data, with no file access at call time.

`load_database()` runs at import time (so componentize-py's pre-initialization snapshot holds
the result): it reads every TZif file of the `tzdata` package into memory as bytes. A zone is
parsed from those bytes the first time a rule names it (`get_zone`), and kept.

A zone answers two questions, which is all the cron search needs:
- `segment(u)`: the UTC offset in effect at instant `u` (whole seconds) and the instant of
  the next offset change after `u` (`None` when there is none);
- `resolve_fixed(wall)`: the real instant of a local wall time under Vixie cron's rule for
  fixed-time jobs (a wall time occurring twice -> its first occurrence; one skipped by a
  spring-forward gap -> the first instant after the gap).

TZif (RFC 8536) lists transitions explicitly up to some year and ends with a POSIX TZ string
(e.g. `CET-1CEST,M3.5.0,M10.5.0/3`) that governs every instant after the last transition;
the `tzdata` package ships "slim" files, where that footer does most of the work.
"""

import bisect
import struct

from .instants import DAY, days_from_civil, month_length, weekday


class ZoneError(ValueError):
    pass


# ----------------------------------------------------------------------------- POSIX TZ rules

class _Reader:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, ch):
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def number(self):
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if start == self.pos:
            raise ZoneError("number expected in TZ string %r" % self.text)
        return int(self.text[start:self.pos])

    def name(self):
        if self.take("<"):
            end = self.text.index(">", self.pos)
            self.pos = end + 1
            return
        start = self.pos
        while self.peek().isalpha():
            self.pos += 1
        if self.pos - start < 3:
            raise ZoneError("zone abbreviation expected in TZ string %r" % self.text)

    def hms(self):
        """[+-]hh[:mm[:ss]] -> seconds (signed)."""
        sign = -1 if self.take("-") else 1
        if sign == 1:
            self.take("+")
        total = self.number() * 3600
        if self.take(":"):
            total += self.number() * 60
            if self.take(":"):
                total += self.number()
        return sign * total


class PosixRule:
    """A POSIX TZ string: standard offset, and optionally a DST offset with its two yearly
    transition rules. Offsets are stored east of UTC (POSIX writes them west)."""

    def __init__(self, text):
        r = _Reader(text)
        r.name()
        self.std = -r.hms()
        self.dst = None
        self.rules = None
        if r.peek() and r.peek() != ",":
            r.name()
            self.dst = self.std + 3600
            if r.peek() and r.peek() != ",":
                self.dst = -r.hms()
        if r.take(","):
            start = self._date_rule(r)
            if not r.take(","):
                raise ZoneError("bad TZ string %r" % text)
            end = self._date_rule(r)
            self.rules = (start, end)
        if r.pos != len(text):
            raise ZoneError("bad TZ string %r" % text)
        if self.dst is not None and self.rules is None:
            # POSIX leaves the default rule implementation-defined; tzdata never relies on it.
            self.rules = (("M", 3, 2, 0, 7200), ("M", 11, 1, 0, 7200))
        self._cache = {}

    @staticmethod
    def _date_rule(r):
        if r.take("M"):
            m = r.number()
            r.take(".") or _bad(r)
            w = r.number()
            r.take(".") or _bad(r)
            d = r.number()
            rule = ("M", m, w, d)
        elif r.take("J"):
            rule = ("J", r.number())
        else:
            rule = ("N", r.number())
        secs = r.hms() if r.take("/") else 7200
        return rule + (secs,)

    @staticmethod
    def _day(rule, year):
        """Day number (since 1970-01-01) on which a date rule falls in `year`."""
        if rule[0] == "M":
            _, m, w, d, _ = rule
            first = days_from_civil(year, m, 1)
            day = first + (d - weekday(first)) % 7 + 7 * (w - 1)
            last = first + month_length(year, m) - 1
            while day > last:
                day -= 7
            return day
        jan1 = days_from_civil(year, 1, 1)
        if rule[0] == "J":  # 1..365, February 29 never counted
            n = rule[1]
            leap_shift = 1 if (n >= 60 and month_length(year, 2) == 29) else 0
            return jan1 + n - 1 + leap_shift
        return jan1 + rule[1]  # 0..365, February 29 counted

    def transitions(self, year):
        """The year's transitions, sorted: [(instant, offset after), ...]."""
        hit = self._cache.get(year)
        if hit is None:
            start, end = self.rules
            # The start rule is written in standard local time, the end rule in DST local time.
            on = self._day(start, year) * DAY + start[-1] - self.std
            off = self._day(end, year) * DAY + end[-1] - self.dst
            hit = sorted([(on, self.dst), (off, self.std)])
            self._cache[year] = hit
        return hit


def _bad(r):
    raise ZoneError("bad TZ string %r" % r.text)


# ----------------------------------------------------------------------------- zones

class Zone:
    """A time zone: explicit transitions, then a POSIX rule."""

    def __init__(self, name, times, offsets, initial, footer):
        self.name = name
        self.times = times  # sorted transition instants
        self.offsets = offsets  # offset in effect from times[i] on
        self.initial = initial  # offset before the first transition
        self.footer = footer  # PosixRule or None

    def _rule_transitions(self, u):
        """Footer transitions around instant u that lie after the explicit table."""
        year = 1970 + u // (365 * DAY + DAY // 4)
        out = []
        for y in (year - 1, year, year + 1, year + 2):
            out.extend(self.footer.transitions(y))
        last = self.times[-1] if self.times else None
        return [tr for tr in out if last is None or tr[0] > last]

    def segment(self, u):
        """(offset in effect at instant u, instant of the next change or None)."""
        times = self.times
        i = bisect.bisect_right(times, u)
        if i < len(times):
            return (self.offsets[i - 1] if i else self.initial), times[i]
        base = self.offsets[-1] if times else self.initial
        f = self.footer
        if f is None:
            return base, None
        if f.rules is None:
            return f.std, None
        offset, nxt = None, None
        for t, after in self._rule_transitions(u):
            if t <= u:
                offset = after
            elif nxt is None:
                nxt = t
        if offset is None:
            # u lies between the table's last transition and the rule's first one
            offset = base
        return offset, nxt

    def offset_at(self, u):
        return self.segment(u)[0]

    def changes_near(self, wall, span=2 * DAY):
        """Offset changes within `span` of wall time `wall` read as UTC:
        [(instant, offset before, offset after), ...] and the offset at the window start."""
        u = wall - span
        first, nxt = self.segment(u)
        changes = []
        before = first
        while nxt is not None and nxt <= wall + span:
            after, following = self.segment(nxt)
            if after != before:
                changes.append((nxt, before, after))
            before, nxt = after, following
        return first, changes

    def resolve_fixed(self, wall):
        """The real instant of local wall time `wall` (whole seconds): the only one, the first
        of two (fall-back), or the first instant after a spring-forward gap."""
        first, changes = self.changes_near(wall)
        offsets = {first}
        offsets.update(c[2] for c in changes)
        found = [wall - o for o in offsets if self.offset_at(wall - o) == o]
        if found:
            return min(found)
        for t, before, after in changes:
            if t + before <= wall < t + after:
                return t
        return wall - self.offset_at(wall - first)  # unreachable for real zone data


class FixedZone(Zone):
    def __init__(self, name, offset=0):
        super().__init__(name, [], [], offset, None)


def parse_tzif(name, data):
    """A Zone from TZif bytes (version 2 or later: the 64-bit block and the footer)."""
    if data[:4] != b"TZif":
        raise ZoneError("%s: not TZif data" % name)
    version = data[4:5]

    def counts(at):
        return struct.unpack(">6l", data[at + 20:at + 44])

    isutc, isstd, leap, timecnt, typecnt, charcnt = counts(0)
    pos = 44
    if version >= b"2":
        # skip the 32-bit block
        pos += timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isutc
        isutc, isstd, leap, timecnt, typecnt, charcnt = counts(pos)
        pos += 44
        tsize = 8
    else:
        tsize = 4
    times = list(struct.unpack(">%d%s" % (timecnt, "q" if tsize == 8 else "l"),
                               data[pos:pos + timecnt * tsize]))
    pos += timecnt * tsize
    idx = data[pos:pos + timecnt]
    pos += timecnt
    types = [struct.unpack(">lBB", data[pos + 6 * k:pos + 6 * k + 6])[0] for k in range(typecnt)]
    pos += typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isutc
    footer = None
    if version >= b"2":
        text = data[pos:].strip(b"\n").decode("ascii")
        if text:
            footer = PosixRule(text)
    offsets = [types[k] for k in idx]
    initial = types[0] if types else 0
    return Zone(name, times, offsets, initial, footer)


# ----------------------------------------------------------------------------- the database

_DATA = {}  # name -> TZif bytes
_BY_FOLDED = {}  # lower-case name -> name
_ZONES = {}  # name -> Zone (parsed on first use)


def load_database():
    """Reads every zone of the `tzdata` package into memory. Call at import time."""
    from importlib import resources

    root = resources.files("tzdata")
    names = root.joinpath("zones").read_text(encoding="ascii").split()
    zoneinfo = root.joinpath("zoneinfo")
    for name in names:
        node = zoneinfo
        for part in name.split("/"):
            node = node.joinpath(part)
        _DATA[name] = node.read_bytes()
        _BY_FOLDED[name.lower()] = name
    _ZONES["UTC"] = FixedZone("UTC")
    _BY_FOLDED["utc"] = "UTC"


def zone_count():
    return len(_DATA)


def lookup(name):
    """The canonical name for `name` (exact, else case-insensitive), or None."""
    name = name.strip()
    if name in _DATA or name in _ZONES:
        return name
    return _BY_FOLDED.get(name.lower())


def get_zone(name):
    """The Zone of a canonical name (see `lookup`)."""
    zone = _ZONES.get(name)
    if zone is None:
        zone = parse_tzif(name, _DATA[name])
        _ZONES[name] = zone
    return zone
