//! The one place a timer component is found and loaded: a file given by the operator
//! (`--component` / `ATTUNE_TIMER_COMPONENT`), or the component built into the binary,
//! with the limits and compile cache the sensor was started with. The daemon, local mode,
//! `check` and the live swap all load through [`Source`].

use std::path::PathBuf;

use anyhow::Context;
use tracing::info;

use super::load::CompileCache;
use super::policy::Limits;
use super::runtime::TimerRuntime;
use crate::support::blocking::spawn_blocking_traced;
use crate::telemetry::Metrics;

/// Where new components come from: the component file (or the embedded component) with
/// the limits and compile cache the sensor was started with.
#[derive(Debug, Clone)]
pub struct Source {
    pub component: Option<PathBuf>,
    pub limits: Limits,
    pub cache: CompileCache,
    /// Where the loaded component's calls are counted.
    pub metrics: Metrics,
}

impl Source {
    /// Loads the component (blocking: compiles it).
    pub fn load(&self) -> anyhow::Result<TimerRuntime> {
        let builder = TimerRuntime::builder()
            .limits(self.limits.clone())
            .cache(self.cache.clone())
            .metrics(self.metrics.clone());
        match &self.component {
            Some(path) => builder
                .file(path)
                .with_context(|| format!("cannot load the timer component {}", path.display())),
            None => builder
                .embedded()
                .context("cannot load the built-in timer component"),
        }
    }

    /// [`load`](Self::load) on a blocking thread (compiling takes a while and must not hold
    /// up an async worker), then logs `Timer component loaded` with what was loaded.
    pub async fn load_in_background(&self) -> anyhow::Result<TimerRuntime> {
        let source = self.clone();
        let runtime = spawn_blocking_traced(move || source.load())
            .await
            .context("loading the timer component panicked")??;
        let info = runtime.info();
        info!(
            component = %info.name,
            component_version = %info.version,
            wit_version = %info.wit_version,
            content_hash = %info.content_hash,
            trigger_refs = ?info.trigger_refs,
            "Timer component loaded"
        );
        Ok(runtime)
    }
}
