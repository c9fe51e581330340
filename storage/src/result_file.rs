//! The result files of one category (`SUCCEEDED`, `FAILED` or `PENDING`): `<CATEGORY>_<n>`,
//! `n` from 0, each file at most `max_file_bytes` long before the next one starts
//! (features.md §2.8: 5 GB per file, then `_1`, `_2`, …).
//!
//! Entries stream to the store as they come (multipart uploads for large files), so memory
//! stays bounded. `JSON` files are one JSON array, `JSONL` files one entry per line — both named
//! `.json` like AWS's. `PARQUET` (a stepmap extension) files are named `.parquet`; see
//! [`ParquetLayout`] for their columns.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::error::{Result, StorageError};
use crate::store::BucketStore;

/// `WriterConfig.OutputType` (plus `PARQUET`, a stepmap extension).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutputType {
    #[default]
    Json,
    Jsonl,
    Parquet,
}

impl OutputType {
    pub fn extension(self) -> &'static str {
        match self {
            OutputType::Json | OutputType::Jsonl => "json",
            OutputType::Parquet => "parquet",
        }
    }
}

/// Columns of Parquet result files: full execution records (`NONE`, and every FAILED or
/// PENDING file) have one nullable column per record field — `RedriveCount` an integer, the
/// others strings, `Input`/`Output` the JSON texts; child outputs (`COMPACT`, `FLATTEN`) have
/// one column `Output` holding each entry's JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParquetLayout {
    Records,
    Outputs,
}

/// The record fields, in the order of AWS's files (alphabetical).
pub(crate) const RECORD_FIELDS: [&str; 15] = [
    "Cause",
    "Error",
    "ExecutionArn",
    "Input",
    "InputDetails",
    "Name",
    "Output",
    "OutputDetails",
    "RedriveCount",
    "RedriveStatus",
    "RedriveStatusReason",
    "StartDate",
    "StateMachineArn",
    "Status",
    "StopDate",
];

/// A result file as listed in `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultFileRef {
    pub key: String,
    pub size: u64,
}

struct OpenFile {
    key: String,
    writer: BufWriter,
    bytes: u64,
    entries: u64,
    parquet: Option<ArrowWriter<Vec<u8>>>,
    rows: Vec<Value>,
}

/// Writes the files of one category, rolling over to the next file at the size limit.
pub(crate) struct ResultFiles {
    store: BucketStore,
    /// `<Prefix>/<mapRunId>/` (+ `Redrive-<k>/`), ending in `/`.
    directory: String,
    category: &'static str,
    output_type: OutputType,
    layout: ParquetLayout,
    max_file_bytes: u64,
    open: Option<OpenFile>,
    done: Vec<ResultFileRef>,
    /// Entries buffered by [`Self::buffer_rendered`], one per line, and how many (see
    /// [`Self::push_rendered_lines`] for how they are written).
    lines: Vec<u8>,
    line_entries: u64,
}

/// How lines reach a result file's writer (see [`ResultFiles::write_lines`]).
enum Written {
    /// Handed over as they are.
    Whole(Bytes),
    /// Copied into the writer's part; the buffer is kept for the next entries.
    Copied(Vec<u8>),
}

/// Multipart upload parts of a result file in flight at once, and their size.
const RESULT_PARTS_IN_FLIGHT: usize = 2;
const RESULT_PART_BYTES: usize = 5 * 1024 * 1024;

/// Rows buffered before a Parquet row group is encoded.
const PARQUET_ROWS: usize = 4096;

impl ResultFiles {
    pub fn new(
        store: BucketStore,
        directory: String,
        category: &'static str,
        output_type: OutputType,
        layout: ParquetLayout,
        max_file_bytes: u64,
    ) -> Self {
        ResultFiles {
            store,
            directory,
            category,
            output_type,
            layout,
            max_file_bytes,
            open: None,
            done: Vec::new(),
            lines: Vec::new(),
            line_entries: 0,
        }
    }

    fn write_error(&self, key: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Write { bucket: self.store.name().to_string(), key: key.to_string(), message: e.to_string() }
    }

