//! `s3:listObjectsV2` items (Transformation NONE): one item per object under `Prefix`, in
//! ascending key order, shaped as AWS gives them [DG-reader; 3P floci#3460]:
//!
//! ```json
//! {"Etag": "\"<md5>\"", "Key": "logs/a.json", "LastModified": 1668699881, "Size": 1024, "StorageClass": "STANDARD"}
//! ```
//!
//! `Etag` keeps its surrounding quotes; `LastModified` is epoch seconds. Stores that report no
//! storage class (all object_store backends) give `STANDARD`; a store that reports no ETag
//! gives `"\"\""`.

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::ObjectMeta;
use serde_json::{json, Value};

use super::{RecordPosition, Scanned};
use crate::error::Result;
use crate::store::BucketStore;

/// Items per chunk handed on (S3's page size).
const PAGE: usize = 1000;

/// AWS's listing item for one object.
pub fn listing_item(meta: &ObjectMeta) -> Value {
    let etag = meta.e_tag.as_deref().unwrap_or("");
    let etag = if etag.starts_with('"') { etag.to_string() } else { format!("\"{etag}\"") };
    json!({
        "Etag": etag,
        "Key": meta.location.as_ref(),
        "LastModified": meta.last_modified.timestamp(),
        "Size": meta.size,
        "StorageClass": "STANDARD",
    })
}

pub(crate) struct ListingCursor {
    stream: BoxStream<'static, Result<ObjectMeta>>,
    remaining: Option<u64>,
}

impl ListingCursor {
    /// Lists keys under `prefix` after `start_after`, at most `limit` of them.
    pub fn open(store: &BucketStore, prefix: &str, start_after: Option<&str>, limit: Option<u64>) -> Self {
        ListingCursor { stream: store.list_sorted(prefix, start_after), remaining: limit }
    }

    pub async fn next_chunk(&mut self, out: &mut Vec<Scanned>) -> Result<bool> {
        for _ in 0..PAGE {
            if self.remaining == Some(0) {
                return Ok(false);
            }
            let Some(meta) = self.stream.next().await else { return Ok(false) };
            let meta = meta?;
            out.push(Scanned {
                position: RecordPosition::Key { key: meta.location.to_string() },
                key: None,
                value: Some(listing_item(&meta)),
            });
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
        }
        Ok(true)
    }
}

/// The objects under a prefix, for LOAD_AND_FLATTEN.
pub(crate) fn objects(store: &BucketStore, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
    store.list_sorted(prefix, None)
}
