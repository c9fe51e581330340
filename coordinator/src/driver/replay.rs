//! Deterministic replay: how a new leader continues an execution from its committed history.
//!
//! The interpreter is restarted from the execution's start with an environment that answers
//! as the first run was answered, for as long as the recorded history lasts:
//!
//! - the clock's `now` is the timestamp of the event about to be recorded, and sleeps that
//!   the first run got past (their deadline is not after the last recorded event) end at
//!   once;
//! - a Task whose outcome was recorded (`...Succeeded` / `...Failed` / `...TimedOut`) gets
//!   that outcome instead of running again, after its recorded milestones
//!   (`ActivityStarted`, `TaskSubmitted`);
//! - randomness comes from the execution's seed (a new stream after each redrive, see
//!   [`replay_random`]).
//!
//! Once the regenerated events pass the recorded ones, the environment is the real one: the
//! wall clock, the real invoker. The sink (`event_commit.rs`) skips events already
//! committed and checks that each regenerated one has the recorded type and state.
//!
//! A redriven execution is replayed the same way through the [`EventIdMap`] of its redrives
//! (`state/redrive.rs`): the interpreter's ids up to a redrive's resume point are the
//! recorded ones; its later ids continue after the `ExecutionRedriven` event, so the failed
//! attempt's events are never replayed and the interpreter runs for real from the resume
//! point. Every id the interpreter hands out ("interpreter id") is translated here.
//!
//! The execution's own TimeoutSeconds timer is the one sleep that spans the whole run: it
//! races the states, so events recorded after it began say nothing about whether it ended.
//! A replay never cuts it short, and it restarts with each redrive (AWS resets the state
//! machine's timeout on redrive).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use stepmap_asl::clock::Clock;
use stepmap_asl::failure::Failure;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::interpreter::RandomSource;
use stepmap_asl::map_run::MapRunRedrive;
use stepmap_asl::payload::Payload;
use stepmap_asl::task::{TaskInvoker, TaskProgress, TaskRequest};

use crate::state::{EventIdMap, ExecutionRecord};

/// The recorded history of one execution and how far the rerun has got through it.
pub struct Replay {
    recorded: Vec<HistoryEvent>,
    /// Interpreter ids to history ids.
    ids: EventIdMap,
    /// When the execution was last redriven: its TimeoutSeconds counts from there.
    redriven_at: Option<DateTime<Utc>>,
    /// The interpreter id of the last event the rerun recorded (0 before the first).
    cursor: AtomicU64,
}

impl Replay {
    /// The replay of a history that was never redriven.
    pub fn new(recorded: Vec<HistoryEvent>) -> Arc<Self> {
        Arc::new(Self { recorded, ids: EventIdMap::default(), redriven_at: None, cursor: AtomicU64::new(0) })
    }

    /// The replay of `record`'s history, redrives included.
    pub fn for_record(record: &ExecutionRecord) -> Arc<Self> {
        Arc::new(Self {
            recorded: record.history.clone(),
            ids: EventIdMap::new(&record.redrives),
            redriven_at: record.redrive_date(),
            cursor: AtomicU64::new(0),
        })
    }

    /// The recorded event that the rerun's event `id` (an interpreter id) stands for, if the
    /// first run got that far.
    pub fn recorded(&self, id: u64) -> Option<&HistoryEvent> {
        self.at(self.ids.history_id(id))
    }

    /// The recorded event with history id `id`.
    pub fn at(&self, id: u64) -> Option<&HistoryEvent> {
        id.checked_sub(1).and_then(|index| self.recorded.get(index as usize))
    }

    /// How many events the history holds (failed attempts and redrives included).
    pub fn recorded_len(&self) -> u64 {
        self.recorded.len() as u64
    }

    /// The history id of the rerun's event `id`.
    pub fn history_id(&self, id: u64) -> u64 {
        self.ids.history_id(id)
    }

    /// The history id of the `previousEventId` of the rerun's event `id`, whose interpreter
    /// `previous` is given.
    pub fn previous_id(&self, id: u64, previous: u64) -> u64 {
        self.ids.previous_id(id, previous)
    }

