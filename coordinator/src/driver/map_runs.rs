//! Distributed Map runs of leader-driven executions: the [`MapRunExecutor`] the driver hands
//! to the interpreter. It runs the map run's children through a
//! [`ControlledMapRunExecutor`] (the worker fleet's `FleetMapRunExecutor`, or this process's
//! [`LocalMapRunExecutor`] with `map_runs = "local"`) and records the map run in the
//! replicated Map Run ledger: `StartMapRun` (`RedriveMapRun` for a redrive), the counters at
//! most every [`PROGRESS_INTERVAL`], and `EndMapRun` — committed before the interpreter records
//! `MapRunSucceeded` / `MapRunFailed`, so a history that shows the end implies a ledger that
//! holds it.
//!
//! Replay (a new leader continuing the parent): a map run whose end is recorded does not run
//! again. A recorded `MapRunFailed` is answered from the history (as `ReplayInvoker` answers a
//! recorded Task outcome); a recorded `MapRunSucceeded` from the ledger, which kept the run's
//! result (the history only holds the state's output after ResultSelector/ResultPath). A map
//! run that was RUNNING at the change of leader is started again under the same ARN (its
//! id comes from the execution's seeded randomness), with the settings UpdateMapRun last gave
//! it: on the fleet it resumes from the work ledger; in process its children run again from
//! the start.
//!
//! Redrive (features.md §2.12): a redriven parent resuming at a Distributed Map whose failed
//! attempt ran a map run redrives that run ([`MapRunExecutor::redriven`], answered from the
//! replayed history by `Replay::map_run_to_redrive`) when the runner keeps each child's
//! outcome (the fleet): same ARN, only the unsuccessful children run again.
//!
//! UpdateMapRun reaches a running map run through [`LiveMapRuns`]: the API commits the update,
//! then applies it to the run's [`MapRunControl`] if this node drives it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use stepmap_asl::clock::{ExternalWork, SystemClock};
use stepmap_asl::failure::Failure;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::map_run::{MapRunExecutor, MapRunRedrive, MapRunRequest, Tolerance};
use stepmap_asl::task::TaskInvoker;
use stepmap_storage::Stores;
use stepmap_worker::map_run::{self as worker, ControlledMapRunExecutor, MapRunControl};
use stepmap_worker::LocalMapRunExecutor;

use super::replay::Replay;
use super::ExecutionDriver;
use crate::dispatch::{Dispatcher, FleetMapRunExecutor};
use crate::error::Error;
use crate::proposer::{propose, propose_while_leader, CoordinatorNode};
use crate::state::{
    ApiError, Command, ExecutionArn, MapRunArn, MapRunCounts, MapRunEnd, MapRunRecord, MapRunSettings, Response,
};

/// AWS: a map run is redriven at most 1,000 times (then `States.Runtime`, features.md §2.12).
pub const MAX_REDRIVES: u32 = 1000;

/// How often a running map run's counters are committed (when they changed).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// What the driver runs map runs' children with.
#[derive(Clone)]
pub struct MapRunConfig {
    runner: Arc<dyn ControlledMapRunExecutor>,
    /// On the worker fleet, parent executions' Task states go to the workers too.
    pub(super) tasks: Option<Dispatcher>,
}

impl MapRunConfig {
    /// Children run in this process, at most `slots` at once (within MaxConcurrency);
    /// ItemReader and ResultWriter use `stores`.
    pub fn local(stores: Arc<Stores>, slots: usize) -> Self {
        Self::with_runner(Arc::new(LocalMapRunExecutor::new(stores, slots, true)))
    }

    /// Children run by `runner`.
    pub fn with_runner(runner: Arc<dyn ControlledMapRunExecutor>) -> Self {
        Self { runner, tasks: None }
    }

    /// The worker fleet: map runs through `executor`, and the Lambda and HTTP Task states of
    /// parent executions through its dispatcher (`FleetTaskInvoker`).
    pub fn fleet(executor: FleetMapRunExecutor) -> Self {
        let tasks = Some(executor.dispatcher().clone());
        Self { runner: Arc::new(executor), tasks }
    }
}

/// The map runs this node drives now, by ARN, with the settings version they run with.
#[derive(Clone, Default)]
pub struct LiveMapRuns {
    runs: Arc<Mutex<HashMap<MapRunArn, LiveMapRun>>>,
}

