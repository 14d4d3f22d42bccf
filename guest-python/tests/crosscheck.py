"""Cross-checks the timer logic against independent references, natively:

1. zones: for every zone of the `tzdata` package, the UTC offset at random instants from 1900
   to 2200 and the end of each constant-offset stretch, against CPython's `zoneinfo` reading
   the same TZif bytes;
2. cron: random expressions (lists, ranges, steps, L/W/#, dom/dow OR, fixed and repeating
   times) in zones with unusual DST (30-minute DST, negative rule times, midnight gaps),
   chains of next fires around DST transitions, against the suite's oracle
   (../../tests/oracle/oracle.py), which scans local wall time day by day.

    .venv/bin/pip install -r requirements-dev.txt
    .venv/bin/python tests/crosscheck.py [SEED] [EXPRESSIONS]

Exits 1 on any difference.
"""

import datetime as dt
import io
import os
import random
import sys
from zoneinfo import ZoneInfo

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "oracle"))

from timerlogic import cron, zones  # noqa: E402
import oracle  # noqa: E402

UTC = dt.timezone.utc


def reference_zone(name):
    return ZoneInfo.from_file(io.BytesIO(zones._DATA[name]), key=name)


def ref_offset(zi, u):
    return int(dt.datetime.fromtimestamp(u, UTC).astimezone(zi).utcoffset().total_seconds())


def check_zones(rnd, per_zone=200):
    bad = n = 0
    for name in sorted(zones._DATA):
        zone, zi = zones.get_zone(name), reference_zone(name)
        for _ in range(per_zone):
            u = rnd.randrange(-2_208_988_800, 7_258_118_400)  # 1900 .. 2200
            offset, end = zone.segment(u)
            n += 1
            if offset != ref_offset(zi, u) or (end is not None and ref_offset(zi, end - 1) != offset):
                bad += 1
                if bad <= 10:
                    print("ZONE DIFF", name, u, offset, end, ref_offset(zi, u))
    print("zones: %d zones, %d instants, %d differences" % (len(zones._DATA), n, bad))
    return bad


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago",
         "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham",
         "Europe/London", "America/Nuuk", "Asia/Tehran", "Africa/Casablanca"]
AROUND = [dt.datetime(2026, 3, 29, 0, 30), dt.datetime(2026, 10, 25, 0, 10),
          dt.datetime(2026, 3, 8, 6, 0), dt.datetime(2026, 11, 1, 5, 0),
          dt.datetime(2026, 10, 3, 15, 0), dt.datetime(2026, 4, 4, 15, 0),
          dt.datetime(2026, 9, 6, 3, 0), dt.datetime(2027, 4, 1), dt.datetime(2026, 1, 1)]


def random_expression(rnd):
    pick = rnd.choice
    fields = [
        pick(["0", "0", "30", "*/20", "0,30", "59"]),
        pick(["0", "30", "*/15", "*", "5/20", "10-40/10", "59", "0,45"]),
        pick(["2", "1", "3", "*", "*/6", "0", "1-3", "2,14", "23"]),
        pick(["*", "*", "1", "15", "L", "LW", "15W", "1W", "31", "29", "13", "?", "1-7", "*/10"]),
        pick(["*", "*", "*", "2", "3,10", "JAN-MAR", "NOV", "*/3"]),
        pick(["*", "*", "*", "MON", "5L", "MON#1", "1#5", "0", "7", "1-5", "SAT,SUN", "FRI"]),
    ]
    return " ".join(fields)


def check_cron(rnd, count):
    oracle.zone = lambda name: oracle.UTC if name == "UTC" else reference_zone(name)
    n = bad = 0
    for _ in range(count):
        expression, name = random_expression(rnd), rnd.choice(ZONES)
        mine, theirs = cron.Cron(expression), oracle.parse_cron(expression)
        zone = zones.get_zone(name)
        start = rnd.choice(AROUND).replace(tzinfo=UTC)
        after = int(start.timestamp()) + rnd.randrange(-3 * 86400, 3 * 86400)
        for _ in range(4):
            got = mine.next_after(zone, after)
            want = oracle.cron_next(theirs, name, dt.datetime.fromtimestamp(after, UTC))
            want = None if want is None else int(want.timestamp())
            n += 1
            if got != want:
                bad += 1
                print("CRON DIFF %r in %s after %s: got %s, oracle %s" % (
                    expression, name, dt.datetime.fromtimestamp(after, UTC), got, want))
                break
            if want is None:
                break
            after = want
    print("cron: %d expressions, %d next-fire comparisons, %d differences" % (count, n, bad))
    return bad


# Rare dates with times that are not fixed: the search crosses many DST stretches (and may
# skip ahead), and some of them touch a fall-back or spring-forward hour.
FAR_EXPRESSIONS = ["0,30 2 25 10 *", "*/30 2 29 2 *", "0 */20 1-3 29 2 *", "15,45 * 29 2 *",
                   "0 0,30 2 * 10 SUN#5", "*/10 2 L 10 *", "0 30 1,2 1 11 *", "0 */15 2 8 3 *",
                   "0 0,30 0 6 9 *", "0 0 0,1 6 9 * 2030-2040", "0 */30 2 29 2 ? 2032-2036"]


def check_far(rnd):
    n = bad = 0
    for expression in FAR_EXPRESSIONS:
        mine, theirs = cron.Cron(expression), oracle.parse_cron(expression)
        for name in ZONES:
            zone = zones.get_zone(name)
            for _ in range(4):
                after = 1_767_225_600 + rnd.randrange(0, 6 * 365 * 86400)  # 2026 .. 2032
                for _ in range(5):
                    got = mine.next_after(zone, after)
                    want = oracle.cron_next(theirs, name, dt.datetime.fromtimestamp(after, UTC))
                    want = None if want is None else int(want.timestamp())
                    n += 1
                    if got != want:
                        bad += 1
                        print("FAR DIFF %r in %s after %d: got %s, oracle %s" % (
                            expression, name, after, got, want))
                        break
                    if want is None:
                        break
                    after = want
    print("cron, rare dates: %d next-fire comparisons, %d differences" % (n, bad))
    return bad


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    zones.load_database()
    rnd = random.Random(seed)
    bad = check_zones(rnd) + check_cron(rnd, count) + check_far(rnd)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
