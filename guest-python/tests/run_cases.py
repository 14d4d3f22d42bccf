"""Runs the conformance cases (../../tests/cases/*.json) against the timer logic natively,
with no WebAssembly in between: a quick check while editing. The authoritative run is the
Rust test tests/tests/python_component.rs, through the host runtime and the built component.

    python3 tests/run_cases.py [--filter SUBSTRING] [-v]

Same applicability rule and comparisons as the Rust runner (tests/src/lib.rs).
Exits 1 when a case fails.
"""

import json
import os
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from timerlogic import rules, zones  # noqa: E402
from timerlogic.instants import NS, days_from_civil  # noqa: E402

CASES = os.path.join(HERE, "..", "..", "tests", "cases")


def parse_ts(text):
    """RFC 3339 (as the cases write it) -> integer nanoseconds."""
    date, _, rest = text.partition("T")
    y, m, d = (int(x) for x in date.split("-"))
    if rest.endswith("Z"):
        rest, offset = rest[:-1], 0
    else:
        sign = 1 if "+" in rest else -1
        rest, _, off = rest.replace("+", "|").replace("-", "|").partition("|")
        oh, om = off.split(":")
        offset = sign * (int(oh) * 3600 + int(om) * 60)
    hms, _, frac = rest.partition(".")
    hh, mm, ss = (int(x) for x in hms.split(":"))
    ns = int((frac + "000000000")[:9]) if frac else 0
    secs = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss - offset
    return secs * NS + ns


def required(case):
    if "requires" in case:
        return case["requires"]
    if case.get("trigger_ref"):
        return [case["trigger_ref"]]
    if "schedule" in case:
        return [case["schedule"]["trigger_ref"]]
    return []


def compare(want, have):
    if isinstance(want, str) and want.endswith("Z") and len(want) >= 20:
        try:
            w = parse_ts(want)
        except ValueError:
            w = None
        if w is not None:
            if not isinstance(have, str) or not have.endswith("Z"):
                return "expected timestamp %s, got %r" % (want, have)
            if parse_ts(have) != w:
                return "expected %s, got %s" % (want, have)
            if w % NS == 0 and "." in have:
                return "zero fraction in %s" % have
            return None
    if want != have or type(want) is not type(have):
        return "expected %r, got %r" % (want, have)
    return None


def run_case(case):
    diffs = []
    now = parse_ts(case["now"])
    params_text = json.dumps(case["params"])
    try:
        got = rules.validate(case.get("trigger_ref"), params_text, now)
        err = None
    except rules.ParamError as e:
        got, err = None, e
    if "error" in case:
        exp = case["error"]
        if err is None:
            return ["expected error %r, got schedule %r" % (exp, got)]
        if "field" in exp and exp["field"] != err.field:
            diffs.append("error field: expected %r, got %r (%s)" % (exp["field"], err.field, err.message))
        for s in exp.get("contains", []):
            if s not in err.message:
                diffs.append("error message lacks %r: %r" % (s, err.message))
        return diffs
    if err is not None:
        return ["expected schedule, got error field=%r %r" % (err.field, err.message)]
    ref, kind, spec, tz = got
    exp = case["schedule"]
    for k, v in (("trigger_ref", ref), ("kind", kind), ("timezone", tz)):
        if exp[k] != v:
            diffs.append("schedule.%s: expected %r, got %r" % (k, exp[k], v))
    if got != rules.validate(case.get("trigger_ref"), params_text, now):
        diffs.append("validate not deterministic")
    started = parse_ts(case["started_at"]) if "started_at" in case else now
    after = parse_ts(case["after"]) if "after" in case else now
    for i, want in enumerate(case.get("next", [])):
        w = parse_ts(want)
        have = rules.next_fire(spec, started, after)
        if have != w:
            diffs.append("next[%d]: expected %s, got %s" % (i, want, have and rules.format_utc(have)))
        after = w
    if case.get("then_none"):
        have = rules.next_fire(spec, started, after)
        if have is not None:
            diffs.append("then_none: got %s" % rules.format_utc(have))
    payloads = case.get("payload", [])
    if isinstance(payloads, dict):
        payloads = [payloads]
    for i, p in enumerate(payloads):
        f = p["fire"]
        fire = SimpleNamespace(
            rule_id=case.get("rule_id", 1), rule_ref=case.get("rule_ref", "conformance.rule"),
            trigger_ref=f.get("trigger_ref", ref), sensor_ref=f.get("sensor_ref", "core.timer_sensor"),
            scheduled_at=parse_ts(f["scheduled_at"]), fired_at=parse_ts(f["fired_at"]),
            execution_count=f["execution_count"],
            next_fire_at=parse_ts(f["next_fire_at"]) if f.get("next_fire_at") else None)
        have = json.loads(rules.build_payload(spec, fire))
        if "keys" in p and set(p["keys"]) != set(have):
            diffs.append("payload[%d] keys: %s vs %s" % (i, sorted(p["keys"]), sorted(have)))
        for k, v in p["expect"].items():
            d = compare(v, have.get(k))
            if d:
                diffs.append("payload[%d].%s: %s" % (i, k, d))
    return diffs


def main():
    filt = None
    if "--filter" in sys.argv:
        filt = sys.argv[sys.argv.index("--filter") + 1]
    verbose = "-v" in sys.argv
    zones.load_database()
    declared = set(rules.TRIGGER_REFS)
    passed = failed = skipped = 0
    slow = []
    for name in sorted(os.listdir(CASES)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(CASES, name)) as f:
            cases = json.load(f)
        for case in cases:
            if filt and filt not in case["name"]:
                continue
            if not set(required(case)) <= declared:
                skipped += 1
                if verbose:
                    print("n/a  ", case["name"])
                continue
            t0 = time.perf_counter()
            diffs = run_case(case)
            slow.append((time.perf_counter() - t0, case["name"]))
            if diffs:
                failed += 1
                print("FAIL", case["name"])
                for d in diffs:
                    print("     -", d)
            else:
                passed += 1
    slow.sort(reverse=True)
    print("slowest:", ", ".join("%s %.1f ms" % (n, t * 1000) for t, n in slow[:3]))
    print("native: %d passed, %d failed, %d not applicable" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
