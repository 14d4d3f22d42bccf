//! Engine policy: every limit the host puts on a timer component, in one place.
//!
//! The defaults suit the default component, whose calls take microseconds and whose linear
//! memory stays near 1 MiB; they leave a wide margin while keeping a runaway component from
//! hurting the daemon. Operators change them through the settings named on each field.

use std::time::Duration;

/// Limits applied to every component instance and every call into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Cap on one instance's linear memory. A guest that grows past it traps.
    /// Default: 64 MiB. Setting: `ATTUNE_TIMER_MAX_MEMORY_MB`.
    pub max_memory_bytes: usize,
    /// CPU deadline of one call, enforced by epoch interruption. Default: 100 ms.
    /// Setting: `ATTUNE_TIMER_CALL_DEADLINE_MS`.
    pub call_deadline: Duration,
    /// How often the epoch advances; deadlines are rounded up to whole ticks.
    /// Default: 10 ms.
    pub epoch_tick: Duration,
    /// Largest event payload (JSON text) the host accepts. Default: 64 KiB.
    /// Setting: `ATTUNE_TIMER_MAX_PAYLOAD_BYTES`.
    pub max_payload_bytes: usize,
    /// Largest schedule spec, name or other string the host accepts. Default: 16 KiB.
    pub max_string_bytes: usize,
    /// How far ahead of "after" a next fire may lie before the host calls it absurd.
    /// Default: 1,000 years.
    pub max_horizon: Duration,
    /// Idle instances kept for reuse. Default: 4 (about one per worker thread).
    pub pool_size: usize,
    /// Calls an instance serves before it is replaced, so one store cannot grow forever.
    /// Default: 100,000.
    pub calls_per_instance: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(100),
            epoch_tick: Duration::from_millis(10),
            max_payload_bytes: 64 << 10,
            max_string_bytes: 16 << 10,
            max_horizon: Duration::from_secs(1000 * 366 * 24 * 3600),
            pool_size: 4,
            calls_per_instance: 100_000,
        }
    }
}

impl Limits {
    /// Epoch ticks that make up the call deadline (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        (self.call_deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let limits = Limits {
            call_deadline: Duration::from_millis(25),
            ..Limits::default()
        };
        assert_eq!(limits.deadline_ticks(), 3);
        let tiny = Limits {
            call_deadline: Duration::from_micros(1),
            ..Limits::default()
        };
        assert_eq!(tiny.deadline_ticks(), 1);
    }
}