    /// Notes that the rerun recorded event `id` (an interpreter id).
    pub fn advance_to(&self, id: u64) {
        self.cursor.fetch_max(id, Ordering::SeqCst);
    }

    /// Whether the rerun has recorded at most `ExecutionStarted`: the only sleep begun then
    /// is the execution's TimeoutSeconds timer (the runner starts it before the first state).
    fn at_execution_start(&self) -> bool {
        self.cursor.load(Ordering::SeqCst) <= 1
    }

    /// The execution timeout's `deadline`, computed from the recorded start, moved to count
    /// from the last redrive.
    fn execution_deadline(&self, deadline: DateTime<Utc>) -> DateTime<Utc> {
        match (self.redriven_at, self.recorded(1)) {
            (Some(redriven), Some(started)) => redriven + (deadline - started.timestamp),
            _ => deadline,
        }
    }

    /// `$$.Execution.RedriveCount` where the rerun is: the count of the redrive after whose
    /// `ExecutionRedriven` event its next event lies (0 before the first resume point).
    pub fn redrive_count(&self) -> u64 {
        let next = self.cursor.load(Ordering::SeqCst) + 1;
        self.ids
            .redrive_of(next)
            .and_then(|event| self.at(event))
            .and_then(|event| event.details.as_ref()?.get("redriveCount")?.as_u64())
            .unwrap_or(0)
    }

    /// The map run to redrive when the rerun stands at a redrive's resume point and that is
    /// the entry of the Distributed Map state `state_name`, whose failed attempt ran a map
    /// run: that run and its next redrive count (features.md §2.12). None — a new map run —
    /// when the attempt started none, or its run succeeded (the state failed after it), or
    /// failed in a way AWS answers with a new run (`States.DataLimitExceeded`, or a
    /// `States.Runtime` error such as a bad ItemSelector interpolation).
    pub fn map_run_to_redrive(&self, state_name: &str) -> Option<MapRunRedrive> {
        let next = self.cursor.load(Ordering::SeqCst) + 1;
        let redriven = self.ids.opened_by(next)?;
        let resume = self.ids.history_id(next - 1);
        let entered = self.at(resume)?;
        let name = entered.details.as_ref().and_then(|d| d.get("name")).and_then(Value::as_str);
        if entered.event_type != "MapStateEntered" || name != Some(state_name) {
            return None;
        }
        let arn_of = |event: &HistoryEvent| {
            event.details.as_ref().and_then(|d| d.get("mapRunArn")).and_then(Value::as_str).map(str::to_owned)
        };
        // The failed attempt's last map run: started in it, or redriven by it.
        let attempt = || (resume + 1..redriven).filter_map(|id| self.at(id));
        let run = attempt().filter(|e| matches!(e.event_type.as_str(), "MapRunStarted" | "MapRunRedriven")).last()?;
        let arn = arn_of(run)?;
        let end = attempt().find(|e| e.previous_event_id == run.id && e.event_type.starts_with("MapRun"));
        if let Some(end) = end {
            let error = end.details.as_ref().and_then(|d| d.get("error")).and_then(Value::as_str);
            let new_run = end.event_type == "MapRunSucceeded" || !MapRunRedrive::follows_failure(error);
            if new_run {
                return None;
            }
        }
        let earlier = (1..redriven)
            .filter_map(|id| self.at(id))
            .filter(|e| e.event_type == "MapRunRedriven" && arn_of(e).as_deref() == Some(arn.as_str()))
            .count();
        Some(MapRunRedrive { map_run_arn: arn, redrive_count: earlier as u32 + 1 })
    }

    /// The next event the rerun will record, if it is still within the recorded history.
    fn next_recorded(&self) -> Option<&HistoryEvent> {
        self.recorded(self.cursor.load(Ordering::SeqCst) + 1)
    }

    fn replaying(&self) -> bool {
        self.next_recorded().is_some()
    }
}

