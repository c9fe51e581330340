//! Typed ARNs in AWS's formats, and AWS's rules for resource names.
//!
//! - state machine `arn:aws:states:<region>:<account>:stateMachine:<name>`
//! - execution `arn:aws:states:<region>:<account>:execution:<machine>:<name>`
//! - Express execution `arn:aws:states:<region>:<account>:express:<machine>:<name>:<id>`
//! - activity `arn:aws:states:<region>:<account>:activity:<name>`

use std::fmt;

use serde::{Deserialize, Serialize};

use super::api_error::ApiError;

/// AWS's limit on ARNs in API requests (features.md §3).
pub const MAX_ARN_LENGTH: usize = 256;
/// AWS's limit on state machine, execution and activity names.
pub const MAX_NAME_LENGTH: usize = 80;

/// Region and account that ARNs minted by this cluster carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArnScope {
    pub region: String,
    pub account: String,
}

impl Default for ArnScope {
    fn default() -> Self {
        Self { region: "us-east-1".to_owned(), account: "123456789012".to_owned() }
    }
}

impl ArnScope {
    fn prefix(&self) -> String {
        format!("arn:aws:states:{}:{}", self.region, self.account)
    }

    pub fn state_machine(&self, name: &str) -> StateMachineArn {
        StateMachineArn(format!("{}:stateMachine:{name}", self.prefix()))
    }

    pub fn activity(&self, name: &str) -> ActivityArn {
        ActivityArn(format!("{}:activity:{name}", self.prefix()))
    }
}

macro_rules! arn_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

arn_type!(
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    StateMachineArn
);
arn_type!(
    /// A Standard (`:execution:`) or Express (`:express:`) execution ARN.
    ExecutionArn
);
arn_type!(
    /// `arn:aws:states:<region>:<account>:activity:<name>`.
    ActivityArn
);
arn_type!(
    /// `arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>`.
    MapRunArn
);

/// The `:`-separated parts of a Step Functions ARN after `arn:aws:states`, checked.
fn states_parts<'a>(field: &'static str, arn: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let invalid =
        |why: &str| ApiError::InvalidArn { field: field.to_owned(), message: format!("Invalid Arn: '{arn}': {why}") };
    if arn.len() > MAX_ARN_LENGTH {
        return Err(invalid("longer than 256 characters"));
    }
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "states" || parts[1].is_empty() {
        return Err(invalid("not a Step Functions ARN"));
    }
    Ok(parts)
}

impl StateMachineArn {
    /// Parses a state machine ARN from the request field `field`.
    pub fn parse(field: &'static str, arn: &str) -> Result<Self, ApiError> {
        let parts = states_parts(field, arn)?;
        if parts[5] != "stateMachine" || parts.len() != 7 || parts[6].is_empty() {
            return Err(ApiError::InvalidArn {
                field: field.to_owned(),
                message: format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            });
        }
        Ok(Self(arn.to_owned()))
    }

    /// The state machine's name (last part).
    pub fn name(&self) -> &str {
        self.0.rsplit(':').next().unwrap_or_default()
    }

    /// The ARN of this machine's execution called `name`.
    pub fn execution(&self, name: &str) -> ExecutionArn {
        ExecutionArn(format!("{}:{name}", self.0.replacen(":stateMachine:", ":execution:", 1)))
    }

    /// An Express execution ARN: Express names need not be unique, so a third part, the
    /// execution's own id, keeps ARNs apart.
    pub fn express_execution(&self, name: &str, id: &str) -> ExecutionArn {
        ExecutionArn(format!("{}:{name}:{id}", self.0.replacen(":stateMachine:", ":express:", 1)))
    }
}

impl ExecutionArn {
    pub fn parse(field: &'static str, arn: &str) -> Result<Self, ApiError> {
        let parts = states_parts(field, arn)?;
        let valid = match parts[5] {
            "execution" => parts.len() == 8,
            "express" => parts.len() == 9,
            _ => false,
        };
        if !valid || parts.iter().skip(6).any(|p| p.is_empty()) {
            return Err(ApiError::InvalidArn {
                field: field.to_owned(),
                message: format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            });
        }
        Ok(Self(arn.to_owned()))
    }

    /// The ARN of the state machine this execution belongs to.
    pub fn state_machine(&self) -> StateMachineArn {
        let parts: Vec<&str> = self.0.split(':').collect();
        StateMachineArn(format!("{}:stateMachine:{}", parts[..5].join(":"), parts.get(6).copied().unwrap_or_default()))
    }

