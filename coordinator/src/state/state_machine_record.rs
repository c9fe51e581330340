//! A state machine as the replicated state holds it (DescribeStateMachine's fields).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stepmap_asl::model::StateMachineType;

use super::arn::StateMachineArn;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMachineRecord {
    pub arn: StateMachineArn,
    pub name: String,
    /// The definition text exactly as submitted (AWS returns it unchanged).
    pub definition: String,
    pub machine_type: StateMachineType,
    pub role_arn: String,
    pub creation_date: DateTime<Utc>,
    /// Set by UpdateStateMachine.
    pub update_date: Option<DateTime<Utc>>,
    /// Changes with every update; stamped by the leader (AWS `revisionId`).
    pub revision_id: String,
}
