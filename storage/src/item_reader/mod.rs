//! ItemReader: the items of a Distributed Map, read from storage with bounded memory
//! (features.md §2.3).
//!
//! [`ItemReader::items`] reads the whole source in order (what AWS iterates);
//! [`ItemReader::plan`](crate::batch_plan) cuts the same sequence into batch descriptors and
//! [`ItemReader::batch_items`] reads exactly one descriptor's items. Reading every descriptor of
//! a plan yields the items of one sequential read, in order (checked by property tests).

pub mod csv;
pub mod json;
pub mod jsonl;
pub mod listing;
pub mod manifest;
pub mod max_items;
pub mod parquet;
pub mod spec;
pub(crate) mod text;
mod text_object;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde_json::Value;

pub use self::csv::{CsvDelimiter, CsvFields, CsvHeader, CsvRecords, FieldBuffer};
pub use self::manifest::InventoryManifest;
pub use self::max_items::resolve_max_items;
pub use self::spec::{DataFormat, ItemReaderSpec, ItemSource};
pub(crate) use self::text_object::ScanNeeds;
use self::text_object::TextCursor;
use crate::batch_plan::{BatchDescriptor, Extent, SourceObject};
use crate::error::{Result, StorageError};
use crate::item::{listing_source, object_source, Item};
use crate::store::Stores;

/// Where a scanned record lies in its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordPosition {
    /// Decompressed bytes `start..end` (its line: [`Cursor::line_at`]).
    Text { start: u64, end: u64, member: bool },
    /// Row `row` of row group `row_group`.
    Row { row_group: usize, row: u64 },
    /// A listed key.
    Key { key: String },
}

/// A record found by a cursor, with its value when the caller asked for values.
#[derive(Clone, Debug)]
pub(crate) struct Scanned {
    pub position: RecordPosition,
    pub key: Option<String>,
    pub value: Option<Value>,
}

/// A piece of the source read by one cursor.
#[derive(Clone, Debug)]
pub(crate) enum Unit {
    /// A whole data object.
    Object(SourceObject),
    /// The objects under a prefix, as items (listObjectsV2 without transformation).
    Listing { bucket: String, prefix: String },
    /// One extent of a batch descriptor.
    Extent(Extent),
}

/// Reads one unit.
pub(crate) enum Cursor {
    Text(Box<TextCursor>),
    Parquet(Box<parquet::ParquetCursor>),
    Listing(listing::ListingCursor),
}

impl Cursor {
    /// The line of a text record of the chunk last read (see [`TextCursor::line_at`]); 0 for
    /// sources without lines.
    pub fn line_at(&self, offset: u64) -> u64 {
        match self {
            Cursor::Text(c) => c.line_at(offset),
            Cursor::Parquet(_) | Cursor::Listing(_) => 0,
        }
    }

    pub async fn next_chunk(&mut self, out: &mut Vec<Scanned>) -> Result<bool> {
        match self {
            Cursor::Text(c) => c.next_chunk(out).await,
            Cursor::Parquet(c) => c.next_chunk(out).await,
            Cursor::Listing(c) => c.next_chunk(out).await,
        }
    }
}

/// A CSV object's header row, as of one ETag.
pub(crate) type HeaderKey = (crate::ObjectRef, Option<String>);

/// The part of an opened ItemReader that cursors need; shared by the streams it hands out.
#[derive(Debug)]
pub(crate) struct ReadContext {
    pub stores: Arc<Stores>,
    pub spec: ItemReaderSpec,
    /// The format of the data objects (`None` for a plain listing).
    pub format: Option<DataFormat>,
    /// The data files of a manifest source.
    pub manifest_files: Vec<crate::ObjectRef>,
    /// Header rows of CSV objects read for batch descriptors, by object and ETag: a worker
    /// reads each header once, not once per batch.
    pub csv_headers: Mutex<HashMap<HeaderKey, Arc<[String]>>>,
}

impl ReadContext {
    fn format(&self) -> Result<&DataFormat> {
        self.format.as_ref().ok_or_else(|| StorageError::Descriptor { message: "the source has no data format".into() })
    }