    async fn open_file(&mut self) -> Result<()> {
        let key = format!("{}{}_{}.{}", self.directory, self.category, self.done.len(), self.output_type.extension());
        let path = self.store.path(&key)?;
        // Parts of 5 MiB (S3's smallest), at most two in flight: a finaliser copies staged bytes
        // faster than a disk or an S3 endpoint takes them, and object_store's defaults (10 MB
        // parts, eight in flight) would hold up to 90 MB per open file in memory.
        let writer = BufWriter::with_capacity(self.store.object_store().clone(), path, RESULT_PART_BYTES)
            .with_max_concurrency(RESULT_PARTS_IN_FLIGHT);
        let parquet = match self.output_type {
            OutputType::Parquet => {
                let props =
                    WriterProperties::builder().set_compression(ParquetCompression::ZSTD(ZstdLevel::default())).build();
                Some(
                    ArrowWriter::try_new(Vec::new(), schema(self.layout), Some(props))
                        .map_err(|e| self.write_error(&key, e))?,
                )
            }
            _ => None,
        };
        let mut file = OpenFile { key, writer, bytes: 0, entries: 0, parquet, rows: Vec::new() };
        if self.output_type == OutputType::Json {
            file.writer.write_all(b"[").await.map_err(|e| self.write_error(&file.key, e))?;
            file.bytes = 1;
        }
        self.open = Some(file);
        Ok(())
    }

    /// Appends one entry (an execution record or a child output).
    pub async fn push(&mut self, entry: &Value) -> Result<()> {
        match self.output_type {
            OutputType::Parquet => self.push_entry(&[], Some(entry)).await,
            _ => {
                let text = serde_json::to_vec(entry).map_err(|e| self.write_error(&self.directory, e))?;
                self.push_entry(&text, None).await
            }
        }
    }

    /// Appends one entry given as its JSON text (what [`Self::push`] would serialise).
    pub async fn push_rendered(&mut self, text: &[u8]) -> Result<()> {
        match self.output_type {
            OutputType::Parquet => {
                let entry: Value = serde_json::from_slice(text).map_err(|e| self.write_error(&self.directory, e))?;
                self.push_entry(&[], Some(&entry)).await
            }
            _ => self.push_entry(text, None).await,
        }
    }

    /// Makes room for `bytes` more of [`Self::buffer_rendered`]'s entries at once.
    pub fn reserve(&mut self, bytes: usize) {
        self.lines.reserve(bytes);
    }

    /// Buffers an entry given as its JSON text, for [`Self::flush_rendered`].
    pub fn buffer_rendered(&mut self, text: &[u8]) {
        self.lines.extend_from_slice(text);
        self.lines.push(b'\n');
        self.line_entries += 1;
    }

    /// Appends entries given as JSON texts, each followed by a newline, after those buffered:
    /// as [`Self::push_rendered`] would one by one, and handed to the writer as they are (no
    /// copy) when they are JSON Lines that fit the open file.
    pub async fn push_lines(&mut self, lines: Bytes) -> Result<()> {
        self.flush_rendered().await?;
        if lines.is_empty() {
            return Ok(());
        }
        if !self.lines_fit(lines.len()) {
            return self.push_each_line(&lines).await;
        }
        let entries = memchr::memchr_iter(b'\n', &lines).count() as u64;
        self.write_lines(Written::Whole(lines), entries).await
    }

    /// Appends the buffered entries, as [`Self::push_rendered`] would one by one.
    pub async fn flush_rendered(&mut self) -> Result<()> {
        if self.line_entries == 0 {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.lines);
        let entries = std::mem::take(&mut self.line_entries);
        self.push_rendered_lines(lines, entries).await
    }

    /// Appends entries given as JSON texts, each followed by a newline: as many
    /// [`Self::push_rendered`] calls, in one write when they are JSON Lines that fit the open
    /// file (the finaliser copies a staged batch so, instead of line by line). A buffer about
    /// as large as its content is handed to the writer as it is; one with much room to spare
    /// (a staged batch of mostly other categories) is copied and kept for the next entries,
    /// so that the writer, holding parts until they fill, does not hold spare capacity.
    async fn push_rendered_lines(&mut self, lines: Vec<u8>, entries: u64) -> Result<()> {
        if !self.lines_fit(lines.len()) {
            return self.push_each_line(&lines).await;
        }
        let written = if lines.capacity() - lines.len() <= lines.len() / 8 {
            Written::Whole(lines.into())
        } else {
            Written::Copied(lines)
        };
        self.write_lines(written, entries).await
    }

