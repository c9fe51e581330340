//! Activities and task tokens (AWS activities and `.waitForTaskToken` callbacks).
//!
//! A task token stands for one Task attempt waiting on the outside world: an activity
//! worker (GetActivityTask hands it out) or a callback (`SendTaskSuccess` and friends). The
//! record is what survives a change of leader: what was asked, who holds it, its deadlines,
//! and how it ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::arn::{ActivityArn, ExecutionArn};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub arn: ActivityArn,
    pub name: String,
    pub creation_date: DateTime<Utc>,
}

/// Where a task token stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskTokenStatus {
    /// Waiting for a worker (activities) or a callback.
    Scheduled,
    /// An activity worker took it.
    Started {
        worker_name: String,
        date: DateTime<Utc>,
    },
    Succeeded {
        output: String,
        date: DateTime<Utc>,
    },
    Failed {
        error: Option<String>,
        cause: Option<String>,
        date: DateTime<Utc>,
    },
    /// Its heartbeat or timeout passed; late calls get `TaskTimedOut`.
    TimedOut {
        date: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTokenRecord {
    /// The opaque token (minted by the leader).
    pub token: String,
    pub execution_arn: ExecutionArn,
    pub state_name: String,
    /// Set for activity tasks; `None` for `.waitForTaskToken` callbacks.
    pub activity_arn: Option<ActivityArn>,
    /// The task input JSON text.
    pub input: String,
    pub status: TaskTokenStatus,
    /// When the token was issued (activity tasks are handed out oldest first).
    pub issue_date: DateTime<Utc>,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    /// TimeoutSeconds as an absolute deadline, from the start (issue for a callback, hand-out
    /// for an activity).
    pub timeout_at: Option<DateTime<Utc>>,
    /// HeartbeatSeconds after the start or the last heartbeat; moved by SendTaskHeartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The service's answer to a `.waitForTaskToken` call, once it was made: a leader that
    /// resumes the task waits for the token instead of calling the service again.
    pub submitted_output: Option<String>,
}

impl TaskTokenRecord {
    /// A record for a token issued at `date`; deadlines start now for callbacks, when a
    /// worker takes the task for activities.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        token: String,
        execution_arn: ExecutionArn,
        state_name: String,
        activity_arn: Option<ActivityArn>,
        input: String,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
        date: DateTime<Utc>,
    ) -> Self {
        let mut record = TaskTokenRecord {
            token,
            execution_arn,
            state_name,
            activity_arn,
            input,
            status: TaskTokenStatus::Scheduled,
            issue_date: date,
            timeout_seconds,
            heartbeat_seconds,
            timeout_at: None,
            heartbeat_at: None,
            submitted_output: None,
        };
        if record.activity_arn.is_none() {
            record.start_clocks(date);
        }
        record
    }

    pub fn is_open(&self) -> bool {
        matches!(self.status, TaskTokenStatus::Scheduled | TaskTokenStatus::Started { .. })
    }

    /// Starts the TimeoutSeconds and HeartbeatSeconds clocks at `date`.
    pub fn start_clocks(&mut self, date: DateTime<Utc>) {
        let after = |seconds: Option<u64>| seconds.map(|s| date + chrono::TimeDelta::seconds(s as i64));
        self.timeout_at = after(self.timeout_seconds);
        self.heartbeat_at = after(self.heartbeat_seconds);
    }

    /// The first deadline that has passed at `date`, if any.
    pub fn expired_at(&self, date: DateTime<Utc>) -> bool {
        self.timeout_at.is_some_and(|deadline| date > deadline)
            || self.heartbeat_at.is_some_and(|deadline| date > deadline)
    }

    /// The earliest deadline still ahead.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        match (self.timeout_at, self.heartbeat_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How a task token was completed (SendTaskSuccess / SendTaskFailure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskTokenOutcome {
    Succeeded { output: String },
    Failed { error: Option<String>, cause: Option<String> },
}