    /// Opens a cursor; `needs` says what the caller uses (values, line numbers).
    pub async fn open(&self, unit: &Unit, needs: ScanNeeds) -> Result<Cursor> {
        match unit {
            Unit::Object(object) => {
                let store = self.stores.bucket(&object.bucket)?;
                let format = self.format()?;
                if *format == DataFormat::Parquet {
                    return Ok(Cursor::Parquet(Box::new(
                        parquet::ParquetCursor::open(&store, &object.key, 0, 0, None).await?,
                    )));
                }
                let condition = object.condition();
                Ok(Cursor::Text(Box::new(TextCursor::whole(&store, &object.key, format, &condition, needs).await?)))
            }
            Unit::Listing { bucket, prefix } => {
                Ok(Cursor::Listing(listing::ListingCursor::open(&self.stores.bucket(bucket)?, prefix, None, None)))
            }
            Unit::Extent(Extent::Text { object, compression, start, end, first_line, member, .. }) => {
                let store = self.stores.bucket(&object.bucket)?;
                let format = self.format()?;
                let csv_headers = match format {
                    DataFormat::Csv { header: CsvHeader::FirstRow, delimiter } => {
                        let cache_key = (object.object(), object.etag.clone());
                        let cached =
                            self.csv_headers.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key).cloned();
                        match cached {
                            Some(headers) => Some(headers),
                            None => {
                                let headers: Arc<[String]> = Arc::from(
                                    text_object::read_csv_header(
                                        &store,
                                        &object.key,
                                        *delimiter,
                                        *compression,
                                        &object.condition(),
                                    )
                                    .await?,
                                );
                                let mut cache = self.csv_headers.lock().unwrap_or_else(|p| p.into_inner());
                                if cache.len() >= 1024 {
                                    cache.clear();
                                }
                                cache.insert(cache_key, headers.clone());
                                Some(headers)
                            }
                        }
                    }
                    _ => None,
                };
                let cursor = TextCursor::range(
                    &store,
                    &object.key,
                    format,
                    csv_headers,
                    *compression,
                    *start..*end,
                    *first_line,
                    *member,
                    &object.condition(),
                    needs,
                )
                .await?;
                Ok(Cursor::Text(Box::new(cursor)))
            }
            Unit::Extent(Extent::Rows { object, row_group, skip, items }) => {
                let store = self.stores.bucket(&object.bucket)?;
                let cursor = parquet::ParquetCursor::open(&store, &object.key, *row_group, *skip, Some(*items)).await?;
                if let (Some(expected), Some(actual)) = (&object.etag, cursor.etag()) {
                    if expected != actual {
                        return Err(StorageError::SourceChanged {
                            object: object.object().to_string(),
                            expected_etag: expected.clone(),
                        });
                    }
                }
                Ok(Cursor::Parquet(Box::new(cursor)))
            }
            Unit::Extent(Extent::Listing { bucket, prefix, start_after, items }) => {
                let store = self.stores.bucket(bucket)?;
                Ok(Cursor::Listing(listing::ListingCursor::open(&store, prefix, start_after.as_deref(), Some(*items))))
            }
        }
    }

    /// `$$.Map.Item.Source` of the items of `unit`.
    pub(crate) fn source(&self, unit: &Unit) -> Arc<str> {
        match unit {
            Unit::Object(o) => object_source(&o.bucket, &o.key),
            Unit::Listing { bucket, .. } | Unit::Extent(Extent::Listing { bucket, .. }) => listing_source(bucket),
            Unit::Extent(Extent::Text { object, .. } | Extent::Rows { object, .. }) => {
                object_source(&object.bucket, &object.key)
            }
        }
    }

    /// The units of a sequential read: whole objects (or the listing), in source order.
    pub fn units(self: &Arc<Self>) -> BoxStream<'static, Result<Unit>> {
        match &self.spec.source {
            ItemSource::Object { bucket, key, version_id, .. } => {
                let object = SourceObject {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    etag: None,
                    version_id: version_id.clone(),
                };
                stream::iter([Ok(Unit::Object(object))]).boxed()
            }
            ItemSource::S3Inventory { .. } | ItemSource::AthenaManifest { .. } => {
                let units: Vec<Result<Unit>> = self
                    .manifest_files
                    .iter()
                    .map(|o| Ok(Unit::Object(SourceObject::new(&o.bucket, &o.key))))
                    .collect();
                stream::iter(units).boxed()
            }
            ItemSource::Listing { bucket, prefix } => {
                stream::iter([Ok(Unit::Listing { bucket: bucket.clone(), prefix: prefix.clone() })]).boxed()
            }
            ItemSource::ListingFlattened { bucket, prefix, .. } => match self.stores.bucket(bucket) {
                Ok(store) => {
                    let bucket = bucket.clone();
                    listing::objects(&store, prefix)
                        .map_ok(move |meta| {
                            let mut object = SourceObject::new(&bucket, meta.location.as_ref());
                            object.etag = meta.e_tag;
                            Unit::Object(object)
                        })
                        .boxed()
                }
                Err(e) => stream::iter([Err(e)]).boxed(),
            },
        }
    }
}