struct LiveMapRun {
    control: MapRunControl,
    /// The settings version applied last.
    version: u64,
    /// Tells this run's registration from a newer one of the same ARN (a re-launch may
    /// register before the aborted run's future is dropped).
    token: Arc<()>,
}

impl LiveMapRuns {
    /// Applies `settings` to the map run `arn` if it runs here with older ones. Returns
    /// whether it runs here.
    pub fn apply(&self, arn: &MapRunArn, settings: &MapRunSettings) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(LiveMapRun { control, version, .. }) = runs.get_mut(arn) else { return false };
        // Versions order the updates: a map run (re)started with the ledger's settings must
        // not be set back by an older update applied late, nor the reverse.
        if settings.version >= *version {
            *version = settings.version;
            control.set_max_concurrency(settings.max_concurrency);
            control.set_tolerance(Tolerance {
                count: settings.tolerated_failure_count,
                percentage: settings.tolerated_failure_percentage,
            });
        }
        true
    }

    fn register(&self, arn: MapRunArn, control: MapRunControl) -> Registration {
        let token = Arc::new(());
        let run = LiveMapRun { control, version: 0, token: token.clone() };
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(arn.clone(), run);
        Registration { live: self.clone(), arn, token }
    }
}

/// Removes a map run from [`LiveMapRuns`] when its run ends or is dropped.
struct Registration {
    live: LiveMapRuns,
    arn: MapRunArn,
    token: Arc<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut runs = self.live.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.get(&self.arn).is_some_and(|run| Arc::ptr_eq(&run.token, &self.token)) {
            runs.remove(&self.arn);
        }
    }
}

/// The driver's map-run machinery: the runner and the live runs.
#[derive(Clone)]
pub(super) struct MapRuns {
    runner: Arc<dyn ControlledMapRunExecutor>,
    live: LiveMapRuns,
}

impl MapRuns {
    pub(super) fn new(config: MapRunConfig) -> Self {
        Self { runner: config.runner, live: LiveMapRuns::default() }
    }
}

impl ExecutionDriver {
    /// The map runs this node drives (for UpdateMapRun); empty without a [`MapRunConfig`].
    pub fn live_map_runs(&self) -> LiveMapRuns {
        self.inner.map_runs.as_ref().map(|m| m.live.clone()).unwrap_or_default()
    }

    /// The executor of the map runs of `parent`; `recorded`: its history, when it is being
    /// continued by replay. `None` without a [`MapRunConfig`] (a Distributed Map then fails
    /// with `States.Runtime`).
    pub(super) fn map_run_executor(
        &self,
        parent: &ExecutionArn,
        recorded: Option<Arc<Replay>>,
    ) -> Option<Arc<dyn MapRunExecutor>> {
        let map_runs = self.inner.map_runs.as_ref()?;
        Some(Arc::new(ClusterMapRunExecutor {
            node: self.inner.node.clone(),
            runner: map_runs.runner.clone(),
            live: map_runs.live.clone(),
            invoker: self.inner.invoker.clone(),
            parent: parent.clone(),
            recorded,
        }))
    }
}

/// Runs the map runs of one parent execution and records them in the ledger.
struct ClusterMapRunExecutor {
    node: CoordinatorNode,
    runner: Arc<dyn ControlledMapRunExecutor>,
    live: LiveMapRuns,
    /// The real task invoker: children never replay (they run again from their start).
    invoker: Arc<dyn TaskInvoker>,
    parent: ExecutionArn,
    recorded: Option<Arc<Replay>>,
}

/// How a recorded history shows a map run ended.
enum RecordedEnd {
    Succeeded,
    Failed(Failure),
}

impl MapRunExecutor for ClusterMapRunExecutor {
    fn redriven(&self, state_name: &str) -> Option<MapRunRedrive> {
        if !self.runner.redrives_children() {
            return None;
        }
        self.recorded.as_deref()?.map_run_to_redrive(state_name)
    }

