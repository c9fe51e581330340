//! The execution driver (DESIGN.md §3 "Parent executions"): on the leader, every RUNNING
//! execution is run by the `asl` interpreter, with each history event committed through
//! Raft before the execution proceeds (STANDARD semantics).
//!
//! - When this node becomes leader (a new term), it reads the running executions
//!   linearizably and continues each one by deterministic replay (`replay.rs`).
//! - When it stops leading, it drops every execution it drives; the next leader continues
//!   them from what was committed.
//! - EXPRESS executions started with StartExecution run without per-event commits; their
//!   history is committed once, at the end. After a change of leader they start over (AWS's
//!   at-least-once Express semantics).

mod callbacks;
mod event_commit;
mod map_runs;
mod replay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use stepmap_asl::clock::{Clock, SystemClock, VirtualClock};
use stepmap_asl::interpreter::{run_execution, Environment, ExecutionOutcome, ExecutionSpec, RedriveCount};
use stepmap_asl::model::{StateMachine, StateMachineType};
use stepmap_asl::task::TaskInvoker;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

pub use callbacks::{CallbackInvoker, TaskTokenSignal};
pub use event_commit::RaftEventSink;
pub use map_runs::{LiveMapRuns, MapRunConfig, PROGRESS_INTERVAL};
pub use replay::{replay_random, seeded_random, Replay, ReplayClock, ReplayInvoker};

use crate::error::Error;
use crate::proposer::{propose, CoordinatorNode};
use crate::state::{Command, ExecutionArn, ExecutionRecord};

/// How time passes for the executions a driver runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DriverTime {
    /// The wall clock: a cluster.
    #[default]
    Wall,
    /// Each execution on a [`VirtualClock`] of its own that skips the time it is idle (every
    /// branch sleeping, no task running, no commit awaited): `stepmap run --time-skipping`.
    /// The execution is then polled on a thread of its own, which is how the clock sees
    /// idleness.
    Skipping,
}

/// Drives executions while this node leads. Cheap to clone.
#[derive(Clone)]
pub struct ExecutionDriver {
    inner: Arc<Inner>,
}

struct Inner {
    node: CoordinatorNode,
    invoker: Arc<dyn TaskInvoker>,
    /// Wakes task attempts waiting for a token (activities, callbacks).
    signal: TaskTokenSignal,
    /// Runs Distributed Maps (None: they fail with `States.Runtime`).
    map_runs: Option<map_runs::MapRuns>,
    /// Where parent Task states a worker can serve run: the fleet (None: `invoker`).
    fleet_tasks: Option<crate::dispatch::Dispatcher>,
    time: DriverTime,
    /// The executions driven here, with the term they were started in.
    running: Mutex<HashMap<ExecutionArn, Driven>>,
    watcher: Mutex<Option<AbortHandle>>,
}

impl ExecutionDriver {
    /// Starts watching `node`'s leadership. Task states run through `invoker`.
    pub fn start(node: CoordinatorNode, invoker: Arc<dyn TaskInvoker>) -> Self {
        Self::start_with_map_runs(node, invoker, None)
    }

    /// [`Self::start`], running Distributed Maps as `map_runs` says.
    pub fn start_with_map_runs(
        node: CoordinatorNode,
        invoker: Arc<dyn TaskInvoker>,
        map_runs: Option<MapRunConfig>,
    ) -> Self {
        Self::start_with(node, invoker, map_runs, DriverTime::Wall)
    }

