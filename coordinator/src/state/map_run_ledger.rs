//! The Map Run ledger (DESIGN.md §3): which map runs exist, their live settings and their
//! counters (features.md §2.9). The leader that drives a parent execution writes it through
//! `StartMapRun`, `RecordMapRunProgress` (counters, committed periodically, not per item),
//! `EndMapRun`, `RedriveMapRun` (a redriven parent resuming the run) and `UpdateMapRun` (the
//! API's). The units of runs on the worker fleet are in the work ledger (`work_ledger.rs`).
//!
//! A map run's record outlives the run: an ended map run keeps its result (or error) so that a
//! leader that replays the parent answers the Distributed Map from it instead of running the
//! map run again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stepmap_asl::map_run::MapRunRedrive;

use super::api_error::ApiError;
use super::arn::{ExecutionArn, MapRunArn};
use super::command::{Outcome, Response};
use super::execution_record::ExecutionStatus;
use super::ReplicatedState;

/// AWS `MapRunStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl MapRunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MapRunStatus::Running => "RUNNING",
            MapRunStatus::Succeeded => "SUCCEEDED",
            MapRunStatus::Failed => "FAILED",
            MapRunStatus::Aborted => "ABORTED",
        }
    }
}

/// AWS `MapRunItemCounts` / `MapRunExecutionCounts` (features.md §2.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRunCounts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub total: u64,
    pub results_written: u64,
    /// Always 0: stepmap keeps what a redrive needs of every child of a fleet map run (AWS
    /// counts children past its history or time limits here).
    pub failures_not_redrivable: u64,
    pub pending_redrive: u64,
}

/// What UpdateMapRun changes. A `None` tolerance is "not set", which AWS shows as 0 and which
/// differs from an explicit 0 once the other tolerance is set (features.md §2.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MapRunSettings {
    /// 0: AWS's ceiling of 10,000 children.
    pub max_concurrency: u64,
    pub tolerated_failure_percentage: Option<f64>,
    pub tolerated_failure_count: Option<u64>,
    /// Raised by every UpdateMapRun, so that whoever applies settings to a live run can tell
    /// newer from older.
    pub version: u64,
}

/// One Map Run as DescribeMapRun shows it, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapRunRecord {
    pub arn: MapRunArn,
    /// The parent execution.
    pub execution_arn: ExecutionArn,
    pub status: MapRunStatus,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    pub settings: MapRunSettings,
    pub item_counts: MapRunCounts,
    pub execution_counts: MapRunCounts,
    /// A SUCCEEDED run's result (the Map state's result, before ResultSelector), as JSON.
    pub result: Option<String>,
    /// A FAILED run's error and cause.
    pub error: Option<String>,
    pub cause: Option<String>,
    /// How often, and when last, the map run was redriven (features.md §2.12).
    #[serde(default)]
    pub redrive_count: u32,
    #[serde(default)]
    pub redrive_date: Option<DateTime<Utc>>,
}

impl MapRunRecord {
    /// A new RUNNING map run of `execution_arn`, with zero counters.
    pub fn start(
        arn: MapRunArn,
        execution_arn: ExecutionArn,
        settings: MapRunSettings,
        start_date: DateTime<Utc>,
    ) -> Self {
        Self {
            arn,
            execution_arn,
            status: MapRunStatus::Running,
            start_date,
            stop_date: None,
            settings,
            item_counts: MapRunCounts::default(),
            execution_counts: MapRunCounts::default(),
            result: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive_date: None,
        }
    }

    /// The labelled state machine ARN of its children: `stateMachine:<machine>/<label>`.
    pub fn state_machine_arn(&self) -> String {
        let arn = self.arn.as_str().replacen(":mapRun:", ":stateMachine:", 1);
        arn.rsplit_once(':').map_or(arn.clone(), |(machine, _id)| machine.to_owned())
    }
}

/// All Map Runs, by ARN, and each execution's map runs in start order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MapRunLedger {
    pub map_runs: BTreeMap<MapRunArn, MapRunRecord>,
    #[serde(default)]
    pub by_execution: BTreeMap<ExecutionArn, Vec<MapRunArn>>,
}

/// How a map run ended, as `EndMapRun` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MapRunEnd {
    Succeeded { result: String },
    Failed { error: Option<String>, cause: Option<String> },
    Aborted,
}

