//! [`TimerRuntime`]: one engine, one compiled component, a pool of instances, and calls
//! that are checked on the way in and on the way out.
//!
//! Every call takes an idle instance from the pool (or makes one from the pre-linked
//! template, ~16 µs), runs under the CPU deadline and memory cap of [`Limits`], and puts the
//! instance back. A call that traps or runs out of time fails alone: its instance is dropped
//! (wasmtime refuses to re-enter a trapped instance) and the next call gets a fresh one.
//! Nothing about a rule lives in an instance, so no rule is ever lost with one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmtime::{Config, Engine, Store, Trap};

use super::bindings::{from_wit_instant, to_wit_instant, wit, TimerComponent};
use super::fault;
use super::load::{self, CompileCache};
use super::payload::Payload;
use super::policy::Limits;
use super::sandbox::SandboxCtx;
use super::types::{
    CallError, ComponentInfo, Fire, LoadError, Rule, RuleError, Schedule, TimerKind,
};
use crate::telemetry::Metrics;

/// The default timer component, built from `guest-timer/` and embedded in the binary.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("GUEST_TIMER_WASM"));

/// Builds a [`TimerRuntime`].
///
/// Defaults: the embedded component, [`Limits::default`], and no compile cache.
#[derive(Debug, Clone, Default)]
pub struct TimerRuntimeBuilder {
    limits: Limits,
    cache: CompileCache,
    metrics: Metrics,
}

impl TimerRuntimeBuilder {
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn cache(mut self, cache: CompileCache) -> Self {
        self.cache = cache;
        self
    }

    /// Where calls, traps and deadline hits are counted. Default: a set of its own.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Loads the embedded default component.
    pub fn embedded(self) -> Result<TimerRuntime, LoadError> {
        self.bytes(EMBEDDED_COMPONENT)
    }

    /// Loads the component in `path`.
    pub fn file(self, path: impl AsRef<std::path::Path>) -> Result<TimerRuntime, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.bytes(&bytes)
    }

    /// Loads a component from its bytes.
    pub fn bytes(self, bytes: &[u8]) -> Result<TimerRuntime, LoadError> {
        TimerRuntime::load(bytes, self.limits, &self.cache, self.metrics)
    }
}

/// A loaded timer component and the pool of instances that serve calls into it.
/// Cheap to share: calls take `&self` and may come from many threads at once.
///
/// Calls are synchronous and block the calling thread (microseconds for the default
/// component, at most the call deadline). From async code, make them on a blocking thread
/// (`tokio::task::spawn_blocking`), as the clock does: a component that uses WASI (a Rust
/// guest does, to print a panic message) reaches wasmtime-wasi's synchronous bindings, which
/// drive tokio themselves and panic on an async worker thread. Such a host panic is caught
/// and becomes that call's [`CallError::Trap`]; it never unwinds into the caller.
pub struct TimerRuntime {
    engine: Engine,
    template: load::Loaded,
    limits: Limits,
    info: ComponentInfo,
    /// Idle instances. A `Mutex<Vec>` is enough: it is held only to push or pop.
    idle: Mutex<Vec<Instance>>,
    /// Tells the epoch ticker thread to stop when the runtime is dropped.
    ticker_stop: Arc<AtomicBool>,
    metrics: Metrics,
}

/// One instance and the store it lives in.
struct Instance {
    store: Store<SandboxCtx>,
    bindings: TimerComponent,
    calls: u64,
}

impl TimerRuntime {
    pub fn builder() -> TimerRuntimeBuilder {
        TimerRuntimeBuilder::default()
    }

    /// The embedded component with default limits and no compile cache.
    pub fn embedded() -> Result<Self, LoadError> {
        Self::builder().embedded()
    }

