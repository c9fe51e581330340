//! Map runs cut into work units for the worker fleet (DESIGN.md §3): the planner that cuts
//! them (on the coordinator), and the runner that runs one unit (on a worker).
//!
//! A [`WorkUnit`] is what one lease covers: a run of consecutive items, read from storage by
//! its batch descriptor (or taken from the state input). With an ItemBatcher a unit is one
//! batch, i.e. one child execution, or several consecutive batches (see [`UnitGrouping`]);
//! without, each of its items is a child, run one after the other. A unit runs at most
//! [`UnitGrouping::parallelism`] children at once, which is how the coordinator holds a map
//! run to MaxConcurrency by counting leases.
//!
//! A unit's outcome is counted once by the coordinator (for the lease's current epoch).
//! With a ResultWriter its records are staged under a key derived from (map run, unit,
//! epoch), so a unit that ran twice leaves two staged objects of which the finaliser reads
//! the accepted one; without, the children's outputs travel in the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepmap_asl::clock::SystemClock;
use stepmap_asl::column_selection::ColumnSelection;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::Environment;
use stepmap_asl::map_run::{MapItem, MapRunItems, MapRunRequest};
use stepmap_asl::map_run_job::MapRunJob;
use stepmap_asl::model::StateMachineType;
use stepmap_asl::payload::Payload;
use stepmap_asl::task::TaskInvoker;
use stepmap_storage::result_writer::ChildStatus;
use stepmap_storage::{
    BatchDescriptor, BatchLimits, ChildExecutionResult, CsvRecords, FieldBuffer, Item, ItemReader, Records,
    ResultWriter, ResultWriterSpec, StagedBatch, Stores,
};

use super::{
    batches, child_archive, map_item, ChildInput, LocalMapRunExecutor, MapRun, MapRunControl, SucceededRecords,
};
use stepmap_asl::json_size::json_size;

/// Items per unit when each item is its own child: enough to keep a lease's overhead small
/// against the children's work, few enough that MaxConcurrency spreads a run over workers.
pub const ITEMS_PER_UNIT: u64 = 100;

/// A unit of batches for a processor that calls nothing (see [`UnitGrouping::Sequential`])
/// closes with the batch that brings it to this many items, or at this many batches: about
/// 10 ms of work for rows like the orders bench's (a batch's input is at most 256 KiB, so such
/// a unit stays short whatever its items).
const GROUPED_UNIT_ITEMS: u64 = 8192;
const GROUPED_UNIT_BATCHES: u64 = 16;

/// Batches of a unit whose children run at once (see [`UnitGrouping::Parallel`]) at most:
/// enough to pay a lease, an outcome and a staged object per several batches and to keep a
/// pool of warm handlers fed while the engine prepares the next events; few enough that a
/// lost lease re-runs little and a run spreads over the fleet.
const PARALLEL_UNIT_BATCHES: u64 = 8;

/// How a map run's units hold its batches: a pure function of the request, so that the
/// planner (which cuts units), the worker (which runs them) and the coordinator (which counts
/// their children against MaxConcurrency) agree.
///
/// Batches are grouped only when they are cut by count alone (MaxItemsPerBatch without
/// MaxInputBytesPerBatch), from an ItemReader: the worker's split of a unit into batches then
/// meets the plan's boundaries, whereas sizes, measured again, could come out otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitGrouping {
    /// One batch per unit; without an ItemBatcher, [`ITEMS_PER_UNIT`] items, each a child.
    Single,
    /// Consecutive batches of a processor that calls nothing (Pass, Choice, Succeed, Fail),
    /// run one after the other: each takes microseconds, so the lease, the outcome and the
    /// staged object are paid per few thousand items instead of per batch.
    Sequential,
    /// Up to this many consecutive batches of a processor that calls something (a Task, a
    /// Wait, a nested run), all running at once: their time is spent waiting, so the unit
    /// takes about as long as its slowest child. At most half the run's MaxConcurrency, so
    /// that at least two units (one finishing, one starting) share it.
    Parallel(u64),
}

impl UnitGrouping {
    pub fn of(request: &MapRunRequest) -> UnitGrouping {
        let counted = request
            .batching
            .as_ref()
            .is_some_and(|b| b.max_items_per_batch.is_some() && b.max_input_bytes_per_batch.is_none());
        if !counted || !matches!(request.items, MapRunItems::Reader { .. }) {
            return UnitGrouping::Single;
        }
        if calls_nothing(&request.processor) {
            return UnitGrouping::Sequential;
        }
        let batches = match request.max_concurrency {
            0 => PARALLEL_UNIT_BATCHES,
            cap => (cap / 2).min(PARALLEL_UNIT_BATCHES),
        };
        if batches > 1 {
            UnitGrouping::Parallel(batches)
        } else {
            UnitGrouping::Single
        }
    }

    /// Children of one unit that run at once.
    pub fn parallelism(self) -> u64 {
        match self {
            UnitGrouping::Parallel(batches) => batches,
            UnitGrouping::Single | UnitGrouping::Sequential => 1,
        }
    }

    /// Whether a unit of `batches` batches and `items` items is full.
    fn full(self, batches: u64, items: u64) -> bool {
        match self {
            UnitGrouping::Single => true,
            UnitGrouping::Sequential => items >= GROUPED_UNIT_ITEMS || batches >= GROUPED_UNIT_BATCHES,
            UnitGrouping::Parallel(most) => batches >= most,
        }
    }
}