/// Parses a map run ARN from the request field `field`:
/// `arn:<partition>:states:<region>:<account>:mapRun:<machine>/<label>:<id>`.
pub fn parse_map_run_arn(field: &str, arn: &str) -> Result<MapRunArn, ApiError> {
    let invalid =
        |why: &str| ApiError::InvalidArn { field: field.to_owned(), message: format!("Invalid Arn: '{arn}': {why}") };
    if arn.len() > 2048 {
        return Err(invalid("longer than 2048 characters"));
    }
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 6 || parts[0] != "arn" || parts[1].is_empty() || parts[2] != "states" {
        return Err(invalid("not a Step Functions ARN"));
    }
    let valid = parts[5] == "mapRun"
        && parts.len() == 8
        && parts[6].split_once('/').is_some_and(|(machine, label)| !machine.is_empty() && !label.is_empty())
        && !parts[7].is_empty();
    if !valid {
        return Err(ApiError::InvalidArn {
            field: field.to_owned(),
            message: format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        });
    }
    Ok(MapRunArn::new(arn.to_owned()))
}

impl ReplicatedState {
    /// The map run as DescribeMapRun shows it: a RUNNING map run whose parent has closed
    /// (stopped, timed out, or failed before the run's end was recorded) is ABORTED, at the
    /// parent's stop date. Derived here rather than written when the parent closes, so that
    /// every path that closes an execution is covered.
    pub fn map_run(&self, arn: &MapRunArn) -> Option<MapRunRecord> {
        let mut record = self.map_runs.map_runs.get(arn)?.clone();
        if record.status == MapRunStatus::Running {
            if let Some(parent) = self.executions.get(&record.execution_arn) {
                if parent.status != ExecutionStatus::Running {
                    record.status = MapRunStatus::Aborted;
                    record.stop_date = parent.stop_date;
                }
            }
        }
        Some(record)
    }

    /// The map runs of `execution`, in start order (see [`Self::map_run`]).
    pub fn map_runs_of(&self, execution: &ExecutionArn) -> Vec<MapRunRecord> {
        let arns = self.map_runs.by_execution.get(execution).map(Vec::as_slice).unwrap_or_default();
        arns.iter().filter_map(|arn| self.map_run(arn)).collect()
    }

    /// `StartMapRun`: records a new RUNNING map run of a RUNNING execution. Starting one that
    /// exists (a new leader re-running it with the same ARN) restarts a RUNNING record with
    /// fresh counters and its current settings, and answers an ended one with how it ended,
    /// unchanged: its outcome stands.
    pub(super) fn start_map_run(&mut self, record: MapRunRecord) -> Outcome {
        let parent = self
            .executions
            .get(&record.execution_arn)
            .ok_or_else(|| ApiError::ExecutionDoesNotExist { arn: record.execution_arn.to_string() })?;
        if parent.status != ExecutionStatus::Running {
            return Err(ApiError::ExecutionNotRunning { arn: record.execution_arn.to_string() });
        }
        if let Some(existing) = self.map_runs.map_runs.get_mut(&record.arn) {
            if existing.execution_arn != record.execution_arn {
                return Err(ApiError::validation(
                    "mapRunArn",
                    format!("map run '{}' belongs to another execution", record.arn),
                ));
            }
            if existing.status != MapRunStatus::Running {
                return Ok(Response::MapRunAlreadyEnded { record: Box::new(existing.clone()) });
            }
            existing.item_counts = MapRunCounts::default();
            existing.execution_counts = MapRunCounts::default();
            return Ok(Response::MapRunStarted { settings: existing.settings, restarted: true });
        }
        let settings = record.settings;
        self.map_runs.by_execution.entry(record.execution_arn.clone()).or_default().push(record.arn.clone());
        self.map_runs.map_runs.insert(record.arn.clone(), record);
        Ok(Response::MapRunStarted { settings, restarted: false })
    }

    /// `RecordMapRunProgress`: the counters of a RUNNING map run.
    pub(super) fn record_map_run_progress(
        &mut self,
        arn: &MapRunArn,
        item_counts: MapRunCounts,
        execution_counts: MapRunCounts,
    ) -> Outcome {
        let record = self.map_run_mut(arn)?;
        if record.status != MapRunStatus::Running {
            return Err(not_running(record));
        }
        record.item_counts = item_counts;
        record.execution_counts = execution_counts;
        Ok(Response::MapRunProgressRecorded)
    }

