//! The commands the Raft log carries and what `apply` answers. Serialised as JSON inside
//! log entries. Every time, id and random seed in a command was stamped by the leader that
//! proposed it: `apply` reads no clock and draws no random numbers (DESIGN.md §3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::model::StateMachineType;

use super::activity_record::{TaskTokenOutcome, TaskTokenRecord};
use super::api_error::ApiError;
use super::arn::{ActivityArn, ExecutionArn, MapRunArn, StateMachineArn};
use super::execution_record::ExecutionRecord;
use super::map_run_ledger::{MapRunCounts, MapRunEnd, MapRunRecord, MapRunSettings};
use super::work_ledger::LeaseGrant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command")]
pub enum Command {
    /// Idempotent for the same name, definition, type and role (as on AWS); otherwise a
    /// second machine of that name is `StateMachineAlreadyExists`.
    CreateStateMachine {
        arn: StateMachineArn,
        name: String,
        definition: String,
        machine_type: StateMachineType,
        role_arn: String,
        date: DateTime<Utc>,
        revision_id: String,
    },
    UpdateStateMachine {
        arn: StateMachineArn,
        definition: Option<String>,
        role_arn: Option<String>,
        date: DateTime<Utc>,
        revision_id: String,
    },
    /// Removes the machine. Executions already running keep their own copy of the
    /// definition and run to their end.
    DeleteStateMachine {
        arn: StateMachineArn,
    },
    /// Standard: idempotent while the execution with this name runs with the same input;
    /// otherwise `ExecutionAlreadyExists` (AWS StartExecution).
    StartExecution {
        arn: ExecutionArn,
        input: String,
        date: DateTime<Utc>,
        seed: u64,
    },
    /// History events of a running execution, in id order (see `ExecutionRecord::append`).
    RecordEvents {
        arn: ExecutionArn,
        events: Vec<HistoryEvent>,
    },
    /// Closes a running execution with an `ExecutionAborted` event.
    StopExecution {
        arn: ExecutionArn,
        error: Option<String>,
        cause: Option<String>,
        date: DateTime<Utc>,
    },
    /// The final record of an execution that ran in memory (StartSyncExecution).
    RecordExpressExecution {
        record: Box<ExecutionRecord>,
    },
    CreateActivity {
        arn: ActivityArn,
        name: String,
        date: DateTime<Utc>,
    },
    DeleteActivity {
        arn: ActivityArn,
    },
    IssueTaskToken {
        record: Box<TaskTokenRecord>,
    },
    CompleteTaskToken {
        token: String,
        outcome: TaskTokenOutcome,
        date: DateTime<Utc>,
    },
    HeartbeatTaskToken {
        token: String,
        date: DateTime<Utc>,
    },
    /// GetActivityTask handed the (scheduled) task to `worker_name`; its clocks start.
    StartActivityTask {
        token: String,
        worker_name: String,
        date: DateTime<Utc>,
    },
    /// The service call of a `.waitForTaskToken` task returned `output`.
    SubmitTaskToken {
        token: String,
        output: String,
    },
    /// The leader saw the token's heartbeat or timeout pass.
    TimeOutTaskToken {
        token: String,
        date: DateTime<Utc>,
    },
    /// The attempt holding the token was abandoned without an outcome (a sibling branch
    /// failed, its timer fired): the token closes as timed out.
    AbandonTaskToken {
        token: String,
        date: DateTime<Utc>,
    },
    // Map runs (map_run_ledger.rs).
    /// A Distributed Map's map run started (or, same ARN, is re-run by a new leader).
    StartMapRun {
        record: Box<MapRunRecord>,
    },
    /// The counters of a running map run (committed periodically, not per item).
    RecordMapRunProgress {
        arn: MapRunArn,
        item_counts: MapRunCounts,
        execution_counts: MapRunCounts,
    },
    EndMapRun {
        arn: MapRunArn,
        end: MapRunEnd,
        date: DateTime<Utc>,
        item_counts: MapRunCounts,
        execution_counts: MapRunCounts,
    },
    // The work ledger of map runs on the worker fleet (work_ledger.rs).
    /// Units `first..` of a map run's plan; `job` with the first part, `last` with the last.
    /// `round`: the redrive the plan is made for (a redriven run whose units were never
    /// recorded is planned whole).
    PlanMapRunUnits {
        arn: MapRunArn,
        job: Option<String>,
        #[serde(default)]
        round: u32,
        first: u64,
        units: Vec<stepmap_worker::map_run::WorkUnit>,
        last: bool,
    },
    GrantLeases {
        worker: String,
        grants: Vec<LeaseGrant>,
    },
    CompleteUnit {
        lease: LeaseGrant,
        outcome: stepmap_worker::map_run::UnitOutcome,
    },
    /// The lease lapsed, or its worker gave it back.
    ReleaseLease {
        lease: LeaseGrant,
    },
    StopMapRunUnits {
        arn: MapRunArn,
    },
    /// A parent's Task invocation as one unit of work for the fleet (`key` names it where
    /// a map run's ARN names a run's units); `job` is the worker crate's `TaskJob`.
    ScheduleTaskWork {
        key: MapRunArn,
        execution: ExecutionArn,
        job: String,
        /// The term of the leader that schedules it.
        term: u64,
    },
    /// The Task's result was taken (or the attempt abandoned): its work is dropped.
    EndTaskWork {
        key: MapRunArn,
    },
    /// Drops the units kept for a redrive of map runs whose parent closed before `before`
    /// (the leader stamps now − AWS's 14-day redrivable period): they can no longer be
    /// redriven.
    PruneRedriveWork {
        before: DateTime<Utc>,
    },
    /// A new leader drops the Task work scheduled in terms before `term`, its own: it replays
    /// the executions and schedules what they still wait for anew.
    DropTaskWork {
        term: u64,
    },
    /// Redrive `redrive_count` of a map run whose parent was redriven (features.md §2.12):
    /// the record is RUNNING again.
    RedriveMapRun {
        arn: MapRunArn,
        redrive_count: u32,
        date: DateTime<Utc>,
    },
    /// The units of redrive `round` of a map run: those that did not wholly succeed are
    /// PENDING again, for their unsuccessful children only; `job` is the redrive's.
    RedriveMapRunUnits {
        arn: MapRunArn,
        round: u32,
        job: String,
    },
    /// AWS UpdateMapRun: `None` leaves a setting as it is.
    UpdateMapRun {
        arn: MapRunArn,
        max_concurrency: Option<u64>,
        tolerated_failure_percentage: Option<f64>,
        tolerated_failure_count: Option<u64>,
    },
    // Redrive (redrive.rs).
    /// AWS RedriveExecution: reopens a closed STANDARD execution from its unfinished state.
    RedriveExecution {
        arn: ExecutionArn,
        client_token: Option<String>,
        date: DateTime<Utc>,
    },
}

