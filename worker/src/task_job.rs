//! A parent execution's Task state as work for the fleet (DESIGN.md §3, "Task states of the
//! parent are dispatched to workers like any other work"): the coordinator leases the
//! invocation to a worker as a one-unit piece of work, the worker makes it with its own
//! invoker (its function registry) and reports the result as the unit's outcome.
//!
//! Only invocations a worker can make travel: Lambda functions (`arn:aws:lambda:...` and
//! `arn:aws:states:::lambda:invoke`) and `arn:aws:states:::http:invoke`, request-response.
//! Activities, callbacks (`.waitForTaskToken`) and integrations the coordinator serves stay
//! with the coordinator.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::resource::{IntegrationPattern, Resource};
use stepmap_asl::task::TaskRequest;

use crate::map_run::UnitOutcome;

/// The job of a Task's work: `{"Task": {...}}` (a map run's job has no `Task` field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskJob {
    pub task: TaskInvocation,
}

/// One Task attempt's invocation, as the interpreter asked for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskInvocation {
    pub resource: String,
    pub state_name: String,
    pub parameters: Value,
    /// TimeoutSeconds of the attempt (the coordinator's interpreter enforces it; the worker
    /// stops work that would be discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_millis: Option<u64>,
    pub region: String,
    pub account: String,
}

impl TaskJob {
    /// Whether a worker can make `request`'s invocation.
    pub fn runs_on_workers(request: &TaskRequest) -> bool {
        request.task_token.is_none()
            && match &request.resource {
                Resource::LambdaFunction { .. } => true,
                Resource::Integration { service, action, pattern: IntegrationPattern::RequestResponse } => {
                    matches!((service.as_str(), action.as_str()), ("lambda", "invoke") | ("http", "invoke"))
                }
                _ => false,
            }
    }

    pub fn from_request(request: &TaskRequest) -> TaskJob {
        TaskJob {
            task: TaskInvocation {
                resource: request.resource_arn.clone(),
                state_name: request.state_name.clone(),
                parameters: request.parameters.value().into_owned(),
                timeout_millis: request.timeout.map(|t| t.as_millis() as u64),
                region: request.region.clone(),
                account: request.account.clone(),
            },
        }
    }

    /// The job text `job` as a Task's, if it is one.
    pub fn parse(job: &str) -> Option<TaskJob> {
        if !job.starts_with("{\"Task\":") {
            return None;
        }
        serde_json::from_str(job).ok()
    }

    pub fn into_request(self) -> TaskRequest {
        let task = self.task;
        TaskRequest {
            resource: Resource::parse(&task.resource),
            resource_arn: task.resource,
            state_name: task.state_name,
            parameters: task.parameters.into(),
            timeout: task.timeout_millis.map(Duration::from_millis),
            region: task.region,
            account: task.account,
            task_token: None,
            heartbeat: None,
            started_at: None,
            progress: None,
        }
    }
}

/// The outcome a Task's work reports: its result as the one output, or its failure (which
/// the Task state's Retry and Catch then see).
pub fn task_outcome(result: Result<Value, Failure>) -> UnitOutcome {
    match result {
        Ok(output) => UnitOutcome { outputs: Some(vec![output]), ..UnitOutcome::default() },
        Err(failure) => UnitOutcome { failure: Some(failure), ..UnitOutcome::default() },
    }
}

/// The result a Task's reported outcome stands for.
pub fn task_result(outcome: &UnitOutcome) -> Result<Value, Failure> {
    if let Some(failure) = &outcome.failure {
        return Err(failure.clone());
    }
    match outcome.outputs.as_deref() {
        Some([output]) => Ok(output.clone()),
        _ => Err(Failure::runtime("the worker reported no result for the task")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_task_job_round_trips_and_is_told_from_a_map_run_job() {
        let request = TaskJob {
            task: TaskInvocation {
                resource: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
                state_name: "T".into(),
                parameters: json!({"a": 1}),
                timeout_millis: Some(5000),
                region: "us-east-1".into(),
                account: "123456789012".into(),
            },
        }
        .into_request();
        assert!(TaskJob::runs_on_workers(&request));
        let text = serde_json::to_string(&TaskJob::from_request(&request)).unwrap();
        let back = TaskJob::parse(&text).expect("a task job").into_request();
        assert_eq!((back.parameters.into_value(), back.timeout), (json!({"a": 1}), Some(Duration::from_secs(5))));
        assert!(matches!(back.resource, Resource::LambdaFunction { .. }));
        assert_eq!(TaskJob::parse(r#"{"MapRunArn":"arn"}"#), None);
        let activity = TaskJob {
            task: TaskInvocation {
                resource: "arn:aws:states:us-east-1:1:activity:a".into(),
                ..TaskJob::parse(&text).unwrap().task
            },
        };
        assert!(!TaskJob::runs_on_workers(&activity.into_request()));
        assert_eq!(task_result(&task_outcome(Ok(json!(3)))), Ok(json!(3)));
        let failure = Failure::new("E", "c");
        assert_eq!(task_result(&task_outcome(Err(failure.clone()))), Err(failure));
    }
}