    /// `EndMapRun`: closes a RUNNING map run with its final counters. Repeating the same end
    /// (a retry after an unknown outcome) is accepted; a different end of a closed run is not.
    pub(super) fn end_map_run(
        &mut self,
        arn: &MapRunArn,
        end: MapRunEnd,
        date: DateTime<Utc>,
        item_counts: MapRunCounts,
        execution_counts: MapRunCounts,
    ) -> Outcome {
        let record = self.map_run_mut(arn)?;
        let status = match &end {
            MapRunEnd::Succeeded { .. } => MapRunStatus::Succeeded,
            MapRunEnd::Failed { .. } => MapRunStatus::Failed,
            MapRunEnd::Aborted => MapRunStatus::Aborted,
        };
        if record.status != MapRunStatus::Running {
            return if record.status == status { Ok(Response::MapRunEnded) } else { Err(not_running(record)) };
        }
        record.status = status;
        record.stop_date = Some(date);
        record.item_counts = item_counts;
        record.execution_counts = execution_counts;
        match end {
            MapRunEnd::Succeeded { result } => record.result = Some(result),
            MapRunEnd::Failed { error, cause } => (record.error, record.cause) = (error, cause),
            MapRunEnd::Aborted => {}
        }
        // A succeeded run's results are in the result files or in this record now; an
        // unsuccessful one keeps its units, no longer current, for a redrive (unless its
        // failure is one after which a redrive starts a new run).
        let redrivable = match &record.status {
            MapRunStatus::Failed => MapRunRedrive::follows_failure(record.error.as_deref()),
            status => *status == MapRunStatus::Aborted,
        };
        if !redrivable {
            self.work.runs.remove(arn);
        } else if let Some(work) = self.work.runs.get_mut(arn) {
            work.stopped = true;
        }
        Ok(Response::MapRunEnded)
    }

    /// `RedriveMapRun`: an unsuccessful map run of a redriven (RUNNING) parent runs again as
    /// redrive `redrive_count`, the next one. Repeating it (a retry, a new leader) answers the
    /// redrive's settings while it runs, and how it ended once it has, as `StartMapRun` does.
    pub(super) fn redrive_map_run(&mut self, arn: &MapRunArn, redrive_count: u32, date: DateTime<Utc>) -> Outcome {
        let record = self.map_runs.map_runs.get(arn).ok_or_else(|| not_found(arn))?;
        let parent_running =
            self.executions.get(&record.execution_arn).is_some_and(|e| e.status == ExecutionStatus::Running);
        if !parent_running {
            return Err(ApiError::ExecutionNotRunning { arn: record.execution_arn.to_string() });
        }
        let record = self.map_run_mut(arn)?;
        if record.redrive_count == redrive_count {
            return match record.status {
                MapRunStatus::Running => Ok(Response::MapRunRedriven { settings: record.settings }),
                _ => Ok(Response::MapRunAlreadyEnded { record: Box::new(record.clone()) }),
            };
        }
        // RUNNING here is a run whose parent closed under it (shown ABORTED until now). The
        // count comes from the parent's history, which may have recorded a redrive whose
        // command never committed: any later count is accepted.
        if redrive_count < record.redrive_count || record.status == MapRunStatus::Succeeded {
            return Err(ApiError::validation(
                "mapRunArn",
                format!(
                    "Map Run '{arn}' is {} after {} redrives and cannot be redriven as redrive {redrive_count}",
                    record.status.as_str(),
                    record.redrive_count
                ),
            ));
        }
        record.status = MapRunStatus::Running;
        record.stop_date = None;
        record.redrive_count = redrive_count;
        record.redrive_date = Some(date);
        (record.error, record.cause) = (None, None);
        // AWS resets the unsuccessful counts; the run's progress sets them again.
        for counts in [&mut record.item_counts, &mut record.execution_counts] {
            counts.failed = 0;
            counts.timed_out = 0;
            counts.aborted = 0;
        }
        Ok(Response::MapRunRedriven { settings: record.settings })
    }

