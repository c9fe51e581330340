//! Map states, Inline and Distributed (features.md §2.1, §2.3, §2.5, §2.8, §1.12):
//! `ItemProcessor` (or the deprecated `Iterator`, not both) with its `ProcessorConfig`,
//! `ItemSelector` (or the deprecated `Parameters`, not both), the Distributed-only fields
//! (`ItemReader`, `ItemBatcher`, `ResultWriter`, `Label`), their shapes and ranges, and
//! `Label` rules.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::model::StateMachineType;

use super::paths::PathKind;
use super::schema::{field_allowed, Lang};
use super::values::is_expression_value;
use super::{express, BlockKind, Loc, Scope, StateCx, Validator};

/// Fields only a DISTRIBUTED Map has. (AWS accepts `ToleratedFailure…` on an INLINE Map.)
const DISTRIBUTED_ONLY: &[&str] = &["ItemReader", "ItemBatcher", "ResultWriter", "Label"];

/// Longest Map `Label`.
const MAX_LABEL_CHARS: usize = 40;

/// Largest `MaxInputBytesPerBatch` (256 KiB).
const MAX_INPUT_BYTES_PER_BATCH: i128 = 262_144;

pub(crate) fn check_state(v: &mut Validator, cx: &StateCx, inner_scope: &Scope) {
    let name = cx.name;
    let owner = format!("Map state '{name}'");
    let processor_field = match (cx.get("ItemProcessor"), cx.get("Iterator")) {
        (Some(_), Some(_)) => {
            v.schema(
                format!("Cannot define both Iterator and ItemProcessor. ({owner}; 'Iterator' is the deprecated name)"),
                &cx.loc,
            );
            None
        }
        (Some(_), None) => Some("ItemProcessor"),
        (None, Some(_)) => Some("Iterator"),
        (None, None) => {
            v.schema(format!("These fields are required: [ItemProcessor] ({owner})"), &cx.loc);
            None
        }
    };
    let mut distributed = false;
    if let Some(field) = processor_field {
        let loc = cx.at(field);
        let processor = &cx.obj[field];
        let mut child_scope = inner_scope.clone();
        if let Some(obj) = processor.as_object() {
            if let Some(config) = obj.get("ProcessorConfig") {
                let (is_distributed, execution_type) =
                    check_processor_config(v, cx, config, &loc.field("ProcessorConfig"));
                distributed = is_distributed;
                if distributed {
                    express::check_distributed_map(v, cx, &loc.field("ProcessorConfig").field("Mode"));
                    if let Some(execution_type) = execution_type {
                        child_scope.execution_type = execution_type;
                    }
                    // Child executions are separate workflows with their own variables.
                    child_scope.outer_variables = HashSet::new();
                }
            }
        }
        v.nested_block(processor, &loc, BlockKind::Processor, &child_scope);
    }
    if !distributed {
        for field in DISTRIBUTED_ONLY {
            if cx.obj.contains_key(*field) && field_allowed(cx, field) {
                v.schema(
                    format!(
                        "Field '{field}' is not supported in an INLINE Map ({owner}); it needs \
                         \"ProcessorConfig\": {{\"Mode\": \"DISTRIBUTED\"}}"
                    ),
                    &cx.loc,
                );
            }
        }
    }
    v.exclusive(cx.obj, &["MaxConcurrency", "MaxConcurrencyPath"], &cx.loc, &owner);
    v.exclusive(cx.obj, &["ToleratedFailurePercentage", "ToleratedFailurePercentagePath"], &cx.loc, &owner);
    v.exclusive(cx.obj, &["ToleratedFailureCount", "ToleratedFailureCountPath"], &cx.loc, &owner);
    if cx.obj.contains_key("ItemSelector") && cx.obj.contains_key("Parameters") {
        v.schema(
            format!("{owner} may have only one of [ItemSelector, Parameters] ('Parameters' is the deprecated name)"),
            &cx.loc,
        );
    }
    if let Some(value) = cx.get("MaxConcurrency") {
        let what = format!("'MaxConcurrency' of {owner}");
        v.expect_int_or_expression(value, &cx.at("MaxConcurrency"), &what, cx.jsonata, 0, i128::MAX);
    }
    if let Some(value) = cx.get("ToleratedFailurePercentage") {
        let what = format!("'ToleratedFailurePercentage' of {owner}");
        v.expect_number_or_expression(value, &cx.at("ToleratedFailurePercentage"), &what, cx.jsonata, 0.0, 100.0);
    }
    if let Some(value) = cx.get("ToleratedFailureCount") {
        let what = format!("'ToleratedFailureCount' of {owner}");
        v.expect_int_or_expression(value, &cx.at("ToleratedFailureCount"), &what, cx.jsonata, 0, i128::MAX);
    }
    if let Some(items) = cx.get("Items") {
        if cx.jsonata && !(items.is_array() || items.is_object() || is_expression_value(items)) {
            v.schema(
                format!("'Items' of {owner} must be an array or a JSONata expression {{% … %}}, got {items}"),
                &cx.at("Items"),
            );
        }
    }
    if let Some(label) = cx.get("Label") {
        check_label(v, label, &cx.at("Label"), &owner);
    }
    if let Some(reader) = cx.get("ItemReader") {
        check_item_reader(v, cx, reader, &cx.at("ItemReader"));
    }
    if let Some(batcher) = cx.get("ItemBatcher") {
        check_item_batcher(v, cx, batcher, &cx.at("ItemBatcher"));
    }
    if let Some(writer) = cx.get("ResultWriter") {
        check_result_writer(v, cx, writer, &cx.at("ResultWriter"));
    }
}

