//! ResultWriter: a Map Run's results in AWS's layout and schema (features.md §2.8).
//!
//! ```text
//! <Prefix>/<mapRunId>/manifest.json        written last, lists every file with its size
//! <Prefix>/<mapRunId>/SUCCEEDED_<n>.json   succeeded children
//! <Prefix>/<mapRunId>/FAILED_<n>.json      failed, timed-out and aborted children
//! <Prefix>/<mapRunId>/PENDING_<n>.json     items never started (the run failed or was aborted)
//! ```
//!
//! A redriven Map Run writes under `<Prefix>/<mapRunId>/Redrive-<k>/`. A `/` is inserted after a
//! Prefix that lacks one.
//!
//! Writing happens in two steps so that it is idempotent:
//!
//! 1. workers **stage** each batch's records under a key derived from (batch, attempt)
//!    ([`ResultWriter::stage_batch`]); writing the same batch attempt again replaces the object;
//! 2. the finaliser **writes the result files** from the staged batches the Map Run accepted,
//!    each batch once, in batch order, then `manifest.json`, then removes the staging objects
//!    ([`ResultWriter::finalize`]). Running it again produces the same files.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepmap_asl::payload::Payload;

use crate::error::{Result, StorageError};
use crate::result_file::ResultFiles;
pub use crate::result_file::{OutputType, ParquetLayout, ResultFileRef};
use crate::store::Stores;

/// Where staged batch results live until the result files are written (removed afterwards).
const STAGING: &str = ".stepmap-staging";

/// AWS's result file size limit; overflow continues in the next file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// `WriterConfig.Transformation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Transformation {
    /// Full execution records (the default when exporting to S3).
    #[default]
    None,
    /// Just the child outputs.
    Compact,
    /// The child outputs, array outputs concatenated into one flat sequence.
    Flatten,
}

impl Transformation {
    /// The entries a succeeded child contributes to the SUCCEEDED files (and to the state
    /// output). Failed and pending children are always full records [DG-writer].
    pub fn entries(self, record: &ChildExecutionResult) -> Vec<Value> {
        let output = || {
            record
                .output
                .as_deref()
                .map_or(Value::Null, |text| serde_json::from_str(text).unwrap_or(Value::String(text.to_string())))
        };
        match self {
            Transformation::None => vec![record.to_value()],
            Transformation::Compact => vec![output()],
            Transformation::Flatten => match output() {
                Value::Array(items) => items,
                other => vec![other],
            },
        }
    }
}

impl Transformation {
    /// The entries a succeeded child's output contributes under COMPACT / FLATTEN (for NONE the
    /// entry is the whole record, see [`Transformation::entries`]). Text stays text.
    pub fn output_entries(self, output: Payload) -> Vec<Payload> {
        match (self, output) {
            (Transformation::Flatten, Payload::Value(Value::Array(items))) => {
                items.into_iter().map(Payload::Value).collect()
            }
            (Transformation::Flatten, Payload::Text(text)) => match text.array_elements() {
                Some(elements) => elements.into_iter().map(Payload::Text).collect(),
                None => vec![Payload::Text(text)],
            },
            (_, other) => vec![other],
        }
    }
}

/// A resolved ResultWriter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultWriterSpec {
    pub bucket: String,
    pub prefix: String,
    pub output_type: OutputType,
    pub transformation: Transformation,
    /// Size at which a result file is closed and the next begun (5 GB on AWS).
    pub max_file_bytes: u64,
}