/// Whether every state of `processor` only moves data (Pass, Choice, Succeed, Fail): its
/// children call no service, wait for nothing and start no nested runs.
fn calls_nothing(processor: &stepmap_asl::model::StateMachine) -> bool {
    use stepmap_asl::model::State;
    processor
        .block
        .states
        .values()
        .all(|state| matches!(state, State::Pass(_) | State::Choice(_) | State::Succeed(_) | State::Fail(_)))
}

/// One lease's work (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkUnit {
    /// The unit's number within its map run: units in number order hold the items in order.
    pub unit: u64,
    /// `$$.Map.Item.Index` of its first item.
    pub first_index: u64,
    pub items: u64,
    /// Child executions: the batches it holds with an ItemBatcher (more if its items, selected,
    /// exceed the batch byte limit; the outcome counts the children that ran), else one per item.
    pub children: u64,
    /// Where its items are; `None` for items from the state input (`first_index..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<BatchDescriptor>,
    /// A redrive runs only these children: their positions among the unit's children (0-based,
    /// ascending), the ones that did not succeed before. `None`: every child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<u64>>,
}

impl WorkUnit {
    /// Whether the child at `position` among the unit's children is to run.
    fn runs(&self, position: u64) -> bool {
        self.only.as_ref().is_none_or(|only| only.binary_search(&position).is_ok())
    }
}

/// The name of the child at `position` among unit `unit`'s children: the same in every
/// attempt and redrive of the unit, so that a redriven child keeps its execution ARN, as on
/// AWS. A UUID (version 5) of the map run, the unit and the position.
pub fn child_name(map_run_arn: &str, unit: u64, position: u64) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("{map_run_arn}#{unit}/{position}").as_bytes()).to_string()
}

/// Items or children of one unit by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
}

impl StatusCounts {
    fn add(&mut self, status: ChildStatus, n: u64) {
        match status {
            ChildStatus::Succeeded => self.succeeded += n,
            ChildStatus::Failed => self.failed += n,
            ChildStatus::TimedOut => self.timed_out += n,
            ChildStatus::Aborted | ChildStatus::Pending => self.aborted += n,
        }
    }

    /// What counts against the tolerated-failure threshold (features.md §2.7).
    pub fn failures(&self) -> u64 {
        self.failed + self.timed_out
    }

    /// Every item or child that ended, however.
    pub fn ended(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.aborted
    }
}

/// How one unit ended, as its worker reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitOutcome {
    pub items: StatusCounts,
    pub executions: StatusCounts,
    /// Without a ResultWriter: each child's output (a failed child's record), in item order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Value>>,
    /// The serialized size of `outputs`: the coordinator holds a run without ResultWriter to
    /// AWS's 256 KiB result limit as units complete, not only at the end.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_bytes: u64,
    /// The unit could not run (its items could not be read, its results not staged): the
    /// map run fails with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The positions among the unit's children (ascending) of those that did not succeed:
    /// what a redrive runs again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsuccessful: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// AWS's limit on a map run's result without ResultWriter (features.md §2.8).
pub const MAX_RESULT_BYTES: u64 = 256 * 1024;

/// The failure of a map run whose result (without ResultWriter) outgrew [`MAX_RESULT_BYTES`].
pub fn result_too_large(bytes: u64) -> Failure {
    Failure::new(
        stepmap_asl::failure::names::DATA_LIMIT_EXCEEDED,
        format!("The map run's result of {bytes} bytes exceeds the maximum of {MAX_RESULT_BYTES} bytes; use a ResultWriter."),
    )
}

impl UnitOutcome {
    fn failed(failure: Failure) -> Self {
        UnitOutcome { failure: Some(failure), ..UnitOutcome::default() }
    }

    /// This outcome of a redrive of the unit (which ran the children `earlier` left
    /// unsuccessful) merged into `earlier`: the children that succeeded before stay
    /// succeeded, the redriven ones count as they ended now, and their outputs take the places
    /// of their earlier records.
    pub fn after(self, earlier: &UnitOutcome) -> UnitOutcome {
        let carried = |now: StatusCounts, before: StatusCounts| StatusCounts {
            succeeded: before.succeeded + now.succeeded,
            ..now
        };
        let outputs = match (self.outputs, &earlier.outputs) {
            (Some(now), Some(before)) => {
                let mut merged = before.clone();
                for (position, output) in earlier.unsuccessful.iter().zip(now) {
                    if let Some(slot) = merged.get_mut(*position as usize) {
                        *slot = output;
                    }
                }
                Some(merged)
            }
            (now, _) => now,
        };
        let output_bytes = outputs.as_ref().map_or(0, |o| o.iter().map(|v| json_size(v) + 1).sum::<u64>() + 1);
        UnitOutcome {
            items: carried(self.items, earlier.items),
            executions: carried(self.executions, earlier.executions),
            outputs,
            output_bytes,
            failure: self.failure,
            unsuccessful: self.unsuccessful,
        }
    }
}

/// The key under which a unit's records are staged, as the finaliser reads them.
pub fn staged_batch(unit: u64, epoch: u64) -> StagedBatch {
    StagedBatch { batch: unit, attempt: epoch }
}

/// The map run's ResultWriter, when it writes to storage.
pub fn result_writer(request: &MapRunRequest, stores: &Arc<Stores>) -> Result<Option<ResultWriter>, Failure> {
    match &request.result_writer {
        Some(w) if w.writer.resource.is_some() => {
            let spec = ResultWriterSpec::new(&w.writer, &w.parameters).map_err(|e| e.failure())?;
            Ok(Some(ResultWriter::new(stores.clone(), spec, request.map_run_arn.clone(), request.redrive_count)))
        }
        _ => Ok(None),
    }
}

