//! What an ItemReader reads, resolved from the definition: `Resource`, `ReaderConfig` and the
//! evaluated `Parameters` / `Arguments` (features.md §2.3). The interpreter evaluates the
//! payload template and `MaxItems`; this module checks the combination and fixes one meaning.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::csv::{check_headers, CsvDelimiter, CsvHeader};
use crate::error::{Result, StorageError};

/// The format of the data objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum DataFormat {
    Csv {
        header: CsvHeader,
        delimiter: CsvDelimiter,
    },
    /// A JSON array or object; `items_pointer` selects a nested one (RFC 6901).
    Json {
        items_pointer: Option<String>,
    },
    Jsonl,
    Parquet,
}

impl DataFormat {
    pub fn name(&self) -> &'static str {
        match self {
            DataFormat::Csv { .. } => "CSV",
            DataFormat::Json { .. } => "JSON",
            DataFormat::Jsonl => "JSONL",
            DataFormat::Parquet => "PARQUET",
        }
    }
}

/// Where the items come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum ItemSource {
    /// `s3:getObject` of one data object.
    Object { bucket: String, key: String, version_id: Option<String>, format: DataFormat },
    /// `s3:getObject` of an S3 Inventory `manifest.json`; items are the inventory's rows.
    S3Inventory { bucket: String, key: String, version_id: Option<String> },
    /// `s3:getObject` of an Athena UNLOAD manifest (one `s3://` URI per line); items are the
    /// records of the listed data files.
    AthenaManifest { bucket: String, key: String, version_id: Option<String>, format: DataFormat },
    /// `s3:listObjectsV2`, Transformation NONE: one item per object.
    Listing { bucket: String, prefix: String },
    /// `s3:listObjectsV2`, Transformation LOAD_AND_FLATTEN: the records of every listed object.
    ListingFlattened { bucket: String, prefix: String, format: DataFormat },
}

/// A resolved ItemReader: source, format and `MaxItems`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemReaderSpec {
    pub source: ItemSource,
    /// `None`: every item.
    pub max_items: Option<u64>,
}

fn string_parameter(parameters: &Value, name: &str, required: bool) -> Result<Option<String>> {
    match parameters.get(name) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => {
            Err(StorageError::reader_config(format!("The ItemReader Parameters must contain the field '{name}'")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(StorageError::reader_config(format!(
            "The ItemReader field '{name}' must be a string, but was: {other}"
        ))),
    }
}

impl ItemReaderSpec {
    /// Resolves an `ItemReader` from its `Resource`, its `ReaderConfig` and its evaluated
    /// `Parameters` / `Arguments` (`{"Bucket", "Key", "VersionId"}` or `{"Bucket", "Prefix"}`);
    /// `max_items` is the already resolved `MaxItems` (see [`super::resolve_max_items`]).
    pub fn new(
        resource: &str,
        config: &stepmap_asl::model::ReaderConfig,
        parameters: &Value,
        max_items: Option<u64>,
    ) -> Result<ItemReaderSpec> {
        fn bad<T>(message: String) -> Result<T> {
            Err(StorageError::reader_config(message))
        }
        let bucket = string_parameter(parameters, "Bucket", true)?.unwrap_or_default();
        let input_type = config.input_type.as_deref();
        let manifest_type = config.manifest_type.as_deref();
        let transformation = config.transformation.as_deref().unwrap_or("NONE");
        let data_format = |input_type: Option<&str>| -> Result<DataFormat> {
            Ok(match input_type {
                Some("CSV") => {
                    let delimiter = match config.csv_delimiter.as_deref() {
                        None => CsvDelimiter::Comma,
                        Some(name) => CsvDelimiter::parse(name).ok_or_else(|| {
                            StorageError::reader_config(format!(
                                "CSVDelimiter {name:?} is not one of COMMA, PIPE, SEMICOLON, SPACE, TAB"
                            ))
                        })?,
                    };
                    let header = match config.csv_header_location.as_deref() {
                        // AWS requires the field for CSV; its default when absent is UNCONFIRMED.
                        None | Some("FIRST_ROW") => CsvHeader::FirstRow,
                        Some("GIVEN") => {
                            let headers = config.csv_headers.clone().ok_or_else(|| {
                                StorageError::reader_config("CSVHeaders must be given when CSVHeaderLocation is GIVEN")
                            })?;
                            check_headers(&headers)?;
                            CsvHeader::Given(headers)
                        }
                        Some(other) => {
                            return bad(format!("CSVHeaderLocation {other:?} is not one of FIRST_ROW, GIVEN"));
                        }
                    };
                    DataFormat::Csv { header, delimiter }
                }
                Some("JSON") => {
                    if let Some(pointer) = &config.items_pointer {
                        super::json::parse_pointer(pointer).map_err(StorageError::reader_config)?;
                    }
                    DataFormat::Json { items_pointer: config.items_pointer.clone() }
                }
                Some("JSONL") => DataFormat::Jsonl,
                Some("PARQUET") => DataFormat::Parquet,
                Some(other) => return bad(format!("InputType {other:?} is not supported here")),
                None => return bad("ReaderConfig.InputType is required".to_string()),
            })
        };
        let source = if resource.ends_with(":s3:getObject") {
            let key = string_parameter(parameters, "Key", true)?.unwrap_or_default();
            let version_id = string_parameter(parameters, "VersionId", false)?;
            match (manifest_type, input_type) {
                (Some("S3_INVENTORY"), None | Some("MANIFEST")) | (None, Some("MANIFEST")) => {
                    ItemSource::S3Inventory { bucket, key, version_id }
                }
                (Some("S3_INVENTORY"), Some(_)) => {
                    return bad("InputType must not be set when ManifestType is S3_INVENTORY".to_string());
                }
                (Some("ATHENA_DATA"), Some("CSV" | "JSONL" | "PARQUET")) => {
                    ItemSource::AthenaManifest { bucket, key, version_id, format: data_format(input_type)? }
                }
                (Some("ATHENA_DATA"), _) => {
                    return bad("ManifestType ATHENA_DATA requires InputType CSV, JSONL or PARQUET".to_string());
                }
                (Some(other), _) => {
                    return bad(format!("ManifestType {other:?} is not one of ATHENA_DATA, S3_INVENTORY"))
                }
                (None, _) => {
                    let format = data_format(input_type)?;
                    if format == DataFormat::Parquet && version_id.is_some() {
                        return bad("VersionId is not supported for InputType PARQUET".to_string());
                    }
                    ItemSource::Object { bucket, key, version_id, format }
                }
            }
        } else if resource.ends_with(":s3:listObjectsV2") {
            let prefix = string_parameter(parameters, "Prefix", false)?.unwrap_or_default();
            match transformation {
                "NONE" => ItemSource::Listing { bucket, prefix },
                "LOAD_AND_FLATTEN" => ItemSource::ListingFlattened { bucket, prefix, format: data_format(input_type)? },
                other => return bad(format!("Transformation {other:?} is not one of NONE, LOAD_AND_FLATTEN")),
            }
        } else {
            return bad(format!("ItemReader Resource {resource:?} is not s3:getObject or s3:listObjectsV2"));
        };
        Ok(ItemReaderSpec { source, max_items })
    }
}