/// What `apply` answers for a command it accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response")]
pub enum Response {
    StateMachineCreated {
        arn: StateMachineArn,
        creation_date: DateTime<Utc>,
    },
    StateMachineUpdated {
        update_date: DateTime<Utc>,
        revision_id: String,
    },
    StateMachineDeleted,
    /// `created` is false when the start was a repeat of a running execution's.
    ExecutionStarted {
        arn: ExecutionArn,
        start_date: DateTime<Utc>,
        created: bool,
    },
    EventsRecorded {
        last_event_id: u64,
    },
    ExecutionStopped {
        stop_date: DateTime<Utc>,
    },
    ExpressExecutionRecorded,
    ActivityCreated {
        arn: ActivityArn,
        creation_date: DateTime<Utc>,
    },
    ActivityDeleted,
    TaskTokenIssued,
    TaskTokenUpdated,
    /// GetActivityTask's answer.
    ActivityTaskStarted {
        token: String,
        input: String,
    },
    /// The settings the map run runs with (an updated record's, when `restarted`).
    MapRunStarted {
        settings: MapRunSettings,
        restarted: bool,
    },
    /// StartMapRun of a map run that has ended: its outcome stands.
    MapRunAlreadyEnded {
        record: Box<MapRunRecord>,
    },
    MapRunProgressRecorded,
    MapRunEnded,
    MapRunUpdated {
        settings: MapRunSettings,
    },
    UnitsPlanned {
        recorded: u64,
    },
    LeasesGranted {
        granted: Vec<LeaseGrant>,
    },
    UnitCompleted {
        accepted: bool,
    },
    LeaseReleased {
        released: bool,
    },
    MapRunUnitsStopped,
    /// The settings the redriven map run runs with.
    MapRunRedriven {
        settings: MapRunSettings,
    },
    TaskWorkScheduled,
    TaskWorkEnded,
    WorkPruned {
        map_runs: u64,
    },
    /// `reopened`: the units PENDING again (0 when the round had been opened before).
    UnitsRedriven {
        reopened: u64,
    },
    /// `redriven` is false when a repeated client token got the earlier redrive's answer.
    ExecutionRedriven {
        redrive_date: DateTime<Utc>,
        redriven: bool,
    },
}

/// The response bytes of one applied command.
pub type Outcome = Result<Response, ApiError>;

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands serialise to JSON")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    serde_json::to_vec(outcome).expect("responses serialise to JSON")
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, serde_json::Error> {
    serde_json::from_slice(bytes)
}