    /// [`Self::start_with_map_runs`], with executions' time passing as `time` says.
    pub fn start_with(
        node: CoordinatorNode,
        invoker: Arc<dyn TaskInvoker>,
        map_runs: Option<MapRunConfig>,
        time: DriverTime,
    ) -> Self {
        let fleet_tasks = map_runs.as_ref().and_then(|m| m.tasks.clone());
        let map_runs = map_runs.map(map_runs::MapRuns::new);
        let inner = Arc::new(Inner {
            node,
            invoker,
            signal: TaskTokenSignal::default(),
            map_runs,
            fleet_tasks,
            time,
            running: Mutex::new(HashMap::new()),
            watcher: Mutex::new(None),
        });
        let driver = Self { inner };
        let watcher = tokio::spawn(driver.clone().watch_leadership());
        *driver.inner.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher.abort_handle());
        driver
    }

    async fn watch_leadership(self) {
        let mut status = self.inner.node.watch_status();
        let mut led_term = None;
        loop {
            let (leader, term) = {
                let status = status.borrow_and_update();
                (status.is_leader(), status.term)
            };
            match (leader, led_term) {
                (true, Some(t)) if t == term => {}
                (true, _) => {
                    self.abort_all();
                    led_term = Some(term);
                    tokio::spawn(self.clone().resume_all(term));
                }
                (false, Some(_)) => {
                    led_term = None;
                    self.abort_all();
                }
                (false, None) => {}
            }
            if status.changed().await.is_err() {
                self.abort_all();
                return;
            }
        }
    }

    /// Continues every running execution, once this leader's state is current (ReadIndex).
    async fn resume_all(self, term: u64) {
        let running = loop {
            let status = self.inner.node.status();
            if !status.is_leader() || status.term != term {
                return;
            }
            match self.inner.node.read(|state| state.running_executions()).await {
                Ok((_, running)) => break running,
                Err(Error::Timeout { .. }) => continue,
                Err(error) => {
                    tracing::info!(%error, "cannot list running executions to resume");
                    return;
                }
            }
        };
        // The Task work of earlier terms waits for nobody now: the replays schedule anew.
        if self.inner.fleet_tasks.is_some() {
            if let Err(error) = propose(&self.inner.node, &Command::DropTaskWork { term }).await {
                tracing::info!(%error, "cannot drop the task work of earlier terms");
            }
        }
        tracing::info!(count = running.len(), term, "resuming running executions");
        for record in running {
            self.launch(record);
        }
    }

    /// Drives `record` here unless it already is. Call only on the leader, with a record
    /// read after its start was committed.
    pub fn launch(&self, record: ExecutionRecord) {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(&record.arn).is_some_and(|driven| !driven.handle.is_finished()) {
            return;
        }
        let arn = record.arn.clone();
        let released = Arc::new(AtomicBool::new(false));
        let (handle, abort) = match self.inner.time {
            DriverTime::Wall => {
                let (drive, abort) = futures::future::abortable(self.clone().drive(record, released.clone(), None));
                (tokio::spawn(drive).abort_handle(), abort)
            }
            DriverTime::Skipping => {
                let clock = VirtualClock::new(chrono::Utc::now());
                let drive = self.clone().drive(record, released.clone(), Some(clock.clone()));
                let (drive, abort) = futures::future::abortable(drive);
                let runtime = tokio::runtime::Handle::current();
                let task = tokio::task::spawn_blocking(move || {
                    let _context = runtime.enter();
                    clock.block_on(drive)
                });
                (task.abort_handle(), abort)
            }
        };
        running.insert(arn, Driven { handle, abort, released });
    }

    /// Stops driving `arn` here (it was stopped).
    pub fn cancel(&self, arn: &ExecutionArn) {
        if let Some(driven) = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).remove(arn) {
            driven.release();
        }
    }

    /// What this node's API bumps after committing a task token change.
    pub fn task_token_signal(&self) -> TaskTokenSignal {
        self.inner.signal.clone()
    }

    /// How many executions this node drives now.
    pub fn driven(&self) -> usize {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| !d.handle.is_finished())
            .count()
    }

    fn abort_all(&self) {
        for (_, driven) in self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            driven.release();
        }
    }

    /// Stops the driver and every execution it drives (they stay RUNNING in the state).
    pub fn shutdown(&self) {
        if let Some(watcher) = self.inner.watcher.lock().unwrap_or_else(|e| e.into_inner()).take() {
            watcher.abort();
        }
        self.abort_all();
    }

    /// Runs `record` to its end on `clock` (the wall clock when `None`).
    async fn drive(self, record: ExecutionRecord, released: Arc<AtomicBool>, clock: Option<Arc<VirtualClock>>) {
        let arn = record.arn.clone();
        let clock: Arc<dyn Clock> = match clock {
            Some(clock) => Arc::new(clock),
            None => Arc::new(SystemClock),
        };
        match record.machine_type {
            StateMachineType::Standard => self.drive_standard(record, released, clock).await,
            StateMachineType::Express => self.drive_express(record, clock).await,
        }
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&arn);
    }

    async fn drive_standard(&self, record: ExecutionRecord, released: Arc<AtomicBool>, clock: Arc<dyn Clock>) {
        let Some((machine, mut spec)) = prepare(&record) else {
            self.close_unrunnable(&record).await;
            return;
        };
        let replay = Replay::for_record(&record);
        spec.redrive_count = RedriveCount::live({
            let replay = replay.clone();
            move || replay.redrive_count()
        });
        let stop = Arc::new(Notify::new());
        let clock: Arc<dyn Clock> = Arc::new(ReplayClock { replay: replay.clone(), inner: clock });
        let sink = RaftEventSink::new(
            self.inner.node.clone(),
            clock.clone(),
            record.arn.clone(),
            replay.clone(),
            stop.clone(),
        );
        let map_runs = self.map_run_executor(&record.arn, Some(replay.clone()));
        let env = Environment {
            clock,
            invoker: Arc::new(ReplayInvoker {
                replay: replay.clone(),
                inner: Arc::new(CallbackInvoker {
                    node: self.inner.node.clone(),
                    execution: record.arn.clone(),
                    inner: self.task_invoker(&record.arn),
                    signal: self.inner.signal.clone(),
                    released,
                }),
            }),
            random: replay_random(replay, record.seed),
            map_runs,
            events: Some(Arc::new(sink)),
            history_payloads: true,
        };
        tokio::select! {
            outcome = run_execution(machine, spec, env) => {
                tracing::debug!(execution = %record.arn, status = outcome.status.as_str(), "execution ended");
            }
            () = stop.notified() => {
                tracing::debug!(execution = %record.arn, "execution no longer driven here");
            }
        }
    }

    /// What `execution`'s Task states run with: on the fleet, its workers for what they serve.
    fn task_invoker(&self, execution: &ExecutionArn) -> Arc<dyn TaskInvoker> {
        match &self.inner.fleet_tasks {
            Some(dispatcher) => Arc::new(crate::dispatch::FleetTaskInvoker {
                dispatcher: dispatcher.clone(),
                execution: execution.clone(),
                inner: self.inner.invoker.clone(),
            }),
            None => self.inner.invoker.clone(),
        }
    }

    async fn drive_express(&self, record: ExecutionRecord, clock: Arc<dyn Clock>) {
        let Some((machine, spec)) = prepare(&record) else {
            self.close_unrunnable(&record).await;
            return;
        };
        let env = Environment {
            random: seeded_random(record.seed),
            map_runs: self.map_run_executor(&record.arn, None),
            ..Environment::new(clock, self.task_invoker(&record.arn))
        };
        let outcome = run_execution(machine, spec, env).await;
        let command = Command::RecordEvents { arn: record.arn.clone(), events: outcome.history };
        if let Err(error) = propose(&self.inner.node, &command).await {
            tracing::info!(execution = %record.arn, %error, "cannot record the Express execution's end");
        }
    }

    /// A definition that no longer loads (it was accepted by an older build) fails the
    /// execution instead of leaving it RUNNING forever.
    async fn close_unrunnable(&self, record: &ExecutionRecord) {
        let id = record.history.len() as u64 + 1;
        let failed = stepmap_asl::history::HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: chrono::Utc::now(),
            event_type: "ExecutionFailed".into(),
            details: Some(serde_json::json!({
                "error": "States.Runtime",
                "cause": "The execution's definition or input cannot be loaded by this coordinator.",
            })),
        };
        let command = Command::RecordEvents { arn: record.arn.clone(), events: vec![failed] };
        if let Err(error) = propose(&self.inner.node, &command).await {
            tracing::info!(execution = %record.arn, %error, "cannot fail an unrunnable execution");
        }
    }
}

