//! Path-valued fields (features.md §1.4): `InputPath` / `OutputPath` are Paths (nullable),
//! `ResultPath` a Reference Path that may be null but may not use `$$` or a variable, the
//! `…Path` variants of static fields are Reference Paths, Fail's `ErrorPath` / `CausePath`
//! a path or an intrinsic call.
//!
//! Path syntax comes from `crate::expr::PathExpr` / `crate::jsonpath::JsonPath`; intrinsic
//! syntax from `crate::intrinsic::IntrinsicCall`.

use serde_json::Value;

use crate::expr::{PathExpr, PathRoot};
use crate::intrinsic::IntrinsicCall;

use super::schema::field_allowed;
use super::{Loc, StateCx, Validator};

/// `JsonPath::is_reference_path` is wired in once `crate::jsonpath` implements it (it is a
/// `todo!()` in the scaffold). Until then [`looks_like_reference_path`] alone decides.
const USE_JSONPATH_REFERENCE_CHECK: bool = true;

/// Whether `text` is a Path: `$…` on the input, `$$…` on the Context Object, `$name…` on a
/// variable.
pub(crate) fn is_path(text: &str) -> bool {
    PathExpr::parse(text).is_ok()
}

/// Whether `text` is a Reference Path: a path that selects a single node with names and
/// indices only (no `@ , : ?`, wildcards, filters, functions or deep scans).
pub(crate) fn is_reference_path(text: &str) -> bool {
    let Ok(path) = PathExpr::parse(text) else { return false };
    if !looks_like_reference_path(text) {
        return false;
    }
    if USE_JSONPATH_REFERENCE_CHECK {
        path.path.is_reference_path()
    } else {
        true
    }
}

/// Whether `text` is an intrinsic function call that parses (`States.Format(...)`). AWS
/// does not accept leading whitespace.
pub(crate) fn is_intrinsic_call(text: &str) -> bool {
    text.starts_with("States.") && IntrinsicCall::looks_like_call(text) && IntrinsicCall::parse(text).is_ok()
}

/// A value allowed behind a `.$` key: a path or an intrinsic call.
pub(crate) fn is_path_or_intrinsic(text: &str) -> bool {
    if text.starts_with('$') {
        is_path(text)
    } else {
        is_intrinsic_call(text)
    }
}

/// A syntactic pre-check of Reference Paths: outside quoted names there is no operator
/// that selects several nodes or computes something.
pub(crate) fn looks_like_reference_path(text: &str) -> bool {
    if !text.starts_with('$') {
        return false;
    }
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = '\0';
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            previous = c;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '@' | ',' | ':' | '?' | '*' | '(' | ')' => return false,
            '.' if previous == '.' => return false,
            _ => {}
        }
        previous = c;
    }
    quote.is_none()
}

/// Which kind of path a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// A Path; `null` allowed (InputPath, OutputPath).
    NullablePath,
    /// A Reference Path, never null (`…Path` fields).
    Reference,
    /// ResultPath: a Reference Path or null, not on the Context Object or a variable.
    Result,
    /// A path or an intrinsic call (Fail's ErrorPath / CausePath).
    PathOrIntrinsic,
}

impl Validator {
    /// Checks one path-valued field. `owner` names where it is, for the message.
    pub(crate) fn check_path_field(&mut self, value: &Value, loc: &Loc, field: &str, kind: PathKind, owner: &str) {
        if value.is_null() && matches!(kind, PathKind::NullablePath | PathKind::Result) {
            return;
        }
        let Some(text) = self.expect_string(value, loc, &format!("'{field}' of {owner}")) else { return };
        let ok = match kind {
            PathKind::NullablePath => is_path(text),
            PathKind::Reference => is_reference_path(text),
            PathKind::PathOrIntrinsic => is_path_or_intrinsic(text),
            PathKind::Result => {
                if text.starts_with("$$") {
                    self.schema(
                        format!("The field '{field}' of {owner} cannot write to the Context Object ('{text}')"),
                        loc,
                    );
                    return;
                }
                if let Ok(PathExpr { root: PathRoot::Variable(name), .. }) = PathExpr::parse(text) {
                    self.schema(
                        format!(
                            "The field '{field}' of {owner} cannot reference the variable '${name}' ('{text}'); \
                             use Assign to set variables"
                        ),
                        loc,
                    );
                    return;
                }
                is_reference_path(text)
            }
        };
        if !ok {
            let expected = match kind {
                PathKind::NullablePath => "a valid JSONPath",
                PathKind::Reference | PathKind::Result => "a valid ReferencePath (a JSONPath selecting a single node)",
                PathKind::PathOrIntrinsic => "a valid JSONPath or a valid intrinsic function call",
            };
            self.schema(format!("The value for the field '{field}' of {owner} must be {expected}, got '{text}'"), loc);
        }
    }
}

const STATE_PATH_FIELDS: &[(&str, PathKind)] = &[
    ("InputPath", PathKind::NullablePath),
    ("OutputPath", PathKind::NullablePath),
    ("ResultPath", PathKind::Result),
    ("TimeoutSecondsPath", PathKind::Reference),
    ("HeartbeatSecondsPath", PathKind::Reference),
    ("SecondsPath", PathKind::Reference),
    ("TimestampPath", PathKind::Reference),
    ("ItemsPath", PathKind::Reference),
    ("MaxConcurrencyPath", PathKind::Reference),
    ("ToleratedFailurePercentagePath", PathKind::Reference),
    ("ToleratedFailureCountPath", PathKind::Reference),
    ("ErrorPath", PathKind::PathOrIntrinsic),
    ("CausePath", PathKind::PathOrIntrinsic),
];

/// The path-valued fields of a state (those its type and language allow; the others are
/// reported by `schema`).
pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    let owner = format!("state '{}'", cx.name);
    for (field, kind) in STATE_PATH_FIELDS {
        if let Some(value) = cx.get(field) {
            if field_allowed(cx, field) {
                v.check_path_field(value, &cx.at(field), field, *kind, &owner);
            }
        }
    }
}
