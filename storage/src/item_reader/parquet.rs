//! Parquet data objects: one item per row, typed columns as JSON values (integers and floats as
//! numbers, strings as strings, booleans, nulls, lists as arrays, structs and maps as objects,
//! dates and timestamps as ISO 8601 strings — arrow-json's encoding, with explicit nulls).
//!
//! AWS limits a row group to 256 MB and the footer to 5 MB (features.md §2.3); a larger one
//! fails the read. A batch descriptor names a row group, the rows to skip in it and a row count
//! (which may run into the following row groups); the reader then decodes only those groups.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde_json::Value;

use super::{RecordPosition, Scanned};
use crate::error::{Position, Result, StorageError};
use crate::store::BucketStore;

/// AWS's largest row group and footer (features.md §2.13).
const MAX_ROW_GROUP_BYTES: i64 = 256 * 1024 * 1024;
const MAX_FOOTER_BYTES: u64 = 5 * 1024 * 1024;
/// Rows decoded at a time.
const BATCH_ROWS: usize = 256;

/// Ranged reads of one object for the Parquet decoder (object_store's own adapter in the
/// parquet crate is deprecated in favour of implementing this trait).
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn to_parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store.get_range(&self.path, range).map_err(to_parquet_error).boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(to_parquet_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata =
                ParquetMetaDataReader::new().with_arrow_reader_options(options).load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

fn parquet_error(object: &str, position: Position, e: impl std::fmt::Display) -> StorageError {
    StorageError::Parquet { object: object.to_string(), position, message: e.to_string() }
}

/// The footer of a Parquet object (and its ETag), checked against AWS's limits.
pub(crate) async fn metadata(store: &BucketStore, key: &str) -> Result<(Option<String>, Arc<ParquetMetaData>)> {
    let (builder, etag) = open_builder(store, key).await?;
    Ok((etag, builder.metadata().clone()))
}

/// Reads the footer and prepares a row reader.
async fn open_builder(
    store: &BucketStore,
    key: &str,
) -> Result<(ParquetRecordBatchStreamBuilder<ObjectReader>, Option<String>)> {
    let object = store.object(key).to_string();
    let meta = store.head(key).await?;
    if meta.size < 12 {
        return Err(parquet_error(&object, Position::Object, "the object is too small to be Parquet"));
    }
    // The last 8 bytes are the footer length and the magic `PAR1`.
    let path = store.path(key)?;
    let tail = store
        .object_store()
        .get_range(&path, meta.size - 8..meta.size)
        .await
        .map_err(|e| StorageError::read(&store.object(key), e))?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(parquet_error(&object, Position::Object, "not a Parquet object (no PAR1 magic at its end)"));
    }
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer > MAX_FOOTER_BYTES {
        return Err(parquet_error(
            &object,
            Position::Object,
            format!("the footer is {footer} bytes; the limit is 5 MB"),
        ));
    }
    let reader = ObjectReader { store: store.object_store().clone(), path, size: meta.size };
    let builder =
        ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| parquet_error(&object, Position::Object, e))?;
    for (index, group) in builder.metadata().row_groups().iter().enumerate() {
        if group.compressed_size() > MAX_ROW_GROUP_BYTES {
            return Err(parquet_error(
                &object,
                Position::RowGroup(index),
                format!("the row group is {} bytes; the limit is 256 MB", group.compressed_size()),
            ));
        }
    }
    Ok((builder, meta.e_tag))
}

pub(crate) struct ParquetCursor {
    object: String,
    stream: ParquetRecordBatchStream<ObjectReader>,
    /// (row group, rows in it) of the decoded groups.
    groups: Vec<(usize, u64)>,
    group: usize,
    row_in_group: u64,
    etag: Option<String>,
}

impl ParquetCursor {
    /// Opens the rows `skip..skip + rows` counted from the start of row group `first_group`
    /// (`rows == None`: to the end of the object).
    pub async fn open(
        store: &BucketStore,
        key: &str,
        first_group: usize,
        skip: u64,
        rows: Option<u64>,
    ) -> Result<Self> {
        let object = store.object(key).to_string();
        let (builder, etag) = open_builder(store, key).await?;
        let metadata = builder.metadata().clone();
        let mut groups = Vec::new();
        let mut covered = 0u64;
        let wanted = rows.map(|r| skip + r);
        for index in first_group..metadata.num_row_groups() {
            if wanted.is_some_and(|w| covered >= w) {
                break;
            }
            let n = metadata.row_group(index).num_rows().max(0) as u64;
            groups.push((index, n));
            covered += n;
        }
        if first_group > metadata.num_row_groups() || wanted.is_some_and(|w| covered < w) {
            return Err(StorageError::Descriptor {
                message: format!("{object} has fewer rows than the batch descriptor names"),
            });
        }
        let mut builder = builder
            .with_row_groups(groups.iter().map(|(g, _)| *g).collect())
            .with_batch_size(BATCH_ROWS)
            .with_offset(skip as usize);
        if let Some(rows) = rows {
            builder = builder.with_limit(rows as usize);
        }
        let stream = builder.build().map_err(|e| parquet_error(&object, Position::Object, e))?;
        // Position the row counter past the skipped rows.
        let mut group = 0;
        let mut row_in_group = skip;
        while group < groups.len() && row_in_group >= groups[group].1 && groups[group].1 > 0 {
            row_in_group -= groups[group].1;
            group += 1;
        }
        Ok(ParquetCursor { object, stream, groups, group, row_in_group, etag })
    }

    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    fn current_group(&self) -> usize {
        self.groups.get(self.group).map_or(0, |g| g.0)
    }

