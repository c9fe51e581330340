//! Map runs on the worker fleet: the [`ControlledMapRunExecutor`] a cluster's execution driver
//! runs Distributed Maps with when workers do the work.
//!
//! A run is planned into work units (or, after a change of leader, resumed from the units the
//! ledger holds), handed out by the [`Dispatcher`], watched through the ledger as units
//! complete — counters, the tolerated-failure threshold — and finalised: the ResultWriter
//! writes the result files from the staged results of the accepted epochs plus PENDING
//! records of the units that never completed, or the children's outputs become the state's
//! result.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::map_run::{MapRunRequest, Tolerance};
use stepmap_asl::model::StateMachineType;
use stepmap_storage::{ResultsBegun, ResultsInProgress, StagedBatch, Stores};
use stepmap_worker::map_run::{
    self as worker, child_archive, pending_records, plan_units_with, result_too_large, result_writer, staged_batch,
    ControlledMapRunExecutor, MapRunControl, MapRunProgress, ProgressObserver, UnitOutcome, WorkUnit, MAX_RESULT_BYTES,
};

use super::{Dispatcher, WATCH_INTERVAL};
use crate::proposer::propose_while_leader;
use crate::state::{Command, MapRunArn, MapRunWork, Response, UnitStatus};

/// Units per `PlanMapRunUnits` command: keeps log entries small (a descriptor is ~250 bytes).
const UNITS_PER_COMMAND: usize = 256;

/// Runs map runs on the worker fleet through `dispatcher`; reads ItemReader sources (to plan)
/// and writes result files (to finalise) through `stores`.
#[derive(Clone)]
pub struct FleetMapRunExecutor {
    dispatcher: Dispatcher,
    stores: Arc<Stores>,
    progress: Option<ProgressObserver>,
    /// The bucket STANDARD children's executions are archived in (`child_archive`).
    archive: Option<String>,
}

impl FleetMapRunExecutor {
    pub fn new(dispatcher: Dispatcher, stores: Arc<Stores>) -> Self {
        Self { dispatcher, stores, progress: None, archive: None }
    }

    /// The dispatcher that hands out the runs' units.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Archives the executions of STANDARD children in `bucket` of the stores, for
    /// DescribeExecution, GetExecutionHistory and ListExecutions by map run.
    pub fn with_child_archive(mut self, bucket: impl Into<String>) -> Self {
        self.archive = Some(bucket.into());
        self
    }

    /// Reports each run's progress to `observer` as units complete, and its end.
    pub fn with_progress(mut self, observer: ProgressObserver) -> Self {
        self.progress = Some(observer);
        self
    }

    fn report(&self, arn: &MapRunArn, counters: &worker::MapRunCounters, end: Option<&Result<Value, Failure>>) {
        let Some(observer) = &self.progress else { return };
        let (items, executions) = (&counters.items, &counters.executions);
        let manifest = end.and_then(|result| {
            let details = result.as_ref().ok()?.get("ResultWriterDetails")?;
            Some(format!("{}/{}", details.get("Bucket")?.as_str()?, details.get("Key")?.as_str()?))
        });
        observer(&MapRunProgress {
            map_run_arn: arn.to_string(),
            items_done: items.succeeded + items.failed + items.timed_out + items.aborted,
            items_failed: items.failed + items.timed_out,
            children_done: executions.succeeded + executions.failed + executions.timed_out + executions.aborted,
            finished: end.is_some(),
            manifest,
        });
    }
}

impl ControlledMapRunExecutor for FleetMapRunExecutor {
    fn run_controlled(
        &self,
        request: MapRunRequest,
        control: MapRunControl,
    ) -> BoxFuture<'static, Result<Value, Failure>> {
        let this = self.clone();
        async move { this.run(request, control).await }.boxed()
    }

    /// The work ledger keeps an unsuccessful run's units with each child's outcome.
    fn redrives_children(&self) -> bool {
        true
    }
}

/// Aborts a task when dropped (a plan abandoned when this coordinator stops leading).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the ledger says of a run's units now.
struct Progress {
    counters: worker::MapRunCounters,
    all_done: bool,
    /// No more leases or results (the run is being finalised).
    stopped: bool,
    /// The units leased now, with their epochs.
    leased: Vec<(u64, u64)>,
    /// A unit that could not run: the run fails with it.
    failure: Option<Failure>,
}

