//! The Map state, Inline and Distributed (features.md §2.1).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path_field::PathField;
use super::payload_template::{AssignTemplate, PayloadTemplate};
use super::retry::{Catcher, Retrier};
use super::state_machine::StateBlock;
use super::StateMachineType;
use crate::expr::PathExpr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessorMode {
    #[default]
    Inline,
    Distributed,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorConfig {
    #[serde(default)]
    pub mode: ProcessorMode,
    #[serde(default)]
    pub execution_type: Option<StateMachineType>,
}

/// `ItemProcessor` (or the deprecated `Iterator`): the states run for each item.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Value")]
pub struct ItemProcessor {
    pub processor_config: ProcessorConfig,
    pub block: StateBlock,
    /// The processor as written: a Distributed Map's children are described to workers by it.
    pub definition: Arc<Value>,
}

impl TryFrom<Value> for ItemProcessor {
    type Error = serde_json::Error;

    fn try_from(definition: Value) -> Result<Self, Self::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Fields {
            #[serde(default)]
            processor_config: ProcessorConfig,
            #[serde(flatten)]
            block: StateBlock,
        }
        let Fields { processor_config, block } = Fields::deserialize(&definition)?;
        Ok(ItemProcessor { processor_config, block, definition: Arc::new(definition) })
    }
}

/// Serialised (for workers) as resolved: `MaxItemsPath` is left out, the interpreter resolved it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReaderConfig {
    #[serde(default)]
    pub input_type: Option<String>,
    #[serde(default, rename = "CSVHeaderLocation")]
    pub csv_header_location: Option<String>,
    #[serde(default, rename = "CSVHeaders")]
    pub csv_headers: Option<Vec<String>>,
    #[serde(default, rename = "CSVDelimiter")]
    pub csv_delimiter: Option<String>,
    #[serde(default)]
    pub max_items: Option<Value>,
    #[serde(default, skip_serializing)]
    pub max_items_path: Option<PathExpr>,
    #[serde(default)]
    pub items_pointer: Option<String>,
    #[serde(default)]
    pub transformation: Option<String>,
    #[serde(default)]
    pub manifest_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemReader {
    pub resource: String,
    #[serde(default)]
    pub reader_config: ReaderConfig,
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemBatcher {
    #[serde(default)]
    pub max_items_per_batch: Option<Value>,
    #[serde(default)]
    pub max_items_per_batch_path: Option<PathExpr>,
    #[serde(default)]
    pub max_input_bytes_per_batch: Option<Value>,
    #[serde(default)]
    pub max_input_bytes_per_batch_path: Option<PathExpr>,
    #[serde(default)]
    pub batch_input: Option<PayloadTemplate>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WriterConfig {
    #[serde(default)]
    pub transformation: Option<String>,
    #[serde(default)]
    pub output_type: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultWriter {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
    #[serde(default)]
    pub writer_config: Option<WriterConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapState {
    #[serde(default)]
    pub item_processor: Option<ItemProcessor>,
    /// Deprecated alias of `ItemProcessor`.
    #[serde(default)]
    pub iterator: Option<ItemProcessor>,
    #[serde(default)]
    pub items_path: PathField,
    #[serde(default)]
    pub item_selector: Option<PayloadTemplate>,
    /// Deprecated alias of `ItemSelector`.
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
    #[serde(default)]
    pub item_reader: Option<ItemReader>,
    #[serde(default)]
    pub item_batcher: Option<ItemBatcher>,
    #[serde(default)]
    pub result_writer: Option<ResultWriter>,
    #[serde(default)]
    pub max_concurrency: Option<Value>,
    #[serde(default)]
    pub max_concurrency_path: Option<PathExpr>,
    #[serde(default)]
    pub tolerated_failure_percentage: Option<Value>,
    #[serde(default)]
    pub tolerated_failure_percentage_path: Option<PathExpr>,
    #[serde(default)]
    pub tolerated_failure_count: Option<Value>,
    #[serde(default)]
    pub tolerated_failure_count_path: Option<PathExpr>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub result_selector: Option<PayloadTemplate>,
    #[serde(default)]
    pub result_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
}

impl MapState {
    /// `ItemProcessor`, or the deprecated `Iterator`.
    pub fn processor(&self) -> Option<&ItemProcessor> {
        self.item_processor.as_ref().or(self.iterator.as_ref())
    }

    /// `ItemSelector`, or the deprecated `Parameters`.
    pub fn selector(&self) -> Option<&PayloadTemplate> {
        self.item_selector.as_ref().or(self.parameters.as_ref())
    }

    pub fn is_distributed(&self) -> bool {
        self.processor().map(|p| p.processor_config.mode) == Some(ProcessorMode::Distributed)
    }
}
