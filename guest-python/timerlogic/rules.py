"""The timer logic behind the WIT functions: reading a rule's params into a schedule spec,
computing next fires, and building event payloads (timer-semantics.md §1, §2, §3, §6).

Pure functions over plain values (instants are integer nanoseconds since the epoch), so they
run the same natively (tests/run_cases.py) and inside the component (app.py).
"""

import json

from . import cron as cronmod
from . import zones
from .instants import NS, format_utc

NAME = "attune-timer-python"
VERSION = "0.1.0"
TRIGGER_REFS = ["core.intervaltimer", "core.crontimer"]

INTERVAL_REF, CRON_REF = TRIGGER_REFS
# Timer refs of the platform this component does not implement.
OTHER_TIMER_REFS = {"core.datetimetimer": "one-shot", "core.rruletimer": "rrule", "core.timer": None}

MAX_INTERVAL_SECONDS = 3_155_760_000  # 100 Julian years
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "week": 604_800}
UNIT_NAMES = "seconds, minutes, hours, days, weeks"
LEGACY_PARTS = (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86_400),
                ("weeks", 604_800))
TAGS = {"interval": "interval", "cron": "cron", "date_time": "one_shot",
        "datetime": "one_shot", "one_shot": "one_shot", "rrule": "rrule"}
STACKSTORM_CRON_KEYS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")


