#!/usr/bin/env python3
"""Cross-checks the generated cases against third-party libraries where their semantics agree
with ours: croniter (cron cases in UTC, OR of dom/dow) and APScheduler (StackStorm cron field
cases in UTC). DST cases are not cross-checked (croniter's DST handling differs); they are
hand-verified (see tests/cases/README.md). Needs: pip install croniter 'apscheduler<4'."""
import datetime as dt
import json
import sys
from pathlib import Path

from croniter import croniter
from apscheduler.triggers.cron import CronTrigger

from oracle import MACROS, parse_instant, fmt, UTC

CASES = Path(__file__).resolve().parent.parent / "cases"
bad = checked = skipped = 0


def croniter_chain(expr, now, n):
    e = MACROS.get(expr.strip().lower(), expr)
    f = e.split()
    kw = {}
    if len(f) == 7:
        if f[6] not in ("*", "?"):
            return None  # croniter's year support differs; skip
        f = f[:6]
    if len(f) == 6:
        kw["second_at_beginning"] = True
    f = ["*" if x == "?" else x for x in f]
    it = croniter(" ".join(f), parse_instant(now), **kw)
    return [fmt(it.get_next(dt.datetime)) for _ in range(n)]


for path in sorted(CASES.glob("*.json")):
    for c in json.load(open(path)):
        if "next" not in c or c["schedule"]["kind"] != "cron" or c["schedule"]["timezone"] != "UTC":
            continue
        p = c["params"]
        try:
            if "expression" in p:
                got = croniter_chain(p["expression"], c.get("after", c["now"]), len(c["next"]))
                lib = "croniter"
            else:
                trig = CronTrigger(**{k: v for k, v in p.items() if k != "timezone"},
                                   timezone=p.get("timezone", "UTC"))
                prev, got = None, []
                t = parse_instant(c["now"]) + dt.timedelta(microseconds=1)
                for _ in range(len(c["next"])):
                    nxt = trig.get_next_fire_time(prev, t)
                    if nxt is None:
                        break
                    got.append(fmt(nxt))
                    prev, t = nxt, nxt + dt.timedelta(microseconds=1)
                lib = "apscheduler"
        except Exception as e:  # library does not support this syntax
            print(f"SKIP {c['name']}: {type(e).__name__}: {e}")
            skipped += 1
            continue
        if got is None:
            skipped += 1
            continue
        checked += 1
        if got != c["next"]:
            bad += 1
            print(f"DIFF {c['name']} ({lib}):\n  ours {c['next']}\n  lib  {got}")
print(f"checked {checked}, differing {bad}, skipped {skipped}")
sys.exit(1 if bad else 0)