    /// `UpdateMapRun`: AWS updates only map runs in progress (`ValidationException` otherwise).
    /// The values were range-checked by the API.
    pub(super) fn update_map_run(
        &mut self,
        arn: &MapRunArn,
        max_concurrency: Option<u64>,
        tolerated_failure_percentage: Option<f64>,
        tolerated_failure_count: Option<u64>,
    ) -> Outcome {
        let running = self.map_run(arn).ok_or_else(|| not_found(arn))?.status == MapRunStatus::Running;
        let record = self.map_run_mut(arn)?;
        if !running {
            return Err(ApiError::validation(
                "mapRunArn",
                format!("Map Run '{arn}' is not RUNNING: only map runs in progress can be updated"),
            ));
        }
        let settings = &mut record.settings;
        if let Some(max_concurrency) = max_concurrency {
            settings.max_concurrency = max_concurrency;
        }
        if tolerated_failure_percentage.is_some() {
            settings.tolerated_failure_percentage = tolerated_failure_percentage;
        }
        if tolerated_failure_count.is_some() {
            settings.tolerated_failure_count = tolerated_failure_count;
        }
        settings.version += 1;
        Ok(Response::MapRunUpdated { settings: *settings })
    }

    fn map_run_mut(&mut self, arn: &MapRunArn) -> Result<&mut MapRunRecord, ApiError> {
        self.map_runs.map_runs.get_mut(arn).ok_or_else(|| not_found(arn))
    }
}

fn not_found(arn: &MapRunArn) -> ApiError {
    ApiError::ResourceNotFound { arn: arn.to_string() }
}