    /// Appends the next decoded rows to `out`; false once the rows are done.
    pub async fn next_chunk(&mut self, out: &mut Vec<Scanned>) -> Result<bool> {
        let Some(batch) = self.stream.next().await else { return Ok(false) };
        let batch = batch.map_err(|e| parquet_error(&self.object, Position::RowGroup(self.current_group()), e))?;
        let rows = rows_to_json(&batch)
            .map_err(|e| parquet_error(&self.object, Position::RowGroup(self.current_group()), e))?;
        for value in rows {
            // Skip empty row groups.
            while self.group < self.groups.len() && self.row_in_group >= self.groups[self.group].1 {
                self.group += 1;
                self.row_in_group = 0;
            }
            out.push(Scanned {
                position: RecordPosition::Row { row_group: self.current_group(), row: self.row_in_group },
                key: None,
                value: Some(value),
            });
            self.row_in_group += 1;
        }
        Ok(true)
    }
}

/// Encodes each row of `batch` as a JSON object. Scalar columns are converted directly; other
/// types (dates, timestamps, decimals, lists, structs, maps, binary, …) go through arrow-json.
fn rows_to_json(batch: &RecordBatch) -> std::result::Result<Vec<Value>, String> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (index, column) in batch.columns().iter().enumerate() {
        let values = match scalar_values(column) {
            Some(values) => values,
            None => {
                let single = RecordBatch::try_new(
                    Arc::new(arrow_schema::Schema::new(vec![schema.field(index).clone()])),
                    vec![column.clone()],
                )
                .map_err(|e| e.to_string())?;
                encoded_values(&single)?
            }
        };
        columns.push(values.into_iter());
    }
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for _ in 0..batch.num_rows() {
        let mut row = serde_json::Map::with_capacity(names.len());
        for (name, column) in names.iter().zip(columns.iter_mut()) {
            row.insert((*name).clone(), column.next().unwrap_or(Value::Null));
        }
        rows.push(Value::Object(row));
    }
    Ok(rows)
}

/// The values of a column of a common scalar type, as arrow-json would encode them.
fn scalar_values(column: &arrow_array::ArrayRef) -> Option<Vec<Value>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
    use arrow_schema::DataType;
    fn primitive<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>, f: impl Fn(T::Native) -> Value) -> Vec<Value> {
        array.iter().map(|v| v.map_or(Value::Null, &f)).collect()
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    Some(match column.data_type() {
        DataType::Null => vec![Value::Null; column.len()],
        DataType::Boolean => column.as_boolean().iter().map(|v| v.map_or(Value::Null, Value::Bool)).collect(),
        DataType::Int8 => primitive(column.as_primitive::<Int8Type>(), Value::from),
        DataType::Int16 => primitive(column.as_primitive::<Int16Type>(), Value::from),
        DataType::Int32 => primitive(column.as_primitive::<Int32Type>(), Value::from),
        DataType::Int64 => primitive(column.as_primitive::<Int64Type>(), Value::from),
        DataType::UInt8 => primitive(column.as_primitive::<UInt8Type>(), Value::from),
        DataType::UInt16 => primitive(column.as_primitive::<UInt16Type>(), Value::from),
        DataType::UInt32 => primitive(column.as_primitive::<UInt32Type>(), Value::from),
        DataType::UInt64 => primitive(column.as_primitive::<UInt64Type>(), Value::from),
        DataType::Float32 => primitive(column.as_primitive::<Float32Type>(), |v| float(f64::from(v))),
        DataType::Float64 => primitive(column.as_primitive::<Float64Type>(), float),
        DataType::Utf8 => column.as_string::<i32>().iter().map(|v| v.map_or(Value::Null, Value::from)).collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().map(|v| v.map_or(Value::Null, Value::from)).collect(),
        DataType::Utf8View => column.as_string_view().iter().map(|v| v.map_or(Value::Null, Value::from)).collect(),
        _ => return None,
    })
}

/// Encodes a one-column batch with arrow-json and returns the column's values.
fn encoded_values(batch: &RecordBatch) -> std::result::Result<Vec<Value>, String> {
    use arrow_json::writer::{LineDelimited, WriterBuilder};
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(Vec::new());
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let text = writer.into_inner();
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let row: serde_json::Map<String, Value> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            Ok(row.into_iter().next().map_or(Value::Null, |(_, v)| v))
        })
        .collect()
}
