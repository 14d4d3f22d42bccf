// An Attune timer component in JavaScript: `core.intervaltimer`, with the semantics of
// docs/timer-semantics.md (the same answers as the default Rust component).
//
// It implements the world `timer-component` of wit/timer.wit. componentize-js maps the
// exported interface `timer` to the object `timer` below, with camelCase names: `nextFire`,
// `buildPayload`, `triggerRefs`, `startedAt`, ... s64/u64 values are BigInts, u32 values
// Numbers, an option's `none` is `undefined`, and a `result`'s `err` is a thrown value:
// see `refuse` below.
//
// Instants are handled as BigInt nanoseconds since the epoch, so all arithmetic is exact.

import { parse, stringify } from "./json.js";

const NAME = "attune-timer-js";
const VERSION = "0.1.0";
const INTERVAL_REF = "core.intervaltimer";
const TRIGGER_REFS = [INTERVAL_REF];
// Timer refs of the platform that this component does not implement.
const OTHER_TIMER_REFS = ["core.crontimer", "core.datetimetimer", "core.rruletimer", "core.timer"];

const NS = 1_000_000_000n;
// The longest interval: 100 Julian years (36,525 days), as the default component.
const MAX_INTERVAL_SECONDS = 3_155_760_000n;
const UNITS = { second: 1n, minute: 60n, hour: 3600n, day: 86_400n, week: 604_800n };
const UNIT_NAMES = "seconds, minutes, hours, days, weeks";
const LEGACY_PARTS = [
  ["seconds", 1n],
  ["minutes", 60n],
  ["hours", 3600n],
  ["days", 86_400n],
  ["weeks", 604_800n],
];
// `type` tags of the older `core.timer` form, and the kind each names.
const TAGS = {
  interval: "interval",
  cron: "cron",
  date_time: "one_shot",
  datetime: "one_shot",
  one_shot: "one_shot",
  rrule: "rrule",
};

/** Refuses: the `err` of a `result<_, param-error>` is whatever the function throws. */
function refuse(field, message) {
  throw { field: field ?? undefined, message };
}

function snippet(value, limit = 200) {
  const text = stringify(value);
  return text.length <= limit ? text : text.slice(0, limit) + "…";
}

const isWhole = (v) => typeof v === "bigint"; // json.js: integers only, never 5.0 or true
const present = (obj, key) => obj[key] !== undefined && obj[key] !== null;

// ---------------------------------------------------------------------------- instants

const toNs = (t) => t.seconds * NS + BigInt(t.nanoseconds);

function fromNs(ns) {
  let seconds = ns / NS;
  let nanos = ns % NS;
  if (nanos < 0n) {
    nanos += NS;
    seconds -= 1n;
  }
  return { seconds, nanoseconds: Number(nanos) };
}

/** The date (y, m, d) `z` days after 1970-01-01 (H. Hinnant's algorithm; any year). */
function civilFromDays(z) {
  z += 719_468n;
  const era = (z >= 0n ? z : z - 146_096n) / 146_097n;
  const doe = z - era * 146_097n;
  const yoe = (doe - doe / 1460n + doe / 36_524n - doe / 146_096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const d = doy - (153n * mp + 2n) / 5n + 1n;
  const m = mp < 10n ? mp + 3n : mp - 9n;
  return [yoe + era * 400n + (m <= 2n ? 1n : 0n), m, d];
}

const pad = (n, width) => String(n).padStart(width, "0");

/** RFC 3339 in UTC with a `Z`; a fraction only when non-zero (3, 6 or 9 digits). */
function formatUtc(ns) {
  let secs = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) {
    frac += NS;
    secs -= 1n;
  }
  let days = secs / 86_400n;
  let sod = secs % 86_400n;
  if (sod < 0n) {
    sod += 86_400n;
    days -= 1n;
  }
  const [y, m, d] = civilFromDays(days);
  let text =
    `${y < 0n ? "-" + pad(-y, 4) : pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}` +
    `T${pad(sod / 3600n, 2)}:${pad((sod / 60n) % 60n, 2)}:${pad(sod % 60n, 2)}`;
  if (frac) {
    if (frac % 1_000_000n === 0n) text += "." + pad(frac / 1_000_000n, 3);
    else if (frac % 1000n === 0n) text += "." + pad(frac / 1000n, 6);
    else text += "." + pad(frac, 9);
  }
  return text + "Z";
}

// ---------------------------------------------------------------------------- validate

function validate(triggerRef, paramsText) {
  let ref = triggerRef === undefined ? "" : triggerRef.trim();
  if (ref && !TRIGGER_REFS.includes(ref)) {
    if (OTHER_TIMER_REFS.includes(ref)) {
      refuse(null, `Trigger type ${ref} is not handled by ${NAME}, which handles ${TRIGGER_REFS.join(", ")}`);
    }
    refuse(null, `Unknown timer trigger type: ${ref}`);
  }
  let params;
  try {
    params = parse(paramsText);
  } catch (e) {
    refuse(null, `trigger_params is not valid JSON (${e.message}); expected a JSON object`);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    refuse(null, `trigger_params must be a JSON object, not ${snippet(params)}`);
  }

  const tag = readTag(params);
  const kind = ref ? "interval" : tag ? tag.kind : inferKind(params);
  if (ref && tag && tag.kind !== kind) {
    refuse("type", `'type' is '${tag.text}', but trigger ${ref} takes ${kind} params; remove 'type' or use the trigger of that kind`);
  }
  if (kind !== "interval") {
    refuse(null, `These params are for a ${kind} timer, which ${NAME} does not handle (it handles ${TRIGGER_REFS.join(", ")})`);
  }
  const seconds = readInterval(params);
  return {
    triggerRef: INTERVAL_REF,
    kind: "interval",
    spec: stringify({ kind: "interval", interval_seconds: seconds }),
    timezone: "UTC",
  };
}