/// A run of a batch's items as [`ItemReader::batch_records`] hands them over.
#[derive(Clone, Debug)]
pub enum Records {
    Item(Item),
    /// CSV records, neither split into fields nor built into items.
    Csv(CsvRecords),
}

/// An ItemReader opened on its stores: manifests are read once here.
#[derive(Clone, Debug)]
pub struct ItemReader {
    pub(crate) context: Arc<ReadContext>,
}

impl ItemReader {
    /// Prepares reading `spec`: resolves the data format and, for manifest sources, reads the
    /// manifest (so that workers reading batch descriptors know an inventory's columns).
    pub async fn open(stores: Arc<Stores>, spec: ItemReaderSpec) -> Result<ItemReader> {
        let (format, manifest_files) = match &spec.source {
            ItemSource::Object { format, .. } | ItemSource::ListingFlattened { format, .. } => {
                (Some(format.clone()), Vec::new())
            }
            ItemSource::Listing { .. } => (None, Vec::new()),
            ItemSource::S3Inventory { bucket, key, .. } => {
                let manifest = manifest::read_inventory_manifest(&stores.bucket(bucket)?, key).await?;
                // Inventory data files are CSV without a header row (features.md §2.3).
                let format =
                    DataFormat::Csv { header: CsvHeader::Given(manifest.schema), delimiter: CsvDelimiter::Comma };
                (Some(format), manifest.files)
            }
            ItemSource::AthenaManifest { bucket, key, format, .. } => {
                let files = manifest::read_athena_manifest(&stores.bucket(bucket)?, key).await?;
                (Some(format.clone()), files)
            }
        };
        let csv_headers = Mutex::new(HashMap::new());
        Ok(ItemReader { context: Arc::new(ReadContext { stores, spec, format, manifest_files, csv_headers }) })
    }

    pub fn spec(&self) -> &ItemReaderSpec {
        &self.context.spec
    }

    /// Every item of the source, in order, honouring `MaxItems`.
    pub fn items(&self) -> BoxStream<'static, Result<Item>> {
        let units = self.context.units();
        unit_items(self.context.clone(), units, 0, self.context.spec.max_items)
    }

    /// The items of one batch descriptor of this reader's plan, in order, with their indices
    /// in the whole source. Fails when the descriptor's objects changed since planning.
    pub fn batch_items(&self, descriptor: &BatchDescriptor) -> BoxStream<'static, Result<Item>> {
        let units: Vec<Result<Unit>> = descriptor.extents.iter().cloned().map(|e| Ok(Unit::Extent(e))).collect();
        let expected = descriptor.items;
        let inner = unit_items(self.context.clone(), stream::iter(units).boxed(), descriptor.first_index, None);
        counted(inner, expected, |_| 1)
    }

    /// The items of a batch as [`ItemReader::batch_items`] reads them, CSV records in chunks
    /// not split nor built into objects (a compiled ItemSelector takes columns by
    /// number, which saves most of the work of a CSV row). Same errors, same count checks.
    pub fn batch_records(&self, descriptor: &BatchDescriptor) -> BoxStream<'static, Result<Records>> {
        let csv = matches!(self.context.format, Some(DataFormat::Csv { .. }))
            && descriptor.extents.iter().all(|e| matches!(e, Extent::Text { .. }));
        if !csv {
            return self.batch_items(descriptor).map_ok(Records::Item).boxed();
        }
        struct State {
            context: Arc<ReadContext>,
            extents: std::vec::IntoIter<Extent>,
            cursor: Option<(TextCursor, Arc<str>)>,
            index: u64,
            /// The last chunk's text length and records: the next one's are about the same.
            chunk_bytes: usize,
            chunk_records: usize,
        }
        let state = State {
            context: self.context.clone(),
            extents: descriptor.extents.clone().into_iter(),
            cursor: None,
            index: descriptor.first_index,
            chunk_bytes: 0,
            chunk_records: 0,
        };
        let chunks = stream::try_unfold(state, |mut st| async move {
            loop {
                let (cursor, source) = match st.cursor.as_mut() {
                    Some(open) => open,
                    None => {
                        let Some(extent) = st.extents.next() else { return Ok(None) };
                        let unit = Unit::Extent(extent);
                        let Cursor::Text(cursor) = st.context.open(&unit, ScanNeeds { values: false }).await? else {
                            return Err(StorageError::reader_config("a CSV extent opened as another format"));
                        };
                        st.cursor.insert((*cursor, st.context.source(&unit)))
                    }
                };
                let Some(mut records) = cursor.csv_chunk(source.clone(), st.index) else {
                    return Err(StorageError::reader_config("a CSV extent opened without its header"));
                };
                records.reserve(st.chunk_bytes + st.chunk_bytes / 8, st.chunk_records);
                let more = cursor.next_csv_chunk(&mut records).await?;
                if !more {
                    st.cursor = None;
                }
                if records.is_empty() {
                    continue;
                }
                st.index += records.len() as u64;
                st.chunk_bytes = records.text_len();
                st.chunk_records = records.len();
                return Ok(Some((Records::Csv(records), st)));
            }
        });
        counted(chunks.boxed(), descriptor.items, |records| match records {
            Records::Item(_) => 1,
            Records::Csv(records) => records.len() as u64,
        })
    }
}