impl ResultWriterSpec {
    /// Resolves a `ResultWriter` with S3 export from its evaluated `Parameters`
    /// (`{"Bucket", "Prefix"}`) and its `WriterConfig`.
    pub fn new(writer: &stepmap_asl::model::ResultWriter, parameters: &Value) -> Result<ResultWriterSpec> {
        let bad = |message: String| StorageError::WriterConfig { message };
        let field = |name: &str, required: bool| -> Result<Option<String>> {
            match parameters.get(name) {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => {
                    Err(bad(format!("The ResultWriter Parameters must contain the field '{name}'")))
                }
                Some(other) => Err(bad(format!("The ResultWriter field '{name}' must be a string, but was: {other}"))),
            }
        };
        if let Some(resource) = &writer.resource {
            if !resource.ends_with(":s3:putObject") {
                return Err(bad(format!("ResultWriter Resource {resource:?} is not s3:putObject")));
            }
        }
        let bucket = field("Bucket", true)?.unwrap_or_default();
        let prefix = field("Prefix", false)?.unwrap_or_default();
        let config = writer.writer_config.clone().unwrap_or_default();
        let output_type = match config.output_type.as_deref() {
            None | Some("JSON") => OutputType::Json,
            Some("JSONL") => OutputType::Jsonl,
            Some("PARQUET") => OutputType::Parquet,
            Some(other) => return Err(bad(format!("WriterConfig.OutputType {other:?} is not one of JSON, JSONL"))),
        };
        let transformation = match config.transformation.as_deref() {
            None | Some("NONE") => Transformation::None,
            Some("COMPACT") => Transformation::Compact,
            Some("FLATTEN") => Transformation::Flatten,
            Some(other) => {
                return Err(bad(format!("WriterConfig.Transformation {other:?} is not one of NONE, COMPACT, FLATTEN")))
            }
        };
        Ok(ResultWriterSpec { bucket, prefix, output_type, transformation, max_file_bytes: DEFAULT_MAX_FILE_BYTES })
    }
}

/// `Status` of a child execution in the result files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChildStatus {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    Pending,
}

impl ChildStatus {
    /// The result file category: FAILED holds failed, timed-out and aborted children.
    pub fn category(self) -> &'static str {
        match self {
            ChildStatus::Succeeded => "SUCCEEDED",
            ChildStatus::Failed | ChildStatus::TimedOut | ChildStatus::Aborted => "FAILED",
            ChildStatus::Pending => "PENDING",
        }
    }
}

/// `{"Included": true}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PayloadDetails {
    pub included: bool,
}

/// One child execution as AWS records it in the result files (Transformation NONE). `Input`
/// and `Output` are JSON *texts* [DG-writer; 3P floci#1823]; fields are in AWS's (alphabetical)
/// order; absent fields are omitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildExecutionResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    pub input: String,
    pub input_details: PayloadDetails,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<PayloadDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_arn: Option<String>,
    pub status: ChildStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<String>,
}

impl ChildExecutionResult {
    /// The record of an item that never started: `{"Input", "InputDetails", "Status": "PENDING"}`
    /// (features.md §2.8, UNCONFIRMED beyond these fields).
    pub fn pending(input: &Payload) -> Self {
        ChildExecutionResult {
            cause: None,
            error: None,
            execution_arn: None,
            input: input.to_text(),
            input_details: PayloadDetails { included: true },
            name: None,
            output: None,
            output_details: None,
            redrive_count: None,
            redrive_status: None,
            redrive_status_reason: None,
            start_date: None,
            state_machine_arn: None,
            status: ChildStatus::Pending,
            stop_date: None,
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultManifest {
    pub destination_bucket: String,
    pub map_run_arn: String,
    pub result_files: ResultFileSet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultFileSet {
    #[serde(rename = "FAILED")]
    pub failed: Vec<ResultFileRef>,
    #[serde(rename = "PENDING")]
    pub pending: Vec<ResultFileRef>,
    #[serde(rename = "SUCCEEDED")]
    pub succeeded: Vec<ResultFileRef>,
}

/// Which result files an entry goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    /// `SUCCEEDED_n`.
    Succeeded,
    /// `FAILED_n`: failed, timed-out and aborted children.
    Failed,
    /// `PENDING_n`: items never started.
    Pending,
}

/// The first line of a staged object whose entries all go to SUCCEEDED, untagged (no tag
/// starts with `*`).
const ALL_SUCCEEDED: &[u8] = b"*S\n";

impl Category {
    /// The tag of a staged line.
    fn tag(self) -> u8 {
        match self {
            Category::Succeeded => b'S',
            Category::Failed => b'F',
            Category::Pending => b'P',
        }
    }

    fn from_tag(tag: u8) -> Option<Category> {
        match tag {
            b'S' => Some(Category::Succeeded),
            b'F' => Some(Category::Failed),
            b'P' => Some(Category::Pending),
            _ => None,
        }
    }
}

/// A staged batch the finaliser should include.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StagedBatch {
    pub batch: u64,
    pub attempt: u64,
}

/// Writes one Map Run's results.
#[derive(Clone, Debug)]
pub struct ResultWriter {
    stores: Arc<Stores>,
    spec: ResultWriterSpec,
    map_run_arn: String,
    redrive_count: u32,
}

impl ResultWriter {
    /// `map_run_arn` ends in `:<mapRunId>`; `redrive_count > 0` writes under `Redrive-<k>/`.
    pub fn new(
        stores: Arc<Stores>,
        spec: ResultWriterSpec,
        map_run_arn: impl Into<String>,
        redrive_count: u32,
    ) -> Self {
        ResultWriter { stores, spec, map_run_arn: map_run_arn.into(), redrive_count }
    }

    pub fn spec(&self) -> &ResultWriterSpec {
        &self.spec
    }

    fn map_run_id(&self) -> &str {
        self.map_run_arn.rsplit(':').next().unwrap_or(&self.map_run_arn)
    }

    /// `<Prefix>/<mapRunId>/` (and `Redrive-<k>/`), ending in `/`.
    pub fn directory(&self) -> String {
        let prefix = self.spec.prefix.trim_end_matches('/');
        let mut directory = if prefix.is_empty() {
            format!("{}/", self.map_run_id())
        } else {
            format!("{prefix}/{}/", self.map_run_id())
        };
        if self.redrive_count > 0 {
            directory.push_str(&format!("Redrive-{}/", self.redrive_count));
        }
        directory
    }

    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.directory())
    }

