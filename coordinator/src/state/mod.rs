//! The replicated state (DESIGN.md §3): state machines, executions with their history,
//! activities and task tokens, and the Map Run ledger. [`ReplicatedState`] is the
//! [`StateMachine`](crate::StateMachine) the Raft log drives: `apply` is pure, and
//! everything time-dependent or random was stamped into the command by the leader.

mod activity_record;
mod api_error;
mod arn;
mod command;
mod execution_record;
mod map_run_ledger;
mod redrive;
mod state_machine_record;
mod task_tokens;
#[cfg(test)]
mod tests;
mod work_ledger;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::model::StateMachineType;

pub use activity_record::{ActivityRecord, TaskTokenOutcome, TaskTokenRecord, TaskTokenStatus};
pub use api_error::ApiError;
pub use arn::{
    name_from, validate_name, ActivityArn, ArnScope, ExecutionArn, MapRunArn, StateMachineArn, MAX_NAME_LENGTH,
};
pub use command::{decode_outcome, encode_outcome, Command, Outcome, Response};
pub use execution_record::{ExecutionRecord, ExecutionStatus};
pub use map_run_ledger::{
    parse_map_run_arn, MapRunCounts, MapRunEnd, MapRunLedger, MapRunRecord, MapRunSettings, MapRunStatus,
};
pub use redrive::{redrive_status, EventIdMap, Redrive, RedriveStatus, REDRIVABLE_PERIOD};
pub use state_machine_record::StateMachineRecord;
pub use work_ledger::{parse_work_key, task_work_key, LeaseGrant, MapRunWork, UnitRecord, UnitStatus, WorkLedger};

/// Everything the coordinators agree on. Cloneable so that readers can take a consistent copy
/// of what they need; `Serialize` is the snapshot format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicatedState {
    pub state_machines: BTreeMap<StateMachineArn, StateMachineRecord>,
    pub executions: BTreeMap<ExecutionArn, ExecutionRecord>,
    /// Each machine's executions by start order (`ExecutionRecord::seq`).
    pub executions_by_machine: BTreeMap<StateMachineArn, BTreeMap<u64, ExecutionArn>>,
    pub activities: BTreeMap<ActivityArn, ActivityRecord>,
    pub task_tokens: BTreeMap<String, TaskTokenRecord>,
    pub map_runs: MapRunLedger,
    /// The units of map runs on the worker fleet.
    #[serde(default)]
    pub work: WorkLedger,
    /// The next `ExecutionRecord::seq`.
    pub next_seq: u64,
    /// The log index of the last applied command.
    pub applied_index: u64,
}

