//! The conformance suite for Attune timer components.
//!
//! The cases are data (`tests/cases/*.json`, format in `tests/cases/README.md`); this crate
//! loads them ([`load_cases`]) and runs them through a [`TimerRuntime`] ([`run_cases`]),
//! producing a [`Report`] with a precise diff for every failing case. The same runner backs
//! the workspace's integration test and the `conformance` binary, which holds any component
//! file to the suite.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use attune_timer::component::{CallError, Fire, Rule, Schedule, TimerRuntime};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The default sensor ref put in `fire` records when a case does not name one.
pub const DEFAULT_SENSOR_REF: &str = "core.timer_sensor";
/// The default rule ref.
pub const DEFAULT_RULE_REF: &str = "conformance.rule";

/// The directory of the suite's own cases.
pub fn default_cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// One conformance case (see `tests/cases/README.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub note: Option<String>,
    pub trigger_ref: Option<String>,
    #[serde(default)]
    pub rule_id: Option<i64>,
    #[serde(default)]
    pub rule_ref: Option<String>,
    pub params: Value,
    pub now: DateTime<Utc>,
    #[serde(default)]
    pub requires: Option<Vec<String>>,
    #[serde(default)]
    pub error: Option<ErrorExpect>,
    #[serde(default)]
    pub schedule: Option<ScheduleExpect>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub after: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next: Vec<DateTime<Utc>>,
    #[serde(default)]
    pub then_none: Option<bool>,
    /// One `build-payload` check, or a list of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub payload: Vec<PayloadExpect>,
    /// The file the case came from (filled in by [`load_cases`]).
    #[serde(skip)]
    pub file: String,
}

/// An expected refusal of the params.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorExpect {
    /// `None`: not checked; `Some(None)`: must have no field; `Some(Some(f))`: must be `f`.
    #[serde(default, deserialize_with = "present")]
    pub field: Option<Option<String>>,
    #[serde(default)]
    pub contains: Vec<String>,
}

/// The expected validated schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleExpect {
    pub trigger_ref: String,
    pub kind: String,
    pub timezone: String,
}

/// One `build-payload` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadExpect {
    pub fire: FireSpec,
    pub expect: Map<String, Value>,
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// The `fire` record handed to `build-payload`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireSpec {
    #[serde(default)]
    pub trigger_ref: Option<String>,
    #[serde(default)]
    pub sensor_ref: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub execution_count: u64,
    pub next_fire_at: Option<DateTime<Utc>>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PayloadExpect>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Box<PayloadExpect>),
        Many(Vec<PayloadExpect>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![*p],
        OneOrMany::Many(v) => v,
    })
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Case {
    /// The trigger refs a component must declare for this case to apply.
    pub fn required_refs(&self) -> Vec<String> {
        if let Some(r) = &self.requires {
            return r.clone();
        }
        if let Some(r) = &self.trigger_ref {
            return vec![r.clone()];
        }
        match &self.schedule {
            Some(s) => vec![s.trigger_ref.clone()],
            None => vec![],
        }
    }

    fn check_shape(&self) -> anyhow::Result<()> {
        match (&self.error, &self.schedule) {
            (Some(_), Some(_)) => bail!("has both `error` and `schedule`"),
            (None, None) => bail!("has neither `error` nor `schedule`"),
            (Some(_), None) if !self.next.is_empty() || !self.payload.is_empty() => {
                bail!("an error case cannot have `next` or `payload`")
            }
            _ => {}
        }
        if let Some(s) = &self.schedule {
            if !["interval", "cron", "one_shot", "rrule"].contains(&s.kind.as_str()) {
                bail!("unknown schedule kind `{}`", s.kind);
            }
        }
        Ok(())
    }
}

/// Loads every `*.json` file of `dir` (sorted by name), each a JSON array of cases.
/// Fails on a malformed file, a malformed case or a duplicate name.
pub fn load_cases(dir: impl AsRef<Path>) -> anyhow::Result<Vec<Case>> {
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read cases directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no *.json case files in {}", dir.display());
    }
    let mut cases = Vec::new();
    let mut names = HashSet::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file_cases: Vec<Case> = serde_json::from_str(&text)
            .with_context(|| format!("malformed case file {}", path.display()))?;
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for mut case in file_cases {
            case.check_shape()
                .with_context(|| format!("case `{}` in {file}", case.name))?;
            if !names.insert(case.name.clone()) {
                bail!("duplicate case name `{}` in {file}", case.name);
            }
            case.file = file.clone();
            cases.push(case);
        }
    }
    Ok(cases)
}

