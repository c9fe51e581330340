//! AWS Step Functions exceptions: what a request or a command is refused with.
//!
//! They are data, not failures of the node: `apply` returns them as its response (every
//! replica reaches the same verdict), and the gRPC layer maps them to a status that carries
//! the exception's AWS name (see `crate::error`).

use serde::{Deserialize, Serialize};

/// One AWS exception, named as the Step Functions API names it. `field` (where present) is
/// the request field at fault (AWS's lower camel case spelling), so that the message can
/// name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "exception")]
pub enum ApiError {
    #[error("InvalidName: {field}: {message}")]
    InvalidName { field: String, message: String },
    #[error("InvalidArn: {field}: {message}")]
    InvalidArn { field: String, message: String },
    #[error("ValidationException: {field}: {message}")]
    ValidationException { field: String, message: String },
    #[error("InvalidDefinition: {message}")]
    InvalidDefinition { message: String },
    #[error("InvalidExecutionInput: {message}")]
    InvalidExecutionInput { message: String },
    #[error("InvalidToken: {field}: {message}")]
    InvalidToken { field: String, message: String },
    #[error("InvalidOutput: {message}")]
    InvalidOutput { message: String },
    #[error("StateMachineDoesNotExist: State Machine Does Not Exist: '{arn}'")]
    StateMachineDoesNotExist { arn: String },
    #[error("StateMachineAlreadyExists: State Machine Already Exists: '{arn}'")]
    StateMachineAlreadyExists { arn: String },
    #[error("StateMachineTypeNotSupported: {message}")]
    StateMachineTypeNotSupported { message: String },
    #[error("ExecutionDoesNotExist: Execution Does Not Exist: '{arn}'")]
    ExecutionDoesNotExist { arn: String },
    #[error("ExecutionAlreadyExists: Execution Already Exists: '{arn}'")]
    ExecutionAlreadyExists { arn: String },
    #[error("ExecutionNotRunning: Execution is not running: '{arn}'")]
    ExecutionNotRunning { arn: String },
    #[error("ActivityDoesNotExist: Activity Does Not Exist: '{arn}'")]
    ActivityDoesNotExist { arn: String },
    #[error("ActivityAlreadyExists: Activity Already Exists: '{arn}'")]
    ActivityAlreadyExists { arn: String },
    #[error("TaskDoesNotExist: Task Does Not Exist")]
    TaskDoesNotExist,
    #[error("TaskTimedOut: Task Timed Out")]
    TaskTimedOut,
    #[error("ResourceNotFound: Resource Not Found: '{arn}'")]
    ResourceNotFound { arn: String },
    #[error("ExecutionNotRedrivable: {reason}: '{arn}'")]
    ExecutionNotRedrivable { arn: String, reason: String },
}

impl ApiError {
    /// The exception's AWS name, e.g. `ExecutionDoesNotExist`.
    pub fn exception_name(&self) -> &'static str {
        match self {
            ApiError::InvalidName { .. } => "InvalidName",
            ApiError::InvalidArn { .. } => "InvalidArn",
            ApiError::ValidationException { .. } => "ValidationException",
            ApiError::InvalidDefinition { .. } => "InvalidDefinition",
            ApiError::InvalidExecutionInput { .. } => "InvalidExecutionInput",
            ApiError::InvalidToken { .. } => "InvalidToken",
            ApiError::InvalidOutput { .. } => "InvalidOutput",
            ApiError::StateMachineDoesNotExist { .. } => "StateMachineDoesNotExist",
            ApiError::StateMachineAlreadyExists { .. } => "StateMachineAlreadyExists",
            ApiError::StateMachineTypeNotSupported { .. } => "StateMachineTypeNotSupported",
            ApiError::ExecutionDoesNotExist { .. } => "ExecutionDoesNotExist",
            ApiError::ExecutionAlreadyExists { .. } => "ExecutionAlreadyExists",
            ApiError::ExecutionNotRunning { .. } => "ExecutionNotRunning",
            ApiError::ActivityDoesNotExist { .. } => "ActivityDoesNotExist",
            ApiError::ActivityAlreadyExists { .. } => "ActivityAlreadyExists",
            ApiError::TaskDoesNotExist => "TaskDoesNotExist",
            ApiError::TaskTimedOut => "TaskTimedOut",
            ApiError::ResourceNotFound { .. } => "ResourceNotFound",
            ApiError::ExecutionNotRedrivable { .. } => "ExecutionNotRedrivable",
        }
    }

    /// The request field at fault, when the exception names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidName { field, .. }
            | ApiError::InvalidArn { field, .. }
            | ApiError::ValidationException { field, .. }
            | ApiError::InvalidToken { field, .. } => Some(field.as_str()),
            _ => None,
        }
    }

    /// A `ValidationException` about `field`.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::ValidationException { field: field.to_owned(), message: message.into() }
    }
}
