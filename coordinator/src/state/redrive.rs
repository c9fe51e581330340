//! RedriveExecution (features.md §2.12): which closed executions may be redriven, where a
//! redrive resumes, and how the interpreter's event ids map onto a history that keeps the
//! failed attempts.
//!
//! A redrive appends `ExecutionRedriven {redriveCount}` to the closed history and makes the
//! execution RUNNING again. The driver then re-runs the execution from its start by
//! deterministic replay (`driver/replay.rs`) up to the *resume point*, and from there the
//! interpreter runs for real. The resume point is the `...StateEntered` event of the
//! top-level state that did not finish (no matching `...StateExited`); the events the failed
//! attempt recorded after it stay in the history but are never replayed: the interpreter's
//! later events take ids after the `ExecutionRedriven` event ([`EventIdMap`]). So the state
//! is not entered again (AWS neither: the history goes on with `...Scheduled`), while its
//! Retry counters and Task timeouts start afresh, as AWS documents (features.md §1.9).
//!
//! The resume points are recorded with the execution ([`Redrive`]) rather than recomputed,
//! so that the mapping of an existing history never changes under a replaying leader.
//!
//! A Distributed Map at the resume point redrives the map run its failed attempt ran (same
//! ARN, `MapRunRedriven`; only its unsuccessful children run again) when the map runs are on
//! the worker fleet (`Replay::map_run_to_redrive`, `driver/map_runs.rs`,
//! `work_ledger::redrive_map_run_units`).
//!
//! Known differences from AWS: the granularity is the top-level state, so a failed Parallel
//! or inline Map state is re-run whole (AWS re-runs only its failed branches or iterations);
//! with in-process map runs (`map_runs = "local"`) a redriven Distributed Map starts a new Map
//! Run. `$$.Execution.RedriveCount` is the count of the redrive whose segment is
//! being run (`Replay::redrive_count`). An execution
//! that never entered a state is redriven from its start (AWS has no such executions).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::model::StateMachineType;

use super::api_error::ApiError;
use super::arn::ExecutionArn;
use super::command::{Outcome, Response};
use super::execution_record::{ExecutionRecord, ExecutionStatus};
use super::ReplicatedState;

/// AWS: executions can be redriven within 14 days of their end.
pub const REDRIVABLE_PERIOD: TimeDelta = TimeDelta::days(14);
/// AWS: an execution may be open at most one year.
pub const MAX_EXECUTION_TIME: TimeDelta = TimeDelta::days(365);
/// AWS: a redrive needs room in the history (the limit is 25,000 events).
pub const MAX_REDRIVABLE_HISTORY: usize = 24_999;
/// AWS answers a repeated client token with the first answer for the last 10 tokens, each
/// for 15 minutes.
pub const IDEMPOTENT_TOKENS: usize = 10;
pub const TOKEN_VALIDITY: TimeDelta = TimeDelta::minutes(15);

/// AWS's `redriveStatusReason` texts.
pub mod reasons {
    pub const RUNNING: &str = "Execution is RUNNING and cannot be redriven";
    pub const SUCCEEDED: &str = "Execution is SUCCEEDED and cannot be redriven";
    pub const MACHINE_DELETING: &str = "State machine is in DELETING status";
    pub const HISTORY_LIMIT: &str = "Execution history event limit exceeded";
    pub const MAX_EXECUTION_TIME: &str = "Execution has exceeded the max execution time";
    pub const PERIOD_EXCEEDED: &str = "Execution redrivable period exceeded";
    /// Not an AWS text: AWS does not let RedriveExecution address EXPRESS executions at all.
    pub const EXPRESS: &str = "Execution is EXPRESS and cannot be redriven";
}

/// One redrive, as the execution record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    /// The id of its `ExecutionRedriven` event.
    pub event_id: u64,
    /// The id of the last recorded event the re-run replays: the resume point's
    /// `...StateEntered`, or the attempt's last event when no state was open (0 for an empty
    /// history). The interpreter's next event takes id `event_id + 1`.
    pub resume_after: u64,
    pub date: DateTime<Utc>,
    pub client_token: Option<String>,
}

