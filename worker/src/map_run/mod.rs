//! Runs a Distributed Map's map run in this process: items from the ItemReader (or the state
//! input), child inputs through ItemSelector and ItemBatcher, child executions with the `asl`
//! interpreter at most MaxConcurrency at a time, the tolerated-failure threshold, and the
//! ResultWriter's files (features.md §2). This is the embedded default behind `stepmap run`;
//! a cluster dispatches the same children to workers through the coordinator.
//!
//! Children run in item order as far as the result is concerned. When the threshold is
//! exceeded no further child starts: the items not yet started become PENDING records.

pub mod child_archive;
mod work_unit;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{run_execution, ExecutionOutcome, ExecutionSpec, ExecutionStatus};
use stepmap_asl::map_run::{
    batch_input, child_execution_arn, Batching, MapItem, MapRunExecutor, MapRunItems, MapRunRequest, Tolerance,
};
use stepmap_asl::payload::Payload;
use stepmap_asl::timestamp;

use stepmap_asl::json_size::json_size;
use stepmap_storage::batch_plan::{BATCH_ENVELOPE, DEFAULT_MAX_INPUT_BYTES};
use stepmap_storage::result_writer::{ChildStatus, PayloadDetails};
use stepmap_storage::{
    ChildExecutionResult, ItemReader, ItemReaderSpec, ResultWriter, ResultWriterSpec, StorageError, Stores,
};

pub use work_unit::{
    pending_records, plan_units, plan_units_with, result_too_large, result_writer, staged_batch, StatusCounts,
    UnitGrouping, UnitOutcome, UnitRunner, WorkUnit, ITEMS_PER_UNIT, MAX_RESULT_BYTES,
};

/// AWS's ceiling on parallel children of one map run ("MaxConcurrency 0 ⇒ up to 10,000").
const MAX_PARALLEL_CHILDREN: usize = 10_000;
/// Items per ItemSelector task when children run in parallel.
const SELECT_CHUNK: usize = 512;

/// What a map run has done so far, for progress displays.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapRunProgress {
    pub map_run_arn: String,
    /// Items in children that ended, and how many of them failed (or timed out).
    pub items_done: u64,
    pub items_failed: u64,
    pub children_done: u64,
    /// Set once the run has ended: where its results are, `bucket/key` of the manifest when
    /// a ResultWriter wrote them.
    pub finished: bool,
    pub manifest: Option<String>,
}

/// Receives [`MapRunProgress`] as children end (from the task running the map run).
pub type ProgressObserver = Arc<dyn Fn(&MapRunProgress) + Send + Sync>;

/// A map-run executor whose runs can be steered while they go on (UpdateMapRun) and watched
/// (DescribeMapRun's counters) through a [`MapRunControl`]. The coordinator runs map runs
/// through this seam: [`LocalMapRunExecutor`] today, the worker fleet's dispatcher later.
pub trait ControlledMapRunExecutor: Send + Sync {
    /// Runs `request` under `control`: its MaxConcurrency and tolerances are read from
    /// `control` as the run goes (the request's own values are ignored), and the run keeps
    /// `control`'s counters current.
    fn run_controlled(
        &self,
        request: MapRunRequest,
        control: MapRunControl,
    ) -> BoxFuture<'static, Result<Value, Failure>>;

    /// Whether a request with a `redrive_count` re-runs only the children its map run left
    /// unsuccessful (the executor keeps what each child did). Without, a redriven execution
    /// starts a new map run instead.
    fn redrives_children(&self) -> bool {
        false
    }
}

/// Counters of one kind (items or child executions) of a map run, as AWS's
/// `MapRunItemCounts` / `MapRunExecutionCounts` define them (features.md §2.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapRunCounts {
    /// Read, not yet started in a child (waiting for a MaxConcurrency slot, or never started
    /// because the run failed).
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// In children stopped because the map run ended (failed) while they ran.
    pub aborted: u64,
    /// Every item (child) read so far: final once the reader reached the end.
    pub total: u64,
    /// Whose result was taken into the map run's result (written by the ResultWriter, or
    /// collected into the state's output).
    pub results_written: u64,
}

/// A map run's [`MapRunCounts`] of items and of child executions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapRunCounters {
    pub items: MapRunCounts,
    pub executions: MapRunCounts,
}

impl MapRunCounters {
    /// A child of `items` items was read.
    fn read(&mut self, items: u64) {
        self.add_pending(1, items);
    }

