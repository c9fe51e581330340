//! The AWS-recorded Distributed Map cases (`../shared/conformance/corpus/distributed_map`):
//! every case with an `s3:getObject` ItemReader this crate supports is read through the reader,
//! and the items are checked against what the recorded output shows. The Map states of these
//! cases pass items through unchanged (a single Pass state, no ItemSelector), so the output is
//! the items, or with an ItemBatcher the items of each `{"Items": [...]}` in turn. Failed cases
//! are checked against the recorded error and cause. Skipped when `../shared` is absent.

use std::path::PathBuf;

use serde_json::{json, Value};
use stepmap_storage::item_reader::resolve_max_items;
use stepmap_storage::{BatchLimits, ItemReader, ItemReaderSpec, StorageError};

use super::harness::{put, read_all, Backend};

fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/corpus/distributed_map");
    dir.is_dir().then_some(dir)
}

/// The Map state with an ItemReader, and the states before it (for `Assign`ed variables).
fn map_state(definition: &Value) -> Option<(&str, &Value)> {
    definition["States"].as_object()?.iter().find(|(_, s)| s.get("ItemReader").is_some()).map(|(n, s)| (n.as_str(), s))
}

/// Variables assigned by Pass states (the cases assign constants).
fn variables(definition: &Value) -> serde_json::Map<String, Value> {
    let mut vars = serde_json::Map::new();
    for state in definition["States"].as_object().into_iter().flat_map(|s| s.values()) {
        if let Some(assign) = state.get("Assign").and_then(Value::as_object) {
            vars.extend(assign.clone());
        }
    }
    vars
}

/// Evaluates the simple references the cases use: `$.Field`, `$var`, `{% $states.input.Field %}`.
fn evaluate(text: &str, input: &Value, vars: &serde_json::Map<String, Value>) -> Option<Value> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("{%").and_then(|t| t.strip_suffix("%}")) {
        let inner = inner.trim();
        if let Some(field) = inner.strip_prefix("$states.input.") {
            return input.get(field).cloned();
        }
        // `$maxItems := 2`-style constant assignments.
        return inner.rsplit(":=").next().and_then(|v| serde_json::from_str(v.trim()).ok());
    }
    if let Some(field) = text.strip_prefix("$.") {
        return input.get(field).cloned();
    }
    text.strip_prefix('$').and_then(|name| vars.get(name).cloned())
}

fn parameters(reader: &Value, input: &Value, vars: &serde_json::Map<String, Value>) -> Value {
    let template = reader.get("Parameters").or_else(|| reader.get("Arguments")).cloned().unwrap_or(json!({}));
    let mut out = serde_json::Map::new();
    for (key, value) in template.as_object().into_iter().flatten() {
        match (key.strip_suffix(".$"), value) {
            (Some(name), Value::String(path)) => {
                out.insert(name.to_string(), evaluate(path, input, vars).unwrap_or(Value::Null));
            }
            (None, Value::String(text)) if text.starts_with("{%") => {
                out.insert(key.clone(), evaluate(text, input, vars).unwrap_or(Value::Null));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// The items the recorded output shows.
fn recorded_items(output: &Value, batched: bool) -> Vec<Value> {
    let results = output.as_array().cloned().unwrap_or_default();
    if batched {
        results.iter().flat_map(|b| b["Items"].as_array().cloned().unwrap_or_default()).collect()
    } else {
        results
    }
}

fn batch_limit(batcher: &Value, vars: &serde_json::Map<String, Value>, field: &str) -> Option<u64> {
    let value = batcher.get(field).cloned().or_else(|| {
        let path = batcher.get(format!("{field}Path"))?.as_str()?;
        evaluate(path, &Value::Null, vars)
    })?;
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

#[tokio::test]
async fn distributed_map_corpus_items() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: ../shared/conformance is absent");
        return;
    };
    let mut checked = 0;
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let case: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let definition = &case["definition"];
        let Some((_, map)) = map_state(definition) else { continue };
        let reader = &map["ItemReader"];
        let resource = reader["Resource"].as_str().unwrap_or_default();
        if !resource.ends_with("s3:getObject") || map.get("ItemSelector").is_some() || map.get("Parameters").is_some() {
            continue;
        }
        let input: Value = serde_json::from_str(case["input_text"].as_str().unwrap()).unwrap();
        let vars = variables(definition);
        let backend = Backend::memory();
        for object in case["fixtures"]["s3_objects"].as_array().into_iter().flatten() {
            put(
                &backend.stores,
                object["bucket"].as_str().unwrap(),
                object["key"].as_str().unwrap(),
                object["body"].as_str().unwrap().to_string(),
            )
            .await;
        }
        let config_value = reader["ReaderConfig"].clone();
        // MaxItems: a literal, a JSONata expression or a path.
        let max_items = match (config_value.get("MaxItems"), config_value.get("MaxItemsPath").and_then(Value::as_str)) {
            (Some(Value::String(expression)), _) => Ok(evaluate(expression, &input, &vars).unwrap_or(Value::Null)),
            (Some(literal), _) => Ok(literal.clone()),
            (None, Some(path)) => evaluate(path, &input, &vars).ok_or(()),
            (None, None) => Ok(json!(0)),
        };
        let path_text = config_value.get("MaxItemsPath").and_then(Value::as_str).unwrap_or("MaxItems").to_string();
        let mut config_value = config_value;
        if let Some(object) = config_value.as_object_mut() {
            object.remove("MaxItems");
            object.remove("MaxItemsPath");
        }
        let config = serde_json::from_value(config_value).unwrap();
        let parameters = parameters(reader, &input, &vars);
        let expected = &case["expected"];
        let result: Result<Vec<Value>, StorageError> = async {
            let max_items = resolve_max_items(&max_items.unwrap_or(Value::Null), &path_text)?;
            let spec = ItemReaderSpec::new(resource, &config, &parameters, max_items)?;
            let opened = ItemReader::open(backend.stores.clone(), spec).await?;
            let items = read_all(&opened).await?;
            // The batches of the recorded run, when it had an ItemBatcher.
            if let Some(batcher) = map.get("ItemBatcher") {
                let limits = BatchLimits {
                    max_items_per_batch: batch_limit(batcher, &vars, "MaxItemsPerBatch"),
                    max_input_bytes_per_batch: batch_limit(batcher, &vars, "MaxInputBytesPerBatch"),
                    batch_input_bytes: 0,
                };
                let plan = opened.plan(&limits, None).await?;
                let recorded: Vec<u64> = expected["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["Items"].as_array().unwrap().len() as u64)
                    .collect();
                assert_eq!(plan.iter().map(|b| b.items).collect::<Vec<_>>(), recorded, "{name}: batch sizes");
            }
            Ok(items.into_iter().map(|i| i.value).collect())
        }
        .await;
        match expected["status"].as_str() {
            Some("SUCCEEDED") => {
                let items = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let recorded = recorded_items(&expected["output"], map.get("ItemBatcher").is_some());
                assert_eq!(items, recorded, "{name}");
            }
            _ => {
                let failure = result.expect_err(&name).failure();
                assert_eq!(failure.error.as_deref(), expected["error"].as_str(), "{name}");
                let cause = expected["cause"].as_str().unwrap_or_default();
                assert!(cause.ends_with(failure.cause.as_deref().unwrap_or("?")), "{name}: {cause:?} vs {failure:?}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} corpus cases were checked");
}
