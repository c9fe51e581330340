//! Batch planning for a Map Run: the source cut into batch descriptors.
//!
//! A [`BatchDescriptor`] is small (the source object, a byte range / row range / listing page,
//! the index of its first item and its item count) so that a plan can travel through the Raft
//! log; item payloads never do. A worker holding a descriptor and the Map Run's opened
//! [`ItemReader`] reads exactly the descriptor's items ([`ItemReader::batch_items`]), and the
//! descriptors of a plan, read one after the other, give the items of one sequential read.
//!
//! Batches honour `ItemBatcher` (features.md §2.5): at most `MaxItemsPerBatch` items, and at
//! most `MaxInputBytesPerBatch` bytes of batch input `{"Items":[...],"BatchInput":...}` — the
//! caller measures each item as its child will see it (after `ItemSelector`), and passes the
//! size of `BatchInput`. An item too large for any batch is planned alone; the run fails it
//! when it is dispatched.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::compression::Compression;
use crate::error::Result;
use crate::item::Item;
use crate::item_reader::{Cursor, DataFormat, ItemReader, RecordPosition, ScanNeeds, Unit};
use crate::store::{ObjectRef, ReadCondition};

/// `{"Items":[]}`: the bytes of a batch input without items or `BatchInput`.
pub const BATCH_ENVELOPE: u64 = 12;
/// The default batch size limit when a batcher sets no limit (AWS: "up to 256 KiB").
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 256 * 1024;

/// A data object as planned: reads of its extents require the same ETag (and version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceObject {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl SourceObject {
    pub fn new(bucket: &str, key: &str) -> Self {
        SourceObject { bucket: bucket.to_string(), key: key.to_string(), etag: None, version_id: None }
    }

    pub fn object(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }

    pub(crate) fn condition(&self) -> ReadCondition {
        ReadCondition { if_match: self.etag.clone(), version: self.version_id.clone() }
    }
}

/// A contiguous run of items in one object (or one listing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind", rename_all = "PascalCase")]
pub enum Extent {
    /// The records of a text object in decompressed bytes `start..end`; `first_line` is the
    /// line `start` is on; `member`: the records are JSON object members.
    #[serde(rename_all = "PascalCase")]
    Text {
        object: SourceObject,
        compression: Compression,
        start: u64,
        end: u64,
        first_line: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        member: bool,
        items: u64,
    },
    /// `items` rows of a Parquet object starting `skip` rows into row group `row_group` (they
    /// may run on into later row groups).
    #[serde(rename_all = "PascalCase")]
    Rows { object: SourceObject, row_group: usize, skip: u64, items: u64 },
    /// `items` keys under `prefix` listed after `start_after`.
    #[serde(rename_all = "PascalCase")]
    Listing {
        bucket: String,
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_after: Option<String>,
        items: u64,
    },
}

impl Extent {
    pub fn items(&self) -> u64 {
        match self {
            Extent::Text { items, .. } | Extent::Rows { items, .. } | Extent::Listing { items, .. } => *items,
        }
    }

    fn items_mut(&mut self) -> &mut u64 {
        match self {
            Extent::Text { items, .. } | Extent::Rows { items, .. } | Extent::Listing { items, .. } => items,
        }
    }
}

/// One batch: the unit of dispatch (one child execution per batch with an `ItemBatcher`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchDescriptor {
    /// `$$.Map.Item.Index` of the batch's first item.
    pub first_index: u64,
    pub items: u64,
    pub extents: Vec<Extent>,
}

impl BatchDescriptor {
    /// Appends the batch that follows this one (`next.first_index` is this one's end): one
    /// descriptor for both, reading the same items in the same order. A text extent that
    /// follows this one's last in the same object (only separators between them: a newline,
    /// a comma) is merged into it (one read instead of two).
    pub fn append(&mut self, next: BatchDescriptor) {
        debug_assert_eq!(self.first_index + self.items, next.first_index, "batches are appended in order");
        self.items += next.items;
        for extent in next.extents {
            if let (
                Some(Extent::Text { object, compression, end, member, items, .. }),
                Extent::Text {
                    object: next_object,
                    compression: next_compression,
                    start: next_start,
                    end: next_end,
                    member: next_member,
                    items: next_items,
                    ..
                },
            ) = (self.extents.last_mut(), &extent)
            {
                if object == next_object
                    && compression == next_compression
                    && *end <= *next_start
                    && member == next_member
                {
                    *end = *next_end;
                    *items += next_items;
                    continue;
                }
            }
            self.extents.push(extent);
        }
    }
}

/// `ItemBatcher` limits, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchLimits {
    pub max_items_per_batch: Option<u64>,
    pub max_input_bytes_per_batch: Option<u64>,
    /// Serialized size of `,"BatchInput":<value>` in every batch input (0 without BatchInput).
    #[serde(default)]
    pub batch_input_bytes: u64,
}

impl BatchLimits {
    pub fn items(max_items_per_batch: u64) -> Self {
        BatchLimits { max_items_per_batch: Some(max_items_per_batch), ..BatchLimits::default() }
    }