/// AWS `ExecutionRedriveStatus` with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedriveStatus {
    Redrivable,
    NotRedrivable(&'static str),
}

impl RedriveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RedriveStatus::Redrivable => "REDRIVABLE",
            RedriveStatus::NotRedrivable(_) => "NOT_REDRIVABLE",
        }
    }

    pub fn reason(self) -> Option<&'static str> {
        match self {
            RedriveStatus::Redrivable => None,
            RedriveStatus::NotRedrivable(reason) => Some(reason),
        }
    }
}

/// Whether `record` may be redriven at `now`; `machine_exists` tells whether its state machine
/// is still there (a deleted machine is AWS's DELETING).
pub fn redrive_status(record: &ExecutionRecord, machine_exists: bool, now: DateTime<Utc>) -> RedriveStatus {
    use RedriveStatus::NotRedrivable;
    match record.status {
        _ if record.machine_type == StateMachineType::Express => NotRedrivable(reasons::EXPRESS),
        ExecutionStatus::Running => NotRedrivable(reasons::RUNNING),
        ExecutionStatus::Succeeded => NotRedrivable(reasons::SUCCEEDED),
        _ if !machine_exists => NotRedrivable(reasons::MACHINE_DELETING),
        _ if record.history.len() >= MAX_REDRIVABLE_HISTORY => NotRedrivable(reasons::HISTORY_LIMIT),
        _ if now - record.start_date >= MAX_EXECUTION_TIME => NotRedrivable(reasons::MAX_EXECUTION_TIME),
        _ if record.stop_date.is_some_and(|stop| now - stop > REDRIVABLE_PERIOD) => {
            NotRedrivable(reasons::PERIOD_EXCEEDED)
        }
        _ => RedriveStatus::Redrivable,
    }
}

/// Where the interpreter's event ids land in the recorded history.
///
/// The interpreter numbers the events of a run 1, 2, 3, … from the execution's start. Without
/// redrives the history uses the same ids. Each redrive cuts the run after its resume point
/// and continues it after its `ExecutionRedriven` event: the map is a list of segments, each a
/// run of consecutive interpreter ids placed at consecutive history ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventIdMap {
    /// Ordered by `first`, which strictly increases; the last segment is open-ended.
    segments: Vec<Segment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    /// The first interpreter id of the segment.
    first: u64,
    /// The history id of that event.
    at: u64,
    /// The `ExecutionRedriven` event that opened the segment (none for the first).
    redriven_by: Option<u64>,
}

impl Default for EventIdMap {
    fn default() -> Self {
        Self { segments: vec![Segment { first: 1, at: 1, redriven_by: None }] }
    }
}

impl EventIdMap {
    /// The map of an execution redriven by `redrives`, in order.
    pub fn new(redrives: &[Redrive]) -> Self {
        let mut map = Self::default();
        for redrive in redrives {
            map.redrive(redrive.resume_after, redrive.event_id);
        }
        map
    }

    /// Cuts the run after history event `resume_after` and continues it after event
    /// `redriven`.
    fn redrive(&mut self, resume_after: u64, redriven: u64) {
        let keep = self.interpreter_at_or_before(resume_after);
        self.segments.retain(|segment| segment.first <= keep);
        self.segments.push(Segment { first: keep + 1, at: redriven + 1, redriven_by: Some(redriven) });
    }

    /// The history id of interpreter event `id` (0 stays 0: "no event").
    pub fn history_id(&self, id: u64) -> u64 {
        if id == 0 {
            return 0;
        }
        let segment = self.segments.iter().rev().find(|s| s.first <= id).unwrap_or(&self.segments[0]);
        segment.at + (id - segment.first)
    }

    /// The history id for the `previousEventId` of interpreter event `id`, whose interpreter
    /// `previous` is given: the first event after a redrive follows its `ExecutionRedriven`.
    pub fn previous_id(&self, id: u64, previous: u64) -> u64 {
        match self.segments.iter().find(|s| s.first == id).and_then(|s| s.redriven_by) {
            Some(redriven) if previous != 0 => redriven,
            _ => self.history_id(previous),
        }
    }