/// `inner` checked to hold exactly `expected` items (`len` of each element): a descriptor
/// that does not was not planned from this source (or the source changed in a way its ETag
/// did not show).
fn counted<T: Send + 'static>(
    inner: BoxStream<'static, Result<T>>,
    expected: u64,
    len: fn(&T) -> u64,
) -> BoxStream<'static, Result<T>> {
    stream::try_unfold((inner, 0u64), move |(mut inner, seen)| async move {
        match inner.next().await {
            Some(Ok(next)) => {
                let seen = seen + len(&next);
                if seen > expected {
                    return Err(StorageError::Descriptor {
                        message: format!("the batch holds more than its {expected} items"),
                    });
                }
                Ok(Some((next, (inner, seen))))
            }
            Some(Err(e)) => Err(e),
            None if seen == expected => Ok(None),
            None => Err(StorageError::Descriptor { message: format!("the batch holds {seen} items, not {expected}") }),
        }
    })
    .boxed()
}

/// Reads `units` in order into items numbered from `first_index`, at most `limit` of them.
fn unit_items(
    context: Arc<ReadContext>,
    units: BoxStream<'static, Result<Unit>>,
    first_index: u64,
    limit: Option<u64>,
) -> BoxStream<'static, Result<Item>> {
    struct State {
        context: Arc<ReadContext>,
        units: BoxStream<'static, Result<Unit>>,
        cursor: Option<(Cursor, Arc<str>)>,
        index: u64,
        remaining: Option<u64>,
        scanned: Vec<Scanned>,
        /// Items read but not yet handed out; its capacity is reused from chunk to chunk.
        ready: std::collections::VecDeque<Item>,
    }
    let state = State {
        context,
        units,
        cursor: None,
        index: first_index,
        remaining: limit,
        scanned: Vec::new(),
        ready: std::collections::VecDeque::new(),
    };
    stream::try_unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Ok(Some((item, st)));
            }
            if st.remaining == Some(0) {
                return Ok(None);
            }
            let (cursor, source) = match st.cursor.as_mut() {
                Some(open) => open,
                None => {
                    let Some(unit) = st.units.next().await else { return Ok(None) };
                    let unit = unit?;
                    let cursor = st.context.open(&unit, ScanNeeds { values: true }).await?;
                    st.cursor.insert((cursor, st.context.source(&unit)))
                }
            };
            st.scanned.clear();
            let more = cursor.next_chunk(&mut st.scanned).await?;
            let take = st.remaining.map_or(st.scanned.len(), |r| (r as usize).min(st.scanned.len()));
            for scanned in st.scanned.drain(..take) {
                let value = scanned.value.unwrap_or(Value::Null);
                st.ready.push_back(Item { index: st.index, key: scanned.key, value, source: source.clone() });
                st.index += 1;
            }
            if let Some(r) = st.remaining.as_mut() {
                *r -= take as u64;
            }
            if !more {
                st.cursor = None;
            }
        }
    })
    .boxed()
}