    /// The component in `path` with default limits and no compile cache.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        Self::builder().file(path)
    }

    fn load(
        bytes: &[u8],
        limits: Limits,
        cache: &CompileCache,
        metrics: Metrics,
    ) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let template = load::load(&engine, bytes, cache)?;
        let ticker_stop = spawn_epoch_ticker(&engine, limits.epoch_tick);
        let mut runtime = Self {
            engine,
            template,
            limits,
            info: ComponentInfo {
                name: String::new(),
                version: String::new(),
                trigger_refs: Vec::new(),
                wit_version: String::new(),
                content_hash: String::new(),
            },
            idle: Mutex::new(Vec::new()),
            ticker_stop,
            metrics,
        };
        runtime.info = runtime.describe()?;
        Ok(runtime)
    }

    fn describe(&self) -> Result<ComponentInfo, LoadError> {
        let answer = self
            .call("describe", |b, s| b.attune_timer_timer().call_describe(s))
            .map_err(LoadError::Describe)?;
        let max = self.limits.max_string_bytes;
        let too_long = [&answer.name, &answer.version]
            .into_iter()
            .chain(answer.trigger_refs.iter())
            .any(|s| s.len() > max);
        if too_long || answer.trigger_refs.len() > 64 {
            return Err(LoadError::BadDescription(format!(
                "names over {max} bytes or more than 64 trigger refs"
            )));
        }
        if answer.trigger_refs.is_empty() {
            return Err(LoadError::BadDescription(
                "it handles no trigger refs".into(),
            ));
        }
        Ok(ComponentInfo {
            name: answer.name,
            version: answer.version,
            trigger_refs: answer.trigger_refs,
            wit_version: self.template.wit_version.clone(),
            content_hash: self.template.content_hash.clone(),
        })
    }

    /// What the component says about itself, with its WIT version and content hash.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates and normalizes a rule's params at `now`.
    pub fn validate(&self, rule: &Rule, now: DateTime<Utc>) -> Result<Schedule, CallError> {
        const FUNC: &str = "validate";
        let wit_rule = wit::Rule {
            id: rule.id,
            ref_: rule.r#ref.clone(),
            trigger_ref: rule.trigger_ref.clone(),
            trigger_params: rule.trigger_params.to_string(),
        };
        let answer = self
            .call(FUNC, |b, s| {
                b.attune_timer_timer()
                    .call_validate(s, &wit_rule, to_wit_instant(now))
            })?
            .map_err(rule_error)?;
        self.check_string(FUNC, "trigger-ref", &answer.trigger_ref)?;
        self.check_string(FUNC, "spec", &answer.spec)?;
        self.check_string(FUNC, "timezone", &answer.timezone)?;
        if answer.trigger_ref.is_empty() {
            return Err(bad(FUNC, "empty trigger-ref"));
        }
        if !matches!(
            serde_json::from_str::<serde_json::Value>(&answer.spec),
            Ok(serde_json::Value::Object(_))
        ) {
            return Err(bad(FUNC, "spec is not the text of a JSON object"));
        }
        Ok(Schedule {
            trigger_ref: answer.trigger_ref,
            kind: match answer.kind {
                wit::TimerKind::Interval => TimerKind::Interval,
                wit::TimerKind::Cron => TimerKind::Cron,
                wit::TimerKind::OneShot => TimerKind::OneShot,
                wit::TimerKind::Rrule => TimerKind::Rrule,
            },
            spec: answer.spec,
            timezone: answer.timezone,
        })
    }

    /// The schedule's first fire strictly after `after`; `None` when it has ended.
    pub fn next_fire(
        &self,
        schedule: &Schedule,
        started_at: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, CallError> {
        const FUNC: &str = "next-fire";
        let answer = self
            .call(FUNC, |b, s| {
                b.attune_timer_timer().call_next_fire(
                    s,
                    &schedule.spec,
                    to_wit_instant(started_at),
                    to_wit_instant(after),
                )
            })?
            .map_err(rule_error)?;
        let Some(instant) = answer else {
            return Ok(None);
        };
        let next = from_wit_instant(instant).ok_or_else(|| bad(FUNC, "an instant out of range"))?;
        if next <= after {
            return Err(bad(FUNC, &format!("next fire {next} is not after {after}")));
        }
        let horizon = chrono::Duration::from_std(self.limits.max_horizon)
            .ok()
            .and_then(|h| after.checked_add_signed(h));
        if horizon.is_some_and(|h| next > h) {
            return Err(bad(
                FUNC,
                &format!("next fire {next} lies absurdly far after {after}"),
            ));
        }
        Ok(Some(next))
    }

    /// The event payload for one fire, parsed: always a JSON object within the size limit.
    pub fn build_payload(
        &self,
        schedule: &Schedule,
        fire: &Fire,
    ) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
        self.build_payload_text(schedule, fire).map(|p| p.to_map())
    }

    /// The event payload for one fire as the component wrote it, checked to be a JSON
    /// object within the size limit (what the clock sends on, without parsing it again).
    pub fn build_payload_text(
        &self,
        schedule: &Schedule,
        fire: &Fire,
    ) -> Result<Payload, CallError> {
        const FUNC: &str = "build-payload";
        let wit_fire = wit::Fire {
            rule_id: fire.rule_id,
            rule_ref: fire.rule_ref.clone(),
            trigger_ref: fire.trigger_ref.clone(),
            sensor_ref: fire.sensor_ref.clone(),
            scheduled_at: to_wit_instant(fire.scheduled_at),
            fired_at: to_wit_instant(fire.fired_at),
            execution_count: fire.execution_count,
            next_fire_at: fire.next_fire_at.map(to_wit_instant),
        };
        let text = self
            .call(FUNC, |b, s| {
                b.attune_timer_timer()
                    .call_build_payload(s, &schedule.spec, &wit_fire)
            })?
            .map_err(rule_error)?;
        within_limit(FUNC, "payload", text.len(), self.limits.max_payload_bytes)?;
        Payload::from_text(text).map_err(|e| bad(FUNC, &e.to_string()))
    }

    fn check_string(&self, func: &'static str, what: &str, s: &str) -> Result<(), CallError> {
        within_limit(func, what, s.len(), self.limits.max_string_bytes)
    }

    /// Runs one call on a pooled instance under the deadline; sorts out what went wrong.
    fn call<R>(
        &self,
        func: &'static str,
        f: impl FnOnce(&TimerComponent, &mut Store<SandboxCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut instance = match self.idle.lock().expect("pool lock").pop() {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        instance
            .store
            .set_epoch_deadline(self.limits.deadline_ticks());
        // A host function that panics (see `TimerRuntime`'s docs on threads) must not take
        // the caller down: it becomes this call's error, and the instance is dropped.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&instance.bindings, &mut instance.store)
        }))
        .unwrap_or_else(|panic| Err(wasmtime::Error::msg(fault::panic_message(panic))));
        instance.calls += 1;
        let result = result.map_err(|e| self.classify(func, e));
        self.metrics.component_call(
            func,
            result.is_err(),
            matches!(result, Err(CallError::Deadline { .. })),
        );
        match result {
            Ok(value) => {
                if instance.calls < self.limits.calls_per_instance {
                    let mut idle = self.idle.lock().expect("pool lock");
                    if idle.len() < self.limits.pool_size {
                        idle.push(instance);
                    }
                }
                Ok(value)
            }
            // The instance is poisoned after a trap: it is dropped here.
            Err(e) => Err(e),
        }
    }

    fn instantiate(&self) -> Result<Instance, CallError> {
        let mut store = Store::new(&self.engine, SandboxCtx::new(&self.limits));
        store.limiter(|ctx| &mut ctx.limits);
        store.epoch_deadline_trap();
        // Instantiation runs start functions: keep them under the deadline too.
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let bindings = self
            .template
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            calls: 0,
        })
    }

    fn classify(&self, func: &'static str, error: wasmtime::Error) -> CallError {
        let text = format!("{error:#}");
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Deadline {
                func,
                deadline_ms: self.limits.call_deadline.as_millis() as u64,
            },
            _ if text.contains("forcing trap when growing memory") => CallError::MemoryCap {
                func,
                cap_bytes: self.limits.max_memory_bytes,
            },
            _ => CallError::Trap { func, detail: text },
        }
    }
}

impl Drop for TimerRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for TimerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerRuntime")
            .field("info", &self.info)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Advances the engine's epoch every `tick` on a thread of its own (a blocked tokio worker
/// must not be able to stop deadlines from expiring).
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let weak = engine.weak();
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawn the epoch ticker thread");
    stop
}

fn rule_error(e: wit::ParamError) -> CallError {
    CallError::Rule(RuleError {
        field: e.field,
        message: e.message,
    })
}

/// A bad answer when `len` bytes of `what` exceed `limit`.
fn within_limit(func: &'static str, what: &str, len: usize, limit: usize) -> Result<(), CallError> {
    if len > limit {
        return Err(bad(
            func,
            &format!("{what} of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(())
}

fn bad(func: &'static str, detail: &str) -> CallError {
    CallError::BadAnswer {
        func,
        detail: detail.to_string(),
    }
}