/// The wall clock, except while replaying (see the module documentation).
pub struct ReplayClock {
    pub replay: Arc<Replay>,
    /// The clock once the replay is past: the wall clock, or a virtual one (time skipping).
    pub inner: Arc<dyn Clock>,
}

impl Clock for ReplayClock {
    fn now(&self) -> DateTime<Utc> {
        match self.replay.next_recorded() {
            Some(event) => event.timestamp,
            // Never before what was recorded, should the wall clock have stepped back.
            None => match self.replay.recorded.last() {
                Some(last) => self.inner.now().max(last.timestamp),
                None => self.inner.now(),
            },
        }
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        if self.replay.at_execution_start() {
            return self.inner.sleep_until(self.replay.execution_deadline(deadline));
        }
        // A sleep the first run got past ends at once, whatever this node's clock says. One
        // whose deadline lies beyond everything recorded (a timer of one Parallel branch
        // while another branch recorded later events) still runs on the wall clock.
        let passed = self.replay.recorded.last().is_some_and(|last| deadline <= last.timestamp);
        if self.replay.replaying() && passed {
            return Box::pin(std::future::ready(()));
        }
        self.inner.sleep_until(deadline)
    }

    fn external_work_started(&self) {
        self.inner.external_work_started();
    }

    fn external_work_finished(&self) {
        self.inner.external_work_finished();
    }
}

/// The real invoker, except for tasks whose outcome is recorded.
pub struct ReplayInvoker {
    pub replay: Arc<Replay>,
    pub inner: Arc<dyn TaskInvoker>,
}

impl TaskInvoker for ReplayInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        // The interpreter invokes right after recording `...Started` (an activity: after
        // `ActivityScheduled`): the next recorded events, if any, are this attempt's
        // milestones (`ActivityStarted`, `TaskSubmitted`), reported again so that the rerun
        // records them, and then its outcome.
        let mut id = self.replay.cursor.load(Ordering::SeqCst) + 1;
        while let Some(event) = self.replay.recorded(id) {
            let details = event.details.clone().unwrap_or_default();
            let text = |key: &str| details.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            match event.event_type.as_str() {
                "ActivityStarted" => request.report(TaskProgress::ActivityStarted { worker_name: text("workerName") }),
                "TaskSubmitted" => request.report(TaskProgress::Submitted {
                    output: serde_json::from_str(&text("output")).unwrap_or(Value::Null),
                }),
                _ => break,
            }
            id += 1;
        }
        let Some(outcome) = self.replay.recorded(id) else { return self.inner.invoke(request) };
        let details = outcome.details.clone().unwrap_or_default();
        let text = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_owned);
        let kind = outcome.event_type.as_str();
        if kind.ends_with("Succeeded") {
            let output = text("output").and_then(|output| serde_json::from_str(&output).ok()).unwrap_or(Value::Null);
            Box::pin(std::future::ready(Ok(output.into())))
        } else if kind.ends_with("Failed") || kind.ends_with("TimedOut") {
            // A timeout answers as one (`States.Timeout`), recorded again as `...TimedOut`,
            // whether the interpreter's timer or a missed heartbeat caused it.
            Box::pin(std::future::ready(Err(Failure { error: text("error"), cause: text("cause") })))
        } else {
            // The attempt's outcome was never recorded: run it (again).
            self.inner.invoke(request)
        }
    }
}

/// SplitMix64 from the execution's seed: the same numbers on every run of the execution.
pub fn seeded_random(seed: u64) -> RandomSource {
    let state = AtomicU64::new(seed);
    Arc::new(move || splitmix(state.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)))
}