    /// With neither limit set, AWS batches up to 256 KiB.
    fn effective(&self) -> (u64, Option<u64>) {
        let items = self.max_items_per_batch.unwrap_or(u64::MAX).max(1);
        let bytes = match (self.max_items_per_batch, self.max_input_bytes_per_batch) {
            (None, None) => Some(DEFAULT_MAX_INPUT_BYTES),
            (_, bytes) => bytes,
        };
        (items, bytes)
    }
}

/// Measures an item as its child input will hold it, in bytes.
pub type ItemSizer = dyn Fn(&Item) -> u64 + Send + Sync;

/// What a plan covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub items: u64,
    pub batches: u64,
}

/// Accumulates items into batches.
struct Batches<'a> {
    max_items: u64,
    max_bytes: Option<u64>,
    overhead: u64,
    current: Option<(BatchDescriptor, u64)>,
    next_index: u64,
    emit: &'a mut (dyn FnMut(BatchDescriptor) -> Result<()> + Send),
    summary: PlanSummary,
}

impl Batches<'_> {
    fn close(&mut self) -> Result<()> {
        if let Some((batch, _)) = self.current.take() {
            self.summary.batches += 1;
            (self.emit)(batch)?;
        }
        Ok(())
    }

    /// Room left in the open batch (a full one closes at the next item).
    fn room(&self) -> u64 {
        match &self.current {
            Some((batch, _)) if batch.items < self.max_items => self.max_items - batch.items,
            _ => self.max_items,
        }
    }

    /// Adds `items` consecutive items: one of `size` bytes, or (without a byte limit) a run of
    /// at most [`Self::room`], as that many single items would be added. `extend` grows the
    /// batch's last extent by them when they continue it, `start` begins a new extent with them.
    fn add(
        &mut self,
        items: u64,
        size: u64,
        extend: impl FnOnce(&mut Extent) -> bool,
        start: impl FnOnce() -> Extent,
    ) -> Result<()> {
        debug_assert!(items == 1 || (self.max_bytes.is_none() && items > 0 && items <= self.room()));
        if let Some((batch, bytes)) = &self.current {
            let over_items = batch.items >= self.max_items;
            let over_bytes = self.max_bytes.is_some_and(|max| bytes.saturating_add(1).saturating_add(size) > max);
            if over_items || over_bytes {
                self.close()?;
            }
        }
        let (batch, bytes) = self.current.get_or_insert_with(|| {
            (BatchDescriptor { first_index: self.next_index, items: 0, extents: Vec::new() }, self.overhead)
        });
        let continued = batch.extents.last_mut().is_some_and(extend);
        if !continued {
            batch.extents.push(start());
        }
        *bytes = bytes.saturating_add(size).saturating_add(u64::from(batch.items > 0));
        batch.items += items;
        self.next_index += items;
        self.summary.items += items;
        Ok(())
    }
}

impl ItemReader {
    /// Plans the whole source into batch descriptors (see [`ItemReader::plan_with`]).
    pub async fn plan(&self, limits: &BatchLimits, sizer: Option<&ItemSizer>) -> Result<Vec<BatchDescriptor>> {
        let mut batches = Vec::new();
        self.plan_with(limits, sizer, &mut |b| {
            batches.push(b);
            Ok(())
        })
        .await?;
        Ok(batches)
    }

