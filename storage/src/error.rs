//! The crate's one error type, and its mapping to ASL failures.
//!
//! Every variant says *where* (which object, which line or row group) and *what* went wrong.
//! [`StorageError::failure`] turns an error into the ASL failure a Distributed Map reports:
//! reading problems are `States.ItemReaderFailed`, writing problems `States.ResultWriterFailed`
//! (features.md §2.3, §2.8), and a `MaxItemsPath` value that is not an integer is
//! `States.Runtime` (raised before the Map Run starts, features.md §2.10). Where AWS's cause text
//! is known it is reproduced verbatim.

use stepmap_asl::failure::{names, Failure};

/// Where in an object a malformed record was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// A text object: 1-based line (when known) and byte offset in the (decompressed) text.
    Text { line: Option<u64>, byte: u64 },
    /// A Parquet object: 0-based row group.
    RowGroup(usize),
    /// Somewhere in the object (e.g. its footer or a manifest document).
    Object,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Text { line: Some(line), byte } => write!(f, "line {line} (byte {byte})"),
            Position::Text { line: None, byte } => write!(f, "byte {byte}"),
            Position::RowGroup(group) => write!(f, "row group {group}"),
            Position::Object => write!(f, "object"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store configuration or URL cannot be used.
    #[error("invalid storage configuration: {message}")]
    Config { message: String },

    /// A bucket name that cannot be mapped to a store (empty, or a path component).
    #[error("invalid bucket name {bucket:?}: {reason}")]
    InvalidBucket { bucket: String, reason: String },

    /// An object key the store cannot address.
    #[error("invalid object key {key:?} in bucket {bucket:?}: {reason}")]
    InvalidKey { bucket: String, key: String, reason: String },

    /// The ItemReader or ResultWriter configuration is not usable (after its `Parameters` were
    /// evaluated). `message` is the cause reported to the execution.
    #[error("{message}")]
    ReaderConfig { message: String },

    /// `ResultWriter` / `WriterConfig` not usable.
    #[error("{message}")]
    WriterConfig { message: String },

    /// `MaxItemsPath` resolved to something that is not an integer (AWS: `States.Runtime`).
    #[error("The MaxItemsPath field refers to value \"{value}\" which is not a valid integer: {path}")]
    MaxItemsNotInteger { value: String, path: String },

    /// `MaxItems` resolved to a negative number (AWS: `States.ItemReaderFailed`).
    #[error("field MaxItems must be positive")]
    MaxItemsNotPositive { value: i64 },

    /// The object does not exist.
    #[error("The specified key does not exist. (s3://{bucket}/{key})")]
    NotFound { bucket: String, key: String },

    /// Reading or listing failed in the store.
    #[error("reading {object} failed: {source}")]
    Read {
        object: String,
        #[source]
        source: object_store::Error,
    },

    /// The object changed between planning and reading a batch (its ETag no longer matches):
    /// re-reading would not give the planned items.
    #[error("{object} changed after the Map Run was planned (expected ETag {expected_etag})")]
    SourceChanged { object: String, expected_etag: String },

    /// The content of an object is not valid for its `InputType`.
    #[error("{object}: malformed {format} at {position}: {message}")]
    Malformed { object: String, format: &'static str, position: Position, message: String },

    /// A compressed object could not be decompressed.
    #[error("{object}: cannot decompress {codec} data: {message}")]
    Decompression { object: String, codec: &'static str, message: String },

    /// A Parquet object could not be read.
    #[error("{object}: cannot read Parquet at {position}: {message}")]
    Parquet { object: String, position: Position, message: String },

    /// A batch descriptor that does not fit the planned source (e.g. from another Map Run).
    #[error("batch descriptor does not match the planned source: {message}")]
    Descriptor { message: String },

    /// Writing a result object failed.
    #[error("writing s3://{bucket}/{key} failed: {message}")]
    Write { bucket: String, key: String, message: String },
}

impl StorageError {
    /// The ASL failure this error becomes in the execution.
    pub fn failure(&self) -> Failure {
        let error = match self {
            StorageError::MaxItemsNotInteger { .. } => names::RUNTIME,
            StorageError::WriterConfig { .. } | StorageError::Write { .. } => names::RESULT_WRITER_FAILED,
            _ => names::ITEM_READER_FAILED,
        };
        Failure::new(error, self.to_string())
    }

    pub(crate) fn read(object: &crate::ObjectRef, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => {
                StorageError::NotFound { bucket: object.bucket.clone(), key: object.key.clone() }
            }
            source => StorageError::Read { object: object.to_string(), source },
        }
    }

    pub(crate) fn reader_config(message: impl Into<String>) -> Self {
        StorageError::ReaderConfig { message: message.into() }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