impl FleetMapRunExecutor {
    async fn run(&self, request: MapRunRequest, control: MapRunControl) -> Result<Value, Failure> {
        let arn = MapRunArn::new(request.map_run_arn.clone());
        let node = &self.dispatcher.inner.node;
        // Adopted first, so that units are handed out as soon as the plan records them.
        // Leases outstanding in the ledger (granted by an earlier leader) get a deadline on the
        // watcher's first pass.
        let parallelism = worker::UnitGrouping::of(&request).parallelism();
        let (_guard, changed) = self.dispatcher.adopt(&arn, control.clone(), parallelism);
        // Resume what the ledger holds (a new leader), or plan.
        let lookup = arn.clone();
        let (_, recorded) = node
            .local_read(move |state| state.work.runs.get(&lookup).map(|w| (w.units.len(), w.planned, w.round)))
            .await
            .map_err(|_| no_longer_leads())?;
        // A redrive of a run whose units the ledger kept re-runs what did not succeed; one
        // whose units it never held (the run ended before it planned) plans it anew.
        let redriven = match recorded {
            Some((_, _, round)) if round < request.redrive_count => {
                self.redrive(&request, &arn).await?;
                true
            }
            _ => false,
        };
        match recorded {
            Some((_, true, _)) if redriven => {}
            Some((_, true, _)) => tracing::info!(map_run = %arn, "resuming the map run from the work ledger"),
            Some((recorded, false, _)) => self.plan(&request, &arn, recorded).await?,
            None => self.plan(&request, &arn, 0).await?,
        }

        // Result files are written as the units are done, in order, so that little is left
        // to copy once the last one is. Not being able to is not fatal: the finaliser writes
        // every file at the end then (and fails if it still cannot).
        let mut streamed = self.begin_results(&request, &arn).await.unwrap_or_else(|failure| {
            tracing::warn!(map_run = %arn, error = ?failure.error, cause = ?failure.cause, "cannot open the result files yet");
            None
        });

        // Watch until every unit is done, or the threshold is exceeded, or a unit failed; then
        // no more leases or results: the finaliser reads a ledger that no longer changes.
        let watched = match self.watch(&arn, &control, &changed, &mut streamed).await {
            Ok(exceeded) => self.stop(&arn).await.map(|()| exceeded),
            Err(failure) => Err(failure),
        };
        let exceeded = match watched {
            Ok(exceeded) => exceeded,
            Err(failure) => {
                if let Some(streamed) = streamed {
                    streamed.results.abort().await;
                }
                return Err(failure);
            }
        };
        let lookup = arn.clone();
        let (_, work) =
            node.local_read(move |state| state.work.runs.get(&lookup).cloned()).await.map_err(|_| no_longer_leads())?;
        let work = work.ok_or_else(no_longer_leads)?;
        let mut result = self.finalise(&request, &work, exceeded, streamed).await;
        if let Err(failure) = self.consolidate_archive(&request, &work).await {
            result = result.and(Err(failure));
        }
        // What the run ended with: units that never completed are PENDING (or were stopped).
        // Counted from the ledger as it stands after the stop, as the finaliser read it.
        let mut counters = progress_of(&work).counters;
        if exceeded {
            for counts in [&mut counters.items, &mut counters.executions] {
                counts.aborted += std::mem::take(&mut counts.running);
            }
        }
        self.report(&arn, &counters, Some(&result));
        control.set_counters(counters);
        result
    }

