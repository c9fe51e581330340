//! How commands move task tokens (activities and `.waitForTaskToken` callbacks) through
//! their life: issued (Scheduled) → handed to an activity worker (Started) → completed by
//! SendTaskSuccess / SendTaskFailure, or timed out. Heartbeats move the heartbeat deadline.
//!
//! Every verdict depends only on the record and the leader-stamped `date`, so replicas agree.
//! A token whose execution is no longer RUNNING, or whose deadline has passed, answers
//! `TaskTimedOut` (as AWS does for tokens of closed executions).

use chrono::{DateTime, Utc};

use super::activity_record::{TaskTokenOutcome, TaskTokenRecord, TaskTokenStatus};
use super::api_error::ApiError;
use super::command::{Outcome, Response};
use super::execution_record::ExecutionStatus;
use super::ReplicatedState;

impl ReplicatedState {
    /// Idempotent: a leader resuming an execution issues the same (deterministic) token again
    /// and finds the record as it was left.
    pub(super) fn issue_task_token(&mut self, record: TaskTokenRecord) -> Outcome {
        if !self.executions.contains_key(&record.execution_arn) {
            return Err(ApiError::ExecutionDoesNotExist { arn: record.execution_arn.to_string() });
        }
        if let Some(activity) = &record.activity_arn {
            if !self.activities.contains_key(activity) {
                return Err(ApiError::ActivityDoesNotExist { arn: activity.to_string() });
            }
        }
        self.task_tokens.entry(record.token.clone()).or_insert(record);
        Ok(Response::TaskTokenIssued)
    }

    /// The open record of `token`, or the exception a caller gets for it at `date`.
    fn open_task_token(&mut self, token: &str, date: DateTime<Utc>) -> Result<&mut TaskTokenRecord, ApiError> {
        let record = self.task_tokens.get(token).ok_or(ApiError::TaskDoesNotExist)?;
        let running = self.executions.get(&record.execution_arn).is_some_and(|e| e.status == ExecutionStatus::Running);
        if !running || !record.is_open() || record.expired_at(date) {
            return Err(ApiError::TaskTimedOut);
        }
        Ok(self.task_tokens.get_mut(token).expect("checked above"))
    }

    pub(super) fn complete_task_token(
        &mut self,
        token: &str,
        outcome: TaskTokenOutcome,
        date: DateTime<Utc>,
    ) -> Outcome {
        let record = self.open_task_token(token, date)?;
        record.status = match outcome {
            TaskTokenOutcome::Succeeded { output } => TaskTokenStatus::Succeeded { output, date },
            TaskTokenOutcome::Failed { error, cause } => TaskTokenStatus::Failed { error, cause, date },
        };
        Ok(Response::TaskTokenUpdated)
    }

    pub(super) fn heartbeat_task_token(&mut self, token: &str, date: DateTime<Utc>) -> Outcome {
        let record = self.open_task_token(token, date)?;
        if let Some(seconds) = record.heartbeat_seconds {
            record.heartbeat_at = Some(date + chrono::TimeDelta::seconds(seconds as i64));
        }
        Ok(Response::TaskTokenUpdated)
    }

    /// Hands a scheduled activity task to a worker. Refused (`TaskDoesNotExist`) when another
    /// poller got it first, so the caller tries the next one.
    pub(super) fn start_activity_task(&mut self, token: &str, worker_name: String, date: DateTime<Utc>) -> Outcome {
        let record = self.open_task_token(token, date).map_err(|_| ApiError::TaskDoesNotExist)?;
        if record.status != TaskTokenStatus::Scheduled || record.activity_arn.is_none() {
            return Err(ApiError::TaskDoesNotExist);
        }
        record.status = TaskTokenStatus::Started { worker_name, date };
        record.start_clocks(date);
        Ok(Response::ActivityTaskStarted { token: record.token.clone(), input: record.input.clone() })
    }

    pub(super) fn submit_task_token(&mut self, token: &str, output: String) -> Outcome {
        let record = self.task_tokens.get_mut(token).ok_or(ApiError::TaskDoesNotExist)?;
        record.submitted_output.get_or_insert(output);
        Ok(Response::TaskTokenUpdated)
    }

    /// Closes an open token whose deadline passed at `date`; a no-op for a closed one.
    pub(super) fn time_out_task_token(&mut self, token: &str, date: DateTime<Utc>) -> Outcome {
        let record = self.task_tokens.get_mut(token).ok_or(ApiError::TaskDoesNotExist)?;
        if record.is_open() {
            if !record.expired_at(date) {
                return Err(ApiError::validation("taskToken", "the task's deadlines have not passed"));
            }
            record.status = TaskTokenStatus::TimedOut { date };
        }
        Ok(Response::TaskTokenUpdated)
    }

    /// Closes an open token whose attempt was abandoned; a no-op for a closed one.
    pub(super) fn abandon_task_token(&mut self, token: &str, date: DateTime<Utc>) -> Outcome {
        let record = self.task_tokens.get_mut(token).ok_or(ApiError::TaskDoesNotExist)?;
        if record.is_open() {
            record.status = TaskTokenStatus::TimedOut { date };
        }
        Ok(Response::TaskTokenUpdated)
    }

    /// The oldest scheduled, not yet started task of `activity`, for GetActivityTask.
    pub fn next_activity_task(&self, activity: &super::ActivityArn) -> Option<String> {
        self.task_tokens
            .values()
            .filter(|t| t.activity_arn.as_ref() == Some(activity) && t.status == TaskTokenStatus::Scheduled)
            .filter(|t| self.executions.get(&t.execution_arn).is_some_and(|e| e.status == ExecutionStatus::Running))
            .min_by(|a, b| a.issue_date.cmp(&b.issue_date).then_with(|| a.token.cmp(&b.token)))
            .map(|t| t.token.clone())
    }
}
