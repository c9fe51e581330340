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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTokenRecord {
    /// The opaque token (minted by the leader).
    pub token: String,
    pub execution_arn: ExecutionArn,
    pub state_name: String,
    /// The history event that scheduled the task.
    pub scheduled_event_id: u64,
    /// Set for activity tasks; `None` for `.waitForTaskToken` callbacks.
    pub activity_arn: Option<ActivityArn>,
    /// The task input JSON text.
    pub input: String,
    pub status: TaskTokenStatus,
    /// TimeoutSeconds as an absolute deadline.
    pub timeout_at: Option<DateTime<Utc>>,
    /// HeartbeatSeconds after the last heartbeat; moved by SendTaskHeartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub heartbeat_seconds: Option<u64>,
}

impl TaskTokenRecord {
    pub fn is_open(&self) -> bool {
        matches!(self.status, TaskTokenStatus::Scheduled | TaskTokenStatus::Started { .. })
    }
}

/// How a task token was completed (SendTaskSuccess / SendTaskFailure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskTokenOutcome {
    Succeeded { output: String },
    Failed { error: Option<String>, cause: Option<String> },
}