/// Cuts a map run into work units, in item order.
pub async fn plan_units(request: &MapRunRequest, stores: Arc<Stores>) -> Result<Vec<WorkUnit>, Failure> {
    let mut units = Vec::new();
    plan_units_with(request, stores, &mut |unit| units.push(unit)).await?;
    Ok(units)
}

/// [`plan_units`], handing each unit to `emit` as soon as it is planned (the source is read
/// once, from the start): a coordinator can record and dispatch the first units while the
/// rest are still being planned.
pub async fn plan_units_with(
    request: &MapRunRequest,
    stores: Arc<Stores>,
    emit: &mut (dyn FnMut(WorkUnit) + Send),
) -> Result<(), Failure> {
    let run = prepared(request.clone(), stores);
    // Units do not shrink with MaxConcurrency: the coordinator bounds the leases out by it
    // (each unit counted as its parallelism).
    let unit_items = ITEMS_PER_UNIT;
    match &request.items {
        MapRunItems::Inline(values) => {
            let counts: Vec<u64> = match &request.batching {
                // The same rule as a run in one process: batches of selected items.
                Some(batching) => {
                    let selection = request.selection.clone();
                    let values = values.clone();
                    let selected = stream::iter(values.into_iter().enumerate().map(move |(index, value)| {
                        let item = MapItem { index: index as u64, value, key: None, source: None };
                        let value = selection.select(item)?;
                        let size = json_size(&value);
                        Ok((Payload::Value(value), size))
                    }));
                    let mut counts = Vec::new();
                    let mut children = batches(selected.map(|item| vec![item]), batching.clone());
                    while let Some(child) = children.next().await {
                        counts.push(child?.items);
                    }
                    counts
                }
                None => {
                    let total = values.len() as u64;
                    (0..total.div_ceil(unit_items)).map(|u| unit_items.min(total - u * unit_items)).collect()
                }
            };
            let batched = request.batching.is_some();
            let mut first_index = 0;
            for (unit, items) in counts.into_iter().enumerate() {
                let children = if batched { 1 } else { items };
                emit(WorkUnit { unit: unit as u64, first_index, items, children, descriptor: None, only: None });
                first_index += items;
            }
            Ok(())
        }
        MapRunItems::Reader { .. } => {
            let Some(reader) = run.open_reader().await? else { return Ok(()) };
            let (limits, sizer): (BatchLimits, Option<Box<stepmap_storage::ItemSizer>>) = match &request.batching {
                Some(batching) => {
                    // `,"BatchInput":` (14 bytes) and the value.
                    let batch_input_bytes = batching.batch_input.as_ref().map_or(0, |b| 14 + json_size(b));
                    let limits = BatchLimits {
                        max_items_per_batch: batching.max_items_per_batch,
                        max_input_bytes_per_batch: batching.max_input_bytes_per_batch,
                        batch_input_bytes,
                    };
                    // With a byte limit, items are measured as their child sees them: after
                    // ItemSelector. With MaxItemsPerBatch alone the plan counts items only
                    // (measuring every item on the coordinator would serialise the run's
                    // ItemSelector work there); the worker then splits a unit whose items
                    // exceed 256 KiB once selected, as a run in one process does.
                    let measured =
                        batching.max_input_bytes_per_batch.is_some() || batching.max_items_per_batch.is_none();
                    let selection = request.selection.clone();
                    let sizer = move |item: &Item| {
                        let item = map_item(item.clone());
                        selection.select(item).map_or(0, |value| json_size(&value))
                    };
                    let sizer: Option<Box<stepmap_storage::ItemSizer>> =
                        if measured { Some(Box::new(sizer)) } else { None };
                    (limits, sizer)
                }
                None => (BatchLimits::items(unit_items), None),
            };
            let batched = request.batching.is_some();
            // The worker splits a unit of several batches again by the same limits.
            let grouping = UnitGrouping::of(request);
            let mut unit = 0;
            let mut open: Option<(BatchDescriptor, u64)> = None;
            let mut emit_unit = |descriptor: BatchDescriptor, children: u64| {
                let (first_index, items) = (descriptor.first_index, descriptor.items);
                let children = if batched { children } else { items };
                emit(WorkUnit { unit, first_index, items, children, descriptor: Some(descriptor), only: None });
                unit += 1;
            };
            let mut emit_descriptor = |descriptor: BatchDescriptor| {
                let (grouped, batches) = match open.take() {
                    Some((mut grouped, batches)) => {
                        grouped.append(descriptor);
                        (grouped, batches + 1)
                    }
                    None => (descriptor, 1),
                };
                if !grouping.full(batches, grouped.items) {
                    open = Some((grouped, batches));
                } else {
                    emit_unit(grouped, batches);
                }
                Ok(())
            };
            reader.plan_with(&limits, sizer.as_deref(), &mut emit_descriptor).await.map_err(|e| e.failure())?;
            if let Some((unit, batches)) = open {
                emit_unit(unit, batches);
            }
            Ok(())
        }
    }
}