    /// Watches the run until every unit is done (`Ok(false)`, or `Ok(true)` when the tolerated
    /// failure threshold is exceeded then or before) or a unit failed (stopped, `Err`), copying
    /// the staged results of done units into the result files as it goes.
    async fn watch(
        &self,
        arn: &MapRunArn,
        control: &MapRunControl,
        changed: &tokio::sync::Notify,
        streamed: &mut Option<Streamed>,
    ) -> Result<bool, Failure> {
        loop {
            let wake = changed.notified();
            let progress = self.progress(arn).await.ok_or_else(no_longer_leads)?;
            self.report(arn, &progress.counters, None);
            control.set_counters(progress.counters);
            self.dispatcher.watch(arn, &progress.leased);
            if let Some(failure) = progress.failure.clone() {
                self.stop(arn).await?;
                return Err(failure);
            }
            if let Some(stream) = streamed.as_mut() {
                if let Err(failure) = self.copy_done(arn, stream).await {
                    // The finaliser writes every file again at the end, and fails with it then.
                    tracing::warn!(map_run = %arn, error = ?failure.error, cause = ?failure.cause, "cannot write result files yet");
                    if let Some(given_up) = streamed.take() {
                        given_up.results.abort().await;
                    }
                }
            }
            let tolerance = control.tolerance();
            // A count threshold can be judged before every unit is done (breaching it fails
            // the run whatever the percentage); a percentage only at the end.
            let count_only = Tolerance { count: tolerance.count, percentage: None };
            let judged_early = tolerance.count.is_some() || tolerance.percentage.is_none();
            let items = &progress.counters.items;
            let failed_items = items.failed + items.timed_out;
            if judged_early && count_only.exceeded(failed_items, u64::MAX) {
                return Ok(true);
            }
            if progress.all_done {
                let exceeded = tolerance.exceeded(failed_items, items.total);
                return Ok(exceeded);
            }
            if progress.stopped {
                // Stopped by an earlier leader before every unit was done: only the threshold
                // does that (it may have been raised since; the stop stands).
                return Ok(true);
            }
            let _ = tokio::time::timeout(WATCH_INTERVAL, wake).await;
        }
    }

    /// Plans the run and records the units from `recorded` on (the ones before are in the
    /// ledger already: planning is deterministic for the same source). Units are recorded, and
    /// so dispatched, as the planner finds them — in parts of what has accumulated while the
    /// previous part was committed — so workers start while the source is still being read.
    /// The last part, which marks the plan complete, is recorded only once planning succeeded.
    async fn plan(&self, request: &MapRunRequest, arn: &MapRunArn, recorded: usize) -> Result<(), Failure> {
        let job = self.job(request)?;
        let (sender, mut planned) = tokio::sync::mpsc::unbounded_channel();
        let mut planner = {
            let (request, stores) = (request.clone(), self.stores.clone());
            tokio::spawn(async move {
                plan_units_with(&request, stores, &mut |unit| {
                    // The receiver is gone only when this plan was abandoned.
                    let _ = sender.send(unit);
                })
                .await
            })
        };
        let _abandon = AbortOnDrop(planner.abort_handle());
        let mut first = recorded as u64;
        let mut part = Vec::new();
        let mut total = 0;
        loop {
            let last = match planned.recv().await {
                Some(unit) => {
                    part.push(unit);
                    while part.len() < UNITS_PER_COMMAND {
                        match planned.try_recv() {
                            Ok(unit) => part.push(unit),
                            Err(_) => break,
                        }
                    }
                    false
                }
                None => {
                    // The planner is done: a failed plan is not marked complete.
                    (&mut planner)
                        .await
                        .map_err(|e| Failure::runtime(format!("the map run's planner stopped: {e}")))??;
                    true
                }
            };
            total += part.len();
            // Units recorded by an earlier leader are not recorded again.
            let units: Vec<_> = part.drain(..).filter(|u| u.unit >= first).collect();
            if units.is_empty() && !last {
                continue;
            }
            let count = units.len() as u64;
            let command = Command::PlanMapRunUnits {
                arn: arn.clone(),
                job: (first == 0).then(|| job.clone()),
                round: request.redrive_count,
                first,
                units,
                last,
            };
            propose_while_leader(&self.dispatcher.inner.node, &command)
                .await
                .map_err(|e| Failure::runtime(format!("the map run's plan was not recorded: {e}")))?;
            first += count;
            self.dispatcher.work_changed();
            if last {
                tracing::info!(map_run = %arn, units = total, "map run planned");
                return Ok(());
            }
        }
    }

    /// The map run as workers receive it.
    fn job(&self, request: &MapRunRequest) -> Result<String, Failure> {
        let mut job = request.to_job();
        job.child_archive_bucket = self.archive.clone();
        serde_json::to_string(&job)
            .map_err(|e| Failure::runtime(format!("the map run's job cannot be described to workers: {e}")))
    }

