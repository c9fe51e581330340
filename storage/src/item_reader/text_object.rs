//! Reading the records of one text data object (CSV, JSON, JSONL): the whole object, or one
//! byte range of it as a batch descriptor names it.

use std::sync::Arc;

use serde_json::Value;

use super::csv::{check_headers, header_names, CsvFramer, CsvHeader, CsvRecords, CsvRows};
use super::json::{parse_element, parse_pointer, JsonFramer};
use super::jsonl::JsonlFramer;
use super::text::{Flow, Framer, Record, TextScan};
use super::{RecordPosition, Scanned};
use crate::compression::Compression;
use crate::error::{Position, Result, StorageError};
use crate::item_reader::spec::DataFormat;
use crate::store::{BucketStore, ReadCondition};

/// Records handed over per step.
const RECORDS_PER_STEP: usize = 256;

enum Rows {
    /// CSV whose first record is still to be read as the header.
    CsvHeaderPending {
        delimiter: super::csv::CsvDelimiter,
    },
    Csv(CsvRows),
    Json,
    Jsonl,
}

/// Consecutive records of a text object, as [`TextCursor::frame_run`] counts them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRun {
    pub items: u64,
    /// Decompressed offsets: where the first starts, where the last ends.
    pub start: u64,
    pub end: u64,
    /// The line the first starts on.
    pub first_line: u64,
}

/// What the caller needs from each record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanNeeds {
    /// Build the item's value.
    pub values: bool,
}

pub(crate) struct TextCursor {
    scan: TextScan,
    framer: Box<dyn Framer>,
    rows: Rows,
    needs: ScanNeeds,
    etag: Option<String>,
    /// The decompressed text before this offset is known to be UTF-8 (see
    /// [`TextCursor::next_csv_chunk`]).
    utf8_before: u64,
}

impl TextCursor {
    /// Opens a whole object.
    pub async fn whole(
        store: &BucketStore,
        key: &str,
        format: &DataFormat,
        condition: &ReadCondition,
        needs: ScanNeeds,
    ) -> Result<TextCursor> {
        let (framer, rows): (Box<dyn Framer>, Rows) = match format {
            DataFormat::Csv { header: CsvHeader::FirstRow, delimiter } => {
                (Box::new(CsvFramer::new(*delimiter)), Rows::CsvHeaderPending { delimiter: *delimiter })
            }
            DataFormat::Csv { header: CsvHeader::Given(headers), delimiter } => {
                (Box::new(CsvFramer::new(*delimiter)), Rows::Csv(CsvRows::new(*delimiter, Arc::from(headers.clone()))))
            }
            DataFormat::Json { items_pointer } => {
                let pointer =
                    parse_pointer(items_pointer.as_deref().unwrap_or("")).map_err(StorageError::reader_config)?;
                (Box::new(JsonFramer::document(pointer)), Rows::Json)
            }
            DataFormat::Jsonl => (Box::new(JsonlFramer::new()), Rows::Jsonl),
            DataFormat::Parquet => return Err(StorageError::reader_config("PARQUET is not a text format")),
        };
        let (scan, etag) = TextScan::open(store, key, format.name(), None, None, 1, condition).await?;
        Ok(TextCursor { scan, framer, rows, needs, etag, utf8_before: 0 })
    }

    /// Opens the records in decompressed bytes `start..end` (`first_line` is the line of
    /// `start`). `csv_headers` are the column names of a CSV object (its first row, or given).
    #[allow(clippy::too_many_arguments)]
    pub async fn range(
        store: &BucketStore,
        key: &str,
        format: &DataFormat,
        csv_headers: Option<Arc<[String]>>,
        compression: Compression,
        range: std::ops::Range<u64>,
        first_line: u64,
        member: bool,
        condition: &ReadCondition,
        needs: ScanNeeds,
    ) -> Result<TextCursor> {
        let (framer, rows): (Box<dyn Framer>, Rows) = match format {
            DataFormat::Csv { header, delimiter } => {
                let headers = match (csv_headers, header) {
                    (Some(headers), _) => headers,
                    (None, CsvHeader::Given(headers)) => Arc::from(headers.clone()),
                    (None, CsvHeader::FirstRow) => {
                        Arc::from(read_csv_header(store, key, *delimiter, compression, condition).await?)
                    }
                };
                (Box::new(CsvFramer::new(*delimiter)), Rows::Csv(CsvRows::new(*delimiter, headers)))
            }
            DataFormat::Json { .. } => (Box::new(JsonFramer::range(member)), Rows::Json),
            DataFormat::Jsonl => (Box::new(JsonlFramer::new()), Rows::Jsonl),
            DataFormat::Parquet => return Err(StorageError::reader_config("PARQUET is not a text format")),
        };
        let (scan, etag) =
            TextScan::open(store, key, format.name(), Some(compression), Some(range), first_line, condition).await?;
        Ok(TextCursor { scan, framer, rows, needs, etag, utf8_before: 0 })
    }