impl ReplicatedState {
    /// Applies one command; the pure heart of the coordinator.
    pub fn execute(&mut self, command: Command) -> Outcome {
        match command {
            Command::CreateStateMachine { arn, name, definition, machine_type, role_arn, date, revision_id } => {
                if let Some(existing) = self.state_machines.get(&arn) {
                    let same = existing.definition == definition
                        && existing.machine_type == machine_type
                        && existing.role_arn == role_arn;
                    return if same {
                        Ok(Response::StateMachineCreated { arn, creation_date: existing.creation_date })
                    } else {
                        Err(ApiError::StateMachineAlreadyExists { arn: arn.to_string() })
                    };
                }
                let record = StateMachineRecord {
                    arn: arn.clone(),
                    name,
                    definition,
                    machine_type,
                    role_arn,
                    creation_date: date,
                    update_date: None,
                    revision_id,
                };
                self.state_machines.insert(arn.clone(), record);
                Ok(Response::StateMachineCreated { arn, creation_date: date })
            }
            Command::UpdateStateMachine { arn, definition, role_arn, date, revision_id } => {
                let machine = self.machine_mut(&arn)?;
                if let Some(definition) = definition {
                    machine.definition = definition;
                }
                if let Some(role_arn) = role_arn {
                    machine.role_arn = role_arn;
                }
                machine.update_date = Some(date);
                machine.revision_id = revision_id.clone();
                Ok(Response::StateMachineUpdated { update_date: date, revision_id })
            }
            Command::DeleteStateMachine { arn } => {
                self.state_machines.remove(&arn);
                // AWS answers DeleteStateMachine for an unknown machine with success, too.
                Ok(Response::StateMachineDeleted)
            }
            Command::StartExecution { arn, input, date, seed } => self.start_execution(arn, input, date, seed),
            Command::RedriveExecution { arn, client_token, date } => self.redrive_execution(arn, client_token, date),
            Command::StartMapRun { record } => self.start_map_run(*record),
            Command::RecordMapRunProgress { arn, item_counts, execution_counts } => {
                self.record_map_run_progress(&arn, item_counts, execution_counts)
            }
            Command::EndMapRun { arn, end, date, item_counts, execution_counts } => {
                self.end_map_run(&arn, end, date, item_counts, execution_counts)
            }
            Command::UpdateMapRun { arn, max_concurrency, tolerated_failure_percentage, tolerated_failure_count } => {
                self.update_map_run(&arn, max_concurrency, tolerated_failure_percentage, tolerated_failure_count)
            }
            Command::PlanMapRunUnits { arn, job, round, first, units, last } => {
                self.plan_map_run_units(arn, job, round, first, units, last)
            }
            Command::GrantLeases { worker, grants } => self.grant_leases(worker, grants),
            Command::CompleteUnit { lease, outcome } => self.complete_unit(lease, outcome),
            Command::ReleaseLease { lease } => self.release_lease(lease),
            Command::StopMapRunUnits { arn } => self.stop_map_run_units(&arn),
            Command::ScheduleTaskWork { key, execution, job, term } => {
                self.schedule_task_work(key, execution, job, term)
            }
            Command::EndTaskWork { key } => {
                // Task work only: a map run's units end with their run.
                if self.work.runs.get(&key).is_some_and(|w| w.execution.is_some()) {
                    self.work.runs.remove(&key);
                }
                Ok(Response::TaskWorkEnded)
            }
            Command::PruneRedriveWork { before } => {
                let pruned = self.prunable_work(before);
                for arn in &pruned {
                    self.work.runs.remove(arn);
                }
                Ok(Response::WorkPruned { map_runs: pruned.len() as u64 })
            }
            Command::DropTaskWork { term } => {
                self.work.runs.retain(|_, work| work.execution.is_none() || work.term >= term);
                Ok(Response::TaskWorkEnded)
            }
            Command::RedriveMapRun { arn, redrive_count, date } => self.redrive_map_run(&arn, redrive_count, date),
            Command::RedriveMapRunUnits { arn, round, job } => self.redrive_map_run_units(&arn, round, job),
            Command::RecordEvents { arn, events } => {
                let execution = self.execution_mut(&arn)?;
                let last_event_id = execution.append(&events)?;
                self.drop_work_of_closed(&arn);
                Ok(Response::EventsRecorded { last_event_id })
            }
            Command::StopExecution { arn, error, cause, date } => {
                let execution = self.execution_mut(&arn)?;
                if execution.status != ExecutionStatus::Running {
                    return Err(ApiError::ExecutionNotRunning { arn: arn.to_string() });
                }
                let mut details = serde_json::Map::new();
                if let Some(error) = error {
                    details.insert("error".into(), error.into());
                }
                if let Some(cause) = cause {
                    details.insert("cause".into(), cause.into());
                }
                let last = execution.history.len() as u64;
                let aborted = HistoryEvent {
                    id: last + 1,
                    previous_event_id: last,
                    timestamp: date,
                    event_type: "ExecutionAborted".into(),
                    details: Some(json!(details)),
                };
                execution.append(&[aborted])?;
                self.drop_work_of_closed(&arn);
                Ok(Response::ExecutionStopped { stop_date: date })
            }
            Command::RecordExpressExecution { record } => {
                let record = *record;
                if self.executions.contains_key(&record.arn) {
                    return Err(ApiError::ExecutionAlreadyExists { arn: record.arn.to_string() });
                }
                self.insert_execution(record);
                Ok(Response::ExpressExecutionRecorded)
            }
            Command::CreateActivity { arn, name, date } => {
                // CreateActivity is idempotent on AWS: the same name returns the same ARN.
                let record = self.activities.entry(arn.clone()).or_insert(ActivityRecord {
                    arn: arn.clone(),
                    name,
                    creation_date: date,
                });
                Ok(Response::ActivityCreated { arn, creation_date: record.creation_date })
            }
            Command::DeleteActivity { arn } => {
                self.activities.remove(&arn);
                Ok(Response::ActivityDeleted)
            }
            Command::IssueTaskToken { record } => self.issue_task_token(*record),
            Command::CompleteTaskToken { token, outcome, date } => self.complete_task_token(&token, outcome, date),
            Command::HeartbeatTaskToken { token, date } => self.heartbeat_task_token(&token, date),
            Command::StartActivityTask { token, worker_name, date } => {
                self.start_activity_task(&token, worker_name, date)
            }
            Command::SubmitTaskToken { token, output } => self.submit_task_token(&token, output),
            Command::TimeOutTaskToken { token, date } => self.time_out_task_token(&token, date),
            Command::AbandonTaskToken { token, date } => self.abandon_task_token(&token, date),
        }
    }

