//! Intrinsic functions (`States.Format(...)` etc., features.md §1.11).
//!
//! A call is parsed once, when the definition is loaded, and evaluated each time its field
//! is. Definition time rejects what AWS's CreateStateMachine rejects (bad syntax, unknown
//! function, invalid escape, nesting deeper than 10); everything about argument values,
//! and the argument count, is checked at run time, as AWS does. Run-time failures are
//! `States.Runtime` with a cause naming the call and the problem (see [`arguments`]).
//!
//! One concept per file:
//!
//! * [`ast`] — functions, arguments, and the canonical text of a call;
//! * [`parser`] — the call syntax;
//! * [`functions`] — evaluating each function;
//! * [`arguments`] — argument checks, number coercion, failures;
//! * [`template`] — the `States.Format` template;
//! * [`java_text`] — Java's text of a value (`States.Format`, `States.ArrayContains`,
//!   `States.Hash`);
//! * [`java_hash`] — Java `HashSet` order (`States.ArrayUnique`);
//! * [`java_random`] — `java.util.Random` (`States.MathRandom`);
//! * [`lenient_base64`] — AWS's lenient Base64 decoding.

mod arguments;
mod ast;
mod functions;
pub(crate) use functions::{parse_json_text, plain_integer};
mod java_hash;
mod java_random;
mod java_text;
mod lenient_base64;
mod parser;
mod template;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::expr::PathExpr;
use crate::failure::Failure;

/// A definition-time syntax error in an intrinsic call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IntrinsicSyntaxError {
    pub message: String,
}

/// What an intrinsic needs from its surroundings while it is evaluated.
pub trait IntrinsicEnv {
    /// Resolves a path argument (`$.x`, `$$.x`, `$var`). The failure it returns (a missing
    /// path, say) is returned by `evaluate` unchanged.
    fn resolve(&mut self, path: &PathExpr) -> Result<Value, Failure>;
    /// A fresh random number, for `States.UUID` and unseeded `States.MathRandom`. Comes
    /// from the environment so that executions can be replayed.
    fn random_u64(&mut self) -> u64;
}

/// A parsed intrinsic function call.
#[derive(Clone, Debug, PartialEq)]
pub struct IntrinsicCall {
    text: String,
    call: ast::Call,
}

impl IntrinsicCall {
    /// Whether a string is meant as an intrinsic call (`States.` prefix).
    pub fn looks_like_call(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    /// Parses a call such as `States.Format('{} items', States.ArrayLength($.items))`.
    /// Whitespace around the call and its arguments is allowed.
    pub fn parse(text: &str) -> Result<IntrinsicCall, IntrinsicSyntaxError> {
        Ok(IntrinsicCall { text: text.to_string(), call: parser::parse(text)? })
    }

    /// The text the call was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Calls `visit` with every path among the call's arguments, nested calls' included.
    pub fn visit_paths(&self, visit: &mut dyn FnMut(&PathExpr)) {
        fn walk(call: &ast::Call, visit: &mut dyn FnMut(&PathExpr)) {
            for arg in &call.args {
                match arg {
                    ast::Arg::Path(path) => visit(path),
                    ast::Arg::Call(inner) => walk(inner, visit),
                    _ => {}
                }
            }
        }
        walk(&self.call, visit);
    }

    /// The path `p` when the call is `States.StringToJson(p)`.
    pub fn string_to_json_of(&self) -> Option<&PathExpr> {
        match (&self.call.function, self.call.args.as_slice()) {
            (ast::Function::StringToJson, [ast::Arg::Path(path)]) => Some(path),
            _ => None,
        }
    }

    /// Whether the call (or a call among its arguments) draws random values: `States.UUID`,
    /// `States.MathRandom`.
    pub fn is_random(&self) -> bool {
        fn random(call: &ast::Call) -> bool {
            matches!(call.function, ast::Function::Uuid | ast::Function::MathRandom)
                || call.args.iter().any(|arg| matches!(arg, ast::Arg::Call(inner) if random(inner)))
        }
        random(&self.call)
    }

    /// Evaluates the call. A path argument that does not resolve fails with the failure
    /// `env.resolve` returned; anything else that goes wrong is a `States.Runtime` failure.
    pub fn evaluate(&self, env: &mut dyn IntrinsicEnv) -> Result<Value, Failure> {
        functions::evaluate(&self.call, env)
    }
}