    fn add_pending(&mut self, children: u64, items: u64) {
        self.executions.total += children;
        self.executions.pending += children;
        self.items.total += items;
        self.items.pending += items;
    }

    fn started(&mut self, items: u64) {
        self.executions.pending = self.executions.pending.saturating_sub(1);
        self.executions.running += 1;
        self.items.pending = self.items.pending.saturating_sub(items);
        self.items.running += items;
    }

    fn ended(&mut self, items: u64, status: ChildStatus) {
        self.executions.running = self.executions.running.saturating_sub(1);
        self.items.running = self.items.running.saturating_sub(items);
        let (executions, items_counter) = match status {
            ChildStatus::Succeeded => (&mut self.executions.succeeded, &mut self.items.succeeded),
            ChildStatus::Failed => (&mut self.executions.failed, &mut self.items.failed),
            ChildStatus::TimedOut => (&mut self.executions.timed_out, &mut self.items.timed_out),
            ChildStatus::Aborted => (&mut self.executions.aborted, &mut self.items.aborted),
            ChildStatus::Pending => (&mut self.executions.pending, &mut self.items.pending),
        };
        *executions += 1;
        *items_counter += items;
    }

    fn written(&mut self, items: u64) {
        self.executions.results_written += 1;
        self.items.results_written += items;
    }

    /// The run ended while children ran: they were stopped.
    fn abort_running(&mut self) {
        self.executions.aborted += std::mem::take(&mut self.executions.running);
        self.items.aborted += std::mem::take(&mut self.items.running);
    }
}

/// The live handle of one map run, shared by the run and whoever steers it: MaxConcurrency
/// and the tolerated-failure thresholds (which UpdateMapRun changes while the run goes on)
/// and the counters the run keeps. Cheap to clone.
#[derive(Clone)]
pub struct MapRunControl {
    inner: Arc<ControlInner>,
}

struct ControlInner {
    settings: Mutex<(u64, Tolerance)>,
    counters: Mutex<MapRunCounters>,
    /// Wakes children waiting for a slot when MaxConcurrency grows.
    changed: tokio::sync::Notify,
}