class ParamError(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


# How far after "now" (or the previous fire) a fire may lie: 365,000 days (1000 years), a
# little under the host's own limit, as the Rust component has it.
MAX_HORIZON_SECONDS = 365000 * 86400
HORIZON_TEXT = "1000 years (365,000 days)"


def snippet(value, limit=200):
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _is_whole(value):
    return type(value) is int  # bool is a subclass of int: excluded on purpose




def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- validate

def validate(trigger_ref, params_text, now_ns):
    """-> (trigger_ref, kind, spec_text, timezone); raises ParamError."""
    ref = trigger_ref.strip() if trigger_ref is not None else ""
    if ref and ref not in TRIGGER_REFS:
        if ref in OTHER_TIMER_REFS:
            raise ParamError(None, "Trigger type %s is not handled by %s, which handles %s"
                             % (ref, NAME, ", ".join(TRIGGER_REFS)))
        raise ParamError(None, "Unknown timer trigger type: %s" % ref)
    try:
        params = json.loads(params_text)
    except ValueError as e:
        raise ParamError(None, "trigger_params is not valid JSON (%s); expected a JSON object" % e)
    if not isinstance(params, dict):
        raise ParamError(None, "trigger_params must be a JSON object, not %s" % snippet(params))

    tag = _read_tag(params)
    if ref:
        kind = "interval" if ref == INTERVAL_REF else "cron"
        if tag is not None and tag[1] != kind:
            raise ParamError("type", "'type' is '%s', but trigger %s takes %s params; remove "
                             "'type' or use the trigger of that kind"
                             % (cronmod.excerpt(tag[0]), ref, kind))
    else:
        kind = tag[1] if tag is not None else _infer_kind(params)
        if kind not in ("interval", "cron"):
            raise ParamError(None, "These params are for a %s timer, which %s does not handle "
                             "(it handles %s)" % (kind, NAME, ", ".join(TRIGGER_REFS)))
        ref = INTERVAL_REF if kind == "interval" else CRON_REF

    if kind == "interval":
        seconds = _read_interval(params)
        spec = {"kind": "interval", "interval_seconds": seconds}
        return ref, "interval", _dumps(spec), "UTC"
    spec = _read_cron(params, now_ns)
    return ref, "cron", _dumps(spec), spec["timezone"]


def _read_tag(params):
    value = params.get("type")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in TAGS:
        return value, TAGS[value.strip().lower()]
    raise ParamError("type", "Unknown timer 'type' value %s; expected one of %s"
                     % (snippet(value), ", ".join(TAGS)))


def _infer_kind(params):
    def has(key):
        return params.get(key) is not None

    if has("interval") and not has("freq") and not has("rule"):
        return "interval"
    if has("expression"):
        return "cron"
    if has("fire_at"):
        return "one_shot"
    if has("rule") or has("freq"):
        return "rrule"
    raise ParamError(None, "Cannot tell which kind of timer these params are for: expected a "
                     "'type' (%s) or one of the keys 'interval', 'expression', 'fire_at', "
                     "'rule' or 'freq'; params: %s" % (", ".join(TAGS), snippet(params)))


# ----------------------------------------------------------------------------- interval

def _read_interval(params):
    """Interval params in the first form present: {"interval", "unit"}, StackStorm's
    {"delta", "unit"}, or the legacy parts {"seconds", "minutes", "hours", ...} (summed).
    Returns the interval in seconds."""
    for field in ("interval", "delta"):
        value = params.get(field)
        if value is None:
            continue
        if not _is_whole(value) or value < 0:
            raise ParamError(field, "Missing or invalid '%s' field in params: %s; expected a "
                             "whole number greater than 0" % (field, snippet(params)))
        unit_name, unit = _read_unit(params)
        if value == 0:
            raise ParamError(field, "Interval must be greater than 0")
        seconds = value * unit
        if seconds > MAX_INTERVAL_SECONDS:
            raise ParamError(field, "Interval of %d %s is too long; the maximum is 100 years "
                             "(%d seconds)" % (value, unit_name, MAX_INTERVAL_SECONDS))
        return seconds
    if any(params.get(key) is not None for key, _ in LEGACY_PARTS):
        total = 0
        for key, unit in LEGACY_PARTS:
            value = params.get(key)
            if value is None:
                continue
            if not _is_whole(value) or value < 0:
                raise ParamError(key, "Invalid '%s' value %s; expected a whole number of 0 or "
                                 "more" % (key, snippet(value)))
            total += value * unit
        if total == 0:
            raise ParamError("seconds", "Interval must be greater than 0")
        if total > MAX_INTERVAL_SECONDS:
            raise ParamError("seconds", "Interval of %d seconds is too long; the maximum is "
                             "100 years (%d seconds)" % (total, MAX_INTERVAL_SECONDS))
        return total
    raise ParamError("interval", "Missing or invalid 'interval' field in params: %s; expected "
                     "a whole number greater than 0" % snippet(params))


def _read_unit(params):
    value = params.get("unit")
    if value is None:
        return "seconds", 1
    if not isinstance(value, str):
        raise ParamError("unit", "Failed to parse 'unit' field: %s is not a string; expected "
                         "one of %s" % (snippet(value), UNIT_NAMES))
    name = value.strip().lower()
    unit = UNITS.get(name[:-1] if name.endswith("s") else name)
    if unit is None:
        raise ParamError("unit", "Failed to parse 'unit' field: unknown unit '%s'; expected "
                         "one of %s" % (cronmod.excerpt(value), UNIT_NAMES))
    return (name if name.endswith("s") else name + "s"), unit


def interval_next(seconds, started_ns, after_ns):
    step = seconds * NS
    if after_ns < started_ns + step:
        return started_ns + step
    return started_ns + ((after_ns - started_ns) // step + 1) * step


# ----------------------------------------------------------------------------- cron

def _read_timezone(params):
    value = params.get("timezone")
    if value is None or (isinstance(value, str) and not value.strip()):
        return "UTC"
    if not isinstance(value, str):
        raise ParamError("timezone", "Invalid timezone %s: expected an IANA time zone name as "
                         "a string, such as 'UTC' or 'Europe/Berlin'" % snippet(value))
    name = zones.lookup(value)
    if name is None:
        raise ParamError("timezone", "Invalid timezone '%s': not an IANA time zone name; "
                         "expected a name such as 'UTC', 'Europe/Berlin' or "
                         "'America/New_York'" % cronmod.excerpt(value))
    return name


def _read_cron(params, now_ns):
    timezone = _read_timezone(params)
    expression = params.get("expression")
    days_and = False
    if isinstance(expression, str) and expression.strip():
        expression = expression.strip()
        try:
            parsed = cronmod.Cron(expression)
        except cronmod.CronError as e:
            raise ParamError("expression", "Invalid cron expression '%s': %s"
                             % (cronmod.excerpt(expression), e))
    elif expression is None and any(params.get(k) is not None for k in STACKSTORM_CRON_KEYS):
        expression, parsed = _read_stackstorm(params)
        days_and = True
    else:
        raise ParamError("expression", "Missing or invalid 'expression' field in params: %s; "
                         "expected a cron expression string such as '0 */5 * * * *' (or "
                         "StackStorm fields second, minute, hour, day, month, day_of_week, "
                         "year)" % snippet(params))
    first = parsed.next_after(zones.get_zone(timezone), now_ns // NS)
    if first is None:
        raise ParamError("expression", "Cron expression '%s' never fires after %s (in %s)"
                         % (cronmod.excerpt(expression), format_utc(now_ns), timezone))
    if first - now_ns // NS > MAX_HORIZON_SECONDS:
        raise ParamError("expression", "Cron expression '%s' first fires at %s, more than %s "
                         "after now (%s); the limit is %s"
                         % (cronmod.excerpt(expression), format_utc(first * NS), HORIZON_TEXT,
                            format_utc(now_ns), HORIZON_TEXT))
    spec = {"kind": "cron", "expression": expression, "timezone": timezone}
    if days_and:
        spec["days"] = "and"
    return spec


def _read_stackstorm(params):
    """StackStorm CronTimer fields (APScheduler semantics) -> (expression, Cron)."""
    if params.get("week") is not None:
        raise ParamError("week", "The StackStorm/APScheduler 'week' field (ISO week number) is "
                         "not supported; use a cron 'expression' or the day, month and "
                         "day_of_week fields")
    values = {}
    for key in STACKSTORM_CRON_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            values[key] = value
        elif _is_whole(value):
            values[key] = str(value)
        else:
            raise ParamError(key, "Invalid '%s' value %s; expected a string or a whole number"
                             % (key, snippet(value)))
    try:
        expression = cronmod.from_stackstorm(values)
        return expression, cronmod.Cron(expression, days_and=True)
    except cronmod.CronError as e:
        field = cronmod.STACKSTORM_BLAME.get(e.index)
        raise ParamError(field, "Invalid StackStorm cron field%s: %s"
                         % (" '%s'" % field if field else "s", e))


# ----------------------------------------------------------------------------- specs

_SPECS = {}  # spec text -> ("interval", seconds) | ("cron", Cron, Zone, spec dict)


def _load_spec(spec_text):
    hit = _SPECS.get(spec_text)
    if hit is not None:
        return hit
    try:
        spec = json.loads(spec_text)
        kind = spec["kind"]
        if kind == "interval":
            seconds = spec["interval_seconds"]
            if not _is_whole(seconds) or not 0 < seconds <= MAX_INTERVAL_SECONDS:
                raise ValueError("bad interval_seconds")
            hit = ("interval", seconds, spec)
        elif kind == "cron":
            name = zones.lookup(spec["timezone"])
            if name is None:
                raise ValueError("unknown timezone")
            parsed = cronmod.Cron(spec["expression"], days_and=spec.get("days") == "and")
            hit = ("cron", parsed, zones.get_zone(name), spec)
        else:
            raise ValueError("unknown kind %r" % kind)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ParamError(None, "Not a schedule spec of %s (%s): %s" % (NAME, e, spec_text[:200]))
    if len(_SPECS) >= 256:
        _SPECS.clear()
    _SPECS[spec_text] = hit
    return hit


def next_fire(spec_text, started_ns, after_ns):
    """The first fire strictly after `after_ns`, or None."""
    hit = _load_spec(spec_text)
    if hit[0] == "interval":
        return interval_next(hit[1], started_ns, after_ns)
    fire = hit[1].next_after(hit[2], after_ns // NS)
    if fire is None or fire * NS - after_ns > MAX_HORIZON_SECONDS * NS:
        # Further than the host accepts: the schedule has, in effect, ended.
        return None
    return fire * NS


def build_payload(spec_text, fire):
    """`fire`: an object with the WIT `fire` fields, instants as integer nanoseconds."""
    hit = _load_spec(spec_text)
    if hit[0] == "interval":
        payload = {
            "type": "interval",
            "interval_seconds": hit[1],
            "fired_at": format_utc(fire.fired_at),
            "execution_count": fire.execution_count,
            "sensor_ref": fire.sensor_ref,
        }
    else:
        spec = hit[3]
        payload = {
            "type": "cron",
            "fired_at": format_utc(fire.fired_at),
            "scheduled_at": format_utc(fire.scheduled_at),
            "expression": spec["expression"],
            "timezone": spec["timezone"],
            "next_fire_at": "unknown" if fire.next_fire_at is None else format_utc(fire.next_fire_at),
            "execution_count": fire.execution_count,
            "sensor_ref": fire.sensor_ref,
        }
    return _dumps(payload)