    pub fn compression(&self) -> Compression {
        self.scan.compression()
    }

    /// The 1-based line of the byte at `offset`, the start of a record of the chunk last read
    /// (offsets asked must not decrease). Lines are counted as the text is consumed; asking
    /// only where a batch starts counts them in long runs rather than record by record.
    pub fn line_at(&self, offset: u64) -> u64 {
        self.scan.line_at(offset)
    }

    /// The object's ETag as the read saw it.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Appends the records of the next chunk to `out`; false once the object is done.
    pub async fn next_chunk(&mut self, out: &mut Vec<Scanned>) -> Result<bool> {
        let TextCursor { scan, framer, rows, needs, .. } = self;
        let object = scan.object().to_string();
        let format = match rows {
            Rows::CsvHeaderPending { .. } | Rows::Csv(_) => "CSV",
            Rows::Json => "JSON",
            Rows::Jsonl => "JSONL",
        };
        let needs = *needs;
        let mut batch = 0;
        let mut visit = |record: Record<'_>| -> Result<Flow> {
            let malformed = |record: &Record<'_>, message: String| StorageError::Malformed {
                object: object.clone(),
                format,
                position: Position::Text { line: Some(record.lines.line_at(record.start)), byte: record.start },
                message,
            };
            if let Rows::CsvHeaderPending { delimiter } = rows {
                let names = header_names(record.bytes, *delimiter).map_err(|m| malformed(&record, m))?;
                check_headers(&names)?;
                *rows = Rows::Csv(CsvRows::new(*delimiter, Arc::from(names)));
                return Ok(Flow::Continue);
            }
            let (key, value) = if needs.values {
                let (key, value) = match rows {
                    Rows::Csv(csv) => (None, csv.item(record.bytes)),
                    Rows::Json => match parse_element(record.bytes, record.value_start, record.member) {
                        Ok((key, value)) => (key, Ok(value)),
                        Err(e) => (None, Err(e)),
                    },
                    Rows::Jsonl => (None, serde_json::from_slice::<Value>(record.bytes).map_err(|e| e.to_string())),
                    Rows::CsvHeaderPending { .. } => (None, Err("no header".to_string())),
                };
                (key, Some(value.map_err(|m| malformed(&record, m))?))
            } else {
                (None, None)
            };
            out.push(Scanned {
                position: RecordPosition::Text { start: record.start, end: record.end, member: record.member },
                key,
                value,
            });
            // Small hand-overs keep few values alive at a time (the allocator works much
            // faster on a small, recycled working set than on a chunk's worth of items).
            batch += 1;
            Ok(if batch >= RECORDS_PER_STEP { Flow::Pause } else { Flow::Continue })
        };
        scan.step(framer.as_mut(), &mut visit).await
    }

    /// Whether [`Self::frame_run`] applies: a CSV object whose header is known, or JSON Lines
    /// (records that need no framing state beyond the framer's).
    pub fn frames_alone(&self) -> bool {
        matches!(self.rows, Rows::Csv(_) | Rows::Jsonl)
    }

    /// Frames up to `most` (at least 1) of the next records without building or recording
    /// anything per record: the run they make, `None` if there are none; and false once the
    /// object is done. Errors as [`TextCursor::next_chunk`] (framing only).
    pub async fn frame_run(&mut self, most: u64) -> Result<(Option<RecordRun>, bool)> {
        let mut run: Option<RecordRun> = None;
        loop {
            let more = {
                let mut visit = |record: Record<'_>| -> Result<Flow> {
                    let run = run.get_or_insert_with(|| RecordRun {
                        items: 0,
                        start: record.start,
                        end: record.end,
                        first_line: record.lines.line_at(record.start),
                    });
                    run.items += 1;
                    run.end = record.end;
                    Ok(if run.items >= most { Flow::Pause } else { Flow::Continue })
                };
                self.scan.step(self.framer.as_mut(), &mut visit).await?
            };
            if !more || run.as_ref().is_some_and(|run| run.items >= most) {
                return Ok((run, more));
            }
        }
    }

    /// Appends the next chunk of a CSV object's records to `out` (made with this cursor's
    /// [`TextCursor::csv_chunk`]), not split into fields nor built into items; false once the
    /// object is done. Errors as [`TextCursor::next_chunk`].
    pub async fn next_csv_chunk(&mut self, out: &mut CsvRecords) -> Result<bool> {
        let TextCursor { scan, framer, rows, utf8_before, .. } = self;
        let object = scan.object().to_string();
        let mut batch = 0;
        let mut visit = |record: Record<'_>| -> Result<Flow> {
            let malformed = |message: String| StorageError::Malformed {
                object: object.clone(),
                format: "CSV",
                position: Position::Text { line: Some(record.lines.line_at(record.start)), byte: record.start },
                message,
            };
            match rows {
                Rows::Csv(_) => {
                    // UTF-8 is checked once for all the buffered text from here on, not record
                    // by record (a check per record cost twice as much): the bytes at absolute
                    // offsets stay the same as the buffer moves on. Where the text is not
                    // UTF-8, the record is checked (and refused) alone.
                    if record.end > *utf8_before {
                        *utf8_before = record.start + valid_utf8_prefix(record.buffered) as u64;
                    }
                    if record.end <= *utf8_before {
                        // SAFETY: the record lies in text checked to be UTF-8 just above, and
                        // ends before a newline (ASCII), so at a character boundary.
                        out.push_str(unsafe { std::str::from_utf8_unchecked(record.bytes) });
                    } else {
                        out.push(record.bytes).map_err(malformed)?;
                    }
                    batch += 1;
                    Ok(if batch >= RECORDS_PER_STEP { Flow::Pause } else { Flow::Continue })
                }
                // A batch's extent knows its header before it is read (`TextCursor::range`).
                Rows::CsvHeaderPending { .. } | Rows::Json | Rows::Jsonl => {
                    Err(StorageError::reader_config("not a CSV extent with its header"))
                }
            }
        };
        scan.step(framer.as_mut(), &mut visit).await
    }

    /// An empty chunk for [`TextCursor::next_csv_chunk`], once the CSV object's column names
    /// are known (its header read or given).
    pub fn csv_chunk(&self, source: Arc<str>, first_index: u64) -> Option<CsvRecords> {
        match &self.rows {
            Rows::Csv(csv) => Some(CsvRecords::new(csv.headers.clone(), source, first_index, csv.delimiter)),
            _ => None,
        }
    }
}