    /// The `ExecutionRedriven` event after which interpreter event `id` is recorded (none
    /// before the first redrive's resume point).
    pub fn redrive_of(&self, id: u64) -> Option<u64> {
        self.segments.iter().rev().find(|s| s.first <= id).and_then(|s| s.redriven_by)
    }

    /// The `ExecutionRedriven` event whose segment interpreter event `id` opens: `id` is the
    /// first event the re-run records after that redrive's resume point.
    pub fn opened_by(&self, id: u64) -> Option<u64> {
        self.segments.iter().find(|s| s.first == id).and_then(|s| s.redriven_by)
    }

    /// The interpreter id of history event `id`, if the re-run records it (it is not part of
    /// a failed attempt, nor an `ExecutionRedriven` event).
    pub fn interpreter_id(&self, id: u64) -> Option<u64> {
        let candidate = self.interpreter_at_or_before(id);
        (candidate > 0 && self.history_id(candidate) == id).then_some(candidate)
    }

    /// The largest interpreter id whose history id is at most `id` (0 if none).
    fn interpreter_at_or_before(&self, id: u64) -> u64 {
        let mut best = 0;
        for (index, segment) in self.segments.iter().enumerate() {
            if id < segment.at {
                break;
            }
            let last = self.segments.get(index + 1).map_or(u64::MAX, |next| next.first - 1);
            best = (segment.first + (id - segment.at)).min(last);
        }
        best
    }

    /// The events of `history` the re-run would record, in interpreter order, with their
    /// history ids.
    pub fn live<'a>(&'a self, history: &'a [HistoryEvent]) -> impl Iterator<Item = (u64, &'a HistoryEvent)> + 'a {
        (1..)
            .map(|id| self.history_id(id))
            .take_while(|&at| at as usize <= history.len())
            .map(|at| (at, &history[at as usize - 1]))
    }
}

fn is_execution_end(event_type: &str) -> bool {
    matches!(event_type, "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted")
}

fn state_name(event: &HistoryEvent) -> Option<&str> {
    event.details.as_ref()?.get("name")?.as_str()
}

/// The history id of the last event a redrive of `history` (mapped by `map`) replays: the
/// `...StateEntered` of the top-level state left unfinished, or, if none is, the attempt's
/// last event before its end.
///
/// A top-level state is one entered while no other state is open: everything between its
/// entry and its exit (branches, iterations) belongs to it. State names are unique in the
/// whole machine (validation), so the exit with its name closes it.
pub fn resume_point(history: &[HistoryEvent], map: &EventIdMap) -> u64 {
    let mut open: Option<(u64, Option<&str>)> = None;
    let mut settled = 0;
    for (id, event) in map.live(history) {
        let event_type = event.event_type.as_str();
        match open {
            None if event_type.ends_with("StateEntered") => open = Some((id, state_name(event))),
            Some((_, name)) if event_type.ends_with("StateExited") && state_name(event) == name => {
                open = None;
                settled = id;
            }
            None if !is_execution_end(event_type) => settled = id,
            _ => {}
        }
    }
    open.map_or(settled, |(id, _)| id)
}