    fn start_execution(
        &mut self,
        arn: ExecutionArn,
        input: String,
        date: chrono::DateTime<chrono::Utc>,
        seed: u64,
    ) -> Outcome {
        let machine_arn = arn.state_machine();
        let machine = self
            .state_machines
            .get(&machine_arn)
            .ok_or_else(|| ApiError::StateMachineDoesNotExist { arn: machine_arn.to_string() })?;
        if let Some(existing) = self.executions.get(&arn) {
            // AWS: idempotent for the same name and input while the execution runs; a closed
            // execution or a different input is ExecutionAlreadyExists.
            return if existing.status == ExecutionStatus::Running && existing.input == input {
                Ok(Response::ExecutionStarted { arn, start_date: existing.start_date, created: false })
            } else {
                Err(ApiError::ExecutionAlreadyExists { arn: arn.to_string() })
            };
        }
        let record = ExecutionRecord {
            arn: arn.clone(),
            state_machine_arn: machine_arn,
            name: arn.name().to_owned(),
            machine_type: machine.machine_type,
            definition: machine.definition.clone(),
            role_arn: machine.role_arn.clone(),
            input,
            status: ExecutionStatus::Running,
            start_date: date,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
            seed,
            seq: 0,
            history: Vec::new(),
            redrives: Vec::new(),
        };
        self.insert_execution(record);
        Ok(Response::ExecutionStarted { arn, start_date: date, created: true })
    }

    fn insert_execution(&mut self, mut record: ExecutionRecord) {
        record.seq = self.next_seq;
        self.next_seq += 1;
        self.executions_by_machine
            .entry(record.state_machine_arn.clone())
            .or_default()
            .insert(record.seq, record.arn.clone());
        self.executions.insert(record.arn.clone(), record);
    }

    fn machine_mut(&mut self, arn: &StateMachineArn) -> Result<&mut StateMachineRecord, ApiError> {
        self.state_machines.get_mut(arn).ok_or_else(|| ApiError::StateMachineDoesNotExist { arn: arn.to_string() })
    }

    fn execution_mut(&mut self, arn: &ExecutionArn) -> Result<&mut ExecutionRecord, ApiError> {
        self.executions.get_mut(arn).ok_or_else(|| ApiError::ExecutionDoesNotExist { arn: arn.to_string() })
    }

    /// Executions the leader must drive: STANDARD and EXPRESS ones still RUNNING.
    pub fn running_executions(&self) -> Vec<ExecutionRecord> {
        self.executions.values().filter(|e| e.status == ExecutionStatus::Running).cloned().collect()
    }

    /// The machine's executions, newest first, optionally of one status, starting below
    /// `before` (a `seq`), at most `limit`; with the `seq` to continue from, if more remain.
    pub fn list_executions(
        &self,
        machine: &StateMachineArn,
        status: Option<ExecutionStatus>,
        before: Option<u64>,
        limit: usize,
    ) -> (Vec<ExecutionRecord>, Option<u64>) {
        let Some(index) = self.executions_by_machine.get(machine) else { return (Vec::new(), None) };
        let mut page = Vec::new();
        let candidates = index.range(..before.unwrap_or(u64::MAX)).rev();
        for (seq, arn) in candidates {
            let Some(record) = self.executions.get(arn) else { continue };
            if status.is_some_and(|status| status != record.status) {
                continue;
            }
            if page.len() == limit {
                return (page, Some(*seq + 1));
            }
            page.push(record.clone());
        }
        (page, None)
    }

    /// Whether `machine_type` machines may be started with StartExecution / StartSyncExecution.
    pub fn machine_type(&self, arn: &StateMachineArn) -> Option<StateMachineType> {
        self.state_machines.get(arn).map(|m| m.machine_type)
    }
}

impl crate::StateMachine for ReplicatedState {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.applied_index = index;
        let outcome = match Command::decode(command) {
            Ok(command) => self.execute(command),
            // A command this build cannot read is refused the same way on every replica.
            Err(error) => Err(ApiError::validation("command", format!("undecodable command: {error}"))),
        };
        encode_outcome(&outcome)
    }

    /// Queries are a JSON execution ARN or state machine ARN; the answer is the record as JSON
    /// (`null` if absent). The API reads the state through closures instead; this serves the
    /// RaftAdmin service and operators.
    fn query(&self, query: &[u8]) -> Vec<u8> {
        let arn: String = serde_json::from_slice(query).unwrap_or_default();
        let answer = if arn.contains(":stateMachine:") {
            serde_json::to_value(self.state_machines.iter().find(|(key, _)| key.as_str() == arn).map(|(_, v)| v))
        } else {
            serde_json::to_value(self.executions.iter().find(|(key, _)| key.as_str() == arn).map(|(_, v)| v))
        };
        serde_json::to_vec(&answer.unwrap_or_default()).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the replicated state serialises to JSON")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        *self = serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
        Ok(())
    }
}