/// The records of a unit's children that never ran (PENDING in the result files).
pub async fn pending_records(
    request: &MapRunRequest,
    stores: Arc<Stores>,
    unit: &WorkUnit,
) -> Result<Vec<ChildExecutionResult>, Failure> {
    let run = Arc::new(prepared(request.clone(), stores));
    let reader = run.open_reader().await?;
    let mut children = run.unit_children(reader.as_ref(), unit);
    let mut records = Vec::new();
    while let Some((_, child)) = children.next().await {
        records.push(ChildExecutionResult::pending(&child?.input));
    }
    Ok(records)
}

/// A map run prepared to run units: nothing runs in parallel inside a unit.
fn prepared(request: MapRunRequest, stores: Arc<Stores>) -> MapRun {
    let records = match result_writer_mode(&request) {
        Some(full) if full => SucceededRecords::Full,
        Some(_) => SucceededRecords::Output,
        None => SucceededRecords::None,
    };
    let control = MapRunControl::new(request.max_concurrency, request.tolerance);
    MapRun { request, stores, slots: 1, parallel: false, progress: None, records, control, archive: false }
}

/// `Some(true)`: a ResultWriter writing whole records (Transformation NONE); `Some(false)`:
/// one writing outputs; `None`: no ResultWriter to storage.
fn result_writer_mode(request: &MapRunRequest) -> Option<bool> {
    let writer = request.result_writer.as_ref().filter(|w| w.writer.resource.is_some())?;
    let transformation = writer.writer.writer_config.as_ref().and_then(|c| c.transformation.as_deref());
    Some(matches!(transformation, None | Some("NONE")))
}

/// What a worker keeps of a map run it runs units of.
struct PreparedRun {
    run: Arc<MapRun>,
    reader: Option<Arc<ItemReader>>,
    writer: Option<ResultWriter>,
    /// The bucket the children's executions are archived in (STANDARD children).
    archive: Option<String>,
}

/// Runs work units on this worker, keeping each map run's parsed job and opened reader for
/// its next units.
pub struct UnitRunner {
    stores: Arc<Stores>,
    /// The environment children run with (this worker's clock and task invoker).
    environment: Environment,
    runs: Mutex<HashMap<String, Arc<PreparedRun>>>,
}

/// Map runs whose preparation a worker keeps at most.
const KEPT_RUNS: usize = 64;

impl UnitRunner {
    pub fn new(stores: Arc<Stores>, environment: Environment) -> Self {
        UnitRunner { stores, environment, runs: Mutex::new(HashMap::new()) }
    }

    /// A fleet worker's runner: children on the wall clock with `invoker`; a Distributed Map
    /// nested in a child runs in this process, `slots` children at once; children's histories
    /// carry payloads only where they are archived.
    pub fn for_worker(stores: Arc<Stores>, invoker: Arc<dyn TaskInvoker>, slots: usize) -> Self {
        let nested = LocalMapRunExecutor::new(stores.clone(), slots, true);
        let environment = Environment::new(Arc::new(SystemClock), invoker).with_map_runs(Arc::new(nested));
        Self::new(stores, environment.without_history_payloads())
    }

    /// Runs `unit` of the map run `job` (asl's `MapRunJob` JSON) under lease epoch `epoch`,
    /// at most `at_once` of its children at a time if that is less than its grouping allows
    /// (0: as it allows; the lease's MaxConcurrency). Never fails: what goes wrong is in the
    /// outcome.
    pub async fn run(&self, job: &str, unit: &WorkUnit, epoch: u64, at_once: u64) -> UnitOutcome {
        // A parent execution's Task state: one invocation with this worker's invoker.
        if let Some(task) = crate::task_job::TaskJob::parse(job) {
            return crate::task_job::task_outcome(
                self.environment.invoker.invoke(task.into_request()).await.map(Payload::into_value),
            );
        }
        let prepared = match self.prepare(job).await {
            Ok(prepared) => prepared,
            Err(failure) => return UnitOutcome::failed(failure),
        };
        let PreparedRun { run, reader, writer, archive } = &*prepared;
        run.clone().run_unit(reader.as_deref(), writer.as_ref(), archive.as_deref(), unit, epoch, at_once).await
    }

    async fn prepare(&self, job: &str) -> Result<Arc<PreparedRun>, Failure> {
        let job: MapRunJob =
            serde_json::from_str(job).map_err(|e| Failure::runtime(format!("the map run's job is unreadable: {e}")))?;
        // Each redrive of a run is prepared anew: it writes its results elsewhere.
        let arn = format!("{}#{}", job.map_run_arn, job.redrive_count);
        if let Some(prepared) = self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(&arn) {
            return Ok(prepared.clone());
        }
        // AWS records STANDARD children as executions; EXPRESS ones only in logs.
        let archive = job.child_archive_bucket.clone().filter(|_| job.execution_type == StateMachineType::Standard);
        let request = job.into_request(self.environment.clone())?;
        let writer = result_writer(&request, &self.stores)?;
        let mut run = prepared(request, self.stores.clone());
        run.archive = archive.is_some();
        let reader = run.open_reader().await?.map(Arc::new);
        let prepared = Arc::new(PreparedRun { run: Arc::new(run), reader, writer, archive });
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() >= KEPT_RUNS {
            runs.clear();
        }
        runs.insert(arn, prepared.clone());
        Ok(prepared)
    }
}

