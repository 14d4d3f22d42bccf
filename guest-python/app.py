"""The Python timer component: the WIT world `timer-component` of ../wit/timer.wit.

This module only adapts WIT values to the pure logic in `timerlogic/` and back.

Everything the component needs at call time is loaded here, at import time: componentize-py
runs this import while building the component and snapshots the result, and the host links
no filesystem (nor clock, env or network). So the time-zone database (the `tzdata` package's
TZif files, as bytes) is read now, and the common paths are exercised once so that nothing is
imported lazily later.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from timerlogic import rules, zones
from timerlogic.instants import NS

zones.load_database()


def _warm_up():
    """Runs each call path once (imports, parsers, the zones most rules use)."""
    now = 1_774_857_600 * NS  # 2026-03-30T08:00:00Z
    fire = _Fire(1, "warm", rules.CRON_REF, "warm", now, now, 1, None)
    for ref, params in (
        (rules.INTERVAL_REF, '{"interval": 5, "unit": "minutes"}'),
        (rules.CRON_REF, '{"expression": "0 30 9 * * MON-FRI", "timezone": "Europe/Berlin"}'),
        (rules.CRON_REF, '{"expression": "*/15 * * * *", "timezone": "America/New_York"}'),
        (rules.CRON_REF, '{"hour": 9, "day_of_week": "mon-fri"}'),
        (None, '{"expression": "0 0 L * *"}'),
    ):
        _, _, spec, _ = rules.validate(ref, params, now)
        rules.next_fire(spec, now, now)
        rules.build_payload(spec, fire)
    try:
        rules.validate(rules.CRON_REF, '{"expression": "0 0 30 2 *"}', now)
    except rules.ParamError:
        pass


class _Fire:
    __slots__ = ("rule_id", "rule_ref", "trigger_ref", "sensor_ref", "scheduled_at",
                 "fired_at", "execution_count", "next_fire_at")

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


def _ns(instant):
    return instant.seconds * NS + instant.nanoseconds


def _instant(ns):
    seconds, nanos = divmod(ns, NS)
    return types.Instant(seconds, nanos)


def _err(e):
    return Err(types.ParamError(e.field, e.message))


_KINDS = {
    "interval": types.TimerKind.INTERVAL,
    "cron": types.TimerKind.CRON,
    "one_shot": types.TimerKind.ONE_SHOT,
    "rrule": types.TimerKind.RRULE,
}


class Timer(exports.Timer):
    def describe(self):
        return types.ComponentInfo(rules.NAME, rules.VERSION, list(rules.TRIGGER_REFS))

    def validate(self, rule, now):
        try:
            ref, kind, spec, timezone = rules.validate(rule.trigger_ref, rule.trigger_params, _ns(now))
        except rules.ParamError as e:
            raise _err(e)
        return types.Schedule(ref, _KINDS[kind], spec, timezone)

    def next_fire(self, spec, started_at, after):
        try:
            fire = rules.next_fire(spec, _ns(started_at), _ns(after))
        except rules.ParamError as e:
            raise _err(e)
        return None if fire is None else _instant(fire)

    def build_payload(self, spec, fire):
        f = _Fire(fire.rule_id, fire.rule_ref, fire.trigger_ref, fire.sensor_ref,
                  _ns(fire.scheduled_at), _ns(fire.fired_at), fire.execution_count,
                  None if fire.next_fire_at is None else _ns(fire.next_fire_at))
        try:
            return rules.build_payload(spec, f)
        except rules.ParamError as e:
            raise _err(e)


_warm_up()
