//! Streaming text objects (CSV, JSON, JSONL) with bounded memory.
//!
//! A [`TextScan`] pulls an object's bytes (optionally a byte range), decompresses them when the
//! object is GZIP or ZSTD, and hands the bytes to a [`Framer`], which finds record boundaries
//! without building values. Memory is one input chunk plus the record that straddles it.
//!
//! Offsets are positions in the *decompressed* text. A range `[start, end)` of an uncompressed
//! object is fetched with a ranged GET; a compressed object is decompressed from its beginning
//! and the bytes before `start` are dropped (a gzip stream cannot be entered in the middle).

use std::cell::Cell;
use std::ops::Range;

use crate::compression::{Compression, DecompressError, Decompressor};
use crate::error::{Position, Result, StorageError};
use crate::store::{BucketStore, ByteSource, ReadCondition};
use crate::ObjectRef;

/// UTF-8 byte order mark, dropped at the start of a text object (AWS: UNCONFIRMED).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One record found by a framer, as positions in the buffer passed to [`Framer::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub start: usize,
    pub end: usize,
    /// Where the value starts (JSON object members: after `"key":`; otherwise `start`).
    pub value_start: usize,
    /// The record is a JSON object member (`"key": value`).
    pub member: bool,
    /// How many bytes of the buffer the caller must consume after using the record.
    pub next: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Record(Frame),
    /// No complete record in the buffer: consume `consumed` bytes and supply more input.
    NeedMore {
        consumed: usize,
    },
    /// No more records: consume `consumed` bytes; the rest of the input is not needed.
    End {
        consumed: usize,
    },
}

/// Why a framer rejected its input; `at` is a position in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FrameError {
    pub at: usize,
    pub message: String,
}

impl FrameError {
    pub fn new(at: usize, message: impl Into<String>) -> Self {
        FrameError { at, message: message.into() }
    }
}

/// Splits text into records, resumably: it may be called again with the same bytes (minus the
/// consumed prefix) plus more input, and positions its state relative to the buffer start.
///
/// Contract: after every call the caller consumes exactly the bytes the step names
/// (`Frame::next`, `consumed`, or what [`Framer::run`] returns); `eof` says that no more input
/// will follow the buffer.
pub(crate) trait Framer: Send {
    fn next(&mut self, buf: &[u8], eof: bool) -> Result<Step, FrameError>;

    /// A fast path for the records of `buf` that a framer can find in bulk: calls
    /// `record(start, end)` for each (a record of the form `next` returns, its `next` the
    /// byte after `end`) until it returns false, and returns how many bytes of `buf` the
    /// caller must consume (up to the last record visited or empty line skipped; 0 if none).
    /// It may stop anywhere between records: `next` frames the record after. The default
    /// frames none.
    fn run(&mut self, _buf: &[u8], _record: &mut dyn FnMut(usize, usize) -> bool) -> usize {
        0
    }
}

/// Counts lines lazily, only up to positions somebody asks about (errors, batch boundaries):
/// every byte is counted at most once.
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    buf_start: u64,
    counted: &'a Cell<(u64, u64)>,
}

impl Lines<'_> {
    /// The 1-based line of the byte at `offset` (offsets asked must not decrease).
    pub fn line_at(&self, offset: u64) -> u64 {
        let (mut at, mut line) = self.counted.get();
        if offset > at {
            let from = (at.saturating_sub(self.buf_start)) as usize;
            let to = ((offset - self.buf_start) as usize).min(self.buf.len());
            if from < to {
                line += memchr::memchr_iter(b'\n', &self.buf[from..to]).count() as u64;
            }
            at = offset;
            self.counted.set((at, line));
        }
        line
    }
}

/// A record handed to a visitor.
pub(crate) struct Record<'a> {
    pub bytes: &'a [u8],
    /// Offset of the value inside `bytes` (JSON members).
    pub value_start: usize,
    pub member: bool,
    /// Offsets of the record in the decompressed text.
    pub start: u64,
    pub end: u64,
    pub lines: Lines<'a>,
    /// The buffered text from the record's start on: the record and what follows it, for
    /// checks made once for many records.
    pub buffered: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Hand the records so far to the caller; the scan goes on at the next call.
    Pause,
    Stop,
}