/// Returns whether the Map is DISTRIBUTED and the child execution type.
fn check_processor_config(
    v: &mut Validator,
    cx: &StateCx,
    config: &Value,
    loc: &Loc,
) -> (bool, Option<StateMachineType>) {
    let owner = format!("ProcessorConfig of Map state '{}'", cx.name);
    let Some(obj) = v.expect_object(config, loc, &owner) else { return (false, None) };
    v.check_fields(obj, loc, &owner, cx.jsonata, &[("Mode", Lang::Both), ("ExecutionType", Lang::Both)]);
    let mode = obj.get("Mode").and_then(|m| v.expect_enum(m, &loc.field("Mode"), "Mode", &["INLINE", "DISTRIBUTED"]));
    let distributed = mode.as_deref() == Some("DISTRIBUTED");
    let execution_type = obj
        .get("ExecutionType")
        .and_then(|t| v.expect_enum(t, &loc.field("ExecutionType"), "ExecutionType", &["STANDARD", "EXPRESS"]))
        .and_then(|t| t.parse::<StateMachineType>().ok());
    if distributed && !obj.contains_key("ExecutionType") {
        v.schema(
            format!("These fields are required: [ExecutionType] ({owner}: a DISTRIBUTED Map runs STANDARD or EXPRESS child executions)"),
            loc,
        );
    }
    if !distributed && obj.contains_key("ExecutionType") {
        v.schema(
            format!("Field 'ExecutionType' is not supported in {owner} (only a DISTRIBUTED Map has child executions)"),
            loc,
        );
    }
    (distributed, execution_type)
}

/// Label rules (AWS's messages, features.md §1.12).
fn check_label(v: &mut Validator, label: &Value, loc: &Loc, owner: &str) {
    let Some(text) = v.expect_string(label, loc, &format!("'Label' of {owner}")) else { return };
    if text.is_empty() {
        v.schema(format!("Label cannot be empty ({owner})"), loc);
        return;
    }
    if text.chars().count() > MAX_LABEL_CHARS {
        v.schema(format!("Label cannot exceed {MAX_LABEL_CHARS} characters ({owner})"), loc);
    }
    if let Some(bad) = text.chars().find(|c| is_invalid_label_char(*c)) {
        v.schema(format!("Label contains invalid character: '{bad}' ({owner})"), loc);
    }
    if let Some(first) = v.labels.get(text) {
        let first = first.render();
        v.schema(format!("Label '{text}' of {owner} is already used at {first}; labels must be unique"), loc);
    } else {
        v.labels.insert(text.to_string(), loc.clone());
    }
}

fn is_invalid_label_char(c: char) -> bool {
    matches!(
        c,
        ' ' | '?'
            | '*'
            | '<'
            | '>'
            | '{'
            | '}'
            | '['
            | ']'
            | ':'
            | ';'
            | ','
            | '\\'
            | '|'
            | '^'
            | '~'
            | '$'
            | '#'
            | '%'
            | '&'
            | '`'
            | '"'
    ) || matches!(c as u32, 0x00..=0x1f | 0x7f..=0x9f)
}

/// Whether `resource` is `arn:<partition>:states:::s3:<action>`.
fn is_s3_resource(resource: &str, action: &str) -> bool {
    let Some(rest) = resource.strip_prefix("arn:") else { return false };
    let Some((partition, tail)) = rest.split_once(':') else { return false };
    !partition.is_empty() && tail.strip_prefix("states:::s3:") == Some(action)
}