impl MapRunControl {
    /// `max_concurrency` 0 means AWS's ceiling (10,000 children).
    pub fn new(max_concurrency: u64, tolerance: Tolerance) -> MapRunControl {
        MapRunControl {
            inner: Arc::new(ControlInner {
                settings: Mutex::new((max_concurrency, tolerance)),
                counters: Mutex::new(MapRunCounters::default()),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn max_concurrency(&self) -> u64 {
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Takes effect at once: more children start if it grew; if it shrank, no new child
    /// starts until fewer than `max_concurrency` run (running children are not stopped).
    pub fn set_max_concurrency(&self, max_concurrency: u64) {
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).0 = max_concurrency;
        self.inner.changed.notify_waiters();
    }

    pub fn tolerance(&self) -> Tolerance {
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Judged from the next child's end on (and at the end of the run).
    pub fn set_tolerance(&self, tolerance: Tolerance) {
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).1 = tolerance;
    }

    /// The counters as they are now.
    pub fn counters(&self) -> MapRunCounters {
        *self.inner.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the counters: for runs whose children are counted elsewhere (the
    /// coordinator's work ledger, for map runs on the worker fleet).
    pub fn set_counters(&self, counters: MapRunCounters) {
        self.update(|c| *c = counters);
    }

    fn update(&self, change: impl FnOnce(&mut MapRunCounters)) {
        change(&mut self.inner.counters.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Holds children to the map run's current MaxConcurrency (and this process's slots).
struct ConcurrencyGate {
    control: MapRunControl,
    slots: usize,
    running: Mutex<usize>,
}

impl ConcurrencyGate {
    fn limit(&self) -> usize {
        match self.control.max_concurrency() {
            0 => MAX_PARALLEL_CHILDREN,
            n => usize::try_from(n).unwrap_or(usize::MAX).min(MAX_PARALLEL_CHILDREN),
        }
        .min(self.slots)
    }

    /// Waits for a free slot; the slot is given back when the permit drops.
    async fn acquire(self: &Arc<Self>) -> GatePermit {
        loop {
            // Registered before looking, so that a release in between is not missed.
            let changed = self.control.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                if *running < self.limit() {
                    *running += 1;
                    return GatePermit(self.clone());
                }
            }
            changed.await;
        }
    }
}

struct GatePermit(Arc<ConcurrencyGate>);

impl Drop for GatePermit {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.control.inner.changed.notify_waiters();
    }
}

/// Runs map runs with the interpreter in this process.
pub struct LocalMapRunExecutor {
    progress: Option<ProgressObserver>,
    stores: Arc<Stores>,
    /// How many children run at once at most, whatever MaxConcurrency allows: this process
    /// is the whole worker fleet (default: one slot per core).
    slots: usize,
    /// Whether children may run on other threads of the tokio runtime. Under a virtual clock
    /// they must stay on the polling thread, which is what lets the clock know when the whole
    /// execution is idle.
    parallel: bool,
}

impl LocalMapRunExecutor {
    pub fn new(stores: Arc<Stores>, slots: usize, parallel: bool) -> LocalMapRunExecutor {
        LocalMapRunExecutor { stores, slots: slots.max(1), parallel, progress: None }
    }

    /// Reports progress to `observer` as children end.
    pub fn with_progress(mut self, observer: ProgressObserver) -> LocalMapRunExecutor {
        self.progress = Some(observer);
        self
    }

    /// One slot per core.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

impl MapRunExecutor for LocalMapRunExecutor {
    fn run(&self, request: MapRunRequest) -> BoxFuture<'static, Result<Value, Failure>> {
        let control = MapRunControl::new(request.max_concurrency, request.tolerance);
        self.run_controlled(request, control)
    }
}

impl ControlledMapRunExecutor for LocalMapRunExecutor {
    fn run_controlled(
        &self,
        request: MapRunRequest,
        control: MapRunControl,
    ) -> BoxFuture<'static, Result<Value, Failure>> {
        let stores = self.stores.clone();
        let (slots, parallel, progress) = (self.slots, self.parallel, self.progress.clone());
        let records = match request.result_writer.as_ref() {
            Some(w) if w.writer.resource.is_some() => {
                match w.writer.writer_config.as_ref().and_then(|c| c.transformation.as_deref()) {
                    None | Some("NONE") => SucceededRecords::Full,
                    Some(_) => SucceededRecords::Output,
                }
            }
            _ => SucceededRecords::None,
        };
        async move { MapRun { request, stores, slots, parallel, progress, records, control, archive: false }.run().await }.boxed()
    }
}

/// One child's input and what it stands for.
struct ChildInput {
    /// 0-based position among the children (the batch number when batching).
    ordinal: u64,
    /// Text when the items were selected into text (a CSV source's compiled ItemSelector).
    input: Payload,
    items: u64,
}

/// How one child ended, in result-file form.
struct ChildResult {
    items: u64,
    output: Option<Payload>,
    record: ChildExecutionResult,
    /// The execution with its history, when the run archives its children.
    archived: Option<child_archive::ArchivedExecution>,
}

struct MapRun {
    request: MapRunRequest,
    stores: Arc<Stores>,
    slots: usize,
    parallel: bool,
    progress: Option<ProgressObserver>,
    records: SucceededRecords,
    /// MaxConcurrency and the tolerances as they are now (UpdateMapRun), and the counters.
    control: MapRunControl,
    /// Whether children are archived with their histories (STANDARD children on the fleet).
    archive: bool,
}

impl MapRun {
    fn cores() -> usize {
        std::thread::available_parallelism().map_or(2, usize::from).max(2)
    }

    async fn run(self) -> Result<Value, Failure> {
        let writer = match &self.request.result_writer {
            Some(w) if w.writer.resource.is_some() => {
                let spec = ResultWriterSpec::new(&w.writer, &w.parameters).map_err(|e| e.failure())?;
                Some(ResultWriter::new(self.stores.clone(), spec, self.request.map_run_arn.clone(), 0))
            }
            _ => None,
        };
        let items = self.items().await?;
        let mut children = self.child_inputs(items);
        if self.parallel {
            // Reading and ItemSelector run on their own task, ahead of the children.
            children = read_ahead(children, 2 * self.slots);
        }
        // Children read so far are counted (total, pending) as they are taken from the stream.
        let counted = self.control.clone();
        let children = children.inspect(move |child| {
            if let Ok(child) = child {
                counted.update(|c| c.read(child.items));
            }
        });
        // At most `slots` children are in flight; the gate holds them to MaxConcurrency, which
        // UpdateMapRun may change while the run goes on.
        let gate =
            Arc::new(ConcurrencyGate { control: self.control.clone(), slots: self.slots, running: Mutex::new(0) });
        let in_flight = self.slots.min(MAX_PARALLEL_CHILDREN);
        let this = Arc::new(self);
        let runs = children.map({
            let this = this.clone();
            move |child| {
                let (this, gate) = (this.clone(), gate.clone());
                async move {
                    let child = child?;
                    let permit = gate.acquire().await;
                    let items = child.items;
                    this.control.update(|c| c.started(items));
                    let run = this.clone().run_child(child, uuid::Uuid::new_v4().to_string(), true);
                    let result = if this.parallel {
                        // Aborted when the map run stops waiting for it (the run failed).
                        let run = async move {
                            let result = run.await;
                            drop(permit);
                            result
                        };
                        AbortOnDrop(tokio::spawn(run))
                            .await
                            .map_err(|e| Failure::runtime(format!("a child execution panicked: {e}")))
                    } else {
                        let result = run.await;
                        drop(permit);
                        Ok(result)
                    };
                    if let Ok(result) = &result {
                        this.control.update(|c| c.ended(items, result.record.status));
                    }
                    result
                }
            }
        });
        let mut runs = runs.buffered(in_flight);
        let (mut total_items, mut failed_items) = (0u64, 0u64);
        // With a ResultWriter, results are written as children end, so memory stays bounded;
        // without one, the outputs are the state's result and are kept.
        let mut results = writer.as_ref().map(ResultsTask::start).transpose()?;
        let mut outputs: Vec<Value> = Vec::new();
        let mut children_done = 0u64;
        let mut exceeded = false;
        while let Some(result) = runs.next().await {
            let result = result?;
            children_done += 1;
            total_items += result.items;
            if result.record.status != ChildStatus::Succeeded {
                failed_items += result.items;
            }
            match &mut results {
                Some(results) => results.push(result.record, result.output).await?,
                None => outputs.push(result.output.map_or_else(|| result.record.to_value(), Payload::into_value)),
            }
            this.control.update(|c| c.written(result.items));
            this.report(children_done, total_items, failed_items, None);
            let tolerance = this.control.tolerance();
            // A count threshold can be judged before every item is known (and breaching it
            // fails the run whatever the percentage); a percentage only at the end.
            let count_only = Tolerance { count: tolerance.count, percentage: None };
            let judged_early = tolerance.count.is_some() || tolerance.percentage.is_none();
            if judged_early && count_only.exceeded(failed_items, u64::MAX) {
                exceeded = true;
                break;
            }
        }
        drop(runs);
        // Children still running were stopped with the run.
        this.control.update(MapRunCounters::abort_running);
        let exceeded = exceeded || this.control.tolerance().exceeded(failed_items, total_items);
        if let (Some(writer), Some(mut results)) = (&writer, results) {
            if exceeded {
                // Children never started (or stopped with the run) are PENDING.
                let mut rest = this.child_inputs_after(children_done).await?;
                let (mut rest_children, mut rest_items) = (0u64, 0u64);
                while let Some(child) = rest.next().await {
                    let child = child?;
                    rest_children += 1;
                    rest_items += child.items;
                    results.push(ChildExecutionResult::pending(&child.input), None).await?;
                }
                // What the run had read beyond the children it consumed is counted already;
                // the rest joins the totals as pending.
                this.control.update(|c| {
                    let children = rest_children.saturating_sub(c.executions.total.saturating_sub(children_done));
                    let items = rest_items.saturating_sub(c.items.total.saturating_sub(total_items));
                    c.add_pending(children, items);
                });
            }
            let manifest = results.finish().await?;
            this.report(children_done, total_items, failed_items, Some(Some(manifest)));
            if exceeded {
                return Err(Tolerance::failure());
            }
            return Ok(writer.state_output());
        }
        this.report(children_done, total_items, failed_items, Some(None));
        if exceeded {
            return Err(Tolerance::failure());
        }
        Ok(Value::Array(outputs))
    }

    /// `finished`: `Some(manifest)` once the run has ended.
    fn report(&self, children_done: u64, items_done: u64, items_failed: u64, finished: Option<Option<String>>) {
        if let Some(observer) = &self.progress {
            observer(&MapRunProgress {
                map_run_arn: self.request.map_run_arn.clone(),
                items_done,
                items_failed,
                children_done,
                finished: finished.is_some(),
                manifest: finished.flatten(),
            });
        }
    }

    /// The items, as a stream, with their `$$.Map.Item` context.
    async fn items(&self) -> Result<BoxStream<'static, Result<MapItem, Failure>>, Failure> {
        match &self.request.items {
            MapRunItems::Inline(values) => {
                let values = values.clone();
                Ok(stream::iter(
                    values
                        .into_iter()
                        .enumerate()
                        .map(|(index, value)| Ok(MapItem { index: index as u64, value, key: None, source: None })),
                )
                .boxed())
            }
            MapRunItems::Reader { .. } => {
                let Some(reader) = self.open_reader().await? else { return Ok(stream::empty().boxed()) };
                Ok(reader.items().map(|item| item.map(map_item).map_err(|e| e.failure())).boxed())
            }
        }
    }

    /// The ItemReader of a map run that reads its items from storage (`None` for items
    /// from the state input).
    pub(crate) async fn open_reader(&self) -> Result<Option<ItemReader>, Failure> {
        let MapRunItems::Reader { resource, config, parameters, max_items } = &self.request.items else {
            return Ok(None);
        };
        // The interpreter resolved an integer; its sign is judged here, after MapRunStarted,
        // as AWS does. 0 means every item.
        let max_items = match *max_items {
            Some(n) if n < 0 => return Err(StorageError::MaxItemsNotPositive { value: n }.failure()),
            Some(n) => Some(n as u64).filter(|n| *n > 0),
            None => None,
        };
        let spec = ItemReaderSpec::new(resource, config, parameters, max_items).map_err(|e| e.failure())?;
        ItemReader::open(self.stores.clone(), spec).await.map(Some).map_err(|e| e.failure())
    }

    /// Child inputs in order: one per item, or one per batch.
    fn child_inputs(
        &self,
        items: BoxStream<'static, Result<MapItem, Failure>>,
    ) -> BoxStream<'static, Result<ChildInput, Failure>> {
        let selection = Arc::new(self.request.selection.clone());
        let batching = self.request.batching.clone();
        // Each selected item with its size in bytes when batches are limited by bytes.
        let measured = batching.is_some();
        let select = move |item: Result<MapItem, Failure>| {
            let value = item.and_then(|item| selection.select(item))?;
            let size = if measured { json_size(&value) } else { 0 };
            Ok((Payload::Value(value), size))
        };
        let selected: BoxStream<'static, SelectedChunk> = if self.parallel {
            // ItemSelector runs on chunks of items on the runtime's threads, in order, so that
            // the reading task only parses (it is the one serial stage of a map run).
            let select = Arc::new(select);
            items
                // Whatever the reader has ready, up to a chunk: no wait for a full chunk.
                .ready_chunks(SELECT_CHUNK)
                .map(move |chunk| {
                    let select = select.clone();
                    let task =
                        tokio::spawn(async move { chunk.into_iter().map(|item| select(item)).collect::<Vec<_>>() });
                    // Stopped with the map run.
                    AbortOnDrop(task).map(|selected| {
                        selected.unwrap_or_else(|e| vec![Err(Failure::runtime(format!("ItemSelector panicked: {e}")))])
                    })
                })
                // One chunk per core in flight bounds the selected items held ahead.
                .buffered(Self::cores())
                .boxed()
        } else {
            items.map(move |item| vec![select(item)]).boxed()
        };
        match batching {
            None => selected
                .flat_map(stream::iter)
                .enumerate()
                .map(|(ordinal, input)| input.map(|(input, _)| ChildInput { ordinal: ordinal as u64, input, items: 1 }))
                .boxed(),
            Some(batching) => batches(selected, batching),
        }
    }

    /// The child inputs from ordinal `skip` on (the items a stopped run never started).
    async fn child_inputs_after(&self, skip: u64) -> Result<BoxStream<'static, Result<ChildInput, Failure>>, Failure> {
        let items = self.items().await?;
        Ok(self.child_inputs(items).skip(skip as usize).boxed())
    }

    /// Runs one child execution named `name` (the last part of its ARN). Its record shows its
    /// input only with `keep_input`; otherwise the caller fills it in where a record shows it.
    async fn run_child(self: Arc<Self>, child: ChildInput, name: String, keep_input: bool) -> ChildResult {
        let request = &self.request;
        let label = request.label.clone().unwrap_or_else(|| request.state_name.clone());
        let machine_name = format!("{}/{label}", request.state_machine_name);
        // The input's text is taken before the input moves into the execution: records of
        // failed children always show it, succeeded ones only in NONE results, archived
        // executions all.
        let input_text = if keep_input { child.input.to_text() } else { String::new() };
        let ChildInput { ordinal, input, items } = child;
        let mut spec =
            ExecutionSpec::new(&machine_name, &name, request.execution_type, &request.account, &request.region, input);
        spec.execution_arn = child_execution_arn(
            &request.region,
            &request.account,
            request.execution_type,
            &request.state_machine_name,
            &label,
            &name,
        );
        let identity = ChildIdentity {
            execution_arn: spec.execution_arn.clone(),
            name,
            state_machine_arn: spec.state_machine_arn.clone(),
        };
        // Unless the run archives its children, their histories are not kept: their events
        // need no payloads.
        let mut environment = request.environment.clone();
        environment.history_payloads = self.archive;
        let mut outcome = run_execution(request.processor.clone(), spec, environment).await;
        tracing::debug!(child = ordinal, status = outcome.status.as_str(), "child execution ended");
        let archived = self.archive.then(|| child_archive::ArchivedExecution {
            execution_arn: identity.execution_arn.clone(),
            name: identity.name.clone(),
            state_machine_arn: identity.state_machine_arn.clone(),
            map_run_arn: request.map_run_arn.clone(),
            status: outcome.status.as_str().to_owned(),
            start_date: timestamp::format(outcome.start_time),
            stop_date: timestamp::format(outcome.stop_time),
            input: input_text.clone(),
            output: outcome.output.as_ref().map(Payload::to_text),
            error: outcome.error.clone(),
            cause: outcome.cause.clone(),
            history: std::mem::take(&mut outcome.history),
        });
        ChildResult { archived, ..child_result(identity, input_text, items, self.records, outcome) }
    }
}

/// A storage item with what `$$.Map.Item` shows of it.
pub(crate) fn map_item(item: stepmap_storage::Item) -> MapItem {
    MapItem { index: item.index, value: item.value, key: item.key, source: Some(item.source.to_string()) }
}

/// Which records a map run needs of its succeeded children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SucceededRecords {
    /// No ResultWriter: the outputs are the result; records only for failed children.
    None,
    /// COMPACT / FLATTEN results, written directly or staged: the output (as a value).
    Output,
    /// NONE results: the whole record.
    Full,
}

