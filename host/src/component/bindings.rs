//! Host bindings generated from `wit/`, and conversions between WIT and host types.

use chrono::{DateTime, Utc};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "timer-component",
});

pub(crate) use attune::timer::types as wit;

/// The package version this host speaks (the `@version` of `wit/timer.wit`).
pub const WIT_PACKAGE_VERSION: &str = "0.1.0";

/// The exported interface's full name, as a component lists it.
pub(crate) const TIMER_INTERFACE: &str = "attune:timer/timer";

pub(crate) fn to_wit_instant(t: DateTime<Utc>) -> wit::Instant {
    wit::Instant {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    }
}

/// `None` for an instant chrono cannot represent (or nanoseconds ≥ 10^9).
pub(crate) fn from_wit_instant(t: wit::Instant) -> Option<DateTime<Utc>> {
    if t.nanoseconds >= 1_000_000_000 {
        return None;
    }
    DateTime::from_timestamp(t.seconds, t.nanoseconds)
}