    /// Whether `bytes` more of JSON Lines go into the open file: the size check of
    /// `push_entry` for the last of them (sizes only grow).
    fn lines_fit(&self, bytes: usize) -> bool {
        self.output_type == OutputType::Jsonl
            && self.open.as_ref().map_or(0, |f| f.bytes) + (bytes as u64) < self.max_file_bytes
    }

    /// `lines` entry by entry, for entries that do not go into the open file in one write.
    async fn push_each_line(&mut self, lines: &[u8]) -> Result<()> {
        for line in self::lines(lines).filter(|line| !line.is_empty()) {
            self.push_rendered(line).await?;
        }
        Ok(())
    }

    /// Writes `entries` JSON Lines that fit the open file (see [`Self::lines_fit`]).
    async fn write_lines(&mut self, lines: Written, entries: u64) -> Result<()> {
        if self.open.is_none() {
            self.open_file().await?;
        }
        let Some(file) = self.open.as_mut() else { return Ok(()) };
        let (total, written) = match lines {
            Written::Whole(lines) => (lines.len(), file.writer.put(lines).await.map_err(|e| e.to_string())),
            Written::Copied(mut lines) => {
                let written = file.writer.write_all(&lines).await.map_err(|e| e.to_string());
                let total = lines.len();
                lines.clear();
                self.lines = lines;
                (total, written)
            }
        };
        if let Err(e) = written {
            return Err(self.write_error(&self.current_key(), e));
        }
        file.bytes += total as u64;
        file.entries += entries;
        Ok(())
    }

    /// Appends an entry: its `text` for JSON and JSONL, its value for Parquet.
    async fn push_entry(&mut self, text: &[u8], entry: Option<&Value>) -> Result<()> {
        // JSON: `,` before every entry but the first, `]` at the end; JSONL: a newline each.
        let added = text.len() as u64 + 1;
        // Parquet files are measured by the encoder (bytes written plus the open row group;
        // rows still buffered for the next row group are not counted, so the limit holds to
        // within one row group).
        let full = self.open.as_ref().is_some_and(|f| {
            let size = f.parquet.as_ref().map_or(f.bytes, |w| (w.bytes_written() + w.in_progress_size()) as u64);
            f.entries > 0 && size + added + 1 > self.max_file_bytes
        });
        if full {
            self.close_file().await?;
        }
        if self.open.is_none() {
            self.open_file().await?;
        }
        let (output_type, layout) = (self.output_type, self.layout);
        let Some(file) = self.open.as_mut() else { return Ok(()) };
        let result: Result<(), String> = async {
            match output_type {
                OutputType::Json => {
                    if file.entries > 0 {
                        file.writer.write_all(b",").await.map_err(|e| e.to_string())?;
                        file.bytes += 1;
                    }
                    file.writer.write_all(text).await.map_err(|e| e.to_string())?;
                    file.bytes += text.len() as u64;
                }
                OutputType::Jsonl => {
                    file.writer.write_all(text).await.map_err(|e| e.to_string())?;
                    file.writer.write_all(b"\n").await.map_err(|e| e.to_string())?;
                    file.bytes += added;
                }
                OutputType::Parquet => {
                    file.rows.push(entry.cloned().unwrap_or(Value::Null));
                    if file.rows.len() >= PARQUET_ROWS {
                        flush_parquet(file, layout).await?;
                    }
                }
            }
            file.entries += 1;
            Ok(())
        }
        .await;
        result.map_err(|e| StorageError::Write {
            bucket: self.store.name().to_string(),
            key: self.current_key(),
            message: e,
        })
    }

    fn current_key(&self) -> String {
        self.open.as_ref().map(|f| f.key.clone()).unwrap_or_default()
    }