impl ReplicatedState {
    /// `Command::RedriveExecution`: see the module documentation.
    pub(super) fn redrive_execution(
        &mut self,
        arn: ExecutionArn,
        client_token: Option<String>,
        date: DateTime<Utc>,
    ) -> Outcome {
        let machine_exists = self.state_machines.contains_key(&arn.state_machine());
        let execution = self.execution_mut(&arn)?;
        if let Some(token) = &client_token {
            let repeated =
                execution.redrives.iter().rev().take(IDEMPOTENT_TOKENS).find(|redrive| {
                    redrive.client_token.as_ref() == Some(token) && date - redrive.date <= TOKEN_VALIDITY
                });
            if let Some(redrive) = repeated {
                return Ok(Response::ExecutionRedriven { redrive_date: redrive.date, redriven: false });
            }
        }
        if let RedriveStatus::NotRedrivable(reason) = redrive_status(execution, machine_exists, date) {
            return Err(ApiError::ExecutionNotRedrivable { arn: arn.to_string(), reason: reason.to_owned() });
        }
        let resume_after = resume_point(&execution.history, &EventIdMap::new(&execution.redrives));
        let last = execution.history.len() as u64;
        let event = HistoryEvent {
            id: last + 1,
            previous_event_id: last,
            timestamp: date,
            event_type: "ExecutionRedriven".into(),
            details: Some(json!({ "redriveCount": Value::from(execution.redrive_count() + 1) })),
        };
        let stopped = execution.stop_date.unwrap_or(date);
        execution.reopen(event, Redrive { event_id: last + 1, resume_after, date, client_token });
        self.close_attempt_leftovers(&arn, stopped);
        Ok(Response::ExecutionRedriven { redrive_date: date, redriven: true })
    }