/// The child inputs of a chunk of CSV rows, selected by `columns` (the ItemSelector compiled
/// for their header) as text when `as_text`, else as values; `general` selects a row the
/// general way (without a compiled selector, or where it leaves the row undecided).
fn select_csv(
    records: &CsvRecords,
    columns: Option<&ColumnSelection>,
    as_text: bool,
    fields: &mut FieldBuffer,
    general: impl Fn(usize) -> Result<Payload, Failure>,
) -> Vec<Result<Payload, Failure>> {
    let Some(columns) = columns else { return (0..records.len()).map(general).collect() };
    let read = columns.columns_read();
    let index = |r: usize| records.first_index + r as u64;
    if as_text {
        // Rendered side by side into one text, which the batch copies as one slice.
        let mut rendered = columns.rendered_rows(records.len(), records.text_len());
        for r in 0..records.len() {
            let row = records.fields(r, read, fields);
            rendered.push(index(r), |column| row.get(column));
        }
        let rendered = rendered.finish().into_iter().enumerate();
        rendered.map(|(r, text)| text.map_or_else(|| general(r), |text| Ok(Payload::Text(text)))).collect()
    } else {
        (0..records.len())
            .map(|r| {
                let row = records.fields(r, read, fields);
                let value = columns.select(index(r), |column| row.get(column));
                value.map_or_else(|| general(r), |value| Ok(Payload::Value(value)))
            })
            .collect()
    }
}