    /// The Map state's output when results go to S3 (features.md §2.8).
    pub fn state_output(&self) -> Value {
        json!({
            "MapRunArn": self.map_run_arn,
            "ResultWriterDetails": { "Bucket": self.spec.bucket, "Key": self.manifest_key() },
        })
    }

    fn staging_prefix(&self) -> String {
        format!("{}{STAGING}/", self.directory())
    }

    fn staging_key(&self, staged: StagedBatch) -> String {
        format!("{}batch-{:012}-{}.jsonl", self.staging_prefix(), staged.batch, staged.attempt)
    }

    /// Drops this map run's batches kept in memory (see `staged_cache.rs`).
    fn forget_kept(&self) {
        if let Some(cache) = self.stores.staged_cache() {
            cache.forget_under(&self.spec.bucket, &self.staging_prefix());
        }
    }

    /// Stages the records of one batch attempt; writing the same attempt again replaces it.
    /// `output`: a succeeded child's output, when the caller has it (see
    /// [`DirectResults::push`]).
    ///
    /// The staged object holds the entries as the result files will hold them, one per line
    /// behind a tag naming the file category (`S`, `F`, `P`): the finaliser copies them
    /// without parsing, so that the one serial step of a map run is a byte copy. A batch
    /// whose entries all go to SUCCEEDED (the usual one) is staged as the line
    /// [`ALL_SUCCEEDED`] and its entries untagged: the finaliser hands those lines to the
    /// result file as they are, without copying them line by line.
    pub async fn stage_batch(
        &self,
        staged: StagedBatch,
        records: impl IntoIterator<Item = (ChildExecutionResult, Option<Payload>)>,
    ) -> Result<String> {
        let key = self.staging_key(staged);
        let entries: Vec<(Category, Vec<Payload>)> =
            records.into_iter().map(|(record, output)| self.entries(&record, output)).collect();
        // Sized once for the entries already in text (a unit's outputs: a megabyte or more,
        // which growing by doubling would copy about as many times over, into fresh pages).
        let text_len = |entry: &Payload| if let Payload::Text(text) = entry { text.len() } else { 0 };
        let size: usize = entries.iter().flat_map(|(_, entries)| entries).map(|entry| text_len(entry) + 2).sum();
        let all_succeeded = entries.iter().all(|(category, _)| *category == Category::Succeeded);
        let mut text = Vec::with_capacity(size + ALL_SUCCEEDED.len());
        if all_succeeded {
            text.extend_from_slice(ALL_SUCCEEDED);
        }
        for (category, entries) in entries {
            for entry in entries {
                if !all_succeeded {
                    text.push(category.tag());
                }
                match entry {
                    Payload::Text(entry) => text.extend_from_slice(entry.as_str().as_bytes()),
                    Payload::Value(entry) => {
                        serde_json::to_writer(&mut text, &entry).map_err(|e| StorageError::Write {
                            bucket: self.spec.bucket.clone(),
                            key: key.clone(),
                            message: e.to_string(),
                        })?
                    }
                }
                text.push(b'\n');
            }
        }
        // Entries that were values grew the buffer by doubling: what is kept is what it holds.
        if text.capacity() > text.len() + text.len() / 8 {
            text.shrink_to_fit();
        }
        let mut text = Bytes::from(text);
        // Kept in memory instead of written where only this process's finaliser can read it
        // (`staged_cache.rs`), while there is room.
        if let Some(cache) = self.stores.staged_cache() {
            match cache.keep(&self.spec.bucket, &key, text) {
                Ok(()) => return Ok(key),
                Err(unkept) => text = unkept,
            }
        }
        self.stores.bucket(&self.spec.bucket)?.put(&key, text).await?;
        Ok(key)
    }

