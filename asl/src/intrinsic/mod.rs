//! Intrinsic functions (`States.Format(...)` etc., features.md §1.11).
//!
//! SCAFFOLD: interface fixed, implementation in progress.

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
}

impl IntrinsicCall {
    /// Whether a string is meant as an intrinsic call (`States.` prefix).
    pub fn looks_like_call(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    pub fn parse(text: &str) -> Result<IntrinsicCall, IntrinsicSyntaxError> {
        Ok(IntrinsicCall { text: text.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn evaluate(&self, _env: &mut dyn IntrinsicEnv) -> Result<Value, Failure> {
        todo!()
    }
}