struct ChildIdentity {
    execution_arn: String,
    name: String,
    state_machine_arn: String,
}

/// A spawned child execution that is aborted when nobody waits for it any more.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls `stream` on a task of its own, `depth` elements ahead of the consumer: reading
/// and parsing items then overlaps with running children and writing results.
fn read_ahead<T: Send + 'static>(mut stream: BoxStream<'static, T>, depth: usize) -> BoxStream<'static, T> {
    let (sender, receiver) = tokio::sync::mpsc::channel(depth);
    tokio::spawn(async move {
        while let Some(element) = stream.next().await {
            if sender.send(element).await.is_err() {
                break; // the map run stopped consuming
            }
        }
    });
    stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|e| (e, receiver)) }).boxed()
}

/// The result-file record of a finished child.
fn child_result(
    identity: ChildIdentity,
    input_text: String,
    items: u64,
    records: SucceededRecords,
    outcome: ExecutionOutcome,
) -> ChildResult {
    let status = match outcome.status {
        ExecutionStatus::Succeeded => ChildStatus::Succeeded,
        ExecutionStatus::Failed => ChildStatus::Failed,
        ExecutionStatus::TimedOut => ChildStatus::TimedOut,
        ExecutionStatus::Aborted => ChildStatus::Aborted,
    };
    let succeeded = status == ChildStatus::Succeeded;
    // COMPACT / FLATTEN results take a succeeded child's output as a value, not as text.
    let output_text = match (succeeded, records) {
        (true, SucceededRecords::None | SucceededRecords::Output) => None,
        _ => outcome.output.as_ref().map(Payload::to_text),
    };
    let input = if succeeded && records != SucceededRecords::Full { String::new() } else { input_text };
    let record = ChildExecutionResult {
        cause: outcome.cause.clone(),
        error: outcome.error.clone(),
        execution_arn: Some(identity.execution_arn),
        input,
        input_details: PayloadDetails { included: true },
        name: Some(identity.name),
        output_details: output_text.as_ref().map(|_| PayloadDetails { included: true }),
        output: output_text,
        redrive_count: Some(0),
        redrive_status: Some(if succeeded { "NOT_REDRIVABLE" } else { "REDRIVABLE" }.into()),
        redrive_status_reason: None,
        start_date: Some(timestamp::format(outcome.start_time)),
        state_machine_arn: Some(identity.state_machine_arn),
        status,
        stop_date: Some(timestamp::format(outcome.stop_time)),
    };
    let output = if succeeded { outcome.output } else { None };
    ChildResult { items, output, record, archived: None }
}