    fn run(&self, mut request: MapRunRequest) -> BoxFuture<'static, Result<Value, Failure>> {
        let arn = MapRunArn::new(request.map_run_arn.clone());
        let recorded = self
            .recorded
            .as_deref()
            .and_then(|replay| recorded_end(replay, &request.map_run_arn, request.redrive_count));
        if request.redrive_count > MAX_REDRIVES {
            let cause = format!("Map Run '{arn}' has been redriven {MAX_REDRIVES} times, the most AWS allows.");
            return Box::pin(std::future::ready(Err(Failure::runtime(cause))));
        }
        match recorded {
            Some(RecordedEnd::Failed(failure)) => return Box::pin(std::future::ready(Err(failure))),
            // Its result is in the ledger: StartMapRun answers with the ended record below.
            Some(RecordedEnd::Succeeded) | None => {}
        }
        // Children get the real clock and invoker: the parent's replay environment would answer
        // them with the parent's recorded events. A Distributed Map inside a child runs
        // without ledger records (its parent is not a recorded execution).
        let parent_clock = std::mem::replace(&mut request.environment.clock, Arc::new(SystemClock));
        request.environment.invoker = self.invoker.clone();
        request.environment.map_runs = Some(Arc::new(Unrecorded(self.runner.clone())));
        // Nor do they draw from the parent's seeded randomness: a replay that answers this map
        // run from the ledger runs no children, and the parent's later draws (map run ids,
        // States.UUID) must come out as in the first run.
        request.environment.random = Arc::new(rand::random::<u64>);
        let settings = MapRunSettings {
            max_concurrency: request.max_concurrency,
            tolerated_failure_percentage: request.tolerance.percentage,
            tolerated_failure_count: request.tolerance.count,
            version: 0,
        };
        let record = MapRunRecord::start(arn.clone(), self.parent.clone(), settings, Utc::now());
        let (node, runner, live) = (self.node.clone(), self.runner.clone(), self.live.clone());
        async move {
            // The parent's virtual time (time skipping) stands still while its children run.
            let _work = ExternalWork::start(parent_clock);
            let control = MapRunControl::new(request.max_concurrency, request.tolerance);
            // Registered before the start is committed, so that no committed update misses it.
            let _registration = live.register(arn.clone(), control.clone());
            let start = match request.redrive_count {
                0 => Command::StartMapRun { record: Box::new(record.clone()) },
                redrive_count => Command::RedriveMapRun { arn: arn.clone(), redrive_count, date: Utc::now() },
            };
            let started = match commit(&node, &start).await {
                // The earlier attempt's start never committed (its leader died right after
                // recording it): the run starts here, for this redrive.
                Err(Some(ApiError::ResourceNotFound { .. })) if request.redrive_count > 0 => {
                    commit(&node, &Command::StartMapRun { record: Box::new(record) }).await
                }
                other => other,
            };
            match started {
                // A redrive runs with the settings UpdateMapRun last gave the run.
                Ok(Response::MapRunStarted { settings, .. } | Response::MapRunRedriven { settings }) => {
                    live.apply(&arn, &settings);
                }
                Ok(Response::MapRunAlreadyEnded { record }) => return recorded_outcome(&record),
                Ok(other) => return Err(Failure::runtime(format!("unexpected answer to StartMapRun: {other:?}"))),
                Err(Some(error)) => return Err(Failure::runtime(format!("the map run cannot start: {error}"))),
                Err(None) => return std::future::pending().await,
            }
            tracing::debug!(map_run = %arn, "map run started");
            let result = tokio::select! {
                result = runner.run_controlled(request, control.clone()) => result,
                never = report_progress(&node, &arn, &control) => match never {},
            };
            let result = result.and_then(|value| {
                // AWS's limit on a map run's result without ResultWriter (features.md §2.8); it
                // also bounds the result the ledger keeps for replay.
                let text = value.to_string();
                if text.len() as u64 > worker::MAX_RESULT_BYTES {
                    return Err(worker::result_too_large(text.len() as u64));
                }
                Ok((value, text))
            });
            let end = match &result {
                Ok((_, text)) => MapRunEnd::Succeeded { result: text.clone() },
                Err(failure) => MapRunEnd::Failed { error: failure.error.clone(), cause: failure.cause.clone() },
            };
            // The run is over: a child still counted as running (the run ended on an error
            // while it ran) was stopped with it.
            let mut counters = control.counters();
            for counts in [&mut counters.items, &mut counters.executions] {
                counts.aborted += std::mem::take(&mut counts.running);
            }
            let (item_counts, execution_counts) = ledger_counts(&counters);
            let command = Command::EndMapRun { arn: arn.clone(), end, date: Utc::now(), item_counts, execution_counts };
            match commit(&node, &command).await {
                Ok(_) => {}
                Err(Some(error)) => tracing::info!(map_run = %arn, %error, "cannot record the map run's end"),
                // No longer the leader: the execution is dropped here and continued elsewhere.
                Err(None) => return std::future::pending().await,
            }
            tracing::debug!(map_run = %arn, succeeded = result.is_ok(), "map run ended");
            result.map(|(value, _)| value)
        }
        .boxed()
    }
}