function readTag(params) {
  const value = params.type;
  if (value === undefined || value === null) return null;
  const key = typeof value === "string" ? value.trim().toLowerCase() : "";
  if (Object.hasOwn(TAGS, key)) return { text: value, kind: TAGS[key] };
  refuse("type", `Unknown timer 'type' value ${snippet(value)}; expected one of ${Object.keys(TAGS).join(", ")}`);
}

function inferKind(params) {
  // The platform's order; `interval` beside `rule` or `freq` is an RRULE field.
  if (present(params, "interval") && !present(params, "freq") && !present(params, "rule")) return "interval";
  if (present(params, "expression")) return "cron";
  if (present(params, "fire_at")) return "one_shot";
  if (present(params, "rule") || present(params, "freq")) return "rrule";
  refuse(null, `Cannot tell which kind of timer these params are for: expected a 'type' (${Object.keys(TAGS).join(", ")}) or one of the keys 'interval', 'expression', 'fire_at', 'rule' or 'freq'; params: ${snippet(params)}`);
}

/**
 * Interval params in the first form present: {"interval", "unit"}, StackStorm's
 * {"delta", "unit"}, or the legacy parts {"seconds", "minutes", ...} (summed).
 * Returns the interval in seconds (a BigInt).
 */
function readInterval(params) {
  for (const field of ["interval", "delta"]) {
    const value = params[field];
    if (value === undefined || value === null) continue;
    if (!isWhole(value) || value < 0n) {
      refuse(field, `Missing or invalid '${field}' field in params: ${snippet(params)}; expected a whole number greater than 0`);
    }
    const [unitName, unit] = readUnit(params);
    if (value === 0n) refuse(field, "Interval must be greater than 0");
    const seconds = value * unit;
    if (seconds > MAX_INTERVAL_SECONDS) {
      refuse(field, `Interval of ${value} ${unitName} is too long; the maximum is 100 years (${MAX_INTERVAL_SECONDS} seconds)`);
    }
    return seconds;
  }
  if (LEGACY_PARTS.some(([key]) => present(params, key))) {
    let total = 0n;
    for (const [key, unit] of LEGACY_PARTS) {
      const value = params[key];
      if (value === undefined || value === null) continue;
      if (!isWhole(value) || value < 0n) {
        refuse(key, `Invalid '${key}' value ${snippet(value)}; expected a whole number of 0 or more`);
      }
      total += value * unit;
    }
    if (total === 0n) refuse("seconds", "Interval must be greater than 0");
    if (total > MAX_INTERVAL_SECONDS) {
      refuse("seconds", `Interval of ${total} seconds is too long; the maximum is 100 years (${MAX_INTERVAL_SECONDS} seconds)`);
    }
    return total;
  }
  refuse("interval", `Missing or invalid 'interval' field in params: ${snippet(params)}; expected a whole number greater than 0`);
}

function readUnit(params) {
  const value = params.unit;
  if (value === undefined || value === null) return ["seconds", 1n];
  if (typeof value !== "string") {
    refuse("unit", `Failed to parse 'unit' field: ${snippet(value)} is not a string; expected one of ${UNIT_NAMES}`);
  }
  const name = value.trim().toLowerCase();
  const singular = name.endsWith("s") ? name.slice(0, -1) : name;
  if (!Object.hasOwn(UNITS, singular)) {
    refuse("unit", `Failed to parse 'unit' field: unknown unit '${value}'; expected one of ${UNIT_NAMES}`);
  }
  return [singular + "s", UNITS[singular]];
}

// ---------------------------------------------------------------------------- specs

/** The interval (seconds, BigInt) of a spec this component wrote. */
function intervalOf(specText) {
  let spec;
  try {
    spec = parse(specText);
  } catch {
    spec = null;
  }
  const seconds = spec?.kind === "interval" ? spec.interval_seconds : undefined;
  if (!isWhole(seconds) || seconds <= 0n || seconds > MAX_INTERVAL_SECONDS) {
    refuse(null, `Not a schedule spec of ${NAME}: ${specText.slice(0, 200)}`);
  }
  return seconds;
}

// ---------------------------------------------------------------------------- exports

export const timer = {
  describe() {
    return { name: NAME, version: VERSION, triggerRefs: TRIGGER_REFS };
  },

  validate(rule, now) {
    return validate(rule.triggerRef, rule.triggerParams);
  },

  nextFire(spec, startedAt, after) {
    // Fire k (k >= 1) is due at started_at + k × interval: the first one strictly after
    // `after`, and never before the first.
    const step = intervalOf(spec) * NS;
    const start = toNs(startedAt);
    const elapsed = toNs(after) - start;
    const k = elapsed < step ? 1n : elapsed / step + 1n;
    return fromNs(start + k * step);
  },

  buildPayload(spec, fire) {
    return stringify({
      type: "interval",
      interval_seconds: intervalOf(spec),
      fired_at: formatUtc(toNs(fire.firedAt)),
      execution_count: fire.executionCount,
      sensor_ref: fire.sensorRef,
    });
  },
};