impl MapRun {
    /// The child inputs of one unit that are to run (a redrive's `only`), in order, each with
    /// its position among the unit's children.
    fn unit_children(
        self: &Arc<Self>,
        reader: Option<&ItemReader>,
        unit: &WorkUnit,
    ) -> BoxStream<'static, (u64, Result<ChildInput, Failure>)> {
        let selected = unit.clone();
        self.all_unit_children(reader, unit)
            .enumerate()
            .map(|(position, child)| (position as u64, child))
            .filter(move |(position, child)| std::future::ready(child.is_err() || selected.runs(*position)))
            .boxed()
    }

    /// Every child input of one unit, in order.
    fn all_unit_children(
        self: &Arc<Self>,
        reader: Option<&ItemReader>,
        unit: &WorkUnit,
    ) -> BoxStream<'static, Result<ChildInput, Failure>> {
        let run = self.clone();
        let select = move |item: Result<MapItem, Failure>| {
            item.and_then(|item| run.request.selection.select(item)).map(Payload::Value)
        };
        // A chunk of selected items at a time (a reader's chunk of rows): batching takes the
        // items of a chunk without polling the stream for each.
        let selected: BoxStream<'static, Vec<Result<Payload, Failure>>> =
            match (&self.request.items, reader, &unit.descriptor) {
                (MapRunItems::Inline(values), _, _) => {
                    let first = unit.first_index as usize;
                    let values: Vec<Value> = values.iter().skip(first).take(unit.items as usize).cloned().collect();
                    let selected = values.into_iter().enumerate().map(move |(offset, value)| {
                        select(Ok(MapItem { index: (first + offset) as u64, value, key: None, source: None }))
                    });
                    stream::once(std::future::ready(selected.collect())).boxed()
                }
                (MapRunItems::Reader { .. }, Some(reader), Some(descriptor)) => {
                    // The ItemSelector compiled for the CSV header last seen.
                    let mut compiled: Option<(Arc<[String]>, Option<ColumnSelection>)> = None;
                    let mut fields = FieldBuffer::default();
                    // Rows go to the children as text when their first state sends it on as it is.
                    let as_text = self.request.processor.takes_text_input();
                    let run = self.clone();
                    reader
                        .batch_records(descriptor)
                        .map(move |records| {
                            match records {
                                Err(e) => vec![Err(e.failure())],
                                Ok(Records::Item(item)) => vec![select(Ok(map_item(item)))],
                                Ok(Records::Csv(records)) => {
                                    let headers = &records.headers;
                                    if compiled.as_ref().is_none_or(|(seen, _)| !Arc::ptr_eq(seen, headers)) {
                                        let selection = run.request.selection.for_columns(headers);
                                        compiled = Some((headers.clone(), selection));
                                    }
                                    let columns = compiled.as_ref().and_then(|(_, c)| c.as_ref());
                                    // A row the compiled selector leaves undecided (or every
                                    // row, without one) is selected the general way.
                                    let general = |r: usize| select(Ok(map_item(records.item(r))));
                                    select_csv(&records, columns, as_text, &mut fields, general)
                                }
                            }
                        })
                        .boxed()
                }
                _ => stream::once(async {
                    vec![Err(Failure::runtime("the work unit does not say where its items are"))]
                })
                .boxed(),
            };
        match &self.request.batching {
            // The unit's batches as planned (one, or several for a processor that calls
            // nothing), split further only where selected items exceed the batch byte limit
            // (256 KiB by default).
            Some(batching) => {
                let sized = selected.map(|chunk| {
                    let sized = |value: Payload| {
                        let size = value.len() as u64;
                        (value, size)
                    };
                    chunk.into_iter().map(|value| value.map(sized)).collect()
                });
                batches(sized, batching.clone())
            }
            None => {
                let first = unit.first_index;
                selected
                    .flat_map(stream::iter)
                    .enumerate()
                    .map(move |(offset, input)| {
                        input.map(|input| ChildInput { ordinal: first + offset as u64, input, items: 1 })
                    })
                    .boxed()
            }
        }
    }

    /// Fills in the inputs of `wanted` records (`(record index, child position)`, in position
    /// order) from a second reading of the unit's children. The children ran and their
    /// outcomes stand: an input that cannot be read again is only logged, its record shows none.
    async fn read_inputs_again(
        self: &Arc<Self>,
        reader: Option<&ItemReader>,
        unit: &WorkUnit,
        records: &mut [(ChildExecutionResult, Option<Payload>)],
        wanted: Vec<(usize, u64)>,
    ) {
        let mut children = self.unit_children(reader, unit);
        let mut missing = wanted.into_iter().peekable();
        while let Some(&(record, wanted)) = missing.peek() {
            let Some((position, child)) = children.next().await else { break };
            if position != wanted {
                continue;
            }
            missing.next();
            match child {
                Ok(child) => records[record].0.input = child.input.to_text(),
                Err(failure) => tracing::warn!(map_run = %self.request.map_run_arn, unit = unit.unit, position,
                    cause = failure.cause.as_deref().unwrap_or(""),
                    "the input of a child that did not succeed could not be read again: its record shows none"),
            }
        }
        for (_, position) in missing {
            tracing::warn!(map_run = %self.request.map_run_arn, unit = unit.unit, position,
                "the input of a child that did not succeed was not found again: its record shows none");
        }
    }

    /// Runs the unit's children, up to its grouping's parallelism at once, and stages (or
    /// collects) their results in the children's order.
    async fn run_unit(
        self: Arc<Self>,
        reader: Option<&ItemReader>,
        writer: Option<&ResultWriter>,
        archive: Option<&str>,
        unit: &WorkUnit,
        epoch: u64,
        at_once: u64,
    ) -> UnitOutcome {
        let mut outcome = UnitOutcome::default();
        let mut records = Vec::new();
        let mut archived = Vec::new();
        // Only the records of children that did not succeed show their input (unless every
        // record does, or the children are archived): rather than writing every child's input
        // out as it starts, the unit's inputs are read again for those, once it has run —
        // unless the ItemSelector draws random values, which a second reading would not repeat.
        let random_selection = self.request.selection.template.as_ref().is_some_and(|t| t.is_random());
        let every_input = self.archive || self.records == SucceededRecords::Full || random_selection;
        let mut without_input = Vec::new();
        let parallelism = match UnitGrouping::of(&self.request).parallelism() {
            allowed if at_once == 0 => allowed,
            allowed => allowed.min(at_once),
        } as usize;
        let run = self.clone();
        let unit_number = unit.unit;
        // `buffered` starts the next children while earlier ones run and yields them in order;
        // none starts after an input that cannot be read (the unit fails with it).
        let mut children = self
            .unit_children(reader, unit)
            .scan(false, |failed, (position, child)| {
                let next = (!*failed).then_some((position, child));
                *failed = next.as_ref().is_some_and(|(_, child)| child.is_err());
                std::future::ready(next)
            })
            .map(move |(position, child)| {
                let run = run.clone();
                async move {
                    let name = child_name(&run.request.map_run_arn, unit_number, position);
                    Ok::<_, Failure>((position, run.run_child(child?, name, every_input).await))
                }
            })
            .buffered(parallelism);
        while let Some(ended) = children.next().await {
            let (position, mut result) = match ended {
                Ok(ended) => ended,
                Err(failure) => return UnitOutcome::failed(failure),
            };
            archived.extend(result.archived.take());
            outcome.items.add(result.record.status, result.items);
            outcome.executions.add(result.record.status, 1);
            if result.record.status != ChildStatus::Succeeded {
                outcome.unsuccessful.push(position);
                if !every_input {
                    without_input.push((records.len(), position));
                }
            }
            records.push((result.record, result.output));
        }
        drop(children);
        if !without_input.is_empty() {
            self.read_inputs_again(reader, unit, &mut records, without_input).await;
        }
        if let Some(bucket) = archive {
            let arn = &self.request.map_run_arn;
            if let Err(error) = child_archive::write_unit(&self.stores, bucket, arn, unit.unit, epoch, &archived).await
            {
                return UnitOutcome::failed(error.failure());
            }
        }
        match writer {
            Some(writer) => {
                if let Err(error) = writer.stage_batch(staged_batch(unit.unit, epoch), records).await {
                    return UnitOutcome::failed(error.failure());
                }
            }
            None => {
                let outputs: Vec<Value> = records
                    .into_iter()
                    .map(|(record, output)| output.map_or_else(|| record.to_value(), Payload::into_value))
                    .collect();
                // Bracket and commas of the array included.
                let bytes = outputs.iter().map(|o| json_size(o) + 1).sum::<u64>() + 1;
                if bytes > MAX_RESULT_BYTES {
                    return UnitOutcome::failed(result_too_large(bytes));
                }
                outcome.outputs = Some(outputs);
                outcome.output_bytes = bytes;
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use stepmap_asl::clock::SystemClock;
    use stepmap_storage::StoreConfig;

    use super::*;
    use crate::{FunctionRegistry, LocalInvoker};

    /// A job whose ten inline items are ~100 KB strings, Pass children, ItemBatcher of 10,
    /// results to a ResultWriter (a megabyte is above the limit of a result without one).
    fn job() -> String {
        let items: Vec<Value> = (0..10).map(|i| json!(format!("{i}{}", "x".repeat(100_000)))).collect();
        json!({
            "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:m/M:1",
            "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
            "StateMachineName": "m",
            "StateName": "M",
            "Label": null,
            "Items": {"Kind": "Inline", "Items": items},
            "Selection": {
                "ItemSelector": null, "Input": {}, "Execution": {}, "StateMachine": {}, "RedriveCount": null,
                "StateName": "M", "EnteredTime": "t", "Variables": {}, "CausePrefix": ""
            },
            "Batching": {"MaxItemsPerBatch": 10, "MaxInputBytesPerBatch": null, "BatchInput": null},
            "Processor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
            "ExecutionType": "EXPRESS",
            "MaxConcurrency": 0,
            "ToleratedFailureCount": null,
            "ToleratedFailurePercentage": null,
            "ResultWriter": {
                "Writer": {"Resource": "arn:aws:states:::s3:putObject"},
                "Parameters": {"Bucket": "results", "Prefix": "out"}
            },
            "Region": "us-east-1",
            "Account": "123456789012"
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_unit_over_the_byte_limit_runs_as_several_children() {
        let stores = Arc::new(Stores::new(StoreConfig::Memory));
        let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).unwrap());
        let runner = UnitRunner::new(stores.clone(), Environment::new(Arc::new(SystemClock), invoker));
        // Planned by item count alone: one batch of ten items, about 1 MB once selected.
        let unit = WorkUnit { unit: 0, first_index: 0, items: 10, children: 1, descriptor: None, only: None };
        let outcome = runner.run(&job(), &unit, 1, 0).await;
        assert_eq!(outcome.failure, None);
        // 256 KiB batches of ~100 KB items: two items each.
        assert_eq!(outcome.executions.succeeded, 5);
        assert_eq!(outcome.items.succeeded, 10);
        // Staged under (unit 0, epoch 1), in item order.
        let staged = stores.bucket("results").unwrap();
        let key = "out/1/.stepmap-staging/batch-000000000000-1.jsonl";
        let text = String::from_utf8(staged.get_bytes(key).await.unwrap().to_vec()).unwrap();
        // Entries as the result files will hold them (the job's ResultWriter: NONE).
        // Every entry succeeded: staged untagged, behind the line `*S`.
        let items: Vec<String> = text
            .strip_prefix("*S\n")
            .expect("staged as all succeeded")
            .lines()
            .flat_map(|line| {
                let record: Value = serde_json::from_str(line).unwrap();
                let output: Value = serde_json::from_str(record["Output"].as_str().unwrap()).unwrap();
                output["Items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap()[..1].to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(items, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    /// A Task that answers only once `n` calls are in flight at once: a unit that ran its
    /// children one after the other would never get an answer.
    struct Rendezvous(Arc<tokio::sync::Barrier>);

    impl TaskInvoker for Rendezvous {
        fn invoke(
            &self,
            request: stepmap_asl::task::TaskRequest,
        ) -> futures::future::BoxFuture<'static, Result<stepmap_asl::payload::Payload, Failure>> {
            let barrier = self.0.clone();
            Box::pin(async move {
                barrier.wait().await;
                Ok(request.parameters.value()["Items"].clone().into())
            })
        }
    }

    /// Batches of a processor that calls nothing are grouped into units of several, which
    /// run one after the other; a Task processor's are grouped by at most half the
    /// MaxConcurrency (8 without), and run at once.
    #[tokio::test]
    async fn batches_are_grouped_into_units_by_what_their_processor_does() {
        let stores = Arc::new(Stores::new(StoreConfig::Memory));
        let csv: String = std::iter::once("id\n".to_string()).chain((0..10_000).map(|i| format!("{i}\n"))).collect();
        stores.bucket("data").unwrap().put("rows.csv", csv.into_bytes().into()).await.unwrap();
        let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).unwrap());
        let environment = Environment::new(Arc::new(SystemClock), invoker);
        // The test job over rows.csv in batches of 1,000, with `processor`.
        let job_with = |processor: Value, max_concurrency: u64| {
            let mut job: Value = serde_json::from_str(&job()).unwrap();
            job["Items"] = json!({"Kind": "Reader", "Resource": "arn:aws:states:::s3:getObject",
                "Config": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                "Parameters": {"Bucket": "data", "Key": "rows.csv"}, "MaxItems": null});
            job["Batching"]["MaxItemsPerBatch"] = json!(1000);
            job["Processor"] = processor;
            job["MaxConcurrency"] = json!(max_concurrency);
            job
        };
        let request = |job: &Value| {
            serde_json::from_value::<MapRunJob>(job.clone()).unwrap().into_request(environment.clone()).unwrap()
        };
        let shape = |units: &[WorkUnit]| units.iter().map(|u| (u.first_index, u.items, u.children)).collect::<Vec<_>>();

        let pass = job_with(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}), 0);
        assert_eq!(UnitGrouping::of(&request(&pass)), UnitGrouping::Sequential);
        let units = plan_units(&request(&pass), stores.clone()).await.unwrap();
        // 8,192 items close a unit: nine batches of 1,000, then the last one.
        assert_eq!(shape(&units), [(0, 9000, 9), (9000, 1000, 1)]);
        let runner = UnitRunner::new(stores.clone(), environment.clone());
        let outcome = runner.run(&pass.to_string(), &units[0], 1, 0).await;
        assert_eq!(outcome.failure, None);
        assert_eq!((outcome.executions.succeeded, outcome.items.succeeded), (9, 9000));

        let task = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true}}});
        let unlimited = request(&job_with(task.clone(), 0));
        assert_eq!(UnitGrouping::of(&unlimited).parallelism(), 8);
        let units = plan_units(&unlimited, stores.clone()).await.unwrap();
        assert_eq!(shape(&units), [(0, 8000, 8), (8000, 2000, 2)]);
        let capped = plan_units(&request(&job_with(task.clone(), 7)), stores.clone()).await.unwrap();
        assert_eq!(shape(&capped), [(0, 3000, 3), (3000, 3000, 3), (6000, 3000, 3), (9000, 1000, 1)]);
        let narrow = request(&job_with(task.clone(), 3));
        assert_eq!(UnitGrouping::of(&narrow), UnitGrouping::Single);
        let units_narrow = plan_units(&narrow, stores.clone()).await.unwrap();
        assert!(units_narrow.len() == 10 && units_narrow.iter().all(|u| (u.items, u.children) == (1000, 1)));

        // The eight children of the first unit are all in flight at once; results in order.
        let rendezvous = Arc::new(Rendezvous(Arc::new(tokio::sync::Barrier::new(8))));
        let runner = UnitRunner::new(stores.clone(), Environment::new(Arc::new(SystemClock), rendezvous));
        let job = job_with(task, 0).to_string();
        let run = runner.run(&job, &units[0], 1, 0);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("children at once");
        assert_eq!(outcome.failure, None);
        assert_eq!((outcome.executions.succeeded, outcome.items.succeeded), (8, 8000));
        let key = "out/1/.stepmap-staging/batch-000000000000-1.jsonl";
        let text = String::from_utf8(stores.bucket("results").unwrap().get_bytes(key).await.unwrap().to_vec()).unwrap();
        let firsts: Vec<String> = text
            .strip_prefix("*S\n")
            .expect("staged as all succeeded")
            .lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).unwrap();
                let output: Value = serde_json::from_str(record["Output"].as_str().unwrap()).unwrap();
                output[0]["id"].as_str().unwrap().to_owned()
            })
            .collect();
        let expected: Vec<String> = (0..8).map(|batch| (batch * 1000).to_string()).collect();
        assert_eq!(firsts, expected, "staged in the children's order");

        // A lease granted two at once (MaxConcurrency lowered): pairs meet, never more in flight.
        let pairs = Counting::default();
        let runner = UnitRunner::new(stores.clone(), Environment::new(Arc::new(SystemClock), Arc::new(pairs.clone())));
        let run = runner.run(&job, &units[0], 2, 2);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("pairs");
        assert_eq!((outcome.failure, outcome.executions.succeeded), (None, 8));
        assert_eq!(pairs.most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A Task whose calls wait for a second one (pairs), counting the most in flight at once.
    #[derive(Clone)]
    struct Counting {
        pair: Arc<tokio::sync::Barrier>,
        now: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Default for Counting {
        fn default() -> Self {
            Counting { pair: Arc::new(tokio::sync::Barrier::new(2)), now: Default::default(), most: Default::default() }
        }
    }

    impl TaskInvoker for Counting {
        fn invoke(
            &self,
            request: stepmap_asl::task::TaskRequest,
        ) -> futures::future::BoxFuture<'static, Result<stepmap_asl::payload::Payload, Failure>> {
            use std::sync::atomic::Ordering::SeqCst;
            let counting = self.clone();
            Box::pin(async move {
                let now = counting.now.fetch_add(1, SeqCst) + 1;
                counting.most.fetch_max(now, SeqCst);
                counting.pair.wait().await;
                // Let the other calls that can start do so before this one ends.
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                counting.now.fetch_sub(1, SeqCst);
                Ok(request.parameters.value()["Items"].clone().into())
            })
        }
    }

    /// With COMPACT results a child's input is not kept as it starts: the records of those
    /// that failed get it from a second reading of the unit's items.
    #[tokio::test]
    async fn records_of_failed_children_show_their_input() {
        let mut job: Value = serde_json::from_str(&job()).unwrap();
        job["Items"]["Items"] = json!([1, 2, 3, 4, 5, 6]);
        job["Batching"] = Value::Null;
        job["Processor"] = json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 4, "Next": "F"}], "Default": "P"},
            "F": {"Type": "Fail", "Error": "Big", "Cause": "over four"},
            "P": {"Type": "Pass", "End": true}}});
        job["ResultWriter"]["Writer"]["WriterConfig"] = json!({"Transformation": "COMPACT"});
        let stores = Arc::new(Stores::new(StoreConfig::Memory));
        let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).unwrap());
        let runner = UnitRunner::new(stores.clone(), Environment::new(Arc::new(SystemClock), invoker));
        let unit = WorkUnit { unit: 0, first_index: 0, items: 6, children: 6, descriptor: None, only: None };
        let outcome = runner.run(&job.to_string(), &unit, 1, 0).await;
        assert_eq!(outcome.failure, None);
        assert_eq!((outcome.executions.succeeded, outcome.executions.failed), (4, 2));
        assert_eq!(outcome.unsuccessful, [4, 5]);

        let staged = stores.bucket("results").unwrap();
        let key = "out/1/.stepmap-staging/batch-000000000000-1.jsonl";
        let text = String::from_utf8(staged.get_bytes(key).await.unwrap().to_vec()).unwrap();
        let failed: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| line.strip_prefix('F'))
            .map(|entry| {
                let record: Value = serde_json::from_str(entry).unwrap();
                (record["Input"].as_str().unwrap().to_owned(), record["Error"].as_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(failed, [("5".to_owned(), "Big".to_owned()), ("6".to_owned(), "Big".to_owned())]);
        assert_eq!(text.lines().filter(|line| line.starts_with('S')).count(), 4);
    }
}