/// An execution this node drives.
struct Driven {
    /// The task polling the execution (for whether it ended).
    handle: AbortHandle,
    /// Drops the execution's future wherever it is polled (a blocking thread under time
    /// skipping, where aborting the task would not reach it).
    abort: futures::future::AbortHandle,
    /// Set before the driver lets go of the execution (leadership lost, stopped), so that
    /// what its tasks hold is left for whoever drives it next instead of being abandoned
    /// (see `callbacks.rs`).
    released: Arc<AtomicBool>,
}

impl Driven {
    fn release(self) {
        self.released.store(true, Ordering::SeqCst);
        self.abort.abort();
        self.handle.abort();
    }
}

/// The interpreter's view of an execution record: its machine and spec.
pub fn prepare(record: &ExecutionRecord) -> Option<(Arc<StateMachine>, ExecutionSpec)> {
    let machine = StateMachine::from_json(&record.definition).ok()?;
    let input: Value = serde_json::from_str(&record.input).ok()?;
    let parts: Vec<&str> = record.arn.as_str().split(':').collect();
    let spec = ExecutionSpec {
        execution_arn: record.arn.to_string(),
        execution_name: record.name.clone(),
        state_machine_arn: record.state_machine_arn.to_string(),
        state_machine_name: record.state_machine_arn.name().to_owned(),
        role_arn: record.role_arn.clone(),
        machine_type: record.machine_type,
        region: parts.get(3).copied().unwrap_or_default().to_owned(),
        account: parts.get(4).copied().unwrap_or_default().to_owned(),
        input: input.into(),
        redrive_count: RedriveCount::fixed(record.redrive_count()),
    };
    Some((Arc::new(machine), spec))
}

/// Runs an execution in memory to its end, for StartSyncExecution (EXPRESS): no per-event
/// commits; the caller records the final result.
pub async fn run_in_memory(record: &ExecutionRecord, invoker: Arc<dyn TaskInvoker>) -> Option<ExecutionOutcome> {
    let (machine, spec) = prepare(record)?;
    let env = Environment { random: seeded_random(record.seed), ..Environment::new(Arc::new(SystemClock), invoker) };
    Some(run_execution(machine, spec, env).await)
}