/// Writes the result files on a task of its own as children end (serialising results is CPU
/// work that would otherwise hold up the map run's loop); the channel keeps memory bounded.
struct ResultsTask {
    sender: tokio::sync::mpsc::Sender<(ChildExecutionResult, Option<Payload>)>,
    task: AbortOnDrop<Result<String, Failure>>,
}

impl ResultsTask {
    /// Returns the task; it ends with the manifest's `bucket/key`.
    fn start(writer: &ResultWriter) -> Result<ResultsTask, Failure> {
        let mut results = writer.direct().map_err(|e| e.failure())?;
        let manifest = format!("{}/{}", writer.spec().bucket, writer.manifest_key());
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<(ChildExecutionResult, Option<Payload>)>(64);
        let task = AbortOnDrop(tokio::spawn(async move {
            while let Some((record, output)) = receiver.recv().await {
                results.push(&record, output).await.map_err(|e| e.failure())?;
            }
            results.finish().await.map_err(|e| e.failure())?;
            Ok(manifest)
        }));
        Ok(ResultsTask { sender, task })
    }

    async fn push(&mut self, record: ChildExecutionResult, output: Option<Payload>) -> Result<(), Failure> {
        if self.sender.send((record, output)).await.is_err() {
            // The task stopped on a write error; `finish` reports it.
            return Ok(());
        }
        Ok(())
    }