    /// Plans the source, handing each descriptor to `emit` as soon as it is complete, so that
    /// memory stays bounded however many batches there are. Items are read once; values are
    /// built only when a byte limit needs their size (`sizer`, or their JSON length).
    pub async fn plan_with(
        &self,
        limits: &BatchLimits,
        sizer: Option<&ItemSizer>,
        emit: &mut (dyn FnMut(BatchDescriptor) -> Result<()> + Send),
    ) -> Result<PlanSummary> {
        let context = &self.context;
        let (max_items, max_bytes) = limits.effective();
        let mut batches = Batches {
            max_items,
            max_bytes,
            overhead: BATCH_ENVELOPE + limits.batch_input_bytes,
            current: None,
            next_index: 0,
            emit,
            summary: PlanSummary::default(),
        };
        let mut remaining = context.spec.max_items.unwrap_or(u64::MAX);
        let needs = ScanNeeds { values: max_bytes.is_some() };
        let mut units = context.units();
        let mut scanned = Vec::new();
        while let Some(unit) = units.next().await {
            if remaining == 0 {
                break;
            }
            let unit = unit?;
            let source = context.source(&unit);
            // Parquet without a byte limit: the footer's row counts are the plan.
            if let (Unit::Object(object), Some(DataFormat::Parquet), None) = (&unit, &context.format, max_bytes) {
                let store = context.stores.bucket(&object.bucket)?;
                let (etag, metadata) = crate::item_reader::parquet::metadata(&store, &object.key).await?;
                let object = SourceObject { etag, ..object.clone() };
                for (row_group, group) in metadata.row_groups().iter().enumerate() {
                    for row in 0..group.num_rows().max(0) as u64 {
                        if remaining == 0 {
                            break;
                        }
                        remaining -= 1;
                        batches.add(1, 0, |e| extend_rows(e, &object), || rows_extent(&object, row_group, row))?;
                    }
                }
                continue;
            }
            let mut cursor = context.open(&unit, needs).await?;
            let mut previous_key: Option<String> = None;
            // Whether this unit's records have started a text extent: the batch's last extent
            // is then this object's, which the next record continues (or the batch is new).
            let mut in_object = false;
            loop {
                // Without a byte limit, a CSV or JSON Lines object's records are only counted:
                // framed a batch's worth at a time, nothing built or recorded per record.
                if let (None, Cursor::Text(text), Unit::Object(object)) = (max_bytes, &mut cursor, &unit) {
                    if text.frames_alone() {
                        let (run, more) = text.frame_run(batches.room().min(remaining)).await?;
                        if let Some(run) = run {
                            remaining -= run.items;
                            let object = SourceObject { etag: text.etag().map(str::to_string), ..object.clone() };
                            let compression = text.compression();
                            batches.add(
                                run.items,
                                0,
                                |e| extend_text(e, in_object, run.end, run.items),
                                || Extent::Text {
                                    object,
                                    compression,
                                    start: run.start,
                                    end: run.end,
                                    first_line: run.first_line,
                                    member: false,
                                    items: run.items,
                                },
                            )?;
                            in_object = true;
                        }
                        if !more || remaining == 0 {
                            break;
                        }
                        continue;
                    }
                }
                scanned.clear();
                let more = cursor.next_chunk(&mut scanned).await?;
                let (compression, etag) = match &cursor {
                    Cursor::Text(c) => (c.compression(), c.etag().map(str::to_string)),
                    Cursor::Parquet(c) => (Compression::None, c.etag().map(str::to_string)),
                    Cursor::Listing(_) => (Compression::None, None),
                };
                // The object the chunk's records come from, with the ETag read: built once per
                // chunk, cloned only into an extent that starts here.
                let chunk_object = match &unit {
                    Unit::Object(object) => Some(SourceObject { etag, ..object.clone() }),
                    _ => None,
                };
                for record in scanned.drain(..) {
                    if remaining == 0 {
                        break;
                    }
                    remaining -= 1;
                    let size = match (max_bytes, record.value) {
                        (Some(_), Some(value)) => {
                            let item =
                                Item { index: batches.next_index, key: record.key, value, source: source.clone() };
                            match sizer {
                                Some(sizer) => sizer(&item),
                                None => serde_json::to_vec(&item.value).map_or(0, |v| v.len() as u64),
                            }
                        }
                        _ => 0,
                    };
                    match (&unit, &chunk_object, record.position) {
                        (_, Some(object), RecordPosition::Text { start, end, member }) => {
                            batches.add(
                                1,
                                size,
                                |e| extend_text(e, in_object, end, 1),
                                || Extent::Text {
                                    object: object.clone(),
                                    compression,
                                    start,
                                    end,
                                    first_line: cursor.line_at(start),
                                    member,
                                    items: 1,
                                },
                            )?;
                            in_object = true;
                        }
                        (_, Some(object), RecordPosition::Row { row_group, row }) => {
                            batches.add(1, size, |e| extend_rows(e, object), || rows_extent(object, row_group, row))?;
                        }
                        (Unit::Listing { bucket, prefix }, _, RecordPosition::Key { key }) => {
                            let start_after = previous_key.replace(key);
                            batches.add(
                                1,
                                size,
                                |e| match e {
                                    Extent::Listing { bucket: b, prefix: p, .. } if b == bucket && p == prefix => {
                                        *e.items_mut() += 1;
                                        true
                                    }
                                    _ => false,
                                },
                                || Extent::Listing {
                                    bucket: bucket.clone(),
                                    prefix: prefix.clone(),
                                    start_after,
                                    items: 1,
                                },
                            )?;
                        }
                        (_, _, position) => {
                            return Err(crate::StorageError::Descriptor {
                                message: format!("cannot plan a record at {position:?}"),
                            })
                        }
                    }
                }
                if !more || remaining == 0 {
                    break;
                }
            }
        }
        batches.close()?;
        Ok(batches.summary)
    }
}

/// Grows the batch's last extent by `items` records ending at `end` when it is the text
/// extent of the object being planned (`in_object`: this unit's records started it).
fn extend_text(extent: &mut Extent, in_object: bool, end: u64, items: u64) -> bool {
    match extent {
        Extent::Text { end: last_end, items: count, .. } if in_object => {
            *last_end = end;
            *count += items;
            true
        }
        _ => false,
    }
}

fn extend_rows(extent: &mut Extent, object: &SourceObject) -> bool {
    match extent {
        Extent::Rows { object: o, items, .. } if o == object => {
            *items += 1;
            true
        }
        _ => false,
    }
}

fn rows_extent(object: &SourceObject, row_group: usize, row: u64) -> Extent {
    Extent::Rows { object: object.clone(), row_group, skip: row, items: 1 }
}