    /// Opens the redrive `request` is for: the units that did not wholly succeed run again,
    /// for their unsuccessful children (features.md §2.12).
    async fn redrive(&self, request: &MapRunRequest, arn: &MapRunArn) -> Result<(), Failure> {
        let command =
            Command::RedriveMapRunUnits { arn: arn.clone(), round: request.redrive_count, job: self.job(request)? };
        let response = propose_while_leader(&self.dispatcher.inner.node, &command)
            .await
            .map_err(|e| Failure::runtime(format!("the map run's redrive was not recorded: {e}")))?;
        if let Response::UnitsRedriven { reopened } = response {
            tracing::info!(map_run = %arn, redrive = request.redrive_count, units = reopened, "map run redriven");
        }
        self.dispatcher.work_changed();
        Ok(())
    }

    async fn stop(&self, arn: &MapRunArn) -> Result<(), Failure> {
        propose_while_leader(&self.dispatcher.inner.node, &Command::StopMapRunUnits { arn: arn.clone() })
            .await
            .map(|_| ())
            .map_err(|e| Failure::runtime(format!("the map run could not be stopped: {e}")))
    }

    async fn progress(&self, arn: &MapRunArn) -> Option<Progress> {
        let lookup = arn.clone();
        let (_, progress) = self
            .dispatcher
            .inner
            .node
            .local_read(move |state| state.work.runs.get(&lookup).map(progress_of))
            .await
            .ok()?;
        progress
    }

    /// Gathers the archived executions of the accepted unit attempts into the run's object.
    async fn consolidate_archive(&self, request: &MapRunRequest, work: &MapRunWork) -> Result<(), Failure> {
        let Some(bucket) = &self.archive else { return Ok(()) };
        if request.execution_type != StateMachineType::Standard {
            return Ok(());
        }
        let carried: Vec<_> = work.carried().into_iter().map(|(_, unit, epoch)| (unit, epoch)).collect();
        child_archive::consolidate(&self.stores, bucket, &request.map_run_arn, &work.accepted(), &carried)
            .await
            .map_err(|e| Failure::runtime(format!("the children's executions could not be archived: {e}")))
    }

    /// The run's result from the ledger's DONE units (and PENDING records for the others when
    /// the run failed).
    /// Opens the result files of a run with a ResultWriter (none: the run has no ResultWriter,
    /// or an earlier leader wrote its files already).
    async fn begin_results(&self, request: &MapRunRequest, arn: &MapRunArn) -> Result<Option<Streamed>, Failure> {
        let Some(writer) = result_writer(request, &self.stores)? else { return Ok(None) };
        let lookup = arn.clone();
        let (_, carried) = self
            .dispatcher
            .inner
            .node
            .local_read(move |state| state.work.runs.get(&lookup).map(carried_batches).unwrap_or_default())
            .await
            .map_err(|_| no_longer_leads())?;
        match writer.begin_results(&carried).await.map_err(|e| e.failure())? {
            ResultsBegun::InProgress(results) => Ok(Some(Streamed { results, next: 0 })),
            ResultsBegun::Written(_) => Ok(None),
        }
    }

    /// Copies the staged results of the units done since the last call, in unit order: at
    /// most [`COPIED_PER_WATCH`], so that the watch goes on (a new leader may find thousands).
    async fn copy_done(&self, arn: &MapRunArn, streamed: &mut Streamed) -> Result<(), Failure> {
        let (lookup, from) = (arn.clone(), streamed.next);
        let (_, done) = self
            .dispatcher
            .inner
            .node
            .local_read(move |state| {
                state.work.runs.get(&lookup).map(|work| work.accepted_from(from, COPIED_PER_WATCH))
            })
            .await
            .map_err(|_| no_longer_leads())?;
        let Some((accepted, next)) = done else { return Ok(()) };
        for (unit, epoch) in accepted {
            streamed.results.copy(staged_batch(unit, epoch)).await.map_err(|e| e.failure())?;
        }
        streamed.next = next;
        Ok(())
    }

