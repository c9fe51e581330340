//! One item of a Distributed Map, with the context AWS exposes as `$$.Map.Item`.

use std::sync::Arc;

use serde_json::Value;

/// An item as read from the ItemReader's source.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// `$$.Map.Item.Index`: 0-based position in the whole source (across batches and objects).
    pub index: u64,
    /// `$$.Map.Item.Key`: the member name when iterating a JSON object.
    pub key: Option<String>,
    /// `$$.Map.Item.Value`: CSV rows are objects of strings, Parquet rows typed JSON values,
    /// listings AWS's object records.
    pub value: Value,
    /// `$$.Map.Item.Source`: `S3://bucket/key` of the object the item was read from, or
    /// `S3://bucket` for a `listObjectsV2` listing without transformation (features.md §1.5).
    pub source: Arc<str>,
}

/// `$$.Map.Item.Source` for an item read from `bucket/key`.
pub(crate) fn object_source(bucket: &str, key: &str) -> Arc<str> {
    Arc::from(format!("S3://{bucket}/{key}"))
}

/// `$$.Map.Item.Source` for a listing item.
pub(crate) fn listing_source(bucket: &str) -> Arc<str> {
    Arc::from(format!("S3://{bucket}"))
}