    /// The execution's name.
    pub fn name(&self) -> &str {
        self.0.split(':').nth(7).unwrap_or_default()
    }
}

impl ActivityArn {
    pub fn parse(field: &'static str, arn: &str) -> Result<Self, ApiError> {
        let parts = states_parts(field, arn)?;
        if parts[5] != "activity" || parts.len() != 7 || parts[6].is_empty() {
            return Err(ApiError::InvalidArn {
                field: field.to_owned(),
                message: format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            });
        }
        Ok(Self(arn.to_owned()))
    }
}

impl MapRunArn {
    pub fn new(arn: String) -> Self {
        Self(arn)
    }
}

/// AWS's name rule (CreateStateMachine, StartExecution, CreateActivity): 1–80 characters, no
/// whitespace, no brackets `< > { } [ ]`, no wildcards `? *`, none of `" # % \ ^ | ~ ` $ & , ; : /`
/// and no control characters.
/// Characters AWS refuses in state machine and execution names.
fn forbidden_in_name(c: char) -> bool {
    c.is_whitespace()
        || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
        || ('\u{0}'..='\u{1f}').contains(&c)
        || ('\u{7f}'..='\u{9f}').contains(&c)
}

/// A valid name made of `text` (a file name, say): forbidden characters become `-`, and it
/// is cut to the longest name allowed; `fallback` when nothing is left.
pub fn name_from(text: &str, fallback: &str) -> String {
    let name: String = text.chars().map(|c| if forbidden_in_name(c) { '-' } else { c }).take(MAX_NAME_LENGTH).collect();
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name
    }
}

pub fn validate_name(field: &'static str, name: &str) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::InvalidName {
        field: field.to_owned(),
        message: format!("Invalid Name: '{name}': {why}"),
    };
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_LENGTH {
        return Err(invalid(format!("{field} must be 1 to {MAX_NAME_LENGTH} characters long")));
    }
    if let Some(c) = name.chars().find(|c| forbidden_in_name(*c)) {
        return Err(invalid(format!("{field} must not contain {c:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_made_from_text_are_valid() {
        assert_eq!(name_from("my flow: v2", "x"), "my-flow--v2");
        assert_eq!(name_from("", "x"), "x");
        assert_eq!(name_from(&"a".repeat(100), "x").len(), MAX_NAME_LENGTH);
        assert!(validate_name("name", &name_from("a/b c", "x")).is_ok());
    }

    #[test]
    fn arns_are_built_and_parsed_in_aws_format() {
        let scope = ArnScope::default();
        let machine = scope.state_machine("orders");
        assert_eq!(machine.as_str(), "arn:aws:states:us-east-1:123456789012:stateMachine:orders");
        assert_eq!(StateMachineArn::parse("stateMachineArn", machine.as_str()).unwrap(), machine);
        let execution = machine.execution("run-1");
        assert_eq!(execution.as_str(), "arn:aws:states:us-east-1:123456789012:execution:orders:run-1");
        assert_eq!(execution.state_machine(), machine);
        assert_eq!(execution.name(), "run-1");
        assert_eq!(ExecutionArn::parse("executionArn", execution.as_str()).unwrap(), execution);
        let express = machine.express_execution("x", "id");
        assert_eq!(ExecutionArn::parse("executionArn", express.as_str()).unwrap().state_machine(), machine);
    }

    #[test]
    fn bad_arns_name_the_field() {
        for bad in ["", "arn:aws:s3:::bucket", "arn:aws:states:us-east-1:1:execution:m:e"] {
            let error = StateMachineArn::parse("stateMachineArn", bad).unwrap_err();
            assert_eq!(error.exception_name(), "InvalidArn");
            assert_eq!(error.field(), Some("stateMachineArn"));
        }
        assert!(ExecutionArn::parse("executionArn", "arn:aws:states:us-east-1:1:stateMachine:m").is_err());
    }

    #[test]
    fn names_follow_aws_rules() {
        validate_name("name", "orders-2024_01.v2").unwrap();
        for bad in ["", "a b", "a:b", "a/b", "a*", "a\u{7}", &"x".repeat(81)] {
            let error = validate_name("name", bad).unwrap_err();
            assert_eq!(error.exception_name(), "InvalidName", "{bad:?}");
        }
    }
}