    /// The file category of `record` and the entries it contributes there.
    fn entries(&self, record: &ChildExecutionResult, output: Option<Payload>) -> (Category, Vec<Payload>) {
        match record.status {
            ChildStatus::Succeeded => {
                let transformation = self.spec.transformation;
                let entries = match (transformation, output) {
                    (Transformation::None, _) | (_, None) => {
                        transformation.entries(record).into_iter().map(Payload::Value).collect()
                    }
                    (_, Some(output)) => transformation.output_entries(output),
                };
                (Category::Succeeded, entries)
            }
            ChildStatus::Pending => (Category::Pending, vec![record.to_value().into()]),
            _ => (Category::Failed, vec![record.to_value().into()]),
        }
    }

    /// Writes the result files from the staged batches (each batch once, in batch order, the
    /// named attempt) and the records of never-started items, then `manifest.json`; finally
    /// removes the staging objects. Returns the manifest.
    pub async fn finalize(&self, batches: &[StagedBatch], pending: &[ChildExecutionResult]) -> Result<ResultManifest> {
        self.finalize_redrive(batches, &[], pending).await
    }

    /// [`Self::finalize`] for a redrive: `carried` are accepted attempts of earlier attempts of
    /// the map run, `(redrive count, batch)`, whose children succeeded for good (their failed
    /// ones were redriven). Their SUCCEEDED entries are written here unless a later attempt's
    /// manifest already lists them (an attempt that ended without writing its files, e.g. its
    /// parent was stopped, leaves them to the next).
    pub async fn finalize_redrive(
        &self,
        batches: &[StagedBatch],
        carried: &[(u32, StagedBatch)],
        pending: &[ChildExecutionResult],
    ) -> Result<ResultManifest> {
        let mut results = match self.begin_results(carried).await? {
            ResultsBegun::Written(manifest) => return Ok(manifest),
            ResultsBegun::InProgress(results) => results,
        };
        // One attempt per batch, in batch order.
        let chosen: BTreeMap<u64, StagedBatch> = batches.iter().map(|b| (b.batch, *b)).collect();
        for staged in chosen.values() {
            results.copy(*staged).await?;
        }
        results.finish(pending).await
    }