fn not_running(record: &MapRunRecord) -> ApiError {
    ApiError::validation("mapRunArn", format!("Map Run '{}' is {}", record.arn, record.status.as_str()))
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::state::{ArnScope, Command};

    const MAP_RUN: &str =
        "arn:aws:states:us-east-1:123456789012:mapRun:orders/Map:0b6c1f44-2f7c-4f59-a6a4-3f5a3c6f8e01";

    fn date(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second).unwrap()
    }

    /// A state with one RUNNING execution of `orders`.
    pub(in crate::state) fn state_with_execution() -> (ReplicatedState, ExecutionArn) {
        let scope = ArnScope::default();
        let machine = scope.state_machine("orders");
        let mut state = ReplicatedState::default();
        state
            .execute(Command::CreateStateMachine {
                arn: machine.clone(),
                name: "orders".into(),
                definition: r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#.into(),
                machine_type: stepmap_asl::model::StateMachineType::Standard,
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                date: date(0),
                revision_id: "r".into(),
            })
            .unwrap();
        let execution = machine.execution("e1");
        state
            .execute(Command::StartExecution { arn: execution.clone(), input: "{}".into(), date: date(1), seed: 7 })
            .unwrap();
        (state, execution)
    }

    fn start(execution: &ExecutionArn) -> Command {
        let settings = MapRunSettings { max_concurrency: 1, tolerated_failure_count: Some(2), ..Default::default() };
        let record = MapRunRecord::start(MapRunArn::new(MAP_RUN.into()), execution.clone(), settings, date(2));
        Command::StartMapRun { record: Box::new(record) }
    }

    fn counts(succeeded: u64, total: u64) -> MapRunCounts {
        MapRunCounts { succeeded, total, results_written: succeeded, ..Default::default() }
    }

    #[test]
    fn a_map_run_starts_progresses_is_updated_and_ends() {
        let (mut state, execution) = state_with_execution();
        let arn = MapRunArn::new(MAP_RUN.into());
        let started = state.execute(start(&execution)).unwrap();
        assert!(
            matches!(started, Response::MapRunStarted { restarted: false, settings } if settings.max_concurrency == 1)
        );
        state
            .execute(Command::RecordMapRunProgress {
                arn: arn.clone(),
                item_counts: counts(1, 3),
                execution_counts: counts(1, 3),
            })
            .unwrap();
        let updated = state
            .execute(Command::UpdateMapRun {
                arn: arn.clone(),
                max_concurrency: Some(5),
                tolerated_failure_percentage: Some(12.5),
                tolerated_failure_count: None,
            })
            .unwrap();
        let Response::MapRunUpdated { settings } = updated else { panic!("{updated:?}") };
        assert_eq!((settings.max_concurrency, settings.tolerated_failure_count, settings.version), (5, Some(2), 1));
        assert_eq!(settings.tolerated_failure_percentage, Some(12.5));

        // A new leader re-running it keeps the updated settings and starts counting afresh.
        let restarted = state.execute(start(&execution)).unwrap();
        assert!(
            matches!(restarted, Response::MapRunStarted { restarted: true, settings } if settings.max_concurrency == 5)
        );
        assert_eq!(state.map_run(&arn).unwrap().item_counts, MapRunCounts::default());

        let end = |result: &str| Command::EndMapRun {
            arn: arn.clone(),
            end: MapRunEnd::Succeeded { result: result.into() },
            date: date(9),
            item_counts: counts(3, 3),
            execution_counts: counts(3, 3),
        };
        state.execute(end("[1,2,3]")).unwrap();
        // The same end again (a retried commit) is accepted.
        state.execute(end("[1,2,3]")).unwrap();
        let record = state.map_run(&arn).unwrap();
        assert_eq!((record.status, record.stop_date), (MapRunStatus::Succeeded, Some(date(9))));
        assert_eq!((record.item_counts.succeeded, record.item_counts.total), (3, 3));
        assert_eq!(state.map_runs_of(&execution).len(), 1);

        // Ended: no more progress or updates; a restart is answered with the outcome.
        let update = Command::UpdateMapRun {
            arn: arn.clone(),
            max_concurrency: Some(1),
            tolerated_failure_percentage: None,
            tolerated_failure_count: None,
        };
        assert_eq!(state.execute(update).unwrap_err().exception_name(), "ValidationException");
        let progress = Command::RecordMapRunProgress {
            arn: arn.clone(),
            item_counts: counts(0, 0),
            execution_counts: counts(0, 0),
        };
        assert!(state.execute(progress).is_err());
        let again = state.execute(start(&execution)).unwrap();
        assert!(
            matches!(again, Response::MapRunAlreadyEnded { record } if record.result.as_deref() == Some("[1,2,3]"))
        );
        let failed = Command::EndMapRun {
            arn: arn.clone(),
            end: MapRunEnd::Failed { error: None, cause: None },
            date: date(10),
            item_counts: counts(0, 0),
            execution_counts: counts(0, 0),
        };
        assert!(state.execute(failed).is_err(), "a closed map run does not end twice differently");
    }

    #[test]
    fn unknown_map_runs_and_closed_parents() {
        let (mut state, execution) = state_with_execution();
        let arn = MapRunArn::new(MAP_RUN.into());
        let update = Command::UpdateMapRun {
            arn: arn.clone(),
            max_concurrency: Some(2),
            tolerated_failure_percentage: None,
            tolerated_failure_count: None,
        };
        assert_eq!(state.execute(update.clone()).unwrap_err().exception_name(), "ResourceNotFound");
        state.execute(start(&execution)).unwrap();
        state
            .execute(Command::StopExecution { arn: execution.clone(), error: None, cause: None, date: date(5) })
            .unwrap();
        // The parent closed while the run was RUNNING: the run shows ABORTED and is closed.
        let record = state.map_run(&arn).unwrap();
        assert_eq!((record.status, record.stop_date), (MapRunStatus::Aborted, Some(date(5))));
        assert_eq!(state.execute(update).unwrap_err().exception_name(), "ValidationException");
        let other = ArnScope::default().state_machine("orders").execution("e2");
        assert_eq!(state.execute(start(&other)).unwrap_err().exception_name(), "ExecutionDoesNotExist");
        assert_eq!(state.execute(start(&execution)).unwrap_err().exception_name(), "ExecutionNotRunning");
    }

    #[test]
    fn map_run_arns_are_checked() {
        assert_eq!(parse_map_run_arn("mapRunArn", MAP_RUN).unwrap().as_str(), MAP_RUN);
        let record = MapRunRecord::start(
            MapRunArn::new(MAP_RUN.into()),
            ArnScope::default().state_machine("orders").execution("e1"),
            MapRunSettings::default(),
            date(0),
        );
        assert_eq!(record.state_machine_arn(), "arn:aws:states:us-east-1:123456789012:stateMachine:orders/Map");
        for bad in [
            "",
            "garbage",
            "arn:aws:states:us-east-1:123456789012:execution:orders:e1",
            "arn:aws:states:us-east-1:123456789012:mapRun:orders:id",
            "arn:aws:states:us-east-1:123456789012:mapRun:orders/Map:",
        ] {
            let error = parse_map_run_arn("mapRunArn", bad).unwrap_err();
            assert_eq!(error.exception_name(), "InvalidArn", "{bad:?}");
            assert_eq!(error.field(), Some("mapRunArn"));
        }
    }
}
