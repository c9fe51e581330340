//! An execution as the replicated state holds it: DescribeExecution's fields and the
//! history events committed so far.
//!
//! The history is the source of truth: the execution's status, output, error and cause
//! follow from its terminal event (`ExecutionSucceeded`, `ExecutionFailed`,
//! `ExecutionTimedOut`, `ExecutionAborted`) when that event is committed. A redrive
//! (`redrive.rs`) reopens a closed execution: RUNNING again, with its `ExecutionRedriven`
//! event appended and the redrive remembered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::model::StateMachineType;

use super::api_error::ApiError;
use super::arn::{ExecutionArn, StateMachineArn};
use super::redrive::Redrive;

/// AWS `ExecutionStatus` (PENDING_REDRIVE joins with redrive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed, Self::TimedOut, Self::Aborted]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub arn: ExecutionArn,
    pub state_machine_arn: StateMachineArn,
    pub name: String,
    pub machine_type: StateMachineType,
    /// The definition the execution runs: the machine's at start (running executions keep
    /// it when the machine is updated, as on AWS).
    pub definition: String,
    pub role_arn: String,
    /// The input JSON text.
    pub input: String,
    pub status: ExecutionStatus,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    /// The output JSON text (SUCCEEDED only).
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Seeds the execution's randomness (`States.UUID`, retry jitter), so that a leader
    /// replaying the execution draws the same numbers.
    pub seed: u64,
    /// Position in start order, for listing newest first.
    pub seq: u64,
    pub history: Vec<HistoryEvent>,
    /// Its redrives, oldest first (absent from snapshots taken before redrive existed).
    #[serde(default)]
    pub redrives: Vec<Redrive>,
}

impl ExecutionRecord {
    /// Appends `events`, which must continue the history: ids at or below the last committed
    /// one are skipped (a retried or replayed commit), the rest must follow on without a gap.
    /// A terminal event closes the execution. Returns the id of the last event held.
    pub fn append(&mut self, events: &[HistoryEvent]) -> Result<u64, ApiError> {
        let mut last = self.history.len() as u64;
        let fresh: Vec<&HistoryEvent> = events.iter().filter(|event| event.id > last).collect();
        if fresh.is_empty() {
            return Ok(last);
        }
        if self.status != ExecutionStatus::Running {
            return Err(ApiError::ExecutionNotRunning { arn: self.arn.to_string() });
        }
        for event in fresh {
            if event.id != last + 1 {
                return Err(ApiError::validation(
                    "events",
                    format!("event {} does not follow event {last} of {}", event.id, self.arn),
                ));
            }
            self.history.push(event.clone());
            last = event.id;
            self.close_on(event);
            if self.status != ExecutionStatus::Running {
                break;
            }
        }
        Ok(last)
    }

    /// AWS `redriveCount`: how many times the execution was redriven.
    pub fn redrive_count(&self) -> u64 {
        self.redrives.len() as u64
    }

    /// AWS `redriveDate`: when it was last redriven.
    pub fn redrive_date(&self) -> Option<DateTime<Utc>> {
        self.redrives.last().map(|redrive| redrive.date)
    }

    /// Reopens a closed execution for `redrive`, whose `ExecutionRedriven` event is `event`
    /// (the next one of the history). The result of the closed attempt is cleared: a
    /// redriven execution is RUNNING like any other until its next end.
    pub(super) fn reopen(&mut self, event: HistoryEvent, redrive: Redrive) {
        debug_assert_eq!(event.id, self.history.len() as u64 + 1);
        self.history.push(event);
        self.redrives.push(redrive);
        self.status = ExecutionStatus::Running;
        self.stop_date = None;
        self.output = None;
        self.error = None;
        self.cause = None;
    }

    /// Takes the status and result from a terminal event.
    fn close_on(&mut self, event: &HistoryEvent) {
        let text =
            |key: &str| event.details.as_ref().and_then(|d| d.get(key)).and_then(Value::as_str).map(str::to_owned);
        let status = match event.event_type.as_str() {
            "ExecutionSucceeded" => ExecutionStatus::Succeeded,
            "ExecutionFailed" => ExecutionStatus::Failed,
            "ExecutionTimedOut" => ExecutionStatus::TimedOut,
            "ExecutionAborted" => ExecutionStatus::Aborted,
            _ => return,
        };
        self.status = status;
        self.stop_date = Some(event.timestamp);
        if status == ExecutionStatus::Succeeded {
            self.output = text("output");
        } else {
            self.error = text("error");
            self.cause = text("cause");
        }
    }
}
