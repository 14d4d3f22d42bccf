#!/usr/bin/env python3
r"""Randomized differential test of the timer component against independent implementations.

With a FIXED seed it generates a few thousand random rules, computes their next fires with
third-party libraries, writes them as conformance cases (tests/cases/README.md format) into a
temporary directory, runs the `conformance` runner on them and classifies every difference.

- cron (`core.crontimer`): 5/6/7-field expressions with lists, ranges, steps, month and
  weekday names (any case), `?`, macros, `L`, `nW`, `LW`, `n#k`, `nL`; dom/dow both
  restricted; in UTC, fixed-offset zones and DST zones, with `now` often near a transition.
  Expected fires: croniter. Where croniter's semantics are known to differ from ours
  (docs/timer-semantics.md), the expectation is computed by the from-scratch evaluator in
  oracle.py instead (with the fixed-time rule of the semantics: second, minute and hour
  fields that do not start with `*`), and the case is counted under a named class.
- RRULE (`core.rruletimer`): FREQ/INTERVAL/BYxxx/BYSETPOS/WKST/COUNT/UNTIL from a dtstart
  (with `Z`, with an offset, or naive with `timezone`), raw and structured params. Expected
  fires: python-dateutil with zoneinfo (RFC 5545 3.3.5 for gaps and repeated times). Known
  differences are classified the same way (sub-daily rules count real elapsed time: computed
  with dateutil in UTC; ordinal BYDAY outside MONTHLY/YEARLY or out of range: an error).

Classification is decided from the inputs and the independent implementations only, never
from the component's answer. Every case the component gets wrong is a failure, printed with
a minimal reproduction (a `check` command line, expected vs got). The summary prints counts
per class and ends in `differential: N passed, N failed`; the exit status is 1 when any case
failed (2 when the runner or the libraries cannot be used).

`EXPECTED_BUGS` names known component bugs (from `BUG_SIGNATURES`) whose failures are
tolerated and counted instead; it is empty: every difference fails the test. A failing case
whose inputs match a bug signature is labelled with it, to make the report easy to read.

Usage:
    python3 tests/oracle/differential.py --conformance target/release/conformance
    (or CONFORMANCE_BIN=... python3 tests/oracle/differential.py)
Options: --seed N, --cron N, --rrule N (case counts), --keep DIR (keep the case files),
--expect-bug NAME (tolerate a known bug, repeatable), --no-venv.

The pinned libraries live in tests/oracle/.venv, created on first use from
tests/oracle/requirements.txt (the script re-runs itself with that interpreter). Time zone
data comes from the pinned `tzdata` package, not the system's.

Wall time (2 busy cores): about 20 s end to end for the default 1,500 cron + 1,200 RRULE
cases (generation ~18 s, runner ~2 s with a release build).

`make test` runs it after the cargo tests (with the runner they built); `make differential`
runs it alone.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
SEED = 20261206
N_CRON = 1500
N_RRULE = 1200
COUNT = 3  # fires per case (as `check --count 3`)

# Known component bugs whose failures are tolerated (names from BUG_SIGNATURES). Empty: the
# test is meant to pass only when the component agrees on every case.
EXPECTED_BUGS: list[str] = []


# ----------------------------------------------------------------------------- environment

def pins() -> dict[str, str]:
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            out[name.strip()] = ver.strip()
    return out


def pins_satisfied() -> bool:
    try:
        return all(importlib.metadata.version(n) == v for n, v in pins().items())
    except importlib.metadata.PackageNotFoundError:
        return False


def ensure_environment(no_venv: bool) -> None:
    """Re-runs the script in tests/oracle/.venv (created on first use) unless the running
    interpreter already has the pinned versions."""
    if pins_satisfied():
        return
    if no_venv:
        sys.exit(f"differential: the pinned libraries ({REQUIREMENTS.name}) are not installed")
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        sys.exit("differential: the venv does not have the pinned versions; delete it and retry")
    if not py.exists() or not (VENV / ".installed").exists():
        print(f"differential: creating {VENV.relative_to(HERE.parent.parent)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
                       check=True)
        (VENV / ".installed").touch()
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


# Populated by load_libraries() (after the venv check).
croniter = None
du_rrule = None
oracle = None
ZoneInfo = None
UTC = dt.timezone.utc


def load_libraries() -> None:
    global croniter, du_rrule, oracle, ZoneInfo
    import zoneinfo
    zoneinfo.reset_tzpath(to=[])  # the pinned tzdata package, not the system's files
    ZoneInfo = zoneinfo.ZoneInfo
    from croniter import croniter as _croniter
    from dateutil import rrule as _du_rrule
    sys.path.insert(0, str(HERE))
    import oracle as _oracle
    croniter, du_rrule, oracle = _croniter, _du_rrule, _oracle


# ----------------------------------------------------------------------------- time helpers

DST_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago",
             "Australia/Lord_Howe", "Europe/London", "America/St_Johns"]
FIXED_ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo"]  # no DST
YEARS = range(2026, 2031)


def zone(name: str):
    return UTC if name == "UTC" else ZoneInfo(name)


def fmt(d: dt.datetime) -> str:
    return oracle.fmt(d)


_transitions: dict[str, list[dt.datetime]] = {}


def transitions(tzname: str) -> list[dt.datetime]:
    """UTC instants where the zone's offset changes, 2025-2031."""
    if tzname in _transitions:
        return _transitions[tzname]
    tz = zone(tzname)
    out = []
    t = dt.datetime(2025, 1, 1, tzinfo=UTC)
    end = dt.datetime(2032, 1, 1, tzinfo=UTC)
    step = dt.timedelta(hours=6)
    prev = t.astimezone(tz).utcoffset()
    while t < end:
        n = t + step
        off = n.astimezone(tz).utcoffset()
        if off != prev:
            lo, hi = t, n
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(microsecond=0))
            prev = off
        t = n
    _transitions[tzname] = out
    return out