/// What happened to one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Every difference found, one line each.
    Fail(Vec<String>),
    /// The component does not declare a ref the case needs.
    NotApplicable(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub note: Option<String>,
    pub outcome: Outcome,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// `name version` of the component, and the refs it declares.
    pub component: String,
    pub trigger_refs: Vec<String>,
    pub results: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }
    pub fn not_applicable(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotApplicable(_)))
    }
    /// Cases that ran (passed or failed).
    pub fn ran(&self) -> usize {
        self.passed() + self.failed()
    }
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }
    pub fn failures(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.results.iter().filter_map(|r| match &r.outcome {
            Outcome::Fail(d) => Some((r.name.as_str(), d.as_slice())),
            _ => None,
        })
    }
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
    /// The closing summary line (`N passed, N failed, N skipped`; skipped = not applicable).
    pub fn summary_line(&self) -> String {
        format!(
            "conformance: {} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.not_applicable()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component: {}", self.component)?;
        writeln!(f, "declares:  {}", self.trigger_refs.join(", "))?;
        writeln!(f, "cases:     {}", self.results.len())?;
        let failed: Vec<_> = self
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .collect();
        if !failed.is_empty() {
            writeln!(f, "\nFAILED ({}):", failed.len())?;
            for r in failed {
                writeln!(f, "  {}", r.name)?;
                if let Some(n) = &r.note {
                    writeln!(f, "      note: {n}")?;
                }
                if let Outcome::Fail(diffs) = &r.outcome {
                    for d in diffs {
                        writeln!(f, "      - {d}")?;
                    }
                }
            }
        }
        let na: Vec<_> = self
            .results
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::NotApplicable(why) => Some((r, why)),
                _ => None,
            })
            .collect();
        if !na.is_empty() {
            writeln!(f, "\nNOT APPLICABLE ({}):", na.len())?;
            for (r, why) in na {
                writeln!(f, "  {}  ({why})", r.name)?;
            }
        }
        writeln!(f)?;
        write!(f, "{}", self.summary_line())
    }
}

