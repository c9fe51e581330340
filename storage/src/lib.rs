#![doc = include_str!("../README.md")]

pub mod batch_plan;
pub mod compression;
pub mod error;
mod file_range;
pub mod item;
pub mod item_reader;
mod result_file;
pub mod result_writer;
mod staged_cache;
pub mod store;

pub use batch_plan::{BatchDescriptor, BatchLimits, Extent, ItemSizer, PlanSummary, SourceObject};
pub use compression::Compression;
pub use error::{Position, StorageError};
pub use item::Item;
pub use item_reader::{CsvFields, CsvRecords, FieldBuffer, ItemReader, ItemReaderSpec, ItemSource, Records};
pub use result_writer::{
    ChildExecutionResult, ChildStatus, DirectResults, ResultManifest, ResultWriter, ResultWriterSpec, ResultsBegun,
    ResultsInProgress, StagedBatch, Transformation,
};
pub use store::{BucketStore, ObjectRef, S3Config, StoreConfig, Stores};
