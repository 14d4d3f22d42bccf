//! The one error type of the crate.
//!
//! Every failure — bad rule params, a stored spec that no longer parses, an instant out of
//! range — is reported as a [`ParamError`], because that is the only error the WIT contract
//! (`param-error`) can carry back to the host. Nothing in this crate panics on bad input.

use std::fmt;

/// Why a rule's params (or a stored schedule) were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The params field at fault (e.g. `interval`, `expression`), when one is.
    pub field: Option<String>,
    /// What was wrong and what is accepted, fit to show an operator.
    pub message: String,
}

impl ParamError {
    /// An error about one params field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ParamError {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// An error about the rule (or spec) as a whole.
    pub fn general(message: impl Into<String>) -> Self {
        ParamError {
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} (field '{field}')", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParamError {}
