//! Rule builders: a [`Rule`] as the rule table and the clock take it.

use attune_timer::component::Rule;
use serde_json::Value;

/// Rule `id` (ref `test.rule_<id>`, as the fake API names it) of `trigger_ref` with `params`.
pub fn rule(id: i64, trigger_ref: &str, params: Value) -> Rule {
    Rule {
        id,
        r#ref: format!("test.rule_{id}"),
        trigger_ref: Some(trigger_ref.to_string()),
        trigger_params: params,
    }
}

/// Rule `id` of `core.intervaltimer` with `params` (the fixture components read
/// `interval` and keys of their own).
pub fn interval_rule(id: i64, params: Value) -> Rule {
    rule(id, "core.intervaltimer", params)
}