fn check_item_reader(v: &mut Validator, cx: &StateCx, reader: &Value, loc: &Loc) {
    let owner = format!("ItemReader of Map state '{}'", cx.name);
    let Some(obj) = v.expect_object(reader, loc, &owner) else { return };
    v.check_fields(
        obj,
        loc,
        &owner,
        cx.jsonata,
        &[
            ("Resource", Lang::Both),
            ("ReaderConfig", Lang::Both),
            ("Parameters", Lang::JsonPath),
            ("Arguments", Lang::Jsonata),
        ],
    );
    match obj.get("Resource") {
        None => v.schema(format!("These fields are required: [Resource] ({owner})"), loc),
        Some(resource) => {
            let at = loc.field("Resource");
            if let Some(text) = v.expect_string(resource, &at, &format!("'Resource' of {owner}")) {
                if !(is_s3_resource(text, "getObject") || is_s3_resource(text, "listObjectsV2")) {
                    v.schema(
                        format!(
                            "The field 'Resource' does not match any of the allowed values. Examples: \
                             [arn:<partition>:states:::s3:getObject, arn:<partition>:states:::s3:listObjectsV2] \
                             ({owner} has '{text}')"
                        ),
                        &at,
                    );
                }
            }
        }
    }
    if let Some(parameters) = obj.get("Parameters") {
        if !cx.jsonata {
            v.check_template(parameters, &loc.field("Parameters"), &format!("'Parameters' of {owner}"));
        }
    }
    if let Some(config) = obj.get("ReaderConfig") {
        check_reader_config(v, cx, config, &loc.field("ReaderConfig"));
    }
}

fn check_reader_config(v: &mut Validator, cx: &StateCx, config: &Value, loc: &Loc) {
    let owner = format!("ReaderConfig of Map state '{}'", cx.name);
    let Some(obj) = v.expect_object(config, loc, &owner) else { return };
    v.check_fields(
        obj,
        loc,
        &owner,
        cx.jsonata,
        &[
            ("InputType", Lang::Both),
            ("Transformation", Lang::Both),
            ("ManifestType", Lang::Both),
            ("CSVDelimiter", Lang::Both),
            ("CSVHeaderLocation", Lang::Both),
            ("CSVHeaders", Lang::Both),
            ("MaxItems", Lang::Both),
            ("MaxItemsPath", Lang::JsonPath),
            ("ItemsPointer", Lang::Both),
        ],
    );
    let enums: [(&str, &[&str]); 5] = [
        ("InputType", &["CSV", "JSON", "JSONL", "PARQUET", "MANIFEST"]),
        ("Transformation", &["NONE", "LOAD_AND_FLATTEN"]),
        ("ManifestType", &["ATHENA_DATA", "S3_INVENTORY"]),
        ("CSVDelimiter", &["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"]),
        ("CSVHeaderLocation", &["FIRST_ROW", "GIVEN"]),
    ];
    for (field, allowed) in enums {
        if let Some(value) = obj.get(field) {
            v.expect_enum(value, &loc.field(field), field, allowed);
        }
    }
    if let Some(headers) = obj.get("CSVHeaders") {
        let at = loc.field("CSVHeaders");
        if let Some(items) = v.expect_array(headers, &at, &format!("'CSVHeaders' of {owner}")) {
            for (i, header) in items.iter().enumerate() {
                v.expect_string(header, &at.index(i), &format!("a header in 'CSVHeaders' of {owner}"));
            }
        }
    }
    if obj.get("CSVHeaderLocation").and_then(Value::as_str) == Some("GIVEN") && !obj.contains_key("CSVHeaders") {
        v.schema(format!("These fields are required: [CSVHeaders] ({owner} has CSVHeaderLocation GIVEN)"), loc);
    }
    v.exclusive(obj, &["MaxItems", "MaxItemsPath"], loc, &owner);
    if let Some(value) = obj.get("MaxItems") {
        let what = format!("'MaxItems' of {owner}");
        v.expect_int_or_expression(value, &loc.field("MaxItems"), &what, cx.jsonata, 0, i128::MAX);
    }
    if let Some(value) = obj.get("MaxItemsPath") {
        if !cx.jsonata {
            v.check_path_field(value, &loc.field("MaxItemsPath"), "MaxItemsPath", PathKind::Reference, &owner);
        }
    }
    if let Some(value) = obj.get("ItemsPointer") {
        if let Some(text) = v.expect_string(value, &loc.field("ItemsPointer"), &format!("'ItemsPointer' of {owner}")) {
            if !(text.is_empty() || text.starts_with('/')) {
                v.schema(
                    format!("'ItemsPointer' of {owner} must be a JSON Pointer such as /items, got '{text}'"),
                    &loc.field("ItemsPointer"),
                );
            }
        }
    }
}

