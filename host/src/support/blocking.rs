//! Work on blocking threads. Component calls must never run on an async worker thread: the
//! WASI a component is linked with is wasmtime-wasi's synchronous one, which calls
//! `Handle::block_on` — a panic on an async worker — whenever a component uses it.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::error;

/// Work items per blocking thread before a batch is spread over more threads.
const PER_THREAD: usize = 64;

/// Runs `f` on every item on blocking threads, spread over up to the machine's parallelism
/// when there are many; results come back in order.
///
/// Component calls must never run on an async worker thread: the WASI a component is linked
/// with is wasmtime-wasi's synchronous one, which calls `Handle::block_on` — a panic on an
/// async worker — whenever a component uses it (e.g. to print its own panic message).
pub async fn map_blocking<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    if items.is_empty() {
        return Vec::new();
    }
    // Read once: it reads cgroup files, and the clock asks several times a second.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cpus = *CPUS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let threads = cpus.min(items.len().div_ceil(PER_THREAD));
    let chunk = items.len().div_ceil(threads);
    let f = Arc::new(f);
    let mut items = items;
    let mut handles = Vec::with_capacity(threads);
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        let mine = std::mem::replace(&mut items, rest);
        let f = f.clone();
        handles.push(spawn_blocking_traced(move || {
            mine.into_iter().map(|item| f(item)).collect::<Vec<_>>()
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(part) => all.extend(part),
            // `f` guards against panics; only a cancelled runtime gets here.
            Err(e) => error!("A blocking worker failed: {e}"),
        }
    }
    all
}

/// `spawn_blocking` that keeps the caller's tracing subscriber.
pub fn spawn_blocking_traced<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, f))
}

/// A background task owned by whoever holds the guard: dropping the guard aborts the task
/// (as mini-redis's `DbDropGuard` stops its purge task), so a start that fails halfway, or
/// an owner that is dropped without a graceful stop, leaves nothing running.
#[derive(Debug)]
pub struct TaskGuard<T = ()>(Option<JoinHandle<T>>);

impl<T> TaskGuard<T> {
    pub fn new(handle: JoinHandle<T>) -> Self {
        Self(Some(handle))
    }

    /// Waits for the task to end by itself (after the owner asked it to stop).
    pub async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        self.0.take().expect("joined once").await
    }

    /// Stops the task now.
    pub fn abort(&self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.abort();
    }
}