/// The randomness of a replayed execution: [`seeded_random`] up to its first redrive's
/// resume point; after each redrive, a stream seeded from the seed and that redrive, chosen
/// by the interpreter event about to be recorded. A redriven attempt therefore draws new
/// numbers — its task tokens and Map Run names must not be the failed attempt's, which are
/// closed — while any later replay of it draws the same ones again.
pub fn replay_random(replay: Arc<Replay>, seed: u64) -> RandomSource {
    // (the redrive whose stream is in use, that stream's state)
    let stream = std::sync::Mutex::new((None::<u64>, seed));
    Arc::new(move || {
        let redrive = replay.ids.redrive_of(replay.cursor.load(Ordering::SeqCst) + 1);
        let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        if stream.0 != redrive {
            let state = redrive.map_or(seed, |event_id| splitmix(seed ^ event_id.wrapping_mul(GOLDEN_GAMMA)));
            *stream = (redrive, state);
        }
        let state = stream.1;
        stream.1 = state.wrapping_add(GOLDEN_GAMMA);
        splitmix(state)
    })
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output for the generator state `state` (before its increment).
fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use stepmap_asl::model::StateMachineType;

    use super::*;
    use crate::state::{ArnScope, ExecutionStatus, Redrive};

    fn event(id: u64, event_type: &str) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: Utc.timestamp_opt(1_700_000_000 + id as i64, 0).unwrap(),
            event_type: event_type.into(),
            details: None,
        }
    }

    /// ExecutionStarted, TaskStateEntered, a failed attempt, redriven after event 2.
    fn redriven_record() -> ExecutionRecord {
        let scope = ArnScope::default();
        let machine = scope.state_machine("m");
        let types = ["ExecutionStarted", "TaskStateEntered", "TaskFailed", "ExecutionFailed", "ExecutionRedriven"];
        let started = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        ExecutionRecord {
            arn: machine.execution("e"),
            state_machine_arn: machine,
            name: "e".into(),
            machine_type: StateMachineType::Standard,
            definition: String::new(),
            role_arn: String::new(),
            input: "{}".into(),
            status: ExecutionStatus::Running,
            start_date: started,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
            seed: 7,
            seq: 0,
            history: types.iter().zip(1..).map(|(t, id)| event(id, t)).collect(),
            redrives: vec![Redrive {
                event_id: 5,
                resume_after: 2,
                date: started + chrono::TimeDelta::hours(1),
                client_token: None,
            }],
        }
    }

    #[test]
    fn a_redriven_attempt_draws_new_numbers_and_replays_draw_them_again() {
        let record = redriven_record();
        let draws = |replay: &Arc<Replay>| {
            let random = replay_random(replay.clone(), record.seed);
            // Drawn before the resume point's entry (e.g. in an earlier state)…
            replay.advance_to(1);
            let before: Vec<u64> = (0..2).map(|_| random()).collect();
            // …and once it is recorded: the state's work (a task token) is the new attempt's.
            replay.advance_to(2);
            let after: Vec<u64> = (0..2).map(|_| random()).collect();
            (before, after)
        };
        let (before, after) = draws(&Replay::for_record(&record));
        let first_run = seeded_random(record.seed);
        let first_run: Vec<u64> = (0..4).map(|_| first_run()).collect();
        assert_eq!(before, first_run[..2], "up to the resume point, the first run's numbers");
        assert_ne!(after, first_run[2..], "the failed attempt's numbers are not drawn again");
        assert_eq!(draws(&Replay::for_record(&record)), (before, after), "a replay draws the same");
    }

    #[test]
    fn the_execution_timeout_counts_from_the_last_redrive() {
        let record = redriven_record();
        let replay = Replay::for_record(&record);
        let started = record.history[0].timestamp;
        let deadline = replay.execution_deadline(started + chrono::TimeDelta::seconds(60));
        assert_eq!(deadline, record.redrives[0].date + chrono::TimeDelta::seconds(60));
        let replay = Replay::new(record.history.clone());
        assert_eq!(
            replay.execution_deadline(started + chrono::TimeDelta::seconds(60)),
            started + chrono::TimeDelta::seconds(60)
        );
        // Replayed events land on their history ids; the failed attempt is skipped.
        let replay = Replay::for_record(&record);
        assert_eq!(replay.recorded(2).map(|e| e.event_type.as_str()), Some("TaskStateEntered"));
        assert_eq!((replay.history_id(3), replay.recorded(3)), (6, None));
    }
}
