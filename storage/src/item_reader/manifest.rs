//! Manifests that name data files (features.md §2.3, `MANIFEST`):
//!
//! * **S3 Inventory** `manifest.json`: `fileFormat` must be `CSV`; its `files[].key` are gzipped
//!   CSV data files in the destination bucket (`destinationBucket`, an ARN such as
//!   `arn:aws:s3:::inventory-bucket`), without a header row; each row becomes an item keyed by
//!   the names in `fileSchema` (`"Bucket, Key, Size, LastModifiedDate"`), all values strings.
//! * **Athena UNLOAD** manifest: one `s3://bucket/key` URI per line; the listed files share the
//!   ItemReader's InputType (Athena's CSV has no header row: use `CSVHeaderLocation: GIVEN`).

use serde::Deserialize;

use crate::error::{Position, Result, StorageError};
use crate::store::{BucketStore, ObjectRef};

/// An S3 Inventory manifest as far as the reader needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryManifest {
    /// Column names of the data files, in order.
    pub schema: Vec<String>,
    /// The data files, in manifest order.
    pub files: Vec<ObjectRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryDocument {
    #[serde(default)]
    destination_bucket: Option<String>,
    file_format: String,
    file_schema: String,
    files: Vec<InventoryFile>,
}

#[derive(Deserialize)]
struct InventoryFile {
    key: String,
}

fn malformed(object: &ObjectRef, format: &'static str, message: String) -> StorageError {
    StorageError::Malformed { object: object.to_string(), format, position: Position::Object, message }
}

/// Reads and checks an S3 Inventory `manifest.json`.
pub async fn read_inventory_manifest(store: &BucketStore, key: &str) -> Result<InventoryManifest> {
    let object = store.object(key);
    let bytes = store.get_bytes(key).await?;
    let document: InventoryDocument =
        serde_json::from_slice(&bytes).map_err(|e| malformed(&object, "S3 Inventory manifest", e.to_string()))?;
    if document.file_format != "CSV" {
        return Err(StorageError::reader_config(format!(
            "S3 Inventory manifest {object}: fileFormat {:?} is not supported (only CSV)",
            document.file_format
        )));
    }
    let schema: Vec<String> = document.file_schema.split(',').map(|name| name.trim().to_string()).collect();
    super::csv::check_headers(&schema)?;
    let bucket = match document.destination_bucket.as_deref() {
        Some(arn) => arn.rsplit(":::").next().unwrap_or(arn).to_string(),
        None => object.bucket.clone(),
    };
    let files = document.files.into_iter().map(|f| ObjectRef::new(bucket.clone(), f.key)).collect();
    Ok(InventoryManifest { schema, files })
}

/// Reads an Athena UNLOAD manifest: the `s3://` URIs of its data files.
pub async fn read_athena_manifest(store: &BucketStore, key: &str) -> Result<Vec<ObjectRef>> {
    let object = store.object(key);
    let bytes = store.get_bytes(key).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| malformed(&object, "Athena manifest", e.to_string()))?;
    let mut files = Vec::new();
    let mut byte = 0u64;
    for (number, raw) in text.split_inclusive('\n').enumerate() {
        let line_start = byte;
        byte += raw.len() as u64;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let uri = line.strip_prefix("s3://").or_else(|| line.strip_prefix("S3://"));
        let parsed = uri.and_then(|rest| rest.split_once('/')).filter(|(b, k)| !b.is_empty() && !k.is_empty());
        match parsed {
            Some((bucket, key)) => files.push(ObjectRef::new(bucket, key)),
            None => {
                return Err(StorageError::Malformed {
                    object: object.to_string(),
                    format: "Athena manifest",
                    position: Position::Text { line: Some(number as u64 + 1), byte: line_start },
                    message: format!("{line:?} is not an s3://bucket/key URI"),
                })
            }
        }
    }
    Ok(files)
}