/// Runs every case through `rt`.
pub fn run_cases(rt: &TimerRuntime, cases: &[Case]) -> Report {
    let info = rt.info();
    let declared: BTreeSet<&str> = info.trigger_refs.iter().map(String::as_str).collect();
    let results = cases
        .iter()
        .map(|case| {
            let missing: Vec<String> = case
                .required_refs()
                .into_iter()
                .filter(|r| !declared.contains(r.as_str()))
                .collect();
            let outcome = if !missing.is_empty() {
                Outcome::NotApplicable(format!("component does not declare {}", missing.join(", ")))
            } else {
                let diffs = run_case(rt, case);
                if diffs.is_empty() {
                    Outcome::Pass
                } else {
                    Outcome::Fail(diffs)
                }
            };
            CaseResult {
                name: case.name.clone(),
                note: case.note.clone(),
                outcome,
            }
        })
        .collect();
    Report {
        component: format!("{} {}", info.name, info.version),
        trigger_refs: info.trigger_refs.clone(),
        results,
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn opt_ts(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(ts).unwrap_or_else(|| "none".into())
}

fn describe_error(e: &CallError) -> String {
    match e {
        CallError::Rule(r) => format!(
            "params error (field: {}, message: {:?})",
            r.field
                .as_deref()
                .map(|f| format!("{f:?}"))
                .unwrap_or_else(|| "none".into()),
            r.message
        ),
        other => format!("FAULT (not a params error): {other}"),
    }
}

fn describe_schedule(s: &Schedule) -> String {
    format!(
        "schedule {{trigger_ref: {:?}, kind: {}, timezone: {:?}, spec: {}}}",
        s.trigger_ref,
        kind_name(s),
        s.timezone,
        s.spec
    )
}

fn kind_name(s: &Schedule) -> String {
    match serde_json::to_value(s.kind) {
        Ok(Value::String(k)) => k,
        other => format!("{other:?}"),
    }
}

/// Runs one applicable case; returns every difference found (empty = pass).
pub fn run_case(rt: &TimerRuntime, case: &Case) -> Vec<String> {
    let mut diffs = Vec::new();
    let rule = Rule {
        id: case.rule_id.unwrap_or(1),
        r#ref: case
            .rule_ref
            .clone()
            .unwrap_or_else(|| DEFAULT_RULE_REF.into()),
        trigger_ref: case.trigger_ref.clone(),
        trigger_params: case.params.clone(),
    };
    let validated = rt.validate(&rule, case.now);

    if let Some(expect) = &case.error {
        match &validated {
            Ok(s) => diffs.push(format!(
                "validate: expected a params error{}{}, got {}",
                match &expect.field {
                    Some(Some(f)) => format!(" on field {f:?}"),
                    Some(None) => " with no field".into(),
                    None => String::new(),
                },
                if expect.contains.is_empty() {
                    String::new()
                } else {
                    format!(" containing {:?}", expect.contains)
                },
                describe_schedule(s)
            )),
            Err(CallError::Rule(e)) => {
                if let Some(want) = &expect.field {
                    if *want != e.field {
                        diffs.push(format!(
                            "error field: expected {}, got {} (message: {:?})",
                            want.as_deref()
                                .map(|f| format!("{f:?}"))
                                .unwrap_or("none".into()),
                            e.field
                                .as_deref()
                                .map(|f| format!("{f:?}"))
                                .unwrap_or("none".into()),
                            e.message
                        ));
                    }
                }
                for s in &expect.contains {
                    if !e.message.contains(s.as_str()) {
                        diffs.push(format!(
                            "error message: expected it to contain {s:?}, got {:?}",
                            e.message
                        ));
                    }
                }
            }
            Err(other) => diffs.push(format!("validate: {}", describe_error(other))),
        }
        // determinism of refusals
        if diffs.is_empty() {
            let again = rt.validate(&rule, case.now);
            if again != validated {
                diffs.push(format!(
                    "validate is not deterministic: {} then {}",
                    match &validated {
                        Ok(s) => describe_schedule(s),
                        Err(e) => describe_error(e),
                    },
                    match &again {
                        Ok(s) => describe_schedule(s),
                        Err(e) => describe_error(e),
                    },
                ));
            }
        }
        return diffs;
    }

    let expect = case.schedule.as_ref().expect("checked by load_cases");
    let schedule = match validated {
        Ok(s) => s,
        Err(e) => {
            diffs.push(format!(
                "validate: expected schedule {{trigger_ref: {:?}, kind: {}, timezone: {:?}}}, got {}",
                expect.trigger_ref,
                expect.kind,
                expect.timezone,
                describe_error(&e)
            ));
            return diffs;
        }
    };
    if schedule.trigger_ref != expect.trigger_ref {
        diffs.push(format!(
            "schedule.trigger_ref: expected {:?}, got {:?}",
            expect.trigger_ref, schedule.trigger_ref
        ));
    }
    let kind = kind_name(&schedule);
    if kind != expect.kind {
        diffs.push(format!(
            "schedule.kind: expected {}, got {kind}",
            expect.kind
        ));
    }
    if schedule.timezone != expect.timezone {
        diffs.push(format!(
            "schedule.timezone: expected {:?}, got {:?}",
            expect.timezone, schedule.timezone
        ));
    }
    match serde_json::from_str::<Value>(&schedule.spec) {
        Ok(Value::Object(_)) => {}
        _ => diffs.push(format!(
            "schedule.spec is not a JSON object: {}",
            schedule.spec
        )),
    }
    match rt.validate(&rule, case.now) {
        Ok(again) if again == schedule => {}
        Ok(again) => diffs.push(format!(
            "validate is not deterministic: {} then {}",
            describe_schedule(&schedule),
            describe_schedule(&again)
        )),
        Err(e) => diffs.push(format!(
            "validate is not deterministic: accepted, then {}",
            describe_error(&e)
        )),
    }

    // next-fire chain: each step starts from the *expected* previous fire, so one wrong
    // answer is reported once and does not shift every later comparison.
    let started_at = case.started_at.unwrap_or(case.now);
    let mut after = case.after.unwrap_or(case.now);
    for (i, want) in case.next.iter().enumerate() {
        match rt.next_fire(&schedule, started_at, after) {
            Ok(Some(got)) if got == *want => {}
            Ok(got) => diffs.push(format!(
                "next[{i}] (after {}): expected {}, got {}",
                ts(&after),
                ts(want),
                opt_ts(&got)
            )),
            Err(e) => diffs.push(format!(
                "next[{i}] (after {}): expected {}, got {}",
                ts(&after),
                ts(want),
                describe_error(&e)
            )),
        }
        after = *want;
    }
    if case.then_none == Some(true) {
        match rt.next_fire(&schedule, started_at, after) {
            Ok(None) => {}
            Ok(Some(got)) => diffs.push(format!(
                "next after {}: expected none (schedule ended), got {}",
                ts(&after),
                ts(&got)
            )),
            Err(e) => diffs.push(format!(
                "next after {}: expected none (schedule ended), got {}",
                ts(&after),
                describe_error(&e)
            )),
        }
    }

    for (i, p) in case.payload.iter().enumerate() {
        let fire = Fire {
            rule_id: rule.id,
            rule_ref: rule.r#ref.clone(),
            trigger_ref: p
                .fire
                .trigger_ref
                .clone()
                .unwrap_or_else(|| schedule.trigger_ref.clone()),
            sensor_ref: p
                .fire
                .sensor_ref
                .clone()
                .unwrap_or_else(|| DEFAULT_SENSOR_REF.into()),
            scheduled_at: p.fire.scheduled_at,
            fired_at: p.fire.fired_at,
            execution_count: p.fire.execution_count,
            next_fire_at: p.fire.next_fire_at,
        };
        match rt.build_payload(&schedule, &fire) {
            Ok(got) => diffs.extend(
                compare_payload(&p.expect, p.keys.as_deref(), &got)
                    .into_iter()
                    .map(|d| format!("payload[{i}]{d}")),
            ),
            Err(e) => diffs.push(format!(
                "payload[{i}]: build_payload failed: {}",
                describe_error(&e)
            )),
        }
    }
    diffs
}

/// Compares a payload with the expected fields (and key set); returns `.<field>: ...` diffs.
pub fn compare_payload(
    expect: &Map<String, Value>,
    keys: Option<&[String]>,
    got: &Map<String, Value>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    if let Some(keys) = keys {
        let want: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        let have: BTreeSet<&str> = got.keys().map(String::as_str).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        if !missing.is_empty() || !extra.is_empty() {
            diffs.push(format!(
                " keys: missing {missing:?}, unexpected {extra:?} (payload: {})",
                Value::Object(got.clone())
            ));
        }
    }
    for (k, want) in expect {
        match got.get(k) {
            None => diffs.push(format!(".{k}: expected {want}, missing")),
            Some(have) => {
                if let Some(d) = compare_value(want, have) {
                    diffs.push(format!(".{k}: {d}"));
                }
            }
        }
    }
    diffs
}

/// `None` when equal under the suite's rules (timestamps compared as instants + format).
fn compare_value(want: &Value, have: &Value) -> Option<String> {
    if let Value::String(w) = want {
        if let Some(wt) = parse_utc_z(w) {
            let Value::String(h) = have else {
                return Some(format!("expected timestamp {want}, got {have}"));
            };
            let Ok(ht) = DateTime::parse_from_rfc3339(h) else {
                return Some(format!(
                    "expected timestamp {want}, got {have} (not RFC 3339)"
                ));
            };
            if ht.with_timezone(&Utc) != wt {
                return Some(format!("expected {want}, got {have}"));
            }
            if !h.ends_with('Z') {
                return Some(format!(
                    "expected {want}, got {have}: same instant but not in UTC with a `Z`"
                ));
            }
            if wt.timestamp_subsec_nanos() == 0 && h.contains('.') {
                return Some(format!(
                    "expected {want}, got {have}: same instant but with a zero fraction"
                ));
            }
            return None;
        }
    }
    if want == have {
        None
    } else {
        Some(format!("expected {want}, got {have}"))
    }
}

fn parse_utc_z(s: &str) -> Option<DateTime<Utc>> {
    if !s.ends_with('Z') || s.len() < 20 {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn own_cases_load() {
        let cases = load_cases(default_cases_dir()).unwrap();
        assert!(cases.len() >= 150, "only {} cases", cases.len());
    }

    #[test]
    fn timestamps_compare_as_instants_with_format_rules() {
        let w = json!("2026-03-30T07:30:00Z");
        assert_eq!(compare_value(&w, &json!("2026-03-30T07:30:00Z")), None);
        assert!(compare_value(&w, &json!("2026-03-30T07:30:00+00:00")).is_some());
        assert!(compare_value(&w, &json!("2026-03-30T07:30:00.000Z")).is_some());
        assert!(compare_value(&w, &json!("2026-03-30T07:30:01Z")).is_some());
        let f = json!("2026-03-30T07:30:00.250Z");
        assert_eq!(compare_value(&f, &json!("2026-03-30T07:30:00.25Z")), None);
        assert_eq!(
            compare_value(&f, &json!("2026-03-30T07:30:00.250000000Z")),
            None
        );
        assert_eq!(compare_value(&json!("unknown"), &json!("unknown")), None);
        assert!(compare_value(&json!(1500), &json!(1500.0)).is_some());
    }

    #[test]
    fn payload_keys_are_exact() {
        let expect = Map::new();
        let got = json!({"type": "cron", "extra": 1})
            .as_object()
            .unwrap()
            .clone();
        let keys = vec!["type".to_string(), "fired_at".to_string()];
        let d = compare_payload(&expect, Some(&keys), &got);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("fired_at") && d[0].contains("extra"));
    }
}