/// A Distributed Map inside a map run's child: run, not recorded.
struct Unrecorded(Arc<dyn ControlledMapRunExecutor>);

impl MapRunExecutor for Unrecorded {
    fn run(&self, request: MapRunRequest) -> BoxFuture<'static, Result<Value, Failure>> {
        let control = MapRunControl::new(request.max_concurrency, request.tolerance);
        self.0.run_controlled(request, control)
    }
}

/// Whether the recorded history shows the end of map run `arn` (of its redrive
/// `redrive_count`): the `MapRun...` event that follows its `MapRunStarted` (`MapRunRedriven`)
/// on the same path of the execution.
fn recorded_end(replay: &Replay, arn: &str, redrive_count: u32) -> Option<RecordedEnd> {
    let events = || (1..=replay.recorded_len()).filter_map(|id| replay.recorded(id));
    let detail = |e: &HistoryEvent, key: &str| e.details.as_ref().and_then(|d| d.get(key)).cloned();
    let started = events().find(|e| {
        let kind = if redrive_count == 0 { "MapRunStarted" } else { "MapRunRedriven" };
        e.event_type == kind
            && detail(e, "mapRunArn").as_ref().and_then(Value::as_str) == Some(arn)
            && (redrive_count == 0 || detail(e, "redriveCount").and_then(|c| c.as_u64()) == Some(redrive_count.into()))
    })?;
    let end = events().skip_while(|e| e.id <= started.id).find(|e| {
        e.previous_event_id == started.id
            && matches!(e.event_type.as_str(), "MapRunSucceeded" | "MapRunFailed" | "MapRunAborted")
    })?;
    let text = |key: &str| end.details.as_ref().and_then(|d| d.get(key)).and_then(Value::as_str).map(str::to_owned);
    match end.event_type.as_str() {
        "MapRunSucceeded" => Some(RecordedEnd::Succeeded),
        "MapRunFailed" => Some(RecordedEnd::Failed(Failure { error: text("error"), cause: text("cause") })),
        // Aborted runs ended their parent: it is not replayed.
        _ => None,
    }
}

/// The outcome of a map run that the ledger shows ended.
fn recorded_outcome(record: &MapRunRecord) -> Result<Value, Failure> {
    match &record.result {
        Some(result) => serde_json::from_str(result).map_err(|e| {
            Failure::runtime(format!("the recorded result of map run '{}' is unreadable: {e}", record.arn))
        }),
        None => Err(Failure { error: record.error.clone(), cause: record.cause.clone() }),
    }
}

/// Commits the counters every [`PROGRESS_INTERVAL`] while they change. Never returns: the
/// caller drops it when the run ends.
async fn report_progress(node: &CoordinatorNode, arn: &MapRunArn, control: &MapRunControl) -> Infallible {
    let mut committed = worker::MapRunCounters::default();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let counters = control.counters();
        if counters == committed {
            continue;
        }
        let (item_counts, execution_counts) = ledger_counts(&counters);
        let command = Command::RecordMapRunProgress { arn: arn.clone(), item_counts, execution_counts };
        match propose(node, &command).await {
            Ok(_) => committed = counters,
            // Progress is advisory: the next tick tries again, the end carries the final counts.
            Err(error) => tracing::debug!(map_run = %arn, %error, "map run progress not recorded"),
        }
    }
}

fn ledger_counts(counters: &worker::MapRunCounters) -> (MapRunCounts, MapRunCounts) {
    let convert = |c: &worker::MapRunCounts| MapRunCounts {
        pending: c.pending,
        running: c.running,
        succeeded: c.succeeded,
        failed: c.failed,
        timed_out: c.timed_out,
        aborted: c.aborted,
        total: c.total,
        results_written: c.results_written,
        failures_not_redrivable: 0,
        pending_redrive: 0,
    };
    (convert(&counters.items), convert(&counters.executions))
}

/// Commits `command`, retrying while the outcome is unknown (the map run commands are
/// idempotent). `Err(Some(_))`: refused; `Err(None)`: this node no longer leads.
async fn commit(node: &CoordinatorNode, command: &Command) -> Result<Response, Option<ApiError>> {
    match propose_while_leader(node, command).await {
        Ok(response) => Ok(response),
        Err(Error::Api(error)) => Err(Some(error)),
        Err(error) => {
            tracing::info!(%error, "map run no longer driven here");
            Err(None)
        }
    }
}
