//! What happens around a component call that goes wrong on the host's side of the line:
//! one conversion of a host panic into an error, and one retry-after-fault rule.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::types::CallError;

/// The one message for a host panic while a component call was being served.
pub fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the host panicked during the call: {what}")
}

/// Runs `work`, turning a host panic into a [`CallError::Trap`] for that piece of work
/// alone, so a batch of calls never loses its other results.
pub fn catch_host_panic<T>(work: impl FnOnce() -> T) -> Result<T, CallError> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|panic| CallError::Trap {
        func: "host",
        detail: panic_message(panic),
    })
}

/// Runs a component call; on a fault (a trap, a deadline, a bad answer — not a refusal of
/// the params) reports it to `on_fault` and tries once more. The runtime has dropped the
/// failed instance, so the retry runs on a fresh one; a second fault is the caller's to
/// handle.
pub fn retry_after_fault<T>(
    call: impl Fn() -> Result<T, CallError>,
    on_fault: impl FnOnce(&CallError),
) -> Result<T, CallError> {
    match call() {
        Err(e) if e.as_rule_error().is_none() => {
            on_fault(&e);
            call()
        }
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::RuleError;
    use std::cell::Cell;

    #[test]
    fn a_fault_is_retried_once_and_a_refusal_never() {
        let calls = Cell::new(0);
        let faults = Cell::new(0);
        let trap = || {
            calls.set(calls.get() + 1);
            Err::<(), _>(CallError::Trap {
                func: "next-fire",
                detail: "boom".into(),
            })
        };
        assert!(retry_after_fault(trap, |_| faults.set(faults.get() + 1)).is_err());
        assert_eq!((calls.get(), faults.get()), (2, 1));

        calls.set(0);
        let refuse = || {
            calls.set(calls.get() + 1);
            Err::<(), _>(CallError::Rule(RuleError {
                field: Some("interval".into()),
                message: "must be positive".into(),
            }))
        };
        assert!(retry_after_fault(refuse, |_| panic!("a refusal is not a fault")).is_err());
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_host_panic_becomes_an_error_for_that_call() {
        let e = catch_host_panic::<()>(|| panic!("oops")).unwrap_err();
        assert!(
            e.to_string()
                .contains("the host panicked during the call: oops"),
            "{e}"
        );
    }
}