    async fn close_file(&mut self) -> Result<()> {
        let Some(mut file) = self.open.take() else { return Ok(()) };
        let layout = self.layout;
        let result: Result<u64, String> = async {
            match self.output_type {
                OutputType::Json => {
                    file.writer.write_all(b"]").await.map_err(|e| e.to_string())?;
                    file.bytes += 1;
                }
                OutputType::Jsonl => {}
                OutputType::Parquet => {
                    flush_parquet(&mut file, layout).await?;
                    if let Some(mut writer) = file.parquet.take() {
                        writer.finish().map_err(|e| e.to_string())?;
                        let tail = std::mem::take(writer.inner_mut());
                        file.bytes += tail.len() as u64;
                        file.writer.write_all(&tail).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            file.writer.shutdown().await.map_err(|e| e.to_string())?;
            Ok(file.bytes)
        }
        .await;
        let size = result.map_err(|e| self.write_error(&file.key, e))?;
        self.done.push(ResultFileRef { key: file.key, size });
        Ok(())
    }

    /// Gives the files up: the open one's upload is aborted (no partial object, no multipart
    /// upload left behind on S3) and the completed ones are deleted. Best effort: what cannot
    /// be removed is logged.
    pub async fn abort(mut self) {
        if let Some(mut file) = self.open.take() {
            if let Err(error) = file.writer.abort().await {
                tracing::warn!(key = %file.key, %error, "cannot abort a result file's upload");
            }
        }
        for file in &self.done {
            if let Err(error) = self.store.delete(&file.key).await {
                tracing::warn!(key = %file.key, %error, "cannot delete a result file given up");
            }
        }
    }

    /// Completes the last file; returns every file written, in order.
    pub async fn finish(mut self) -> Result<Vec<ResultFileRef>> {
        self.close_file().await?;
        Ok(self.done)
    }
}

fn schema(layout: ParquetLayout) -> SchemaRef {
    let fields: Vec<Field> = match layout {
        ParquetLayout::Outputs => vec![Field::new("Output", DataType::Utf8, true)],
        ParquetLayout::Records => RECORD_FIELDS
            .iter()
            .map(|name| {
                let data_type = if *name == "RedriveCount" { DataType::Int64 } else { DataType::Utf8 };
                Field::new(*name, data_type, true)
            })
            .collect(),
    };
    Arc::new(Schema::new(fields))
}

/// Encodes the buffered rows as a row group and uploads the bytes produced so far.
async fn flush_parquet(file: &mut OpenFile, layout: ParquetLayout) -> Result<(), String> {
    let Some(writer) = file.parquet.as_mut() else { return Ok(()) };
    if !file.rows.is_empty() {
        let batch = rows_batch(&file.rows, layout).map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
        file.rows.clear();
    }
    let encoded = std::mem::take(writer.inner_mut());
    file.bytes += encoded.len() as u64;
    file.writer.write_all(&encoded).await.map_err(|e| e.to_string())
}

fn rows_batch(rows: &[Value], layout: ParquetLayout) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let columns: Vec<ArrayRef> = match layout {
        ParquetLayout::Outputs => {
            let mut column = StringBuilder::new();
            for row in rows {
                column.append_value(row.to_string());
            }
            vec![Arc::new(column.finish())]
        }
        ParquetLayout::Records => RECORD_FIELDS
            .iter()
            .map(|name| -> ArrayRef {
                if *name == "RedriveCount" {
                    let mut column = Int64Builder::new();
                    for row in rows {
                        column.append_option(row.get(*name).and_then(Value::as_i64));
                    }
                    Arc::new(column.finish())
                } else {
                    let mut column = StringBuilder::new();
                    for row in rows {
                        column.append_option(text(row.get(*name)));
                    }
                    Arc::new(column.finish())
                }
            })
            .collect(),
    };
    RecordBatch::try_new(schema(layout), columns)
}

/// The lines of `text` split at each `\n` (as `split` does: the part after the last one
/// included), found with a vectorised search rather than byte by byte.
pub(crate) fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(end) => {
                rest = Some(&current[end + 1..]);
                Some(&current[..end])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_split_as_split_does() {
        for text in ["", "\n", "a", "a\n", "a\nbc", "\n\na\n\nb\n", "é\n{\"k\":1}\n"] {
            let expected: Vec<&[u8]> = text.as_bytes().split(|&b| b == b'\n').collect();
            assert_eq!(super::lines(text.as_bytes()).collect::<Vec<_>>(), expected, "{text:?}");
        }
    }
}