/// A pull-based scan over one text object or one range of it.
pub(crate) struct TextScan {
    object: ObjectRef,
    format: &'static str,
    source: Option<ByteSource>,
    decompressor: Option<Decompressor>,
    compression: Compression,
    /// Decompressed offsets kept for framing; the rest is dropped.
    window: Range<u64>,
    /// Decompressed offset of the next byte the decompressor produces.
    produced: u64,
    buf: Vec<u8>,
    head: usize,
    /// Decompressed offset of `buf[0]`.
    buf_start: u64,
    /// (offset, line) counted so far.
    counted: Cell<(u64, u64)>,
    eof: bool,
    /// The framer needs more bytes: read them when the next step starts, so that the records
    /// a step visited stay in `buf` until then (their lines can still be asked).
    fill_first: bool,
    strip_bom: bool,
    /// First bytes held back until the codec can be recognised.
    sniffed: Vec<u8>,
}

impl TextScan {
    /// Opens `object` (the whole object when `window` is `None`) with compression sniffed from
    /// its first bytes when `compression` is `None`. `first_line` is the line at the window start.
    pub async fn open(
        store: &BucketStore,
        key: &str,
        format: &'static str,
        compression: Option<Compression>,
        window: Option<Range<u64>>,
        first_line: u64,
        condition: &ReadCondition,
    ) -> Result<(TextScan, Option<String>)> {
        let object = store.object(key);
        let whole = window.is_none();
        let window = window.unwrap_or(0..u64::MAX);
        // An uncompressed range is fetched as such; a compressed one from the start.
        let fetch = match compression {
            Some(Compression::None) if !whole => Some(window.clone()),
            _ => None,
        };
        let produced = fetch.as_ref().map_or(0, |r| r.start);
        let (meta, source) = store.open(key, fetch, condition).await?;
        let mut scan = TextScan {
            object,
            format,
            source: Some(source),
            decompressor: None,
            compression: compression.unwrap_or_default(),
            window: window.clone(),
            produced,
            buf: Vec::new(),
            head: 0,
            buf_start: window.start,
            counted: Cell::new((window.start, first_line)),
            eof: false,
            fill_first: false,
            strip_bom: window.start == 0,
            sniffed: Vec::new(),
        };
        if let Some(c) = compression {
            scan.decompressor = Some(scan.decompressor_for(c)?);
        }
        Ok((scan, meta.e_tag))
    }

    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// The codec of the object (after the first bytes were read, when it was sniffed).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    fn decompressor_for(&self, compression: Compression) -> Result<Decompressor> {
        Decompressor::new(compression).map_err(|e| StorageError::Decompression {
            object: self.object.to_string(),
            codec: compression.name(),
            message: e.to_string(),
        })
    }

    /// Runs the framer over the buffered bytes, visiting records, until the framer needs more
    /// bytes (read when the next step starts) or the visitor pauses. Returns `false` once the
    /// scan is over (end of records, or the visitor stopped it).
    ///
    /// Generic over the visitor, not a `dyn` one: the framer's bulk path calls back once per
    /// record, and there the visitor (a counter for the plan) is inlined.
    pub async fn step<F, V>(&mut self, framer: &mut F, visit: &mut V) -> Result<bool>
    where
        F: Framer + ?Sized,
        V: FnMut(Record<'_>) -> Result<Flow> + Send + ?Sized,
    {
        if std::mem::take(&mut self.fill_first) {
            self.fill().await?;
        }
        loop {
            let data = &self.buf[self.head..];
            let base = self.buf_start + self.head as u64;
            let mut flow = Ok(Flow::Continue);
            let consumed = framer.run(data, &mut |start, end| {
                let record = Record {
                    bytes: &data[start..end],
                    value_start: 0,
                    member: false,
                    start: base + start as u64,
                    end: base + end as u64,
                    lines: Lines { buf: &self.buf, buf_start: self.buf_start, counted: &self.counted },
                    buffered: &data[start..],
                };
                flow = visit(record);
                matches!(flow, Ok(Flow::Continue))
            });
            let flow = flow?;
            self.head += consumed;
            match flow {
                Flow::Continue => {}
                Flow::Pause => return Ok(true),
                Flow::Stop => return Ok(false),
            }
            let data = &self.buf[self.head..];
            let step = framer.next(data, self.eof).map_err(|e| self.malformed(e))?;
            match step {
                Step::Record(frame) => {
                    let base = self.buf_start + self.head as u64;
                    let record = Record {
                        bytes: &data[frame.start..frame.end],
                        value_start: frame.value_start - frame.start,
                        member: frame.member,
                        start: base + frame.start as u64,
                        end: base + frame.end as u64,
                        lines: Lines { buf: &self.buf, buf_start: self.buf_start, counted: &self.counted },
                        buffered: &data[frame.start..],
                    };
                    let flow = visit(record)?;
                    self.head += frame.next;
                    match flow {
                        Flow::Continue => {}
                        Flow::Pause => return Ok(true),
                        Flow::Stop => return Ok(false),
                    }
                }
                Step::NeedMore { consumed } => {
                    self.head += consumed;
                    if self.eof {
                        return Err(self.malformed(FrameError::new(0, "unexpected end of input")));
                    }
                    self.fill_first = true;
                    return Ok(true);
                }
                Step::End { consumed } => {
                    self.head += consumed;
                    return Ok(false);
                }
            }
        }
    }

    /// The line of the byte at `offset` (for error messages outside a visit).
    pub fn line_at(&self, offset: u64) -> u64 {
        Lines { buf: &self.buf, buf_start: self.buf_start, counted: &self.counted }.line_at(offset)
    }

    pub fn malformed(&self, e: FrameError) -> StorageError {
        let byte = self.buf_start + (self.head + e.at) as u64;
        StorageError::Malformed {
            object: self.object.to_string(),
            format: self.format,
            position: Position::Text { line: Some(self.line_at(byte)), byte },
            message: e.message,
        }
    }

    /// Reads the next chunk (or notes the end of input).
    async fn fill(&mut self) -> Result<()> {
        // Compact: drop consumed bytes, counting their lines first.
        if self.head > 0 {
            let drained_end = self.buf_start + self.head as u64;
            self.line_at(drained_end);
            self.buf.drain(..self.head);
            self.buf_start = drained_end;
            self.head = 0;
        }
        self.fill_once().await?;
        if self.strip_bom {
            while self.buf.len() < BOM.len() && !self.eof {
                self.fill_once().await?;
            }
            if self.buf.starts_with(BOM) {
                self.head = BOM.len();
            }
            self.strip_bom = false;
        }
        Ok(())
    }

    async fn fill_once(&mut self) -> Result<()> {
        let Some(source) = self.source.as_mut() else {
            self.eof = true;
            return Ok(());
        };
        let in_window = self.produced >= self.window.start;
        if let (ByteSource::File(file), Some(Decompressor::None), true) = (&mut *source, &self.decompressor, in_window)
        {
            // Uncompressed bytes of a local file go straight into the buffer, uncopied (a
            // range is read as its window, see `open`); any past the window are dropped, as
            // `keep_window` drops them.
            let read = file.read_into(&mut self.buf).await?;
            let past = (self.produced + read as u64).saturating_sub(self.window.end);
            self.buf.truncate(self.buf.len() - past as usize);
            self.produced += read as u64;
            if read == 0 || self.produced >= self.window.end {
                self.source = None;
                self.eof = true;
            }
            return Ok(());
        }
        let next = source.next_chunk().await;
        let object = self.object.to_string();
        let (window, produced, buf) = (&self.window, &mut self.produced, &mut self.buf);
        let mut sink = |bytes: &[u8]| keep_window(window, produced, buf, bytes);
        let ended = next.is_none();
        let mut input = match next {
            Some(chunk) => chunk?,
            None => bytes::Bytes::new(),
        };
        if self.decompressor.is_none() {
            // The codec is recognised from the first 4 bytes, however the store chunks them.
            self.sniffed.extend_from_slice(&input);
            if self.sniffed.len() < 4 && !ended {
                return Ok(());
            }
            self.compression = Compression::sniff(&self.sniffed);
            self.decompressor = Some(Decompressor::new(self.compression).map_err(|e| StorageError::Decompression {
                object: object.clone(),
                codec: self.compression.name(),
                message: e.to_string(),
            })?);
            input = bytes::Bytes::from(std::mem::take(&mut self.sniffed));
        }
        let codec = self.compression.name();
        let decompress_error = |e: DecompressError| match e {
            DecompressError::Codec(e) => {
                StorageError::Decompression { object: object.clone(), codec, message: e.to_string() }
            }
            DecompressError::Sink(e) => e,
        };
        if let Some(d) = self.decompressor.as_mut() {
            d.push(&input, &mut sink).map_err(decompress_error)?;
            if ended {
                d.finish(&mut sink).map_err(decompress_error)?;
            }
        }
        if ended || self.produced >= self.window.end {
            // The input ended, or the window is complete: stop reading the object.
            self.source = None;
            self.eof = true;
        }
        Ok(())
    }
}

/// Appends the part of `bytes` (which start at decompressed offset `produced`) that lies in
/// `window`.
fn keep_window(window: &Range<u64>, produced: &mut u64, buf: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let start = *produced;
    let end = start + bytes.len() as u64;
    *produced = end;
    let from = window.start.max(start);
    let to = window.end.min(end);
    if from < to {
        buf.extend_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
    }
    Ok(())
}
