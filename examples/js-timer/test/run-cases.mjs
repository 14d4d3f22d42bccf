// Runs the conformance cases (tests/cases/*.json) against src/timer.js in Node, without
// WebAssembly: a quick check while editing. The conformance runner, which loads the built
// component through the host runtime, remains the judge.
//
//   node test/run-cases.mjs [CASES_DIR] [FILTER]

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { timer } from "../src/timer.js";
import { parse, stringify } from "../src/json.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const dir = process.argv[2] ?? join(here, "../../../tests/cases");
const filter = process.argv[3] ?? "";
const declared = new Set(timer.describe().triggerRefs);

const NS = 1_000_000_000n;
function instant(text) {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(text);
  const seconds = BigInt(Date.parse(m[1] + "Z") / 1000);
  return { seconds, nanoseconds: Number((m[2] ?? "").padEnd(9, "0")) };
}
// The case files are read with json.js, so that params keep their exact numbers: whole
// numbers as BigInts, and a float such as 5.0 written back as a float.
const paramsText = (v) =>
  typeof v === "number" && Number.isInteger(v) ? v.toFixed(1)
  : Array.isArray(v) ? "[" + v.map(paramsText).join(",") + "]"
  : v !== null && typeof v === "object" ? "{" + Object.keys(v).map((k) => JSON.stringify(k) + ":" + paramsText(v[k])).join(",") + "}"
  : stringify(v);
const same = (a, b) => a.seconds === b.seconds && a.nanoseconds === b.nanoseconds;
const show = (t) => (t === undefined ? "none" : `${t.seconds}s+${t.nanoseconds}ns`);
function call(f) {
  try {
    return { ok: f() };
  } catch (e) {
    return { err: e };
  }
}

let passed = 0, failed = 0, skipped = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  for (const c of parse(readFileSync(join(dir, file), "utf8"))) {
    if (!c.name.includes(filter)) continue;
    const req = c.requires ?? (c.trigger_ref ? [c.trigger_ref] : c.schedule ? [c.schedule.trigger_ref] : []);
    if (!req.every((r) => declared.has(r))) {
      skipped++;
      continue;
    }
    const diffs = [];
    const rule = { id: BigInt(c.rule_id ?? 1), ref: c.rule_ref ?? "conformance.rule", triggerRef: c.trigger_ref ?? undefined, triggerParams: paramsText(c.params) };
    const now = instant(c.now);
    const v = call(() => timer.validate(rule, now));
    if (c.error) {
      if (v.ok) diffs.push(`expected an error, got ${v.ok.spec}`);
      else if (!(v.err && typeof v.err.message === "string")) diffs.push(`threw ${v.err}`);
      else {
        if ("field" in c.error && (c.error.field ?? undefined) !== v.err.field) diffs.push(`field ${v.err.field} (${v.err.message})`);
        for (const s of c.error.contains) if (!v.err.message.includes(s)) diffs.push(`message ${JSON.stringify(v.err.message)} lacks ${JSON.stringify(s)}`);
      }
    } else if (v.err) {
      diffs.push(`validate refused: ${JSON.stringify(v.err)}`);
    } else {
      const s = v.ok;
      for (const k of ["trigger_ref", "kind", "timezone"]) {
        const got = s[k === "trigger_ref" ? "triggerRef" : k];
        if (got !== c.schedule[k]) diffs.push(`schedule.${k}: ${got}`);
      }
      const started = c.started_at ? instant(c.started_at) : now;
      let after = c.after ? instant(c.after) : now;
      for (const want of c.next ?? []) {
        const r = call(() => timer.nextFire(s.spec, started, after));
        if (r.err || r.ok === undefined || !same(r.ok, instant(want))) diffs.push(`next after ${show(after)}: ${r.err ? JSON.stringify(r.err) : show(r.ok)}, want ${want}`);
        after = instant(want);
      }
      for (const p of [].concat(c.payload ?? [])) {
        const f = p.fire;
        const fire = { ruleId: rule.id, ruleRef: rule.ref, triggerRef: f.trigger_ref ?? s.triggerRef, sensorRef: f.sensor_ref ?? "core.timer_sensor", scheduledAt: instant(f.scheduled_at), firedAt: instant(f.fired_at), executionCount: BigInt(f.execution_count), nextFireAt: f.next_fire_at ? instant(f.next_fire_at) : undefined };
        const r = call(() => JSON.parse(timer.buildPayload(s.spec, fire)));
        if (r.err) diffs.push(`payload: ${JSON.stringify(r.err)}`);
        else {
          for (const [k, want] of Object.entries(p.expect)) if (stringify(r.ok[k]) !== stringify(want)) diffs.push(`payload.${k}: ${stringify(r.ok[k])}, want ${stringify(want)}`);
          if (p.keys && JSON.stringify(Object.keys(r.ok).sort()) !== JSON.stringify([...p.keys].sort())) diffs.push(`payload keys ${Object.keys(r.ok)}`);
        }
      }
    }
    if (diffs.length) {
      failed++;
      console.log(`FAIL ${c.name}\n  ${diffs.join("\n  ")}`);
    } else passed++;
  }
}
console.log(`run-cases: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