def near_transition(tzname: str, start: dt.datetime, end: dt.datetime,
                    margin=dt.timedelta(days=1)) -> bool:
    return any(start - margin <= t <= end + margin for t in transitions(tzname))


def random_now(rng: random.Random, tzname: str) -> dt.datetime:
    """A random instant; in a DST zone, half the time within two days before a transition."""
    if tzname not in FIXED_ZONES and rng.random() < 0.5:
        t = rng.choice([x for x in transitions(tzname) if x.year in YEARS])
        d = t - dt.timedelta(seconds=rng.randint(-3 * 3600, 2 * 86400))
    else:
        start = dt.datetime(YEARS[0], 1, 1, tzinfo=UTC)
        d = start + dt.timedelta(seconds=rng.randint(0, 365 * 86400 * len(YEARS)))
    if rng.random() < 0.5:
        d = d.replace(second=0)
        if rng.random() < 0.5:
            d = d.replace(minute=rng.choice([0, 15, 30, 45]))
    if rng.random() < 0.05:
        d = d.replace(microsecond=rng.choice([1000, 250000, 500000, 999000]))
    return d


# ----------------------------------------------------------------------------- cron: generation

MON = [None, "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DOW = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _case(rng, s: str) -> str:
    return rng.choice([s, s.lower(), s.capitalize()])


def gen_field(rng, lo, hi, names=None, star=0.25, step=0.15, single=0.25, lst=0.15, rng_=0.12,
              max_list=4, dow=False):
    """One cron field: `*`, `*/n`, a value, a list (of values and ranges), `a-b`, `a-b/n`."""
    top = 7 if dow else hi

    def val(v=None, allow_names=True):
        v = rng.randint(lo, top) if v is None else v
        if names and allow_names and rng.random() < 0.4:
            return _case(rng, names[v % 7 if dow else v])
        return str(v)

    def rng_item(with_step):
        a = rng.randint(lo, hi - 1)
        b = rng.randint(a + 1, hi)
        use_names = names and rng.random() < 0.4
        txt = f"{val(a, use_names)}-{val(b, use_names)}" if use_names else f"{a}-{b}"
        if with_step:
            txt += f"/{rng.randint(2, max(2, (b - a)))}"
        return txt

    r = rng.random()
    if r < star:
        return "*"
    r -= star
    if r < step:
        return f"*/{rng.randint(2, max(2, (hi - lo + 1) // 2))}"
    r -= step
    if r < single:
        return val()
    r -= single
    if r < lst:
        items = set()
        while len(items) < rng.randint(2, max_list):
            if rng.random() < 0.2:
                items.add(rng_item(False))
            else:
                items.add(val(rng.randint(lo, hi)))
        items = sorted(items)
        rng.shuffle(items)
        return ",".join(items)
    r -= lst
    if r < rng_:
        return rng_item(False)
    if not dow and rng.random() < 0.3:  # a step from a value: `5/20` = `5-<max>/20`
        # (not in day-of-week, where <max> could be 6 or 7: unspecified)
        return f"{rng.randint(lo, hi - 1)}/{rng.randint(2, max(2, (hi - lo + 1) // 2))}"
    return rng_item(True)


def gen_cron(rng) -> tuple[str, str]:
    """(expression, timezone)."""
    tzname = rng.choice(FIXED_ZONES + DST_ZONES * 2)
    dst = tzname not in FIXED_ZONES
    if rng.random() < 0.03:
        return rng.choice(list(oracle.MACROS)), tzname
    nf = rng.choices([5, 6, 7], [0.6, 0.35, 0.05])[0]
    # seconds: mostly fixed and small, so the brute-force evaluator stays cheap
    sec = gen_field(rng, 0, 59, star=0.05 if not dst else 0.0, step=0.15, single=0.5, lst=0.2,
                    rng_=0.05)
    minute = gen_field(rng, 0, 59, star=0.15, step=0.2, single=0.35, lst=0.15, rng_=0.08)
    hour = gen_field(rng, 0, 23, star=0.25, step=0.15, single=0.3, lst=0.15, rng_=0.08)
    if dst and rng.random() < 0.15:  # several fixed hours around the usual change hours
        hour = rng.choice(["1,2", "2,3", "0,1", "1-3", "2-4/2", "0/2", "2,14", "1,2,3"])
    month = gen_field(rng, 1, 12, MON, star=0.7, step=0.05, single=0.1, lst=0.07, rng_=0.05)
    # day fields: `*/n` only when the other day field is `*` (combination unspecified)
    r = rng.random()
    if r < 0.45:
        dom, dow = "*", "*"
    elif r < 0.62:
        dom, dow = gen_field(rng, 1, 31, star=0, step=0.1, single=0.4, lst=0.25, rng_=0.15), "*"
    elif r < 0.80:
        dom, dow = "*", gen_field(rng, 0, 6, DOW, star=0, step=0.05, single=0.45, lst=0.25,
                                  rng_=0.2, dow=True)
    elif r < 0.90:  # both restricted: OR
        dom = gen_field(rng, 1, 31, star=0, step=0, single=0.5, lst=0.3, rng_=0.2)
        dow = gen_field(rng, 0, 6, DOW, star=0, step=0, single=0.5, lst=0.3, rng_=0.2, dow=True)
    else:  # extensions
        e = rng.choice(["L", "LW", "W", "#", "nL", "#dom"])
        if e == "L":
            dom, dow = "L", "*"
        elif e == "LW":
            dom, dow = "LW", "*"
        elif e == "W":
            dom, dow = f"{rng.randint(1, 28)}W", "*"
        elif e == "#":
            dom, dow = "*", f"{_case(rng, rng.choice(DOW)) if rng.random() < 0.5 else rng.randint(0, 7)}#{rng.randint(1, 5)}"
        elif e == "nL":
            dom, dow = "*", f"{rng.randint(0, 7)}L"
        else:
            dom = str(rng.randint(1, 28))
            dow = f"{rng.randint(0, 6)}#{rng.randint(1, 4)}"
    if rng.random() < 0.1:
        if dom == "*" and dow != "*":
            dom = "?"
        elif dow == "*" and dom != "*":
            dow = "?"
    fields = [minute, hour, dom, month, dow]
    if nf >= 6:
        fields = [sec] + fields
    if nf == 7:
        y = rng.randint(2026, 2031)
        fields.append(rng.choice(["*", str(y), f"{y}-{y + rng.randint(1, 5)}",
                                  f"{y},{y + 2}"]))
        if rng.random() < 0.15:  # first fire beyond the 1,000-year horizon (§9)
            fields[-1] = str(rng.randint(3100, 4999))
    return " ".join(fields), tzname


# ----------------------------------------------------------------------------- cron: expectations

def spec_fixed_time(expr: str) -> bool:
    """docs/timer-semantics.md §3: fixed local times when the second, minute and hour fields
    do not start with `*` (single values, lists and ranges alike)."""
    e = expr.strip()
    e = oracle.MACROS.get(e.lower(), e)
    f = e.split()
    if len(f) == 5:
        f = ["0"] + f
    return not any(x.startswith("*") for x in f[:3])


def oracle_cron(expr: str, tzname: str, now: dt.datetime, n=COUNT):
    """Brute-force evaluator (oracle.py) with the fixed-time rule of the semantics."""
    c = oracle.parse_cron(expr)
    fixed = spec_fixed_time(expr)

    class SpecCron(type(c)):
        @property
        def fixed_time(self):
            return fixed

    c.__class__ = SpecCron
    out, after = [], now
    for _ in range(n):
        nxt = oracle.cron_next(c, tzname, after, horizon_years=10)
        if nxt is None:
            break
        out.append(nxt)
        after = nxt
    return out


def croniter_cron(expr: str, tzname: str, now: dt.datetime, n=COUNT):
    """croniter's answer; syntax translated only (`?` -> `*`, `nL` -> `Ln`)."""
    f = expr.split()
    f = ["*" if x == "?" else x for x in f]
    if not f[0].startswith("@"):
        dowi = -2 if len(f) == 7 else -1
        f[dowi] = re.sub(r"^(\d)L$", r"L\1", f[dowi])
    kw = {"max_years_between_matches": 10}
    if len(f) >= 6:
        kw["second_at_beginning"] = True
    it = croniter(" ".join(f), now.astimezone(zone(tzname)), **kw)
    return [it.get_next(dt.datetime).astimezone(UTC) for _ in range(n)]


def first_difference(a: list, b: list) -> dt.datetime:
    """The earlier of the first two fires that differ (a DST difference starts near the
    change)."""
    for x, y in zip(a, b):
        if x != y:
            return min(x, y)
    return (a if len(a) > len(b) else b)[min(len(a), len(b))]


def uses_extension(expr: str) -> bool:
    f = expr.split()
    return len(f) >= 5 and bool(re.search(r"[LW#]", " ".join(f[-3:] if len(f) == 5 else f[3:6])))


def cron_case(rng, i: int) -> dict:
    expr, tzname = gen_cron(rng)
    now = random_now(rng, tzname)
    params = {"expression": expr}
    if tzname != "UTC" or rng.random() < 0.5:
        params["timezone"] = tzname
    info = {"lib": None, "oracle": None}
    try:
        lib = croniter_cron(expr, tzname, now)
        lib_err = None
    except Exception as e:  # unsupported syntax, or no match in croniter's horizon
        lib, lib_err = None, f"{type(e).__name__}"
    cost = None
    try:
        c = oracle.parse_cron(expr)
        cost = len(c.secs) * len(c.mins) * len(c.hours)
    except ValueError:
        pass
    dst_window = tzname not in FIXED_ZONES and near_transition(
        tzname, now, (lib[-1] if lib else now + dt.timedelta(days=2)))
    need_oracle = lib is None or dst_window or uses_extension(expr)
    years = re.fullmatch(r"\S+( \S+){6}", expr) and expr.split()[6]
    beyond = bool(years and years.isdigit() and int(years) > now.year + 1000)
    orc = None
    if beyond:
        orc = []
    elif cost is not None and (need_oracle or cost <= 24):
        orc = oracle_cron(expr, tzname, now)
    info["lib"] = [fmt(x) for x in lib] if lib else lib_err
    info["oracle"] = [fmt(x) for x in orc] if orc is not None else None

    if beyond:
        klass, expect = "cron: first fire beyond the 1,000-year horizon -> error", None
    elif lib is not None and (orc is None or orc == lib):
        klass = "cron: croniter = oracle" if orc is not None else "cron: croniter"
        if dst_window:
            klass += " (DST window)"
        expect = lib
    elif lib is None:
        if orc is None:
            raise RuntimeError(f"unparsable generated expression {expr!r}")
        if not orc:
            klass, expect = "cron: never fires -> error", None
        else:
            klass, expect = f"cron: croniter cannot ({lib_err}) -> oracle", orc
    elif dst_window and near_transition(tzname, first_difference(lib, orc),
                                        first_difference(lib, orc)):
        klass, expect = "cron: croniter DST handling differs -> oracle", orc
    elif uses_extension(expr):
        klass, expect = "cron: croniter L/W/# differs -> oracle", orc
    else:
        klass, expect = "UNCLASSIFIED cron: croniter != oracle", lib
    case = {
        "name": f"diff-cron/{i:05d}",
        "note": klass,
        "trigger_ref": "core.crontimer",
        "params": params,
        "now": fmt(now),
    }
    if expect is None:
        case["error"] = {"contains": []} if beyond else {"field": "expression", "contains": []}
    else:
        case["schedule"] = {"trigger_ref": "core.crontimer", "kind": "cron",
                            "timezone": tzname}
        case["next"] = [fmt(x) for x in expect]
        if len(expect) < COUNT:
            case["then_none"] = True
    return case, klass, info


# ----------------------------------------------------------------------------- rrule: generation

WD = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def gen_rrule(rng) -> tuple[dict, str | None]:
    """Structured fields (without dtstart), and the name of the probe when the rule is one
    the semantics refuses."""
    freq = rng.choices(["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY",
                        "SECONDLY"], [0.15, 0.25, 0.22, 0.2, 0.1, 0.06, 0.02])[0]
    p: dict = {"freq": freq if rng.random() < 0.9 else freq.lower()}
    refused = None
    if rng.random() < 0.3:
        p["interval"] = rng.choice([2, 2, 3, 4, 7] if freq != "YEARLY" else [2, 4, 10, 50])

    def days(k):
        return sorted(rng.sample(WD, k), key=WD.index)

    def wd(s):
        return s if rng.random() < 0.8 else s.lower()

    if freq == "YEARLY":
        r = rng.random()
        if r < 0.25:
            p["by_month"] = sorted(rng.sample(range(1, 13), rng.randint(1, 3)))
            p["by_month_day"] = sorted(rng.sample([1, 13, 15, 28, 29, 30, 31, -1, -2],
                                                  rng.randint(1, 2)))
        elif r < 0.45:
            p["by_month"] = [rng.randint(1, 12)]
            p["by_day"] = [wd(f"{rng.choice([1, 2, 3, 4, -1, -2, 5, -5])}{rng.choice(WD)}")]
        elif r < 0.6:
            p["by_day"] = [wd(f"{rng.choice([1, 2, 10, 20, -1, -10, 52, 53, -53])}"
                              f"{rng.choice(WD)}")]
        elif r < 0.72:
            p["by_year_day"] = sorted(rng.sample([1, 60, 100, 200, 365, 366, -1, -100], 2))
        elif r < 0.82:
            p["by_week_no"] = sorted(rng.sample([1, 2, 10, 26, 52, 53, -1], rng.randint(1, 2)))
            p["by_day"] = [wd(d) for d in days(rng.randint(1, 2))]
        elif r < 0.9:  # Feb 29 on a given weekday: decades apart
            p["by_month"], p["by_month_day"] = [2], [29]
            p["by_day"] = [rng.choice(WD)]
        if rng.random() < 0.15:
            p["by_set_pos"] = [rng.choice([1, -1])]
            p.setdefault("by_month", [rng.randint(1, 12)])
            p["by_day"] = days(rng.randint(2, 5))
            p.pop("by_month_day", None)
        if rng.random() < 0.03:
            p["by_day"] = [f"{rng.choice([54, -54, 60])}{rng.choice(WD)}"]
            p.pop("by_set_pos", None)
            refused = "ordinal BYDAY out of -53..53"
    elif freq == "MONTHLY":
        r = rng.random()
        if r < 0.3:
            p["by_month_day"] = sorted(rng.sample([1, 2, 15, 28, 29, 30, 31, -1, -2, -3, -31],
                                                  rng.randint(1, 3)))
        elif r < 0.55:
            p["by_day"] = [wd(f"{rng.choice([1, 2, 3, 4, 5, -1, -2, -4, -5])}{d}")
                           for d in days(rng.randint(1, 2))]
        elif r < 0.7:
            p["by_day"] = [wd(d) for d in days(rng.randint(1, 5))]
            if rng.random() < 0.7:
                p["by_set_pos"] = sorted(rng.sample([1, 2, -1, -2, 3], rng.randint(1, 2)))
        elif r < 0.8:
            p["by_day"] = [wd(d) for d in days(rng.randint(1, 3))]
            p["by_month_day"] = sorted(rng.sample(range(1, 29), 3))
        if rng.random() < 0.2:
            p["by_month"] = sorted(rng.sample(range(1, 13), rng.randint(1, 4)))
        if rng.random() < 0.03:
            p["by_day"] = [f"{rng.choice([6, -6, 10])}{rng.choice(WD)}"]
            p.pop("by_set_pos", None)
            refused = "ordinal BYDAY out of -5..5"
    elif freq == "WEEKLY":
        if rng.random() < 0.7:
            p["by_day"] = [wd(d) for d in days(rng.randint(1, 5))]
            if len(p["by_day"]) >= 2 and rng.random() < 0.35:
                p["by_set_pos"] = [rng.choice([1, 2, -1, -2])]
        if rng.random() < 0.25:
            p["week_start"] = rng.choice(["SU", "MO", "WE", "su"])
        if rng.random() < 0.15:
            p["by_hour"] = sorted(rng.sample(range(24), rng.randint(1, 2)))
        if rng.random() < 0.04:
            p["by_day"] = [f"{rng.choice([1, -1, 2])}{rng.choice(WD)}"]
            p.pop("by_set_pos", None)
            refused = "ordinal BYDAY with WEEKLY"
    elif freq == "DAILY":
        r = rng.random()
        if r < 0.3:
            p["by_hour"] = sorted(rng.sample(range(24), rng.randint(1, 3)))
            if rng.random() < 0.5:
                p["by_minute"] = sorted(rng.sample([0, 15, 30, 45, 59], rng.randint(1, 2)))
        elif r < 0.45:
            p["by_day"] = [wd(d) for d in days(rng.randint(1, 5))]
        elif r < 0.55:
            p["by_month_day"] = sorted(rng.sample([1, 10, 20, 31, -1], 2))
        elif r < 0.62:
            p["by_month"] = sorted(rng.sample(range(1, 13), 3))
        if rng.random() < 0.04:
            p["by_day"] = [f"{rng.choice([1, -1, 3])}{rng.choice(WD)}"]
            refused = "ordinal BYDAY with DAILY"
    return p, refused


def add_subdaily_parts(rng, p: dict) -> None:
    """BY parts for HOURLY/MINUTELY/SECONDLY; only used in zones without DST, where local
    and elapsed time agree."""
    f = p["freq"].upper()
    if f == "HOURLY" and rng.random() < 0.5:
        p["by_minute"] = sorted(rng.sample([0, 10, 30, 45], rng.randint(1, 2)))
    if f == "HOURLY" and rng.random() < 0.2:
        p["by_hour"] = sorted(rng.sample(range(24), 4))
    if f == "MINUTELY" and rng.random() < 0.3:
        p["by_second"] = [0, 30]
    if f in ("HOURLY", "MINUTELY") and rng.random() < 0.2:
        p["by_day"] = sorted(rng.sample(WD, 3), key=WD.index)


# ----------------------------------------------------------------------------- rrule: expectations

def rrule_set(body: str, dtstart: dt.datetime):
    return du_rrule.rrulestr(body, dtstart=dtstart)


def rrule_fires(body: str, dtstart: dt.datetime, now: dt.datetime, n=COUNT):
    """The first n distinct instants > now (sorted), from a rule iterated in wall time."""
    rule = rrule_set(body, dtstart)
    found = []
    stop_wall = None
    subdaily = rule._freq >= du_rrule.HOURLY
    start = max(dtstart, now.astimezone(dtstart.tzinfo) - (
        dt.timedelta(hours=3) if subdaily else dt.timedelta(days=2)))
    for occ in rule.xafter(start.replace(tzinfo=dtstart.tzinfo), inc=True):
        if stop_wall is not None and occ.replace(tzinfo=None) > stop_wall:
            break
        u = occ.astimezone(UTC)
        if u > now and u not in found:
            found.append(u)
            if len(found) >= n and stop_wall is None:
                # wall time maps to instants out of order only across a DST change
                stop_wall = occ.replace(tzinfo=None) + (
                    dt.timedelta(hours=2) if subdaily
                    else dt.timedelta(days=1))
    return sorted(found)[:n]


def mixed_edge_ordinal(p: dict) -> bool:
    """A documented limit of the built-in component (docs/timer-semantics.md §11): a BYDAY
    ordinal of -5 (MONTHLY) or -53 (YEARLY) is supported only when every BYDAY value has it
    and no BYMONTHDAY, BYYEARDAY or BYWEEKNO is given; otherwise the rule is refused."""
    edge = {"MONTHLY": -5, "YEARLY": -53}.get(p["freq"].upper())
    ords = []
    for d in p.get("by_day") or []:
        m = re.match(r"^([+-]?\d+)?([A-Za-z]{2})$", d.strip())
        ords.append(int(m.group(1)) if m and m.group(1) else None)
    if edge is None or edge not in ords:
        return False
    return any(o != edge for o in ords) or any(
        k in p for k in ("by_month_day", "by_year_day", "by_week_no"))


def body_of(p: dict) -> str:
    return oracle.rrule_body({k: v for k, v in p.items() if k not in ("dtstart", "timezone")})


SPAN = {"YEARLY": 40 * 365, "MONTHLY": 10 * 365, "WEEKLY": 5 * 365, "DAILY": 2 * 365,
        "HOURLY": 30, "MINUTELY": 0.5, "SECONDLY": 0.02}
# how far the first occurrence is looked for (a rule with none that soon is drawn again)
FIRST_WITHIN = {"YEARLY": 600 * 366, "MONTHLY": 60 * 366, "WEEKLY": 10 * 366,
                "DAILY": 10 * 366, "HOURLY": 366, "MINUTELY": 10, "SECONDLY": 1}


def rrule_case(rng, i: int):
    while True:
        p, refused = gen_rrule(rng)
        freq = p["freq"].upper()
        subdaily = freq in ("HOURLY", "MINUTELY", "SECONDLY")
        tzname = rng.choice(FIXED_ZONES + DST_ZONES)
        dst = tzname not in FIXED_ZONES
        if subdaily and not dst:
            add_subdaily_parts(rng, p)
        tz = zone(tzname)
        # a random local dtstart, then moved onto the rule's first occurrence so that the
        # dtstart is in the set (a dtstart outside it is left open by the semantics)
        if dst and rng.random() < 0.12:
            # a wall time inside a gap or a repeated range: the dtstart itself
            t = rng.choice([x for x in transitions(tzname) if x.year in YEARS])
            before = (t - dt.timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
            after_ = t.astimezone(tz).replace(tzinfo=None)
            width = abs(after_ - before - dt.timedelta(seconds=1))
            base = min(before, after_) + dt.timedelta(seconds=1) + dt.timedelta(
                minutes=rng.randint(0, int(width.total_seconds() // 60) - 1))
        elif dst and rng.random() < 0.4:
            t = rng.choice([x for x in transitions(tzname) if x.year in YEARS])
            base = (t - dt.timedelta(days=rng.randint(0, 30), hours=rng.randint(-3, 3)))
            base = base.astimezone(tz).replace(tzinfo=None)
        else:
            base = dt.datetime(rng.choice(YEARS), 1, 1) + dt.timedelta(
                minutes=rng.randint(0, 365 * 1440))
        base = base.replace(second=rng.choice([0, 0, 0, 30]), microsecond=0)
        if subdaily and dst and rng.random() < 0.5:
            t = rng.choice([x for x in transitions(tzname) if x.year in YEARS])
            base = (t - dt.timedelta(hours=rng.randint(1, 20))).astimezone(tz).replace(
                tzinfo=None, second=0)
        start0 = base.replace(tzinfo=tz)
        body = body_of(p)
        horizon = ";UNTIL=" + (start0.astimezone(UTC) + dt.timedelta(
            days=FIRST_WITHIN[freq])).strftime("%Y%m%dT%H%M%SZ")
        unaligned = False
        if refused:
            o1 = start0
        else:
            try:
                o1 = next(iter(rrule_set(body + horizon, start0)), None)
            except (ValueError, StopIteration):
                continue
            if o1 is None:
                continue
            if next(iter(rrule_set(body + horizon, o1)), None) != o1:
                continue  # realignment changed the set: draw again
            if o1 != start0 and rng.random() < 0.25:
                # keep a dtstart outside the set (no COUNT, now after it: §5.3 reads it
                # as dateutil does, occurrences from dtstart on)
                o1, unaligned = start0, True
        break
    # dtstart format: a wall time in a gap or a repeated hour is only expressible naive
    kind, _ = oracle.resolve_local(o1.replace(tzinfo=None), tz)
    fmt_choice = "naive" if kind != "normal" else rng.choice(["z", "offset", "naive"])
    if tzname == "UTC" and fmt_choice == "naive":
        fmt_choice = "z"
    if fmt_choice == "z":
        dtstart_s = fmt(o1)
    elif fmt_choice == "offset":
        dtstart_s = o1.isoformat()
    else:
        dtstart_s = o1.replace(tzinfo=None).isoformat()

    # now: before dtstart sometimes, else some way after it (skip-ahead)
    span_days = SPAN[freq] * (p.get("interval", 1) if freq != "YEARLY" else 1)
    if rng.random() < 0.15 and not unaligned:
        now = o1.astimezone(UTC) - dt.timedelta(seconds=rng.randint(1, 30 * 86400))
    else:
        now = o1.astimezone(UTC) + dt.timedelta(seconds=rng.randint(0, int(span_days * 86400)))
    if rng.random() < 0.5:
        now = now.replace(second=0)

    # count / until
    if not refused and rng.random() < 0.35:
        r = rng.random()
        if r < 0.5 and not unaligned:
            p["count"] = rng.randint(1, 40)
        else:
            until = o1.astimezone(UTC) + dt.timedelta(seconds=rng.randint(0, int(
                span_days * 86400 * 1.2)))
            p["until"] = fmt(until.replace(second=0)) if rng.random() < 0.6 else \
                until.astimezone(tz).replace(second=0, microsecond=0).isoformat()
    body = body_of(p)
    params = dict(p)
    if rng.random() < 0.4:
        params = {"rule": ("RRULE:" if rng.random() < 0.5 else "") + body}
    far = not refused and rng.random() < 0.01
    if far:  # first fire beyond the 1,000-year horizon (§9): refused
        o1 = o1.replace(year=rng.randint(3100, 3999))
        if o1.month == 2 and o1.day == 29:
            o1 = o1.replace(day=28)
        now = o1.astimezone(UTC).replace(year=rng.choice(YEARS))
        dtstart_s = fmt(o1)
        p.pop("until", None)
        body = body_of(p)
        params = dict(p) if "rule" not in params else {"rule": body}
    params["dtstart"] = dtstart_s
    if tzname != "UTC" or rng.random() < 0.3:
        params["timezone"] = tzname

    info = {"lib": None, "oracle": None}
    case = {"name": f"diff-rrule/{i:05d}", "trigger_ref": "core.rruletimer",
            "params": params, "now": fmt(now)}
    if far:
        klass = "rrule: first fire beyond the 1,000-year horizon -> error"
        case["error"] = {"contains": []}
        case["note"] = klass
        return case, klass, info
    if mixed_edge_ordinal(p):
        klass = "rrule: -5/-53 BYDAY ordinal beside other day parts -> error (documented limit)"
        case["error"] = {"contains": ["supported only when every BYDAY value has it"]}
        case["note"] = klass
        return case, klass, info
    if refused:
        klass = f"rrule: {refused} -> error (dateutil accepts)"
        case["error"] = {"contains": []}
        case["note"] = klass
        return case, klass, info
    lib = rrule_fires(body, o1, now)
    info["lib"] = [fmt(x) for x in lib]
    expect = lib
    klass = "rrule: dateutil"
    if subdaily and dst:
        elapsed = rrule_fires(body, o1.astimezone(UTC), now)
        info["oracle"] = [fmt(x) for x in elapsed]
        if elapsed != lib:
            klass, expect = "rrule: sub-daily across DST -> elapsed time (dateutil in UTC)", \
                elapsed
        else:
            klass = "rrule: dateutil = elapsed time"
    if not expect:
        field = "count" if "count" in p else "until" if "until" in p else None
        klass = "rrule: no occurrence after now -> error"
        case["error"] = {"contains": []}
        if field and "rule" not in params:
            case["error"]["field"] = field
    else:
        case["schedule"] = {"trigger_ref": "core.rruletimer", "kind": "rrule",
                            "timezone": tzname}
        case["next"] = [fmt(x) for x in expect]
        if len(expect) < COUNT:
            case["then_none"] = True
    case["note"] = klass
    return case, klass, info


# ----------------------------------------------------------------------------- bug signatures

def _expr_fields(c):
    e = c["params"]["expression"].strip()
    e = oracle.MACROS.get(e.lower(), e).split()
    return (["0"] + e) if len(e) == 5 else e


def _sig_listed_fixed_dst(c, info):
    if c["trigger_ref"] != "core.crontimer":
        return False
    f = _expr_fields(c)
    fixed = spec_fixed_time(c["params"]["expression"])
    multi = any(re.search(r"[,\-/]", x) for x in f[:3])
    return fixed and multi and c["params"].get("timezone", "UTC") not in FIXED_ZONES


def _rr(c):
    p = c["params"]
    return body_of(p) if "rule" not in p else p["rule"].upper().removeprefix("RRULE:")


def _sig_weekly_setpos(c, info):
    b = _rr(c) if c["trigger_ref"] == "core.rruletimer" else ""
    return "FREQ=WEEKLY" in b.upper() and "BYSETPOS" in b.upper()


def _sig_ordinal_daily_weekly(c, info):
    b = _rr(c).upper() if c["trigger_ref"] == "core.rruletimer" else ""
    return bool(re.search(r"FREQ=(DAILY|WEEKLY)", b) and re.search(r"BYDAY=[^;]*\d", b))


def _sig_negative_ordinals(c, info):
    b = _rr(c).upper() if c["trigger_ref"] == "core.rruletimer" else ""
    return bool(re.search(r"BYDAY=[^;]*-(5|5[0-3])[A-Z]", b))


def _sig_naive_gap(c, info):
    if c["trigger_ref"] != "core.rruletimer":
        return False
    p = c["params"]
    s = p["dtstart"]
    if s.endswith("Z") or re.search(r"[+-]\d\d:\d\d$", s):
        return False
    kind, _ = oracle.resolve_local(dt.datetime.fromisoformat(s), zone(p.get("timezone", "UTC")))
    return kind == "gap"


def _sig_far_future(c, info):
    return "1,000-year horizon" in c.get("note", "")


def _sig_zone_after_2099(c, info):
    tzname = c["params"].get("timezone", "UTC")
    return tzname not in FIXED_ZONES and any(x >= "2100" for x in c.get("next") or [])


# issue-10 bugs known at the time of writing, recognised from a failing case's inputs
BUG_SIGNATURES = {
    "listed-fixed-cron-times-across-dst": _sig_listed_fixed_dst,
    "rrule-weekly-bysetpos-after-skip-ahead": _sig_weekly_setpos,
    "ordinal-byday-with-daily-weekly-accepted": _sig_ordinal_daily_weekly,
    "negative-ordinals-5-53-refused": _sig_negative_ordinals,
    "naive-dtstart-in-dst-gap": _sig_naive_gap,
    "far-future-fire-beyond-horizon-accepted": _sig_far_future,
    # found by this test, not in issue 10: the component's zone tables end in 2099 (no
    # daylight saving after that), where the tz database's rules go on
    "zone-rules-after-2099": _sig_zone_after_2099,
}


# ----------------------------------------------------------------------------- runner

def parse_report(out: str) -> tuple[dict[str, list[str]], tuple[int, int, int] | None]:
    failures: dict[str, list[str]] = {}
    cur = None
    section = None
    summary = None
    for line in out.splitlines():
        if line.startswith("FAILED ("):
            section = "failed"
            continue
        if line.startswith("NOT APPLICABLE ("):
            section = "na"
            continue
        m = re.match(r"conformance: (\d+) passed, (\d+) failed, (\d+) skipped", line)
        if m:
            summary = tuple(int(x) for x in m.groups())
            section = None
            continue
        if section == "failed":
            if line.startswith("      - "):
                failures.setdefault(cur, []).append(line[8:])
            elif line.startswith("  ") and not line.startswith("   "):
                cur = line.strip()
                failures.setdefault(cur, [])
    return failures, summary


def repro(c: dict) -> str:
    return ("attune-core-timer-sensor check --json --now " + c["now"] + f" --count {COUNT}"
            + " --trigger-ref " + c["trigger_ref"] + " "
            + shlex.quote(json.dumps(c["params"], separators=(",", ":"))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conformance", default=os.environ.get("CONFORMANCE_BIN"),
                    help="the conformance runner (default: $CONFORMANCE_BIN)")
    ap.add_argument("--component", help="a component file (default: the embedded one)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--cron", type=int, default=N_CRON)
    ap.add_argument("--rrule", type=int, default=N_RRULE)
    ap.add_argument("--keep", help="write the case files into this directory and keep them")
    ap.add_argument("--expect-bug", action="append", default=[], choices=sorted(BUG_SIGNATURES),
                    help="tolerate failures matching a known bug (repeatable)")
    ap.add_argument("--generate-only", action="store_true",
                    help="write the cases (needs --keep) and stop")
    ap.add_argument("--no-venv", action="store_true",
                    help="use this interpreter; fail when the pinned libraries are missing")
    args = ap.parse_args()
    ensure_environment(args.no_venv)
    load_libraries()
    expected_bugs = set(EXPECTED_BUGS) | set(args.expect_bug)

    t0 = time.monotonic()
    rng = random.Random(args.seed)
    cases, classes, infos = [], {}, {}
    for i in range(args.cron):
        c, k, info = cron_case(rng, i)
        cases.append(c)
        classes[c["name"]], infos[c["name"]] = k, info
    for i in range(args.rrule):
        c, k, info = rrule_case(rng, i)
        cases.append(c)
        classes[c["name"]], infos[c["name"]] = k, info
    t_gen = time.monotonic() - t0

    tmp = None
    if args.keep:
        outdir = Path(args.keep)
        outdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="differential-")
        outdir = Path(tmp.name)
    for kind in ("cron", "rrule"):
        with open(outdir / f"differential-{kind}.json", "w") as fh:
            json.dump([c for c in cases if c["name"].startswith(f"diff-{kind}/")], fh, indent=1)
    if args.generate_only:
        print(f"differential: wrote {len(cases)} cases to {outdir} ({t_gen:.1f} s)")
        return 0
    if not args.conformance:
        print("differential: give the conformance runner (--conformance or CONFORMANCE_BIN)",
              file=sys.stderr)
        return 2

    t1 = time.monotonic()
    cmd = [args.conformance] + (["--component", args.component] if args.component
                                else ["--embedded"]) + ["--cases", str(outdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    t_run = time.monotonic() - t1
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        print(f"differential: the runner failed (exit {proc.returncode})", file=sys.stderr)
        return 2
    failures, summary = parse_report(proc.stdout)
    if summary is None or summary[0] + summary[1] != len(cases):
        print(proc.stdout[-3000:], file=sys.stderr)
        print(f"differential: the runner did not run all {len(cases)} cases ({summary})",
              file=sys.stderr)
        return 2

    by_name = {c["name"]: c for c in cases}
    per_class = defaultdict(Counter)
    failed, tolerated = [], Counter()
    for c in cases:
        k = classes[c["name"]]
        if c["name"] not in failures:
            per_class[k]["pass"] += 1
            continue
        sigs = [s for s, f in BUG_SIGNATURES.items() if f(c, infos[c["name"]])]
        if any(s in expected_bugs for s in sigs):
            per_class[k]["expected bug"] += 1
            tolerated[next(s for s in sigs if s in expected_bugs)] += 1
        else:
            per_class[k]["FAIL"] += 1
            failed.append((c, sigs))

    print(f"differential: seed {args.seed}, {len(cases)} cases "
          f"({args.cron} cron, {args.rrule} rrule)")
    print("\ncases per class (how the expectation was computed) -> outcome:")
    for k in sorted(per_class):
        cnt = per_class[k]
        print(f"  {sum(cnt.values()):5d}  {k}: " + ", ".join(f"{n} {o}" for o, n in
                                                          sorted(cnt.items())))
    if tolerated:
        print("\ntolerated known bugs (EXPECTED_BUGS / --expect-bug):")
        for s, n in sorted(tolerated.items()):
            print(f"  {n:5d}  {s}")
    if failed:
        print(f"\nDIFFERENCES ({len(failed)}):")
        for c, sigs in failed:
            info = infos[c["name"]]
            print(f"\n  {c['name']}  [{classes[c['name']]}]"
                  + (f"  looks like: {', '.join(sigs)}" if sigs else ""))
            print(f"    {repro(c)}")
            exp = c.get("next") if "next" in c else "a params error"
            print(f"    expected: {exp}" + ("  then none" if c.get("then_none") else ""))
            for d in failures[c["name"]]:
                print(f"    got:      {d}")
            print(f"    library:  {info['lib']}")
            if info["oracle"] is not None:
                print(f"    oracle:   {info['oracle']}")
        bysig = Counter(s for _, sigs in failed for s in (sigs or ["(no known bug signature)"]))
        print("\ndifferences by known-bug signature:")
        for s, n in sorted(bysig.items()):
            print(f"  {n:5d}  {s}")
    print(f"\nwall time: generation {t_gen:.1f} s, runner {t_run:.1f} s")
    passed = len(cases) - len(failed)
    print(f"differential: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