    async fn finalise(
        &self,
        request: &MapRunRequest,
        work: &MapRunWork,
        exceeded: bool,
        streamed: Option<Streamed>,
    ) -> Result<Value, Failure> {
        match result_writer(request, &self.stores)? {
            Some(writer) => {
                let mut pending = Vec::new();
                if exceeded {
                    for unit in work.units.iter().filter(|u| !matches!(u.status, UnitStatus::Done { .. })) {
                        pending.extend(pending_records(request, self.stores.clone(), &unit.unit).await?);
                    }
                }
                let accepted = work.accepted().into_iter();
                match streamed {
                    Some(Streamed { mut results, next }) => {
                        let mut copied = Ok(());
                        for (unit, epoch) in accepted.filter(|(unit, _)| *unit >= next as u64) {
                            copied = results.copy(staged_batch(unit, epoch)).await;
                            if copied.is_err() {
                                break;
                            }
                        }
                        if let Err(error) = copied {
                            results.abort().await;
                            return Err(error.failure());
                        }
                        results.finish(&pending).await.map_err(|e| e.failure())?;
                    }
                    None => {
                        let staged: Vec<_> = accepted.map(|(unit, epoch)| staged_batch(unit, epoch)).collect();
                        let carried = carried_batches(work);
                        writer.finalize_redrive(&staged, &carried, &pending).await.map_err(|e| e.failure())?;
                    }
                }
                if exceeded {
                    return Err(Tolerance::failure());
                }
                Ok(writer.state_output())
            }
            None => {
                if exceeded {
                    return Err(Tolerance::failure());
                }
                let outputs: Vec<Value> = work
                    .units
                    .iter()
                    .filter_map(|u| match &u.status {
                        UnitStatus::Done { outcome } => outcome.outputs.clone(),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                Ok(Value::Array(outputs))
            }
        }
    }
}

/// Units whose staged results one watch of a run copies at most (see `copy_done`).
const COPIED_PER_WATCH: usize = 32;

fn no_longer_leads() -> Failure {
    Failure::runtime("this coordinator no longer leads")
}

/// The staged batches of a redrive's earlier rounds its result files take first.
fn carried_batches(work: &MapRunWork) -> Vec<(u32, StagedBatch)> {
    work.carried().into_iter().map(|(round, unit, epoch)| (round, staged_batch(unit, epoch))).collect()
}

/// Result files being written while the run runs: the staged results of units before the
/// one at index `next` are copied.
struct Streamed {
    results: Box<ResultsInProgress>,
    next: usize,
}

/// Counters (features.md §2.9) and the threshold's inputs from a run's units.
fn progress_of(work: &MapRunWork) -> Progress {
    let mut counters = worker::MapRunCounters::default();
    let mut failure = None;
    let mut all_done = work.planned;
    let mut leased = Vec::new();
    let mut output_bytes = 0u64;
    for record in &work.units {
        let WorkUnit { mut items, mut children, .. } = record.unit;
        // A done unit counts the children that ran (a batch over the byte limit is split).
        let ran = |outcome: &UnitOutcome| outcome.executions.ended();
        let in_total = match &record.status {
            UnitStatus::Done { outcome } => ran(outcome),
            _ => record.earlier.as_deref().map_or(children, ran),
        };
        counters.items.total += items;
        counters.executions.total += in_total;
        // A unit being redriven: what succeeded before stays succeeded (and written); the
        // rest is pending or running again.
        if let (Some(earlier), false) = (&record.earlier, matches!(record.status, UnitStatus::Done { .. })) {
            for (counts, before) in
                [(&mut counters.items, &earlier.items), (&mut counters.executions, &earlier.executions)]
            {
                counts.succeeded += before.succeeded;
                counts.results_written += before.succeeded;
            }
            items -= earlier.items.succeeded;
            children = ran(earlier) - earlier.executions.succeeded;
        }
        match &record.status {
            UnitStatus::Pending => {
                all_done = false;
                counters.items.pending += items;
                counters.executions.pending += children;
            }
            UnitStatus::Leased { .. } => {
                all_done = false;
                leased.push((record.unit.unit, record.epoch));
                counters.items.running += items;
                counters.executions.running += children;
            }
            UnitStatus::Done { outcome } => {
                let UnitOutcome { items: i, executions: e, .. } = outcome.as_ref();
                for (counts, by_status) in [(&mut counters.items, i), (&mut counters.executions, e)] {
                    counts.succeeded += by_status.succeeded;
                    counts.failed += by_status.failed;
                    counts.timed_out += by_status.timed_out;
                    counts.aborted += by_status.aborted;
                    counts.results_written += by_status.ended();
                }
                if failure.is_none() {
                    failure = outcome.failure.clone();
                }
                output_bytes += outcome.output_bytes;
            }
        }
    }
    if failure.is_none() && output_bytes > MAX_RESULT_BYTES {
        failure = Some(result_too_large(output_bytes));
    }
    Progress { counters, all_done, stopped: work.stopped, leased, failure }
}