    /// Starts writing the result files: those of an earlier run of the finaliser are taken as
    /// they are if it completed (its manifest exists; only its clean-up may be missing), else
    /// files are opened and `carried` (see [`Self::finalize_redrive`]) copied first. The
    /// accepted batches follow with [`ResultsInProgress::copy`] — while the map run still runs,
    /// if the caller knows them in order — and [`ResultsInProgress::finish`] ends.
    pub async fn begin_results(&self, carried: &[(u32, StagedBatch)]) -> Result<ResultsBegun> {
        let store = self.stores.bucket(&self.spec.bucket)?;
        // The manifest is written after every result file: if it exists, an earlier run of this
        // effect completed, and only its clean-up may be missing.
        match store.get_bytes(&self.manifest_key()).await {
            Ok(bytes) => {
                if let Ok(manifest) = serde_json::from_slice::<ResultManifest>(&bytes) {
                    self.remove_staging(&store).await?;
                    return Ok(ResultsBegun::Written(manifest));
                }
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut results = self.direct()?;
        let earlier = self.latest_earlier_manifest(&store).await?;
        let written_through = earlier.as_ref().map(|(count, _)| *count);
        results.earlier_succeeded = earlier.map(|(_, m)| m.result_files.succeeded).unwrap_or_default();
        // Successes of earlier attempts that no manifest lists yet, in batch order.
        let unwritten: BTreeMap<(u64, u64), u32> = carried
            .iter()
            .filter(|(count, _)| written_through.is_none_or(|through| *count > through))
            .map(|(count, b)| ((b.batch, b.attempt), *count))
            .collect();
        for (&(batch, attempt), &count) in &unwritten {
            let earlier = ResultWriter { redrive_count: count, ..self.clone() };
            earlier.copy_staged(&store, StagedBatch { batch, attempt }, &mut results, true).await?;
        }
        Ok(ResultsBegun::InProgress(Box::new(ResultsInProgress {
            writer: self.clone(),
            store,
            results,
            earlier_attempts: unwritten.values().copied().collect(),
        })))
    }

    /// Copies the entries of a staged batch into `results` (only its SUCCEEDED ones when
    /// `succeeded_only`).
    async fn copy_staged(
        &self,
        store: &crate::BucketStore,
        staged: StagedBatch,
        results: &mut DirectResults,
        succeeded_only: bool,
    ) -> Result<()> {
        let key = self.staging_key(staged);
        let kept = self.stores.staged_cache().and_then(|cache| cache.take(&self.spec.bucket, &key));
        let bytes = match kept {
            Some(bytes) => bytes,
            None => store.get_bytes(&key).await?,
        };
        if bytes.starts_with(ALL_SUCCEEDED) {
            return results.succeeded.push_lines(bytes.slice(ALL_SUCCEEDED.len()..)).await;
        }
        // Most entries go to one category: room for all of them at once.
        results.succeeded.reserve(bytes.len());
        // Each category's entries, in order, buffered as lines: categories go to files of
        // their own.
        for (number, line) in crate::result_file::lines(&bytes).enumerate() {
            let Some((&tag, entry)) = line.split_first() else { continue };
            let files = match Category::from_tag(tag) {
                Some(Category::Succeeded) => &mut results.succeeded,
                _ if succeeded_only => continue,
                Some(Category::Failed) => &mut results.failed,
                Some(Category::Pending) => &mut results.pending,
                None => {
                    return Err(StorageError::Write {
                        bucket: self.spec.bucket.clone(),
                        key: key.clone(),
                        message: format!("staged line {} has no category tag", number + 1),
                    })
                }
            };
            files.buffer_rendered(entry);
        }
        results.succeeded.flush_rendered().await?;
        results.failed.flush_rendered().await?;
        results.pending.flush_rendered().await?;
        Ok(())
    }

    /// Result files written as children end, without staging: for a map run whose children
    /// all run in this process (the embedded default), where no batch can be reported twice.
    /// The manifest is written by [`DirectResults::finish`], after every result file.
    pub fn direct(&self) -> Result<DirectResults> {
        let store = self.stores.bucket(&self.spec.bucket)?;
        let layout = match self.spec.transformation {
            Transformation::None => ParquetLayout::Records,
            _ => ParquetLayout::Outputs,
        };
        let files = |category, layout| {
            ResultFiles::new(
                store.clone(),
                self.directory(),
                category,
                self.spec.output_type,
                layout,
                self.spec.max_file_bytes,
            )
        };
        Ok(DirectResults {
            writer: self.clone(),
            earlier_succeeded: Vec::new(),
            succeeded: files("SUCCEEDED", layout),
            failed: files("FAILED", ParquetLayout::Records),
            pending: files("PENDING", ParquetLayout::Records),
        })
    }

    /// The manifest of the latest earlier attempt of the map run that wrote one, with that
    /// attempt's redrive count: a redrive's manifest lists the SUCCEEDED files of every attempt
    /// (features.md §2.8), and each manifest holds all before it. None for a first attempt.
    async fn latest_earlier_manifest(&self, store: &crate::BucketStore) -> Result<Option<(u32, ResultManifest)>> {
        for count in (0..self.redrive_count).rev() {
            let earlier = ResultWriter { redrive_count: count, ..self.clone() };
            match store.get_bytes(&earlier.manifest_key()).await {
                Ok(bytes) => {
                    let manifest: ResultManifest = serde_json::from_slice(&bytes).map_err(|e| StorageError::Write {
                        bucket: self.spec.bucket.clone(),
                        key: earlier.manifest_key(),
                        message: format!("the earlier attempt's manifest is unreadable: {e}"),
                    })?;
                    return Ok(Some((count, manifest)));
                }
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Deletes every staged object, including attempts the run did not accept.
    async fn remove_staging(&self, store: &crate::BucketStore) -> Result<()> {
        self.forget_kept();
        let mut staged = store.list_sorted(&self.staging_prefix(), None);
        while let Some(meta) = futures::StreamExt::next(&mut staged).await {
            store.delete(meta?.location.as_ref()).await?;
        }
        Ok(())
    }
}

/// What [`ResultWriter::begin_results`] found.
pub enum ResultsBegun {
    /// The files were written by an earlier run of the finaliser: its manifest.
    Written(ResultManifest),
    /// Boxed: its open files hold write buffers.
    InProgress(Box<ResultsInProgress>),
}

/// Result files being written from staged batches (see [`ResultWriter::begin_results`]).
pub struct ResultsInProgress {
    writer: ResultWriter,
    store: crate::BucketStore,
    results: DirectResults,
    /// Earlier attempts of the map run whose staged batches were copied: removed at the end.
    earlier_attempts: std::collections::BTreeSet<u32>,
}

impl ResultsInProgress {
    /// Copies an accepted staged batch's entries; batches must come in batch order, each once.
    pub async fn copy(&mut self, staged: StagedBatch) -> Result<()> {
        self.writer.copy_staged(&self.store, staged, &mut self.results, false).await
    }

    /// Gives the files up (the run failed, or another coordinator leads it now): nothing of
    /// them is left, no manifest is written; the staging objects stay for whoever finalises.
    /// Batches kept in memory instead (`Stores::keeping_staged_batches`) are dropped: that
    /// mode has no other finaliser, and no object for one.
    pub async fn abort(self) {
        self.results.abort().await;
        self.writer.forget_kept();
    }

    /// Writes the records of never-started items, closes the files, writes `manifest.json`,
    /// then removes the staging objects. Returns the manifest.
    pub async fn finish(mut self, pending: &[ChildExecutionResult]) -> Result<ResultManifest> {
        for record in pending {
            self.results.push(record, None).await?;
        }
        let manifest = self.results.finish().await?;
        self.writer.remove_staging(&self.store).await?;
        for count in self.earlier_attempts {
            ResultWriter { redrive_count: count, ..self.writer.clone() }.remove_staging(&self.store).await?;
        }
        Ok(manifest)
    }
}

/// The result files of one map run, written as records arrive (see [`ResultWriter::direct`]).
pub struct DirectResults {
    writer: ResultWriter,
    /// SUCCEEDED files of the map run's earlier attempts (a redrive), listed first.
    earlier_succeeded: Vec<ResultFileRef>,
    succeeded: ResultFiles,
    failed: ResultFiles,
    pending: ResultFiles,
}

impl DirectResults {
    /// Writes one child's record. `output` is a succeeded child's output: under COMPACT /
    /// FLATTEN it is written without going through the record's text.
    pub async fn push(&mut self, record: &ChildExecutionResult, output: Option<Payload>) -> Result<()> {
        let (category, entries) = self.writer.entries(record, output);
        let files = match category {
            Category::Succeeded => &mut self.succeeded,
            Category::Failed => &mut self.failed,
            Category::Pending => &mut self.pending,
        };
        for entry in entries {
            match entry {
                Payload::Value(entry) => files.push(&entry).await?,
                Payload::Text(entry) => files.push_rendered(entry.as_str().as_bytes()).await?,
            }
        }
        Ok(())
    }

    /// Gives the files up: nothing of them is left (see `ResultFiles::abort`).
    async fn abort(self) {
        self.succeeded.abort().await;
        self.failed.abort().await;
        self.pending.abort().await;
    }

    /// Closes the files and writes `manifest.json`.
    pub async fn finish(self) -> Result<ResultManifest> {
        let manifest = ResultManifest {
            destination_bucket: self.writer.spec.bucket.clone(),
            map_run_arn: self.writer.map_run_arn.clone(),
            result_files: ResultFileSet {
                failed: self.failed.finish().await?,
                pending: self.pending.finish().await?,
                succeeded: {
                    let mut succeeded = self.earlier_succeeded;
                    succeeded.extend(self.succeeded.finish().await?);
                    succeeded
                },
            },
        };
        let key = self.writer.manifest_key();
        let text = serde_json::to_vec(&manifest).map_err(|e| StorageError::Write {
            bucket: self.writer.spec.bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        })?;
        self.writer.stores.bucket(&self.writer.spec.bucket)?.put(&key, Bytes::from(text)).await?;
        Ok(manifest)
    }
}