    /// Waits for every result file and the manifest.
    async fn finish(self) -> Result<String, Failure> {
        drop(self.sender);
        self.task.await.map_err(|e| Failure::runtime(format!("writing results failed: {e}")))?
    }
}

/// Selected items with their sizes in bytes, a chunk at a time (as a reader reads them): the
/// items of a chunk are taken without polling the stream again.
pub(crate) type SelectedChunk = Vec<Result<(Payload, u64), Failure>>;

/// Groups selected items into batches of at most MaxItemsPerBatch items and
/// MaxInputBytesPerBatch bytes of serialized items (a single larger item is a batch of its
/// own rather than an error).
fn batches(
    selected: impl futures::Stream<Item = SelectedChunk> + Send + 'static,
    batching: Batching,
) -> BoxStream<'static, Result<ChildInput, Failure>> {
    let max_items = batching.max_items_per_batch.unwrap_or(u64::MAX).max(1);
    let max_bytes = batching.max_input_bytes_per_batch.unwrap_or(DEFAULT_MAX_INPUT_BYTES);
    // `{"Items":[]}` and `,"BatchInput":<value>`.
    let envelope = BATCH_ENVELOPE + batching.batch_input.as_ref().map_or(0, |b| 14 + json_size(b));
    struct State<S> {
        selected: std::pin::Pin<Box<S>>,
        /// The rest of the chunk read last.
        chunk: std::vec::IntoIter<Result<(Payload, u64), Failure>>,
        held: Option<(Payload, u64)>,
        ordinal: u64,
        done: bool,
    }
    let state =
        State { selected: Box::pin(selected), chunk: Vec::new().into_iter(), held: None, ordinal: 0, done: false };
    stream::unfold(state, move |mut state| {
        let batching = batching.clone();
        async move {
            if state.done && state.held.is_none() {
                return None;
            }
            let mut items = Vec::with_capacity(max_items.min(1024) as usize);
            let mut bytes = envelope;
            loop {
                let next = match state.held.take() {
                    Some(held) => Some(held),
                    None if state.done => None,
                    None => match state.chunk.next() {
                        Some(Ok(sized)) => Some(sized),
                        Some(Err(failure)) => {
                            state.done = true;
                            return Some((Err(failure), state));
                        }
                        None => match state.selected.next().await {
                            Some(chunk) => {
                                state.chunk = chunk.into_iter();
                                continue;
                            }
                            None => {
                                state.done = true;
                                None
                            }
                        },
                    },
                };
                let Some((value, size)) = next else { break };
                // Measured as the planner measures (`stepmap_storage::batch_plan`): the
                // envelope, `BatchInput`, the items and the commas between them.
                if !items.is_empty() && bytes + 1 + size > max_bytes {
                    state.held = Some((value, size));
                    break;
                }
                bytes += size + u64::from(!items.is_empty());
                items.push(value);
                if items.len() as u64 >= max_items {
                    break;
                }
            }
            if items.is_empty() {
                return None;
            }
            // A batch cut short by bytes would keep the unused room while its input lives
            // (collecting its values reuses the allocation).
            if items.len() * 2 < items.capacity() {
                items.shrink_to_fit();
            }
            let count = items.len() as u64;
            let child = ChildInput { ordinal: state.ordinal, input: batch_input(items, &batching), items: count };
            state.ordinal += 1;
            Some((Ok(child), state))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use stepmap_asl::failure::names;

    fn collect(values: Vec<Value>, batching: Batching) -> Vec<(Value, u64)> {
        // One item per chunk, then chunks of three: batches cross chunks alike.
        let sized: SelectedChunk = values
            .into_iter()
            .map(|v| {
                let size = json_size(&v);
                Ok((Payload::Value(v), size))
            })
            .collect();
        let mut chunks: Vec<SelectedChunk> = Vec::new();
        for (n, item) in sized.into_iter().enumerate() {
            match chunks.last_mut() {
                Some(chunk) if n > 2 && chunk.len() < 3 => chunk.push(item),
                _ => chunks.push(vec![item]),
            }
        }
        let stream = stream::iter(chunks);
        futures::executor::block_on(
            batches(stream, batching).map(|c| c.map(|c| (c.input.into_value(), c.items))).collect::<Vec<_>>(),
        )
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
    }

    #[test]
    fn batches_honour_item_and_byte_limits() {
        let values: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let by_items = collect(values.clone(), Batching { max_items_per_batch: Some(2), ..Batching::default() });
        assert_eq!(by_items.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(by_items[0].0, json!({"Items": [0, 1]}));
        // Each item serializes to 1 byte: `{"Items":[0,1,2]}` is 17 bytes, as the planner counts.
        let by_bytes = collect(values, Batching { max_input_bytes_per_batch: Some(17), ..Batching::default() });
        assert_eq!(by_bytes.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[tokio::test]
    async fn the_gate_follows_max_concurrency_as_it_changes() {
        let control = MapRunControl::new(1, Tolerance::default());
        let gate = Arc::new(ConcurrencyGate { control: control.clone(), slots: 4, running: Mutex::new(0) });
        let first = gate.acquire().await;
        let mut second = Box::pin(gate.acquire());
        assert!(futures::poll!(second.as_mut()).is_pending(), "MaxConcurrency 1 admits one child");
        control.set_max_concurrency(3);
        let second = second.await;
        let _third = gate.acquire().await;
        let mut fourth = Box::pin(gate.acquire());
        assert!(futures::poll!(fourth.as_mut()).is_pending(), "MaxConcurrency 3 admits three children");
        // Lowering it holds new children back until enough running ones end.
        control.set_max_concurrency(2);
        drop(first);
        assert!(futures::poll!(fourth.as_mut()).is_pending(), "two still run under MaxConcurrency 2");
        drop(second);
        fourth.await;
        // 0 is AWS's ceiling, bounded here by the slots.
        control.set_max_concurrency(0);
        assert_eq!(gate.limit(), 4);
    }

    #[test]
    fn counters_follow_children_through_their_lives() {
        let mut c = MapRunCounters::default();
        c.read(2);
        c.read(1);
        c.started(2);
        assert_eq!((c.items.pending, c.items.running, c.executions.running), (1, 2, 1));
        c.ended(2, ChildStatus::Failed);
        c.written(2);
        c.started(1);
        c.abort_running();
        assert_eq!(
            c.items,
            MapRunCounts {
                pending: 0,
                running: 0,
                failed: 2,
                aborted: 1,
                total: 3,
                results_written: 2,
                ..Default::default()
            }
        );
        assert_eq!((c.executions.total, c.executions.failed, c.executions.aborted), (2, 1, 1));
    }

    #[test]
    fn failures_end_the_batch_stream() {
        let stream =
            stream::iter(vec![vec![Ok((json!(1).into(), 1)), Err(Failure::new(names::ITEM_READER_FAILED, "bad row"))]]);
        let out = futures::executor::block_on(
            batches(stream, Batching { max_items_per_batch: Some(10), ..Batching::default() }).collect::<Vec<_>>(),
        );
        assert!(out[0].is_err());
    }
}
