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

/// The longest excerpt of a user's value quoted in a message, in characters.
pub const EXCERPT_LEN: usize = 60;

/// A user's value as messages quote it: control characters escaped (`\n`, `\u{1b}`) and cut
/// to about [`EXCERPT_LEN`] characters (`…` marks the cut), so that a huge or binary value
/// cannot flood a log line.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == EXCERPT_LEN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("0 9 * * *"), "0 9 * * *");
        assert_eq!(excerpt("a\nb\u{1b}c\t"), "a\\nb\\u{1b}c\\t");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long), format!("{}…", "x".repeat(EXCERPT_LEN)));
        assert_eq!(
            excerpt("é".repeat(61).as_str()).chars().count(),
            EXCERPT_LEN + 1
        );
    }
}