    /// What the closed attempt left open stays closed when the execution reopens: its task
    /// tokens time out and its RUNNING map runs are ABORTED, both at the attempt's stop date
    /// (until now they read as closed through the execution's status).
    fn close_attempt_leftovers(&mut self, arn: &ExecutionArn, stopped: DateTime<Utc>) {
        for token in self.task_tokens.values_mut() {
            if &token.execution_arn == arn && token.is_open() {
                token.status = super::TaskTokenStatus::TimedOut { date: stopped };
            }
        }
        for map_run in self.map_runs.by_execution.get(arn).into_iter().flatten() {
            if let Some(record) = self.map_runs.map_runs.get_mut(map_run) {
                if record.status == super::MapRunStatus::Running {
                    record.status = super::MapRunStatus::Aborted;
                    record.stop_date = Some(stopped);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::state::{ArnScope, Command};

    fn event(id: u64, event_type: &str, name: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id.saturating_sub(1),
            timestamp: Utc.timestamp_opt(1_700_000_000 + id as i64, 0).unwrap(),
            event_type: event_type.into(),
            details: name.map(|name| json!({ "name": name })),
        }
    }

    fn redrive(event_id: u64, resume_after: u64) -> Redrive {
        Redrive { event_id, resume_after, date: Utc::now(), client_token: None }
    }

    #[test]
    fn without_redrives_ids_are_the_interpreters() {
        let map = EventIdMap::new(&[]);
        assert_eq!((map.history_id(0), map.history_id(1), map.history_id(57)), (0, 1, 57));
        assert_eq!(map.interpreter_id(57), Some(57));
        assert_eq!(map.previous_id(5, 4), 4);
    }

    #[test]
    fn a_redrive_places_later_ids_after_its_event() {
        // 1..=4 replayed, 5..=8 the failed attempt, 9 ExecutionRedriven.
        let map = EventIdMap::new(&[redrive(9, 4)]);
        let placed: Vec<u64> = (1..=7).map(|id| map.history_id(id)).collect();
        assert_eq!(placed, [1, 2, 3, 4, 10, 11, 12]);
        assert_eq!(map.previous_id(5, 4), 9, "the first event after a redrive follows ExecutionRedriven");
        assert_eq!(map.previous_id(6, 5), 10);
        assert_eq!(map.previous_id(7, 4), 4, "a later event pointing before the cut keeps its target");
        assert_eq!((map.interpreter_id(4), map.interpreter_id(11)), (Some(4), Some(6)));
        assert_eq!((map.redrive_of(4), map.redrive_of(5)), (None, Some(9)));
        for failed_attempt in 5..=9 {
            assert_eq!(map.interpreter_id(failed_attempt), None, "event {failed_attempt} is never replayed");
        }
    }

    #[test]
    fn redrives_compose() {
        // Second attempt 10..=14 fails in a later state entered at 12; redriven at 15.
        let map = EventIdMap::new(&[redrive(9, 4), redrive(15, 12)]);
        let placed: Vec<u64> = (1..=9).map(|id| map.history_id(id)).collect();
        assert_eq!(placed, [1, 2, 3, 4, 10, 11, 12, 16, 17]);
        assert_eq!(map.interpreter_id(13), None);
        // A third attempt that failed in the same state again (entered at 12, no new entry):
        // its events 16..=19 are dropped whole.
        let map = EventIdMap::new(&[redrive(9, 4), redrive(15, 12), redrive(20, 12)]);
        let placed: Vec<u64> = (1..=9).map(|id| map.history_id(id)).collect();
        assert_eq!(placed, [1, 2, 3, 4, 10, 11, 12, 21, 22]);
        assert_eq!(map.interpreter_id(17), None);
        // Redriven from the very start: only ExecutionStarted is replayed.
        let map = EventIdMap::new(&[redrive(3, 1)]);
        assert_eq!((map.history_id(1), map.history_id(2)), (1, 4));
    }

    #[test]
    fn the_resume_point_is_the_unfinished_top_level_state() {
        let history = vec![
            event(1, "ExecutionStarted", None),
            event(2, "PassStateEntered", Some("Prepare")),
            event(3, "PassStateExited", Some("Prepare")),
            event(4, "ParallelStateEntered", Some("Fan")),
            event(5, "ParallelStateStarted", None),
            event(6, "TaskStateEntered", Some("Inner")),
            event(7, "TaskStateExited", Some("Inner")),
            event(8, "ParallelStateFailed", None),
            event(9, "ExecutionFailed", None),
        ];
        let map = EventIdMap::new(&[]);
        assert_eq!(resume_point(&history, &map), 4, "nested states do not count");
        assert_eq!(resume_point(&history[..3], &map), 3, "no state open: after the last exit");
        assert_eq!(resume_point(&history[..1], &map), 1, "never entered a state: from the start");
        assert_eq!(resume_point(&[], &map), 0);

        // After a redrive at 4, the second attempt (11..) finishes Fan and fails in Last.
        let mut history = history;
        history.push(event(10, "ExecutionRedriven", None));
        history.push(event(11, "ParallelStateStarted", None));
        history.push(event(12, "ParallelStateSucceeded", None));
        history.push(event(13, "ParallelStateExited", Some("Fan")));
        history.push(event(14, "TaskStateEntered", Some("Last")));
        history.push(event(15, "ExecutionFailed", None));
        assert_eq!(resume_point(&history, &EventIdMap::new(&[redrive(10, 4)])), 14);
    }

    fn failed_execution() -> (ReplicatedState, ExecutionArn, DateTime<Utc>) {
        let scope = ArnScope::default();
        let machine = scope.state_machine("m");
        let start = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut state = ReplicatedState::default();
        let create = Command::CreateStateMachine {
            arn: machine.clone(),
            name: "m".into(),
            definition: r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#.into(),
            machine_type: StateMachineType::Standard,
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            date: start,
            revision_id: "r".into(),
        };
        state.execute(create).unwrap();
        let arn = machine.execution("e");
        state.execute(Command::StartExecution { arn: arn.clone(), input: "{}".into(), date: start, seed: 1 }).unwrap();
        let events = vec![
            event(1, "ExecutionStarted", None),
            event(2, "PassStateEntered", Some("Prepare")),
            event(3, "PassStateExited", Some("Prepare")),
            event(4, "TaskStateEntered", Some("Work")),
            event(5, "TaskFailed", None),
            HistoryEvent { details: Some(json!({"error": "E", "cause": "C"})), ..event(6, "ExecutionFailed", None) },
        ];
        state.execute(Command::RecordEvents { arn: arn.clone(), events }).unwrap();
        (state, arn, start)
    }

    #[test]
    fn a_redrive_reopens_the_execution_and_is_idempotent_per_client_token() {
        let (mut state, arn, start) = failed_execution();
        let date = start + TimeDelta::hours(1);
        let command =
            |token: &str, date| Command::RedriveExecution { arn: arn.clone(), client_token: Some(token.into()), date };
        assert_eq!(
            state.execute(command("t1", date)),
            Ok(Response::ExecutionRedriven { redrive_date: date, redriven: true })
        );
        let record = &state.executions[&arn];
        assert_eq!(record.status, ExecutionStatus::Running);
        assert_eq!((record.error.as_deref(), record.stop_date), (None, None));
        assert_eq!((record.redrive_count(), record.redrive_date()), (1, Some(date)));
        let redriven = record.history.last().unwrap();
        assert_eq!(
            (redriven.id, redriven.previous_event_id, redriven.event_type.as_str()),
            (7, 6, "ExecutionRedriven")
        );
        assert_eq!(redriven.details, Some(json!({"redriveCount": 1})));
        assert_eq!(record.redrives[0].resume_after, 4);

        // The same token again (the execution now runs): the first answer, nothing appended.
        let later = date + TimeDelta::minutes(1);
        assert_eq!(
            state.execute(command("t1", later)),
            Ok(Response::ExecutionRedriven { redrive_date: date, redriven: false })
        );
        assert_eq!(state.executions[&arn].history.len(), 7);
        // Another token is a new request, refused while the execution runs.
        let refused = state.execute(command("t2", later)).unwrap_err();
        assert_eq!(refused, ApiError::ExecutionNotRedrivable { arn: arn.to_string(), reason: reasons::RUNNING.into() });
        // After 15 minutes a token is forgotten.
        let refused = state.execute(command("t1", date + TimeDelta::minutes(16))).unwrap_err();
        assert_eq!(refused.exception_name(), "ExecutionNotRedrivable");
    }

    #[test]
    fn a_redrive_leaves_the_failed_attempts_tokens_closed() {
        let (mut state, arn, start) = failed_execution();
        let stop = state.executions[&arn].stop_date.unwrap();
        // A callback token the failed attempt left open.
        let token = crate::state::TaskTokenRecord::issue(
            "tok".into(),
            arn.clone(),
            "T".into(),
            None,
            "{}".into(),
            None,
            None,
            start,
        );
        state.task_tokens.insert("tok".into(), token);
        let date = start + TimeDelta::hours(1);
        state.execute(Command::RedriveExecution { arn: arn.clone(), client_token: None, date }).unwrap();
        assert_eq!(state.executions[&arn].status, ExecutionStatus::Running);
        assert_eq!(state.task_tokens["tok"].status, crate::state::TaskTokenStatus::TimedOut { date: stop });
        let late = Command::HeartbeatTaskToken { token: "tok".into(), date: date + TimeDelta::seconds(1) };
        assert_eq!(state.execute(late).unwrap_err().exception_name(), "TaskTimedOut");
    }

    #[test]
    fn redrive_conditions() {
        let (state, arn, start) = failed_execution();
        let record = &state.executions[&arn];
        let stop = record.stop_date.unwrap();
        assert_eq!(redrive_status(record, true, stop), RedriveStatus::Redrivable);
        assert_eq!(
            redrive_status(record, true, stop + TimeDelta::days(15)),
            RedriveStatus::NotRedrivable(reasons::PERIOD_EXCEEDED)
        );
        assert_eq!(redrive_status(record, false, stop), RedriveStatus::NotRedrivable(reasons::MACHINE_DELETING));
        assert_eq!(
            redrive_status(record, true, start + TimeDelta::days(366)),
            RedriveStatus::NotRedrivable(reasons::MAX_EXECUTION_TIME)
        );
        let mut succeeded = record.clone();
        succeeded.status = ExecutionStatus::Succeeded;
        assert_eq!(redrive_status(&succeeded, true, stop), RedriveStatus::NotRedrivable(reasons::SUCCEEDED));
        let mut express = record.clone();
        express.machine_type = StateMachineType::Express;
        assert_eq!(redrive_status(&express, true, stop), RedriveStatus::NotRedrivable(reasons::EXPRESS));

        let mut state = state;
        let unknown = ArnScope::default().state_machine("m").execution("none");
        let refused =
            state.execute(Command::RedriveExecution { arn: unknown, client_token: None, date: stop }).unwrap_err();
        assert_eq!(refused.exception_name(), "ExecutionDoesNotExist");
    }
}