/// Reads the header row of a CSV object (its first record).
pub(crate) async fn read_csv_header(
    store: &BucketStore,
    key: &str,
    delimiter: super::csv::CsvDelimiter,
    compression: Compression,
    condition: &ReadCondition,
) -> Result<Vec<String>> {
    let (mut scan, _) = TextScan::open(store, key, "CSV", Some(compression), None, 1, condition).await?;
    let mut framer = CsvFramer::new(delimiter);
    let mut header: Option<std::result::Result<Vec<String>, (u64, String)>> = None;
    let mut visit = |record: Record<'_>| -> Result<Flow> {
        header = Some(header_names(record.bytes, delimiter).map_err(|m| (record.start, m)));
        Ok(Flow::Stop)
    };
    while scan.step(&mut framer, &mut visit).await? {}
    match header {
        Some(Ok(names)) => {
            check_headers(&names)?;
            Ok(names)
        }
        Some(Err((byte, message))) => Err(StorageError::Malformed {
            object: scan.object().to_string(),
            format: "CSV",
            position: Position::Text { line: Some(1), byte },
            message,
        }),
        None => Err(StorageError::Descriptor { message: format!("{} has no header row", scan.object()) }),
    }
}

/// How many bytes at the start of `bytes` are UTF-8 (up to a character cut off at the end, or
/// an invalid byte).
fn valid_utf8_prefix(bytes: &[u8]) -> usize {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    }
}