fn check_item_batcher(v: &mut Validator, cx: &StateCx, batcher: &Value, loc: &Loc) {
    let owner = format!("ItemBatcher of Map state '{}'", cx.name);
    let Some(obj) = v.expect_object(batcher, loc, &owner) else { return };
    v.check_fields(
        obj,
        loc,
        &owner,
        cx.jsonata,
        &[
            ("MaxItemsPerBatch", Lang::Both),
            ("MaxItemsPerBatchPath", Lang::JsonPath),
            ("MaxInputBytesPerBatch", Lang::Both),
            ("MaxInputBytesPerBatchPath", Lang::JsonPath),
            ("BatchInput", Lang::Both),
        ],
    );
    let sizes = ["MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"];
    if !sizes.iter().any(|f| obj.contains_key(*f)) {
        v.schema(format!("{owner} needs at least one of [{}]", sizes.join(", ")), loc);
    }
    v.exclusive(obj, &["MaxItemsPerBatch", "MaxItemsPerBatchPath"], loc, &owner);
    v.exclusive(obj, &["MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"], loc, &owner);
    if let Some(value) = obj.get("MaxItemsPerBatch") {
        let what = format!("'MaxItemsPerBatch' of {owner}");
        v.expect_int_or_expression(value, &loc.field("MaxItemsPerBatch"), &what, cx.jsonata, 1, i128::MAX);
    }
    if let Some(value) = obj.get("MaxInputBytesPerBatch") {
        let what = format!("'MaxInputBytesPerBatch' of {owner}");
        let at = loc.field("MaxInputBytesPerBatch");
        v.expect_int_or_expression(value, &at, &what, cx.jsonata, 1, MAX_INPUT_BYTES_PER_BATCH);
    }
    if !cx.jsonata {
        for field in ["MaxItemsPerBatchPath", "MaxInputBytesPerBatchPath"] {
            if let Some(value) = obj.get(field) {
                v.check_path_field(value, &loc.field(field), field, PathKind::Reference, &owner);
            }
        }
        if let Some(input) = obj.get("BatchInput") {
            v.check_template(input, &loc.field("BatchInput"), &format!("'BatchInput' of {owner}"));
        }
    }
}

fn check_result_writer(v: &mut Validator, cx: &StateCx, writer: &Value, loc: &Loc) {
    let owner = format!("ResultWriter of Map state '{}'", cx.name);
    let Some(obj) = v.expect_object(writer, loc, &owner) else { return };
    v.check_fields(
        obj,
        loc,
        &owner,
        cx.jsonata,
        &[
            ("Resource", Lang::Both),
            ("Parameters", Lang::JsonPath),
            ("Arguments", Lang::Jsonata),
            ("WriterConfig", Lang::Both),
        ],
    );
    if obj.is_empty() {
        v.warning(
            crate::diagnostic::codes::SCHEMA_VALIDATION_FAILED,
            format!("{owner} is empty: give it WriterConfig, or Resource with Parameters/Arguments (an empty ResultWriter fails at run time)"),
            Some(loc),
        );
        return;
    }
    let destination = if cx.jsonata { "Arguments" } else { "Parameters" };
    let has_resource = obj.contains_key("Resource");
    let has_destination = obj.contains_key(destination);
    if has_resource != has_destination {
        let missing = if has_resource { destination } else { "Resource" };
        v.schema(
            format!("These fields are required: [{missing}] ({owner}: Resource and {destination} go together)"),
            loc,
        );
    }
    if let Some(resource) = obj.get("Resource") {
        let at = loc.field("Resource");
        if let Some(text) = v.expect_string(resource, &at, &format!("'Resource' of {owner}")) {
            if !is_s3_resource(text, "putObject") {
                v.schema(
                    format!(
                        "The field 'Resource' does not match any of the allowed values. Examples: \
                         [arn:<partition>:states:::s3:putObject] ({owner} has '{text}')"
                    ),
                    &at,
                );
            }
        }
    }
    if let Some(parameters) = obj.get("Parameters") {
        if !cx.jsonata {
            v.check_template(parameters, &loc.field("Parameters"), &format!("'Parameters' of {owner}"));
        }
    }
    if let Some(config) = obj.get("WriterConfig") {
        let at = loc.field("WriterConfig");
        let config_owner = format!("WriterConfig of Map state '{}'", cx.name);
        if let Some(config) = v.expect_object(config, &at, &config_owner) {
            check_writer_config(v, cx, config, &at, &config_owner);
        }
    }
}

fn check_writer_config(v: &mut Validator, cx: &StateCx, config: &Map<String, Value>, loc: &Loc, owner: &str) {
    v.check_fields(config, loc, owner, cx.jsonata, &[("Transformation", Lang::Both), ("OutputType", Lang::Both)]);
    if let Some(value) = config.get("Transformation") {
        v.expect_enum(value, &loc.field("Transformation"), "Transformation", &["NONE", "COMPACT", "FLATTEN"]);
    }
    if let Some(value) = config.get("OutputType") {
        v.expect_enum(value, &loc.field("OutputType"), "OutputType", &["JSON", "JSONL"]);
    }
}
