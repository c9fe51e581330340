//! Payload templates (JSONPath states): `Parameters`, `ResultSelector`, `ItemSelector`,
//! `BatchInput`, ItemReader / ResultWriter `Parameters`, `Credentials`, `Assign` values.
//! A key ending in `.$` (at any depth) needs a path (`$…`, `$$…`, `$var…`) or an intrinsic
//! call as its value, and may not collide with the same key without the suffix
//! (features.md §1.4). AWS reports these at the template field itself:
//! "The value for the field 'x.$' must be a valid JSONPath or a valid intrinsic function
//! call at /States/A/Parameters".

use serde_json::Value;

use super::paths::is_path_or_intrinsic;
use super::schema::field_allowed;
use super::{Loc, StateCx, Validator};

impl Validator {
    /// Checks a payload template held by the field at `loc`; `owner` says whose it is.
    pub(crate) fn check_template(&mut self, value: &Value, loc: &Loc, owner: &str) {
        match value {
            Value::Object(obj) => {
                for (key, inner) in obj {
                    if let Some(plain) = key.strip_suffix(".$") {
                        let ok = inner.as_str().is_some_and(is_path_or_intrinsic);
                        if !ok {
                            self.schema(
                                format!(
                                    "The value for the field '{key}' must be a valid JSONPath or a valid intrinsic \
                                     function call ({owner}; got {inner})"
                                ),
                                loc,
                            );
                        }
                        if obj.contains_key(plain) {
                            self.schema(
                                format!(
                                    "The field '{plain}' is given twice in {owner}: as '{plain}' and as '{key}' \
                                     (keys must be unique once the '.$' suffix is removed)"
                                ),
                                loc,
                            );
                        }
                    } else {
                        self.check_template(inner, loc, owner);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.check_template(item, loc, owner);
                }
            }
            _ => {}
        }
    }
}

/// The templates directly in a state (Map's reader, batcher and writer are checked by `map`,
/// `Assign` by `variables`).
pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    if cx.jsonata {
        return;
    }
    for field in ["Parameters", "ResultSelector", "ItemSelector", "Credentials"] {
        if let Some(value) = cx.get(field) {
            if field_allowed(cx, field) {
                v.check_template(value, &cx.at(field), &format!("'{field}' of state '{}'", cx.name));
            }
        }
    }
}
