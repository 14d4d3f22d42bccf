#!/usr/bin/env python3
"""Generates tests/cases/*.json from the case inputs below and the oracle in oracle.py.

Usage:  python3 tests/oracle/generate.py            (writes tests/cases/*.json)
        python3 tests/oracle/generate.py --check    (exit 1 if the committed files differ)

Inputs (trigger ref, params, "now", expected errors) are written by hand here; every expected
fire time and payload timestamp is computed by the oracle. Needs python-dateutil.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from collections import OrderedDict
from pathlib import Path

from oracle import (UTC, cron_next, fmt, interval_next, parse_cron, parse_instant, rrule_next,
                    stackstorm_to_cron, zone)

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"
NOW = "2026-03-30T07:30:00Z"  # a Monday
SENSOR = "core.timer_sensor"
MISSING = object()

IV, CR, DT, RR, CT = ("core.intervaltimer", "core.crontimer", "core.datetimetimer",
                      "core.rruletimer", "core.timer")

AREAS: "OrderedDict[str, list]" = OrderedDict()
NAMES: set = set()

UNITS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
         "day": 86400, "days": 86400, "week": 604800, "weeks": 604800}

PAYLOAD_KEYS = {
    "interval": ["type", "interval_seconds", "fired_at", "execution_count", "sensor_ref"],
    "cron": ["type", "fired_at", "scheduled_at", "expression", "timezone", "next_fire_at",
             "execution_count", "sensor_ref"],
    "one_shot": ["type", "fire_at", "fired_at", "timezone", "delay_ms", "sensor_ref"],
    "rrule": ["type", "fired_at", "scheduled_at", "delay_ms", "execution_count", "sensor_ref"],
}


def _base(area, name, tref, params, now, note=None, rule_id=None, requires=MISSING):
    full = f"{area}/{name}"
    assert full not in NAMES, full
    NAMES.add(full)
    c = OrderedDict()
    c["name"] = full
    if note:
        c["note"] = note
    c["trigger_ref"] = tref
    if rule_id is not None:
        c["rule_id"] = rule_id
    c["params"] = params
    c["now"] = now
    if requires is not MISSING:
        c["requires"] = requires
    AREAS.setdefault(area, []).append(c)
    return c


def err(area, name, tref, params, now=NOW, field=MISSING, contains=(), **kw):
    c = _base(area, name, tref, params, now, **kw)
    e = OrderedDict()
    if field is not MISSING:
        e["field"] = field
    e["contains"] = list(contains) if not isinstance(contains, str) else [contains]
    c["error"] = e
    return c


def _chain(next_fn, first_after, n):
    """n+1 successive fires (None-terminated)."""
    out, a = [], first_after
    for _ in range(n + 1):
        t = next_fn(a)
        if t is None:
            break
        assert t > a
        out.append(t)
        a = t
    return out


def _finish(c, kind, sched_ref, tz, times, n, then_none, after, started_at, payloads,
            payload_fn):
    c["schedule"] = OrderedDict(trigger_ref=sched_ref, kind=kind, timezone=tz)
    if started_at is not None:
        c["started_at"] = started_at
    if after is not None:
        c["after"] = after
    c["next"] = [fmt(t) for t in times[:n]]
    ended = len(times) <= n
    if then_none is None:
        then_none = ended
    assert then_none == ended, (c["name"], times)
    if then_none:
        c["then_none"] = True
    if payloads:
        out = []
        for p in payloads:
            idx = p.get("index", 0)
            delay = p.get("delay_ms", 0)
            count = p.get("execution_count", idx + 1)
            sched = times[idx]
            fired = sched + dt.timedelta(milliseconds=delay)
            nxt = times[idx + 1] if idx + 1 < len(times) else None
            fire = OrderedDict()
            if "trigger_ref" in p:
                fire["trigger_ref"] = p["trigger_ref"]
            fire["sensor_ref"] = p.get("sensor_ref", SENSOR)
            fire["scheduled_at"] = fmt(sched)
            fire["fired_at"] = fmt(fired)
            fire["execution_count"] = count
            fire["next_fire_at"] = fmt(nxt) if nxt else None
            expect = payload_fn(sched, fired, nxt, count, delay, fire["sensor_ref"])
            for k in p.get("unchecked", []):
                expect.pop(k)
            out.append(OrderedDict(fire=fire, expect=expect, keys=PAYLOAD_KEYS[expect["type"]]
                                   if p.get("type_keys", True) else None))
            out[-1] = OrderedDict((k, v) for k, v in out[-1].items() if v is not None)
        c["payload"] = out
    return c


def ok_interval(area, name, tref, params, seconds, now=NOW, n=4, after=None, started_at=None,
                sched_ref=None, payloads=(), ptype="interval", **kw):
    c = _base(area, name, tref, params, now, **kw)
    st = parse_instant(started_at or now)
    times = _chain(lambda a: interval_next(st, seconds, a), parse_instant(after or now), n)

    def pl(sched, fired, nxt, count, delay, sensor):
        return OrderedDict(type=ptype, interval_seconds=seconds, fired_at=fmt(fired),
                           execution_count=count, sensor_ref=sensor)
    return _finish(c, "interval", sched_ref or tref, "UTC", times, n, False, after, started_at,
                   payloads, pl)


def ok_cron(area, name, tref, params, expr=None, tz=None, now=NOW, n=5, then_none=None,
            sched_ref=None, payloads=(), ptype="cron", payload_expr=MISSING, after=None, **kw):
    c = _base(area, name, tref, params, now, **kw)
    expr = expr if expr is not None else params["expression"]
    tz = tz if tz is not None else params.get("timezone", "UTC")
    cron = parse_cron(expr)
    times = _chain(lambda a: cron_next(cron, tz, a), parse_instant(after or now), n)
    pexpr = params.get("expression") if payload_expr is MISSING else payload_expr

    def pl(sched, fired, nxt, count, delay, sensor):
        d = OrderedDict(type=ptype, fired_at=fmt(fired), scheduled_at=fmt(sched))
        if pexpr is not None:
            d["expression"] = pexpr
        d["timezone"] = tz
        d["next_fire_at"] = fmt(nxt) if nxt else "unknown"
        d["execution_count"] = count
        d["sensor_ref"] = sensor
        return d
    return _finish(c, "cron", sched_ref or tref, tz, times, n, then_none, after, None,
                   payloads, pl)


def ok_oneshot(area, name, tref, params, fire_at_utc, tz="UTC", now=NOW, sched_ref=None,
               payloads=(), ptype="one_shot", **kw):
    c = _base(area, name, tref, params, now, **kw)
    t = parse_instant(fire_at_utc)
    assert t > parse_instant(now)
    times = [t]

    def pl(sched, fired, nxt, count, delay, sensor):
        return OrderedDict(type=ptype, fire_at=fmt(sched), fired_at=fmt(fired), timezone=tz,
                           delay_ms=delay, sensor_ref=sensor)
    return _finish(c, "one_shot", sched_ref or tref, tz, times, 1, True, None, None, payloads,
                   pl)


def ok_rrule(area, name, tref, params, now=NOW, n=4, then_none=None, sched_ref=None,
             payloads=(), ptype="rrule", after=None, **kw):
    c = _base(area, name, tref, params, now, **kw)
    times = _chain(lambda a: rrule_next(params, a), parse_instant(after or now), n)

    def pl(sched, fired, nxt, count, delay, sensor):
        return OrderedDict(type=ptype, fired_at=fmt(fired), scheduled_at=fmt(sched),
                           delay_ms=delay, execution_count=count, sensor_ref=sensor)
    return _finish(c, "rrule", sched_ref or tref, params.get("timezone", "UTC"), times, n,
                   then_none, after, None, payloads, pl)


def plus(now, **delta):
    return fmt(parse_instant(now) + dt.timedelta(**delta))


# ============================================================================= interval
A = "interval"
ok_interval(A, "seconds-5", IV, {"interval": 5, "unit": "seconds"}, 5, n=5,
            payloads=[{"execution_count": 1}, {"index": 3, "execution_count": 4}])
ok_interval(A, "unit-defaults-to-seconds", IV, {"interval": 30}, 30)
for unit in ["second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week",
             "weeks"]:
    k = 3 if unit.startswith(("second", "minute")) else (2 if unit.startswith("hour") else 1)
    ok_interval(A, f"unit-{unit}", IV, {"interval": k, "unit": unit}, k * UNITS[unit], n=3,
                payloads=[{"execution_count": 1}] if unit in ("minutes", "weeks") else ())
ok_interval(A, "one-second", IV, {"interval": 1, "unit": "seconds"}, 1, n=5)
ok_interval(A, "subsecond-start", IV, {"interval": 1}, 1, now="2026-03-30T07:30:00.250Z", n=3,
            note="started_at has a fractional second; fires keep the phase",
            payloads=[{"execution_count": 1, "delay_ms": 0}])
ok_interval(A, "drift-free-after-unaligned", IV, {"interval": 5}, 5,
            after=plus(NOW, seconds=12, milliseconds=500), n=3,
            note="next_fire after an arbitrary instant stays on started_at + k*interval")
ok_interval(A, "drift-free-after-far", IV, {"interval": 7, "unit": "seconds"}, 7,
            after=plus(NOW, days=1, seconds=3), n=3)
ok_interval(A, "after-exactly-on-fire", IV, {"interval": 10}, 10, after=plus(NOW, seconds=30),
            n=2, note="strictly after: a fire time given as `after` is not returned again")
ok_interval(A, "after-before-start", IV, {"interval": 10}, 10, after=plus(NOW, seconds=-100),
            n=2, note="the first fire is one interval after started_at, never earlier")
ok_interval(A, "started-before-now", IV, {"interval": 60}, 60,
            started_at=plus(NOW, seconds=-3600 - 17), n=3,
            note="a timer started an hour ago keeps its phase")
ok_interval(A, "late-fire-does-not-push", IV, {"interval": 10}, 10,
            after=plus(NOW, seconds=13), n=2,
            note="after a late fire at +13s, the next is still +20s",
            payloads=[{"index": 0, "execution_count": 2, "delay_ms": 3000}])
ok_interval(A, "across-dst-is-absolute", IV, {"interval": 1, "unit": "days"}, 86400,
            now="2026-03-28T12:00:00Z", n=3,
            note="intervals are real durations; DST changes nothing")
ok_interval(A, "across-year-end", IV, {"interval": 1, "unit": "weeks"}, 604800,
            now="2026-12-28T00:00:00Z", n=2)
ok_interval(A, "just-under-100-years", IV, {"interval": 36000, "unit": "days"}, 36000 * 86400,
            n=1)
ok_interval(A, "unknown-keys-ignored", IV, {"interval": 10, "unit": "seconds",
                                            "description": "x", "extra": [1, 2]}, 10, n=2)
ok_interval(A, "large-count-payload", IV, {"interval": 15, "unit": "minutes"}, 900, n=2,
            payloads=[{"index": 1, "execution_count": 123456, "delay_ms": 40}])
err(A, "zero", IV, {"interval": 0, "unit": "seconds"}, field="interval",
    contains="Interval must be greater than 0")
err(A, "zero-minutes", IV, {"interval": 0, "unit": "minutes"}, field="interval",
    contains="Interval must be greater than 0")
for nm, v in [("string", "5"), ("float", 1.5), ("float-whole", 5.0), ("negative", -5),
              ("null", None), ("bool", True), ("object", {"n": 5}), ("array", [5])]:
    err(A, f"invalid-{nm}", IV, {"interval": v, "unit": "seconds"}, field="interval",
        contains="Missing or invalid 'interval' field in params")
err(A, "missing", IV, {"unit": "seconds"}, field="interval",
    contains="Missing or invalid 'interval' field in params")
err(A, "empty-params", IV, {}, field="interval",
    contains="Missing or invalid 'interval' field in params")
for nm, v in [("fortnights", "fortnights"), ("months", "months"), ("empty", ""),
              ("number", 5), ("millis", "milliseconds")]:
    err(A, f"bad-unit-{nm}", IV, {"interval": 5, "unit": v}, field="unit",
        contains="Failed to parse 'unit' field")
err(A, "over-100-years-days", IV, {"interval": 40000, "unit": "days"}, field="interval")
err(A, "over-100-years-weeks", IV, {"interval": 6000, "unit": "weeks"}, field="interval")
err(A, "over-100-years-seconds", IV, {"interval": 3200000000}, field="interval")
err(A, "u64-max", IV, {"interval": 18446744073709551615, "unit": "weeks"}, field="interval")

# ============================================================================= legacy / StackStorm
A = "legacy"
ok_interval(A, "typed-seconds-core-timer", CT,
            {"type": "interval", "seconds": 10, "minutes": 0, "hours": 0}, 10, n=3,
            payloads=[{"execution_count": 1}])
ok_interval(A, "typed-parts-summed", CT,
            {"type": "interval", "seconds": 30, "minutes": 1, "hours": 1}, 3690, n=2,
            payloads=[{"execution_count": 2, "index": 1}])
ok_interval(A, "typed-parts-under-intervaltimer", IV,
            {"type": "interval", "seconds": 5, "minutes": 2, "hours": 0}, 125, n=2)
ok_interval(A, "typed-minutes-only", CT, {"type": "interval", "minutes": 5}, 300, n=2)
ok_interval(A, "typed-hours-only", CT, {"type": "interval", "hours": 2}, 7200, n=2)
err(A, "typed-all-zero", CT, {"type": "interval", "seconds": 0, "minutes": 0, "hours": 0},
    contains="Interval must be greater than 0")
for unit, k in [("seconds", 30), ("minutes", 5), ("hours", 1), ("days", 1), ("weeks", 1)]:
    ok_interval(A, f"stackstorm-delta-{unit}", IV, {"unit": unit, "delta": k}, k * UNITS[unit],
                n=2, payloads=[{"execution_count": 1}] if unit == "minutes" else ())
err(A, "stackstorm-delta-zero", IV, {"unit": "seconds", "delta": 0},
    contains="Interval must be greater than 0")
err(A, "stackstorm-delta-string", IV, {"unit": "seconds", "delta": "abc"})
err(A, "stackstorm-delta-bad-unit", IV, {"unit": "fortnights", "delta": 3})

ok_oneshot(A, "typed-one-shot-core-timer", CT, {"type": "one_shot",
                                                "fire_at": "2026-04-01T09:00:00Z"},
           "2026-04-01T09:00:00Z", payloads=[{"delay_ms": 12}])
ok_oneshot(A, "typed-one-shot-datetimetimer", DT, {"type": "one_shot",
                                                   "fire_at": "2026-04-01T09:00:00+02:00"},
           "2026-04-01T07:00:00Z")
ok_oneshot(A, "stackstorm-date-berlin", DT, {"date": "2026-04-01 09:00:00",
                                             "timezone": "Europe/Berlin"},
           "2026-04-01T07:00:00Z", tz="Europe/Berlin", payloads=[{"delay_ms": 0}])
ok_oneshot(A, "stackstorm-date-t-new-york", DT, {"date": "2026-04-01T09:00:00",
                                                 "timezone": "America/New_York"},
           "2026-04-01T13:00:00Z", tz="America/New_York")
ok_oneshot(A, "stackstorm-date-sydney-winter", DT, {"date": "2026-07-01 09:00:00",
                                                    "timezone": "Australia/Sydney"},
           "2026-06-30T23:00:00Z", tz="Australia/Sydney")
err(A, "stackstorm-date-past", DT, {"date": "2026-03-01 09:00:00", "timezone": "UTC"},
    contains="DateTime timer fire_at must be in the future")
err(A, "stackstorm-date-garbage", DT, {"date": "someday", "timezone": "UTC"})


def st2(name, params, now=NOW, n=5, then_none=None, note=None, payloads=()):
    expr, tz = stackstorm_to_cron(params)
    return ok_cron(A, "stackstorm-cron-" + name, CR, params, expr=expr, tz=tz, now=now, n=n,
                   then_none=then_none, payload_expr=None, payloads=payloads,
                   note=note or f"APScheduler fields; equivalent to cron `{expr}`")


st2("weekdays-9am", {"hour": 9, "minute": 0, "second": 0, "day_of_week": "mon-fri",
                     "timezone": "UTC"}, n=6,
    payloads=[{"execution_count": 1}])
st2("minute-step", {"minute": "*/15"})
st2("hour-only-defaults", {"hour": 9}, n=3,
    note="less significant fields default to their minimum: daily at 09:00:00")
st2("dow-zero-is-monday", {"day_of_week": 0, "hour": 8}, n=3)
st2("dow-six-is-sunday", {"day_of_week": "6", "hour": 10, "minute": 30}, n=3)
st2("dow-fri-sun", {"day_of_week": "fri-sun", "hour": 7}, n=4)
st2("weekend-names", {"day_of_week": "sat,sun", "hour": "10"}, n=4)
st2("day-1", {"day": 1, "hour": 0}, n=3)
st2("month-only", {"month": 6}, n=2, note="month 6 -> June 1st 00:00:00 each year")
st2("second-only", {"second": 30}, n=3,
    note="more significant fields default to *: every minute at :30")
st2("second-step", {"second": "*/10"}, n=4)
st2("year-once", {"year": 2027, "month": 3, "day": 15, "hour": 12}, n=1, then_none=True)
st2("berlin-across-dst", {"hour": 9, "timezone": "Europe/Berlin"},
    now="2026-03-27T12:00:00Z", n=4)
st2("last-given-minute", {"hour": "8-10", "minute": 45}, n=4)
err(A, "stackstorm-cron-bad-hour", CR, {"hour": 25}, field="hour")
err(A, "stackstorm-cron-bad-minute", CR, {"minute": 61}, field="minute")
err(A, "stackstorm-cron-bad-dow", CR, {"day_of_week": "funday"}, field="day_of_week")
err(A, "stackstorm-cron-bad-timezone", CR, {"hour": 9, "timezone": "Nowhere/Land"},
    field="timezone")

# ============================================================================= cron basic (UTC)
A = "cron-basic"


def cb(name, expr, now=NOW, n=5, **kw):
    return ok_cron(A, name, CR, {"expression": expr}, now=now, n=n, **kw)


cb("six-field-every-5-min", "0 */5 * * * *",
   payloads=[{"execution_count": 1}, {"index": 2, "execution_count": 3, "delay_ms": 2000}])
cb("six-field-every-10-s", "*/10 * * * * *", n=6)
cb("five-field-monday-9", "0 9 * * MON")
cb("six-field-weekdays", "0 0 9 * * MON-FRI", n=6)
cb("five-field-monthly", "30 8 1 * *", n=4)
cb("dom-31-skips-short-months", "0 0 31 * *", n=6)
cb("dom-30-skips-february", "0 12 30 * *", now="2027-01-15T00:00:00Z", n=4)
cb("leap-day", "0 0 29 2 *", n=3)
cb("leap-day-six-field", "0 0 6 29 FEB *", now="2027-06-01T00:00:00Z", n=2)
cb("year-rollover-last-second", "59 59 23 31 12 *", n=2)
cb("new-year", "0 0 1 1 *", n=2)
cb("daily-over-year-end", "0 0 * * *", now="2026-12-31T12:00:00Z", n=3)
cb("daily-over-month-end", "0 0 0 * * *", n=3)
cb("seven-field-year", "0 0 12 * * ? 2027", n=3)
cb("seven-field-year-range-ends", "0 0 0 1 1 ? 2027-2029", n=3, then_none=True,
   payloads=[{"index": 2, "execution_count": 3}])
cb("seven-field-star-year", "0 15 10 * * ? *", n=3)
cb("lists", "0 0,30 8,17 * * *", n=6)
cb("range-step", "0 10-40/5 9 * * *", n=8)
cb("hour-range-step", "0 0 8-18/2 * * *", n=7)
cb("minute-range-step-five-field", "23 0-20/2 * * *", n=4)
cb("month-names", "0 0 1 JAN,JUL *", n=3)
cb("names-lower-case", "0 12 * jan-mar mon", n=3)
cb("names-mixed-case", "0 12 * * Mon,wEd", n=4)
cb("sunday-seven", "0 10 * * 7", n=3)
cb("sunday-zero", "0 10 * * 0", n=3)
cb("dow-range-to-seven", "0 10 * * 5-7", n=4)
cb("question-mark-dom", "0 0 10 ? * WED", n=3)
cb("question-mark-five-field", "0 0 ? * *", n=2)
cb("classic-weekday-evening", "0 22 * * 1-5", n=5)
cb("sunday-name-five-field", "5 4 * * sun", n=2)
cb("monthly-15th", "15 14 1 * *", n=3)
cb("every-minute", "* * * * *", n=3)
cb("every-second", "* * * * * *", n=3)
cb("step-from-value", "0 5/20 * * * *", n=4, note="`5/20` means 5-59/20")
cb("extra-whitespace", "0  9 *  * *", n=2)
for m in ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]:
    cb("macro-" + m[1:], m, n=3, payloads=[{"execution_count": 1}] if m == "@weekly" else ())
ok_cron(A, "payload-timezone-tokyo", CR, {"expression": "0 9 * * *", "timezone": "Asia/Tokyo"},
        n=3, payloads=[{"execution_count": 5, "delay_ms": 999}])
ok_cron(A, "timezone-kolkata-half-hour", CR, {"expression": "0 9 * * *",
                                              "timezone": "Asia/Kolkata"}, n=2)
ok_cron(A, "timezone-utc-explicit", CR, {"expression": "0 9 * * *", "timezone": "UTC"}, n=2)
ok_cron(A, "unknown-keys-ignored", CR, {"expression": "0 9 * * *", "comment": "hi"}, n=2)

# ============================================================================= cron extensions
A = "cron-extensions"


def ce(name, expr, now=NOW, n=5, **kw):
    return ok_cron(A, name, CR, {"expression": expr}, now=now, n=n, **kw)


ce("dom-or-dow-friday-13", "0 0 13 * FRI", n=6,
   note="dom and dow both restricted: a day matches if either matches")
ce("dom-or-dow-list", "0 0 12 1,15 * MON", n=6)
ce("dom-or-dow-feb-30-monday", "0 0 30 2 MON", n=5,
   note="Feb 30 never exists, but Mondays in February match")
ce("dom-or-dow-six-field", "0 30 6 L * SUN", n=5)
ce("last-day", "0 0 0 L * ?", n=6)
ce("last-day-five-field", "0 0 L * *", n=4)
ce("last-day-february", "0 0 0 L 2 ?", n=3)
ce("nearest-weekday-15", "0 0 15W * *", n=9)
ce("nearest-weekday-1-no-month-crossing", "0 0 1W * *", n=8,
   note="1W on a Saturday moves to Monday the 3rd, not to the previous month")
ce("last-weekday", "0 0 LW * *", n=8)
ce("nth-weekday-mon-1", "0 9 * * MON#1", n=4)
ce("nth-weekday-numeric", "0 9 * * 5#3", n=4)
ce("nth-weekday-fifth-monday", "0 9 * * 1#5", n=4, note="only months with five Mondays")
ce("nth-weekday-sunday-name", "0 9 * * SUN#2", n=3)
ce("nth-weekday-six-field", "0 0 9 ? * 6#2", n=3)
ce("nth-weekday-question-dom", "0 0 ? * MON#1", n=3)
ce("last-friday", "0 18 * * 5L", n=5)
ce("last-sunday-seven", "0 1 * * 7L", n=3)
ce("last-day-in-feb-only", "0 0 L 2 *", now="2027-06-01T00:00:00Z", n=2)

# ============================================================================= cron DST
A = "cron-dst"
DST = {
    "berlin": ("Europe/Berlin", "2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2", "2"),
    "new-york": ("America/New_York", "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z", "2", "1"),
    "sydney": ("Australia/Sydney", "2026-10-03T16:00:00Z", "2026-04-04T16:00:00Z", "2", "2"),
}


def cd(name, tz, expr, now, n=4, note=None):
    return ok_cron(A, name, CR, {"expression": expr, "timezone": tz}, now=now, n=n, note=note)


for key, (tz, spring, fall, gap_h, dbl_h) in DST.items():
    sp, fa = parse_instant(spring), parse_instant(fall)
    day_before_sp = fmt(sp - dt.timedelta(hours=13))
    day_before_fa = fmt(fa - dt.timedelta(hours=13))
    # spring forward
    cd(f"{key}-spring-fixed-in-gap", tz, f"30 {gap_h} * * *", day_before_sp, n=3,
       note="local time in the gap fires once at the first instant after the gap")
    cd(f"{key}-spring-fixed-gap-start", tz, f"0 {gap_h} * * *", day_before_sp, n=3)
    cd(f"{key}-spring-fixed-six-field", tz, f"15 45 {gap_h} * * *", day_before_sp, n=2)
    cd(f"{key}-spring-fixed-weekly", tz, f"30 {gap_h} * * SUN", day_before_sp, n=3)
    cd(f"{key}-spring-fixed-outside-gap", tz, "0 9 * * *", day_before_sp, n=3,
       note="UTC time shifts by the DST offset")
    cd(f"{key}-spring-every-15-min", tz, "*/15 * * * *", fmt(sp - dt.timedelta(minutes=40)),
       n=6, note="wildcard: fires on real elapsed instants, 15 real minutes apart")
    cd(f"{key}-spring-hourly", tz, "0 * * * *", fmt(sp - dt.timedelta(minutes=150)), n=5)
    cd(f"{key}-spring-hourly-at-30", tz, "0 30 * * * *", fmt(sp - dt.timedelta(minutes=150)),
       n=5)
    cd(f"{key}-spring-wildcard-minute-fixed-hour", tz, f"*/30 {gap_h} * * *", day_before_sp,
       n=3, note="minute is not fixed: real-instant matching, the gap hour has no fire")
    # fall back
    cd(f"{key}-fall-fixed-repeated", tz, f"30 {dbl_h} * * *", day_before_fa, n=3,
       note="local time occurring twice fires once, at its first occurrence")
    cd(f"{key}-fall-fixed-repeated-start", tz, f"0 {dbl_h} * * *", day_before_fa, n=3)
    cd(f"{key}-fall-fixed-six-field", tz, f"59 59 {dbl_h} * * *", day_before_fa, n=2)
    cd(f"{key}-fall-fixed-outside", tz, "0 9 * * *", day_before_fa, n=3)
    cd(f"{key}-fall-every-15-min", tz, "*/15 * * * *", fmt(fa - dt.timedelta(minutes=70)),
       n=10, note="wildcard: the repeated hour fires again, 15 real minutes apart")
    cd(f"{key}-fall-hourly", tz, "0 * * * *", fmt(fa - dt.timedelta(minutes=150)), n=5)
    cd(f"{key}-fall-wildcard-minute-fixed-hour", tz, f"*/30 {dbl_h} * * *", day_before_fa,
       n=5, note="minute is not fixed: both passes through the repeated hour fire")
# Fixed local times given as lists, ranges or steps without `*` follow the fixed-time rule too.
cd("new-york-spring-fixed-list", "America/New_York", "30 2,14 * * *", "2026-03-07T18:00:00Z",
   n=4, note="lists are fixed times: 02:30 falls in the gap and fires once after it")
cd("new-york-spring-two-in-gap", "America/New_York", "0,30 2 * * *", "2026-03-07T18:00:00Z",
   n=3, note="two fixed times in the same gap fire once, at the first instant after it")
cd("sydney-spring-range-into-gap-end", "Australia/Sydney", "0 2-3 * * *",
   "2026-10-03T05:00:00Z", n=4,
   note="02:00 (in the gap) and 03:00 (the gap's end) name the same instant: one fire")
cd("sydney-spring-step-without-star", "Australia/Sydney", "0/20 2 * * *",
   "2026-10-03T05:00:00Z", n=4, note="`0/20` does not start with `*`: fixed times")
cd("sydney-fall-fixed-list", "Australia/Sydney", "15 2,20 * * *", "2026-04-04T03:00:00Z",
   n=4, note="lists are fixed times: 02:15 occurs twice and fires at its first occurrence")
cd("berlin-fall-fixed-range-six-field", "Europe/Berlin", "0 45 1-2 * * *",
   "2026-10-24T12:00:00Z", n=4, note="ranges are fixed times: 02:45 fires once")
cd("new-york-fall-fixed-list-from-second-pass", "America/New_York", "0 15,45 1 * * *",
   "2026-11-01T06:20:00Z", n=3,
   note="asked from inside the second pass of the repeated hour: nothing more that day")
ok_cron(A, "santiago-midnight-gap-daily", CR, {"expression": "@daily",
                                               "timezone": "America/Santiago"},
        now="2026-09-05T12:00:00Z", n=3,
        note="Chile springs forward at 24:00: midnight does not exist on 2026-09-06")
ok_cron(A, "berlin-fixed-gap-payload", CR, {"expression": "0 30 2 * * *",
                                            "timezone": "Europe/Berlin"},
        now="2026-03-28T12:00:00Z", n=2,
        payloads=[{"execution_count": 1, "delay_ms": 5}])
ok_cron(A, "new-york-monthly-on-dst-day", CR, {"expression": "30 2 8 3 *",
                                               "timezone": "America/New_York"},
        now="2026-03-01T00:00:00Z", n=2)

# ============================================================================= one-shot
A = "datetime"
ok_oneshot(A, "utc-z", DT, {"fire_at": "2026-04-01T09:00:00Z"}, "2026-04-01T09:00:00Z",
           payloads=[{"delay_ms": 0}])
ok_oneshot(A, "offset-plus-two", DT, {"fire_at": "2026-04-01T09:00:00+02:00"},
           "2026-04-01T07:00:00Z")
ok_oneshot(A, "offset-minus-five", DT, {"fire_at": "2026-04-01T09:00:00-05:00"},
           "2026-04-01T14:00:00Z")
ok_oneshot(A, "offset-plus-zero", DT, {"fire_at": "2026-04-01T09:00:00+00:00"},
           "2026-04-01T09:00:00Z")
ok_oneshot(A, "fractional-seconds", DT, {"fire_at": "2026-03-30T07:45:00.5Z"},
           "2026-03-30T07:45:00.500Z", payloads=[{"delay_ms": 250}])
ok_oneshot(A, "one-second-ahead", DT, {"fire_at": "2026-03-30T07:30:01Z"},
           "2026-03-30T07:30:01Z")
ok_oneshot(A, "far-future", DT, {"fire_at": "2030-01-01T00:00:00Z"}, "2030-01-01T00:00:00Z")
ok_oneshot(A, "leap-day", DT, {"fire_at": "2028-02-29T12:00:00Z"}, "2028-02-29T12:00:00Z")
ok_oneshot(A, "naive-with-timezone-berlin", DT, {"fire_at": "2026-04-01T09:00:00",
                                                 "timezone": "Europe/Berlin"},
           "2026-04-01T07:00:00Z", tz="Europe/Berlin", payloads=[{"delay_ms": 1500}])
ok_oneshot(A, "naive-with-timezone-new-york", DT, {"fire_at": "2026-12-01T09:00:00",
                                                   "timezone": "America/New_York"},
           "2026-12-01T14:00:00Z", tz="America/New_York")
ok_oneshot(A, "naive-with-timezone-sydney", DT, {"fire_at": "2026-04-01T09:00:00",
                                                 "timezone": "Australia/Sydney"},
           "2026-03-31T22:00:00Z", tz="Australia/Sydney")
ok_oneshot(A, "offset-wins-over-timezone", DT, {"fire_at": "2026-04-01T09:00:00+02:00",
                                                "timezone": "America/New_York"},
           "2026-04-01T07:00:00Z", tz="America/New_York",
           note="an explicit offset fixes the instant; the timezone is only reported")
ok_oneshot(A, "payload-late-delay", DT, {"fire_at": "2026-03-30T08:00:00Z"},
           "2026-03-30T08:00:00Z", payloads=[{"delay_ms": 61234}])
err(A, "past", DT, {"fire_at": "2026-03-30T07:29:59Z"}, field="fire_at",
    contains="DateTime timer fire_at must be in the future")
err(A, "equal-to-now", DT, {"fire_at": NOW}, field="fire_at",
    contains="DateTime timer fire_at must be in the future")
err(A, "past-far", DT, {"fire_at": "2020-01-01T00:00:00Z"}, field="fire_at",
    contains="DateTime timer fire_at must be in the future")
err(A, "past-by-offset", DT, {"fire_at": "2026-03-30T09:00:00+02:00"}, field="fire_at",
    contains="DateTime timer fire_at must be in the future",
    note="09:00+02:00 is 07:00Z, before now")
ok_oneshot(A, "within-1000-years", DT, {"fire_at": "3000-01-01T00:00:00Z"},
           "3000-01-01T00:00:00Z", note="inside the 1000-year horizon (365,000 days)")
err(A, "beyond-1000-years", DT, {"fire_at": "4200-06-01T00:00:00+02:00"}, field="fire_at",
    contains=["1000 years", "4200-05-31T22:00:00Z"],
    note="the host refuses fires more than 1000 years ahead; refused at validation")
err(A, "beyond-1000-years-year-9999", DT, {"fire_at": "9999-12-31T23:59:59Z"},
    field="fire_at", contains="1000 years")
err(A, "missing", DT, {"timezone": "UTC"}, field="fire_at",
    contains="Missing 'fire_at' field in params")
err(A, "garbage", DT, {"fire_at": "tomorrow"}, field="fire_at")
err(A, "number", DT, {"fire_at": 1775000000}, field="fire_at")
err(A, "naive-without-timezone", DT, {"fire_at": "2026-04-01T09:00:00"}, field="fire_at")
err(A, "date-only", DT, {"fire_at": "2026-04-01"}, field="fire_at")
err(A, "invalid-date", DT, {"fire_at": "2026-02-30T09:00:00Z"}, field="fire_at")
err(A, "bad-timezone", DT, {"fire_at": "2026-04-01T09:00:00", "timezone": "Mars/Olympus"},
    field="timezone")

# ============================================================================= rrule
A = "rrule"


def rr(name, params, tref=RR, **kw):
    return ok_rrule(A, name, tref, params, **kw)


rr("raw-daily-9", {"rule": "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
                   "dtstart": "2026-03-01T09:00:00Z"},
   payloads=[{"execution_count": 1}, {"index": 1, "execution_count": 2, "delay_ms": 1500}])
rr("raw-rrule-prefix", {"rule": "RRULE:FREQ=DAILY;INTERVAL=1",
                        "dtstart": "2026-03-01T12:00:00Z"}, n=3)
rr("raw-weekly-mo-we-fr", {"rule": "FREQ=WEEKLY;BYDAY=MO,WE,FR",
                           "dtstart": "2026-03-02T10:00:00Z"}, n=6)
rr("raw-monthly-last-day", {"rule": "FREQ=MONTHLY;BYMONTHDAY=-1",
                            "dtstart": "2026-01-31T18:00:00Z"}, n=5)
rr("raw-monthly-second-tuesday", {"rule": "FREQ=MONTHLY;BYDAY=2TU",
                                  "dtstart": "2026-01-13T08:00:00Z"}, n=4)
rr("raw-monthly-last-friday", {"rule": "FREQ=MONTHLY;BYDAY=-1FR",
                               "dtstart": "2026-01-30T16:00:00Z"}, n=4)
rr("raw-yearly-leap-day", {"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
                           "dtstart": "2024-02-29T12:00:00Z"}, n=3)
rr("raw-count-runs-out", {"rule": "FREQ=DAILY;COUNT=5", "dtstart": "2026-03-27T12:00:00Z"},
   n=2, then_none=True, note="occurrences 27th..31st; after now only 30th and 31st remain",
   payloads=[{"index": 1, "execution_count": 2}])
rr("raw-until-runs-out", {"rule": "FREQ=DAILY;UNTIL=20260402T120000Z",
                          "dtstart": "2026-03-01T12:00:00Z"}, n=4, then_none=True,
   note="UNTIL is inclusive")
rr("raw-bysetpos-last-weekday", {"rule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                                 "dtstart": "2026-01-30T17:00:00Z"}, n=6)
rr("raw-bysetpos-first-weekday", {"rule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1",
                                  "dtstart": "2026-01-01T08:00:00Z"}, n=6)
rr("raw-bysetpos-second-last", {"rule": "FREQ=MONTHLY;BYMONTHDAY=-1,-2,-3;BYSETPOS=2",
                                "dtstart": "2026-01-30T08:00:00Z"}, n=4)
rr("raw-hourly-interval-6", {"rule": "FREQ=HOURLY;INTERVAL=6",
                             "dtstart": "2026-03-30T00:00:00Z"}, n=4)
rr("raw-minutely-15", {"rule": "FREQ=MINUTELY;INTERVAL=15",
                       "dtstart": "2026-03-30T07:05:00Z"}, n=4)
rr("raw-secondly-30", {"rule": "FREQ=SECONDLY;INTERVAL=30",
                       "dtstart": "2026-03-30T07:00:00Z"}, n=4)
rr("raw-yearly-byyearday", {"rule": "FREQ=YEARLY;BYYEARDAY=100",
                            "dtstart": "2026-04-10T00:00:00Z"}, n=3)
rr("raw-yearly-byweekno", {"rule": "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
                           "dtstart": "2026-05-11T08:00:00Z"}, n=3)
rr("raw-wkst-mo", {"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=MO",
                   "dtstart": "2026-03-03T09:00:00Z"}, n=6)
rr("raw-wkst-su", {"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=SU",
                   "dtstart": "2026-03-03T09:00:00Z"}, n=6,
   note="RFC 5545's WKST example: differs from WKST=MO")
rr("raw-year-rollover", {"rule": "FREQ=MONTHLY;BYMONTHDAY=31",
                         "dtstart": "2026-10-31T23:00:00Z"}, now="2026-11-15T00:00:00Z",
   n=3, note="months without a 31st are skipped")
rr("raw-with-timezone", {"rule": "FREQ=DAILY;BYHOUR=8;BYMINUTE=30;BYSECOND=0",
                         "dtstart": "2026-03-01T08:30:00+01:00", "timezone": "Europe/Berlin"},
   now="2026-03-27T12:00:00Z", n=4, note="local 08:30 across the spring change")
rr("structured-daily-interval-2", {"freq": "DAILY", "interval": 2,
                                   "dtstart": "2026-03-01T06:00:00Z"}, n=4,
   payloads=[{"execution_count": 16, "delay_ms": 20}])
rr("structured-freq-lowercase", {"freq": "daily", "dtstart": "2026-03-01T06:00:00Z"}, n=2)
rr("structured-weekly-byday-lowercase", {"freq": "WEEKLY", "by_day": ["mo", "we"],
                                         "dtstart": "2026-03-02T10:00:00Z"}, n=4)
rr("structured-monthly-last-day-count", {"freq": "MONTHLY", "by_month_day": [-1],
                                         "count": 6, "dtstart": "2026-01-31T18:00:00Z"},
   n=4, then_none=True)
rr("structured-monthly-2tu", {"freq": "MONTHLY", "by_day": ["2TU"],
                              "dtstart": "2026-01-13T08:00:00Z"}, n=3)
rr("structured-monthly-minus-1fr", {"freq": "MONTHLY", "by_day": ["-1FR"],
                                    "dtstart": "2026-01-30T16:00:00Z"}, n=3)
rr("structured-yearly-leap", {"freq": "YEARLY", "by_month": [2], "by_month_day": [29],
                              "dtstart": "2024-02-29T00:00:00Z"}, n=2)
rr("structured-count-runs-out", {"freq": "DAILY", "count": 3,
                                 "dtstart": "2026-03-29T12:00:00Z"}, n=2, then_none=True)
rr("structured-until", {"freq": "DAILY", "until": "2026-04-05T00:00:00Z",
                        "dtstart": "2026-03-01T12:00:00Z"}, n=6, then_none=True)
rr("structured-until-offset", {"freq": "DAILY", "until": "2026-04-03T12:00:00+02:00",
                               "dtstart": "2026-03-01T10:00:00Z"}, n=5, then_none=True,
   note="until with an offset is converted to UTC (UNTIL=20260403T100000Z), inclusive")
rr("structured-bysetpos", {"freq": "MONTHLY", "by_day": ["MO", "TU", "WE", "TH", "FR"],
                           "by_set_pos": [-1], "dtstart": "2026-01-30T17:00:00Z"}, n=4)
rr("structured-byhour-minute-second", {"freq": "DAILY", "by_hour": [9, 17], "by_minute": [0],
                                       "by_second": [0], "dtstart": "2026-03-01T09:00:00Z"},
   n=5)
rr("structured-byyearday-first-last", {"freq": "YEARLY", "by_year_day": [1, -1],
                                       "dtstart": "2026-01-01T00:00:00Z"}, n=4)
rr("structured-byweekno", {"freq": "YEARLY", "by_week_no": [1], "by_day": ["MO"],
                           "dtstart": "2026-12-28T09:00:00Z"}, n=3,
   note="ISO week 1 of 2027 starts on 2027-01-04")
rr("structured-wkst-su", {"freq": "WEEKLY", "interval": 2, "by_day": ["TU", "SU"],
                          "week_start": "SU", "dtstart": "2026-03-03T09:00:00Z"}, n=5)
rr("structured-byminute-hourly", {"freq": "HOURLY", "by_minute": [0, 30],
                                  "dtstart": "2026-03-30T00:00:00Z"}, n=4)
rr("structured-bymonth-list", {"freq": "YEARLY", "by_month": [1, 7], "by_month_day": [1],
                               "dtstart": "2026-01-01T00:00:00Z"}, n=3)
rr("raw-overrides-structured", {"rule": "FREQ=DAILY", "freq": "WEEKLY", "by_day": ["FR"],
                                "dtstart": "2026-03-01T12:00:00Z"}, n=3,
   note="a non-empty raw rule overrides the structured fields")
rr("empty-raw-uses-structured", {"rule": "", "freq": "WEEKLY", "by_day": ["FR"],
                                 "dtstart": "2026-03-06T12:00:00Z"}, n=3)
rr("timezone-berlin-spring", {"freq": "DAILY", "dtstart": "2026-03-25T09:00:00+01:00",
                              "timezone": "Europe/Berlin"}, now="2026-03-27T12:00:00Z", n=4,
   note="09:00 local stays 09:00 local: 08:00Z then 07:00Z")
rr("timezone-new-york-fall", {"freq": "DAILY", "dtstart": "2026-10-28T09:00:00-04:00",
                              "timezone": "America/New_York"}, now="2026-10-30T00:00:00Z",
   n=4)
rr("timezone-sydney-weekly", {"freq": "WEEKLY", "by_day": ["SU"],
                              "dtstart": "2026-03-22T10:00:00+11:00",
                              "timezone": "Australia/Sydney"}, now="2026-03-25T00:00:00Z", n=3)
rr("timezone-dtstart-in-utc", {"freq": "DAILY", "dtstart": "2026-03-01T08:00:00Z",
                               "timezone": "Europe/Berlin"}, now="2026-03-27T12:00:00Z", n=3,
   note="dtstart 08:00Z is 09:00 Berlin: occurrences are 09:00 local")
rr("timezone-payload", {"freq": "DAILY", "dtstart": "2026-03-01T08:00:00Z",
                        "timezone": "Asia/Tokyo"}, n=2,
   payloads=[{"execution_count": 30, "delay_ms": 7}])
rr("weekly-bysetpos-after-skip", {"rule": "FREQ=WEEKLY;BYDAY=TU,SA;BYSETPOS=1",
                                  "dtstart": "2026-02-05T18:00:00+09:00",
                                  "timezone": "Asia/Tokyo"}, now="2026-03-26T03:00:00Z", n=3,
   note="BYSETPOS picks from whole weeks: from a Thursday weeks later, the next is Tuesday")
rr("weekly-bysetpos-structured-interval", {"freq": "WEEKLY", "interval": 2,
                                           "by_day": ["MO", "TH"], "by_set_pos": [2],
                                           "week_start": "SU",
                                           "dtstart": "2026-01-05T07:00:00Z"},
   now="2026-03-17T12:00:00Z", n=3)
rr("daily-bysetpos-after-skip", {"rule": "FREQ=DAILY;BYHOUR=6,18;BYSETPOS=1",
                                 "dtstart": "2026-02-01T06:00:00-05:00",
                                 "timezone": "America/New_York"},
   now="2026-03-20T15:00:00Z", n=3, note="BYSETPOS picks from whole days")
rr("monthly-minus-fifth-weekday", {"rule": "FREQ=MONTHLY;BYDAY=-5WE",
                                   "dtstart": "2026-02-01T20:00:00+11:00",
                                   "timezone": "Australia/Sydney"},
   now="2026-02-10T00:00:00Z", n=3,
   note="-5 is a valid MONTHLY ordinal (RFC 5545): the fifth-last Wednesday, in months "
        "with five")
rr("structured-monthly-minus-fifth", {"freq": "MONTHLY", "by_day": ["-5SA", "-5SU"],
                                      "dtstart": "2026-01-01T10:00:00Z"},
   now="2026-03-01T12:00:00Z", n=4)
rr("yearly-minus-53rd-weekday", {"rule": "FREQ=YEARLY;BYDAY=-53SU",
                                 "dtstart": "2026-01-01T12:00:00Z"}, n=2,
   note="-53 is a valid YEARLY ordinal: years with 53 Sundays (2028, 2034)")
err(A, "ordinal-byday-weekly-raw", RR, {"rule": "FREQ=WEEKLY;BYDAY=2TU",
                                        "dtstart": "2026-03-03T09:00:00Z"},
    field="rule", contains=["2TU", "MONTHLY", "YEARLY"],
    note="RFC 5545: numeric BYDAY only with MONTHLY or YEARLY")
err(A, "ordinal-byday-daily-structured", RR, {"freq": "DAILY", "by_day": ["-1FR"],
                                              "dtstart": "2026-03-03T09:00:00Z"},
    field="by_day", contains=["-1FR", "MONTHLY", "YEARLY"])
err(A, "ordinal-byday-monthly-6", RR, {"rule": "FREQ=MONTHLY;BYDAY=6TH",
                                       "dtstart": "2026-03-03T09:00:00Z"},
    field="rule", contains=["6TH", "-5 to 5"])
err(A, "count-exhausted-before-now", RR, {"freq": "DAILY", "count": 3,
                                          "dtstart": "2026-03-01T12:00:00Z"},
    field="count", contains="has no occurrence after",
    note="occurrences all past: refused like a past one-shot, so the operator hears of it")
rr("unknown-keys-ignored", {"freq": "DAILY", "dtstart": "2026-03-01T12:00:00Z",
                            "description": "x"}, n=2)
err(A, "missing-dtstart", RR, {"rule": "FREQ=DAILY"}, field="dtstart",
    contains="Missing 'dtstart' field in params")
err(A, "missing-dtstart-structured", RR, {"freq": "DAILY"}, field="dtstart",
    contains="Missing 'dtstart' field in params")
err(A, "missing-freq", RR, {"by_day": ["MO"], "dtstart": "2026-03-01T12:00:00Z"},
    field="freq", contains="Missing required 'freq' field for RRULE timer")
err(A, "invalid-freq", RR, {"freq": "FORTNIGHTLY", "dtstart": "2026-03-01T12:00:00Z"},
    field="freq", contains="Invalid 'freq' value 'FORTNIGHTLY'; must be one of")
err(A, "count-and-until", RR, {"freq": "DAILY", "count": 5, "until": "2026-05-01T00:00:00Z",
                               "dtstart": "2026-03-01T12:00:00Z"},
    contains="'count' and 'until' are mutually exclusive")
for fld, bad in [("interval", 0), ("count", 0), ("by_month", [13]), ("by_month", [0]),
                 ("by_month_day", [32]), ("by_month_day", [-32]), ("by_year_day", [367]),
                 ("by_week_no", [54]), ("by_hour", [24]), ("by_minute", [60]),
                 ("by_second", [61]), ("by_set_pos", [367]), ("by_day", ["XX"]),
                 ("by_day", ["MO1"]), ("week_start", "XY")]:
    err(A, f"bad-{fld}-{json.dumps(bad).strip('[]').replace(chr(34), '')}", RR,
        {"freq": "YEARLY", fld: bad, "dtstart": "2026-03-01T12:00:00Z"}, field=fld)
err(A, "bad-timezone", RR, {"freq": "DAILY", "dtstart": "2026-03-01T12:00:00Z",
                            "timezone": "Mars/Olympus"}, field="timezone",
    contains="Invalid timezone 'Mars/Olympus'")
err(A, "raw-unparsable", RR, {"rule": "FREQ=SOMETIMES", "dtstart": "2026-03-01T12:00:00Z"},
    rule_id=42, contains="Failed to parse RRULE for rule 42")
err(A, "raw-without-freq", RR, {"rule": "BYDAY=MO", "dtstart": "2026-03-01T12:00:00Z"},
    rule_id=7, contains="Failed to parse RRULE for rule 7")
err(A, "raw-bymonthday-zero", RR, {"rule": "FREQ=MONTHLY;BYMONTHDAY=0",
                                   "dtstart": "2026-03-01T12:00:00Z"},
    field="rule", contains=["BYMONTHDAY=0", "-31 to -1 or 1 to 31"],
    note="0 is refused in raw rules as in the structured field")
err(A, "raw-bysecond-60", RR, {"rule": "FREQ=MINUTELY;BYSECOND=60",
                               "dtstart": "2026-03-01T12:00:00Z"},
    field="rule", contains=["BYSECOND=60", "0 to 59"])
err(A, "structured-bysecond-60", RR, {"freq": "DAILY", "by_second": [0, 60],
                                      "dtstart": "2026-03-01T12:00:00Z"},
    field="by_second", contains=["60", "0 to 59"])
err(A, "raw-until-before-dtstart", RR, {"rule": "FREQ=WEEKLY;UNTIL=20260201T000000Z",
                                        "dtstart": "2026-04-06T09:00:00Z"},
    field="rule", contains=["UNTIL 2026-02-01T00:00:00Z is before dtstart"])
err(A, "structured-until-before-dtstart", RR, {"freq": "DAILY",
                                               "until": "2026-04-01T00:00:00Z",
                                               "dtstart": "2026-05-01T00:00:00Z"},
    field="until", contains=["is before dtstart"])
err(A, "never-matches-future-dtstart", RR, {"rule": "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31",
                                            "dtstart": "2026-06-01T00:00:00Z"},
    field="rule", contains=["no occurrence at all"],
    note="a rule that can never match is not reported as having ended")
err(A, "parse-error-rule-id-0", RR, {"rule": "FREQ=DAILY;COLOUR=RED",
                                     "dtstart": "2026-03-01T12:00:00Z"}, rule_id=0,
    field="rule", contains=["Failed to parse RRULE: ", "COLOUR"],
    note="a rule id of 0 (not stored yet) is not named")
err(A, "raw-byweekno-with-monthly", RR, {"rule": "FREQ=MONTHLY;BYWEEKNO=20",
                                         "dtstart": "2026-03-01T12:00:00Z"},
    field="rule", contains=["BYWEEKNO cannot be used with FREQ=MONTHLY", "only with YEARLY"])
err(A, "structured-bymonthday-with-weekly", RR, {"freq": "WEEKLY", "by_month_day": [5],
                                                 "dtstart": "2026-03-01T12:00:00Z"},
    field="by_month_day", contains=["BYMONTHDAY cannot be used with FREQ=WEEKLY"])
err(A, "bad-dtstart", RR, {"freq": "DAILY", "dtstart": "yesterday"}, field="dtstart")

A = "rrule-dst"
ok_rrule(A, "berlin-gap-rfc5545", RR, {"freq": "DAILY", "dtstart": "2026-03-20T02:30:00+01:00",
                                       "timezone": "Europe/Berlin"},
         now="2026-03-28T12:00:00Z", n=3,
         note="RFC 5545 3.3.5: 02:30 does not exist on 2026-03-29; it is read with the "
              "offset before the gap (+01:00), i.e. 03:30 CEST")
ok_rrule(A, "berlin-repeated-rfc5545", RR, {"freq": "DAILY",
                                            "dtstart": "2026-10-20T02:30:00+02:00",
                                            "timezone": "Europe/Berlin"},
         now="2026-10-24T12:00:00Z", n=3,
         note="RFC 5545 3.3.5: a repeated local time means its first occurrence")
ok_rrule(A, "new-york-naive-dtstart-in-gap", RR, {"freq": "DAILY",
                                                 "dtstart": "2026-03-08T02:20:00",
                                                 "timezone": "America/New_York"},
         now="2026-03-07T12:00:00Z", n=3,
         note="a naive dtstart in the gap is read with the offset before it (RFC 5545 "
              "3.3.5): 02:20 EST = 07:20Z, i.e. 03:20 EDT; later days keep 02:20 local")
ok_rrule(A, "sydney-naive-dtstart-in-gap-weekly", RR, {"rule": "FREQ=WEEKLY;BYDAY=SU,WE",
                                                       "dtstart": "2026-10-04T02:45:00",
                                                       "timezone": "Australia/Sydney"},
         now="2026-10-01T00:00:00Z", n=4)
ok_rrule(A, "berlin-offset-before-gap-dtstart", RR, {"freq": "MONTHLY",
                                                     "dtstart": "2027-03-28T02:10:00+01:00",
                                                     "timezone": "Europe/Berlin"},
         now="2027-03-01T00:00:00Z", n=3,
         note="written with the offset before the gap, the start is the same as the naive "
              "02:10: later months fire at 02:10 local")

# ============================================================================= core.timer tags
A = "core-timer"
ok_interval(A, "interval-tag", CT, {"type": "interval", "interval": 5, "unit": "seconds"}, 5,
            n=3, payloads=[{"execution_count": 1}])
ok_interval(A, "interval-tag-minutes", CT, {"type": "interval", "interval": 2,
                                            "unit": "minutes"}, 120, n=2)
ok_cron(A, "cron-tag", CT, {"type": "cron", "expression": "0 */10 * * * *"}, n=3,
        payloads=[{"execution_count": 2, "index": 1}])
ok_cron(A, "cron-tag-timezone", CT, {"type": "cron", "expression": "0 9 * * *",
                                     "timezone": "Europe/Berlin"}, now="2026-03-27T12:00:00Z",
        n=3)
for tag in ["date_time", "datetime", "one_shot"]:
    ok_oneshot(A, f"{tag}-tag", CT, {"type": tag, "fire_at": "2026-04-02T10:00:00Z"},
               "2026-04-02T10:00:00Z", payloads=[{"delay_ms": 3}])
ok_rrule(A, "rrule-tag-raw", CT, {"type": "rrule", "rule": "FREQ=DAILY;BYHOUR=9",
                                  "dtstart": "2026-03-01T09:00:00Z"}, n=3,
         payloads=[{"execution_count": 1}])
ok_rrule(A, "rrule-tag-structured", CT, {"type": "rrule", "freq": "WEEKLY", "by_day": ["FR"],
                                         "dtstart": "2026-03-06T12:00:00Z"}, n=2)
ok_interval(A, "tag-matches-intervaltimer", IV, {"type": "interval", "interval": 5,
                                                 "unit": "seconds"}, 5, n=2,
            payloads=[{"execution_count": 1}])
ok_cron(A, "tag-matches-crontimer", CR, {"type": "cron", "expression": "0 0 * * *"}, n=2)
for tag in ["date_time", "datetime", "one_shot"]:
    ok_oneshot(A, f"tag-{tag}-matches-datetimetimer", DT,
               {"type": tag, "fire_at": "2026-04-02T10:00:00Z"}, "2026-04-02T10:00:00Z")
ok_rrule(A, "tag-matches-rruletimer", RR, {"type": "rrule", "freq": "DAILY",
                                           "dtstart": "2026-03-01T12:00:00Z"}, n=2)
for ref, params in [
    (IV, {"type": "cron", "expression": "0 * * * *"}),
    (CR, {"type": "interval", "interval": 5}),
    (DT, {"type": "rrule", "freq": "DAILY", "dtstart": "2026-03-01T12:00:00Z"}),
    (RR, {"type": "one_shot", "fire_at": "2026-04-02T10:00:00Z"}),
    (CR, {"type": "date_time", "fire_at": "2026-04-02T10:00:00Z"}),
    (IV, {"type": "datetime", "fire_at": "2026-04-02T10:00:00Z"}),
]:
    err(A, f"tag-{params['type']}-contradicts-{ref.split('.')[1]}", ref, params, field="type")
err(A, "unknown-tag", CT, {"type": "weekly", "interval": 5}, field="type")
err(A, "non-string-tag", CT, {"type": 5, "interval": 5}, field="type")
err(A, "interval-tag-zero", CT, {"type": "interval", "interval": 0},
    contains="Interval must be greater than 0")
err(A, "cron-tag-bad-expression", CT, {"type": "cron", "expression": "not a cron"},
    field="expression")
err(A, "date-time-tag-past", CT, {"type": "date_time", "fire_at": "2026-01-01T00:00:00Z"},
    field="fire_at", contains="DateTime timer fire_at must be in the future")
err(A, "rrule-tag-missing-dtstart", CT, {"type": "rrule", "freq": "DAILY"}, field="dtstart",
    contains="Missing 'dtstart' field in params")

# ============================================================================= inference
A = "inference"
ok_interval(A, "interval-key", None, {"interval": 10}, 10, n=3, sched_ref=IV,
            payloads=[{"execution_count": 1}])
ok_interval(A, "interval-key-minutes", None, {"interval": 2, "unit": "minutes"}, 120, n=2,
            sched_ref=IV)
ok_cron(A, "expression-key", None, {"expression": "0 */5 * * * *"}, n=3, sched_ref=CR,
        payloads=[{"execution_count": 1}])
ok_cron(A, "expression-key-timezone", None, {"expression": "0 9 * * *",
                                             "timezone": "Europe/Berlin"},
        now="2026-03-27T12:00:00Z", n=3, sched_ref=CR)
ok_oneshot(A, "fire-at-key", None, {"fire_at": "2026-04-02T10:00:00Z"}, "2026-04-02T10:00:00Z",
           sched_ref=DT, payloads=[{"delay_ms": 0}])
ok_rrule(A, "rule-key", None, {"rule": "FREQ=DAILY", "dtstart": "2026-03-01T12:00:00Z"}, n=2,
         sched_ref=RR, payloads=[{"execution_count": 1}])
ok_rrule(A, "freq-key", None, {"freq": "WEEKLY", "by_day": ["MO"],
                               "dtstart": "2026-03-02T12:00:00Z"}, n=2, sched_ref=RR)
ok_interval(A, "interval-before-expression", None, {"interval": 30, "expression": "0 * * * *"},
            30, n=2, sched_ref=IV)
ok_cron(A, "expression-before-fire-at", None, {"expression": "0 0 * * *",
                                               "fire_at": "2026-04-02T10:00:00Z"},
        n=2, sched_ref=CR)
ok_oneshot(A, "fire-at-before-rule", None, {"fire_at": "2026-04-02T10:00:00Z",
                                            "rule": "FREQ=DAILY",
                                            "dtstart": "2026-03-01T12:00:00Z"},
           "2026-04-02T10:00:00Z", sched_ref=DT)
ok_rrule(A, "freq-with-interval-is-rrule", None, {"freq": "WEEKLY", "interval": 2,
                                                  "dtstart": "2026-03-02T12:00:00Z"}, n=2,
         sched_ref=RR,
         note="`interval` is also an RRULE field: beside `freq` or `rule` it does not make "
              "an interval timer (a refinement of the spec's key order)")
err(A, "no-known-key", None, {"foo": 1}, requires=[])
err(A, "empty-object", None, {}, requires=[])
err(A, "interval-zero", None, {"interval": 0}, requires=[IV],
    contains="Interval must be greater than 0")
err(A, "fire-at-past", None, {"fire_at": "2026-01-01T00:00:00Z"}, requires=[DT],
    field="fire_at", contains="DateTime timer fire_at must be in the future")
err(A, "expression-invalid", None, {"expression": "99 * * * *"}, requires=[CR],
    field="expression")

# ============================================================================= errors
A = "errors"
for ref in ["core.webhook", "core.timer2", "core.intervaltimers", "acme.crontimer"]:
    err(A, f"unknown-ref-{ref}", ref, {"interval": 5}, requires=[],
        contains=f"Unknown timer trigger type: {ref}")
err(A, "params-string-intervaltimer", IV, "every 5 seconds")
err(A, "params-array-crontimer", CR, ["0 * * * *"])
err(A, "params-null-datetimetimer", DT, None)
err(A, "params-number-rruletimer", RR, 5)
err(A, "params-string-core-timer", CT, "interval")
for nm, expr in [
    ("never-feb-30", "0 0 30 2 *"), ("never-apr-31", "0 0 31 4 *"),
    ("never-short-months-31", "0 0 31 4,6,9,11 *"), ("never-feb-30-six-field", "0 0 0 30 FEB ?"),
    ("never-leap-day-2027", "0 0 0 29 2 ? 2027"),
    ("minute-60", "60 * * * *"), ("hour-24", "* 24 * * *"), ("dom-32", "0 0 32 * *"),
    ("dom-0", "0 0 0 * *"), ("month-13", "0 0 * 13 *"), ("month-0", "0 0 * 0 *"),
    ("dow-8", "0 0 * * 8"), ("second-60", "60 0 0 * * *"), ("four-fields", "* * * *"),
    ("eight-fields", "0 0 0 * * * 2027 1"), ("empty", ""), ("blank", "   "),
    ("garbage", "every five minutes"), ("unknown-macro", "@fortnightly"),
    ("bad-month-name", "0 0 1 FOO *"), ("bad-dow-name", "0 0 * * FUNDAY"),
    ("nth-6", "0 9 * * MON#6"), ("reversed-range", "0 30-10 * * *"), ("step-zero", "*/0 * * * *"),
]:
    err(A, f"cron-{nm}", CR, {"expression": expr}, field="expression")
err(A, "cron-beyond-1000-years", CR, {"expression": "0 0 12 * * ? 3050-3060"},
    field="expression", contains=["1000 years", "3050-01-01T12:00:00Z"])
err(A, "rrule-beyond-1000-years-dtstart", RR, {"freq": "MONTHLY",
                                               "dtstart": "3200-02-01T00:00:00Z"},
    field="dtstart", contains="1000 years")
err(A, "rrule-beyond-1000-years-interval", RR, {"rule": "FREQ=YEARLY;INTERVAL=2000",
                                                "dtstart": "2020-05-01T00:00:00Z"},
    field="rule", contains="1000 years")
for nm, expr, says in [
    ("month-name-in-dow-field", "0 0 * * JAN", ["day-of-week field 'JAN'", "SUN-SAT"]),
    ("weekday-name-in-month-field", "30 6 1 FRI *", ["month field 'FRI'", "JAN-DEC"]),
    ("month-name-in-hour-field", "0 MAR * * *", ["hour field 'MAR'", "0-23"]),
    ("nth-with-last", "0 9 * * 2#4L", ["'#4L'", "1 to 5"]),
    ("empty-list-item", "0 8,,20 * * *", ["hour field '8,,20'", "empty list item"]),
    ("leading-comma", "0 0 ,15 * *", ["day-of-month field ',15'", "empty list item"]),
    ("trailing-comma", "5, * * * *", ["minute field '5,'", "empty list item"]),
    ("reversed-hour-range", "0 22-6 * * *", ["hour field '22-6'", "reversed range"]),
    ("reversed-month-names", "0 0 1 NOV-FEB *", ["month field 'NOV-FEB'", "reversed range"]),
    ("six-field-hint", "0 0 30 1 * *", ["hour field '30'", "0-23",
                                        "with 6 fields the first is the second"]),
    ("long-weekday-name", "0 0 * * FRIDAY", ["day-of-week field 'FRIDAY'", "three-letter"]),
    ("dow-l-alone", "0 12 * * L", ["'L' alone", "5L"]),
    ("minute-out-of-range-message", "75 * * * *", ["minute field '75'", "out of range 0-59"]),
    ("wrong-field-count-lists-macros", "0 0 * *", ["4 fields", "expected 5 fields", "@daily"]),
]:
    err(A, f"cron-{nm}", CR, {"expression": expr}, field="expression", contains=says)
err(A, "cron-huge-expression-quoted-short", CR, {"expression": "0 0 * * " + "1," * 300 + "x"},
    field="expression", contains=["day-of-week field '1,1,1,", "…"],
    note="values quoted in messages are short excerpts")
err(A, "cron-missing-expression", CR, {"timezone": "UTC"}, field="expression",
    contains="Missing or invalid 'expression' field in params")
err(A, "cron-expression-number", CR, {"expression": 5}, field="expression",
    contains="Missing or invalid 'expression' field in params")
err(A, "cron-bad-timezone", CR, {"expression": "0 9 * * *", "timezone": "Mars/Olympus"},
    field="timezone")
err(A, "cron-timezone-number", CR, {"expression": "0 9 * * *", "timezone": 5},
    field="timezone")


# ============================================================================= write
def main():
    check = "--check" in sys.argv
    CASES_DIR.mkdir(exist_ok=True)
    total, stale = 0, []
    for area, cases in AREAS.items():
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        path = CASES_DIR / f"{area}.json"
        total += len(cases)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
        print(f"{area:18} {len(cases):4}")
    print(f"{'total':18} {total:4}")
    if stale:
        print("stale:", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
