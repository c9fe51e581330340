//! The Map Run / batch ledger (DESIGN.md §3): which map runs exist and, per batch, its
//! descriptor, lease and outcome. Only the Map Run resource (features.md §2.9) is modelled
//! yet; the worker fleet's planner, leases and finaliser fill in the batches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::arn::{ExecutionArn, MapRunArn};

/// AWS `MapRunStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

/// One Map Run as DescribeMapRun shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapRunRecord {
    pub arn: MapRunArn,
    /// The parent execution.
    pub execution_arn: ExecutionArn,
    pub status: MapRunStatus,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    pub max_concurrency: u64,
    pub tolerated_failure_percentage: f64,
    pub tolerated_failure_count: u64,
}

/// All Map Runs, by ARN. No command writes here yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MapRunLedger {
    pub map_runs: BTreeMap<MapRunArn, MapRunRecord>,
}
