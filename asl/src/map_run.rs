//! Distributed Map runs (features.md §2): what the interpreter resolves from a DISTRIBUTED Map
//! state and hands to a [`MapRunExecutor`], and the pure rules every executor shares — how an
//! item becomes a child input (ItemSelector, ItemBatcher), when failures exceed the tolerated
//! threshold, and AWS's ARN formats.
//!
//! The interpreter does no I/O, so reading items (ItemReader), running child executions and
//! writing results (ResultWriter) belong to the executor: in-process for `stepmap run`, on the
//! worker fleet for a cluster.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use crate::expr::PathRoot;
use crate::failure::{names, Failure};
use crate::interpreter::context_object::{ExecutionContext, StateContext};
use crate::interpreter::data_flow::Eval;
use crate::interpreter::Environment;
use crate::interpreter::Scope;
use crate::model::{PayloadTemplate, ReaderConfig, ResultWriter, StateMachine, StateMachineType};
use crate::payload::{JsonText, Payload};

/// Where the items of a map run come from.
#[derive(Clone, Debug)]
pub enum MapRunItems {
    /// The array ItemsPath selected from the state input.
    Inline(Vec<Value>),
    /// An `ItemReader`: its `Resource`, `ReaderConfig` and evaluated `Parameters`. `max_items`
    /// is `MaxItems`/`MaxItemsPath` as resolved (an integer; its sign is the reader's to judge,
    /// since AWS fails a negative value only after `MapRunStarted`).
    Reader { resource: String, config: Box<ReaderConfig>, parameters: Value, max_items: Option<i64> },
}

/// `ItemBatcher`, resolved.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Batching {
    pub max_items_per_batch: Option<u64>,
    pub max_input_bytes_per_batch: Option<u64>,
    /// `BatchInput`, evaluated against the Map's effective input.
    pub batch_input: Option<Value>,
}

/// `ToleratedFailureCount` / `ToleratedFailurePercentage`, resolved.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tolerance {
    pub count: Option<u64>,
    pub percentage: Option<f64>,
}

impl Tolerance {
    /// Whether `failed` failed or timed-out items out of `total` exceed the threshold. With
    /// neither field set any failure does; with one or both set, breaching either does
    /// (features.md §2.7: "failed% > ToleratedFailurePercentage or failed > ToleratedFailureCount").
    pub fn exceeded(&self, failed: u64, total: u64) -> bool {
        if failed == 0 {
            return false;
        }
        if self.count.is_none() && self.percentage.is_none() {
            return true;
        }
        let over_count = self.count.is_some_and(|count| failed > count);
        let over_percentage =
            self.percentage.is_some_and(|pct| total > 0 && (failed as f64) * 100.0 / (total as f64) > pct);
        over_count || over_percentage
    }

    /// The failure a map run ends with when the threshold is exceeded.
    pub fn failure() -> Failure {
        Failure::new(
            names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            "The specified tolerated failure threshold was exceeded",
        )
    }
}

/// `ResultWriter`, with its `Parameters` evaluated (`{"Bucket", "Prefix"}`).
#[derive(Clone, Debug)]
pub struct ResultWriterRequest {
    pub writer: ResultWriter,
    pub parameters: Value,
}

/// How each item becomes its child's input: the `ItemSelector` (or deprecated `Parameters`)
/// evaluated with `$` = the Map's effective input and `$$.Map.Item` = the item. It carries a
/// snapshot of what the template may read (Context Object, variables), so that whoever runs
/// the children — this process or a worker — evaluates it the same way.
#[derive(Clone, Debug)]
pub struct ItemSelection {
    pub template: Option<PayloadTemplate>,
    pub input: Value,
    pub execution: ExecutionContext,
    pub state_name: String,
    pub entered_time: String,
    /// The variables the template may read (the Map state's scope; cheap to clone).
    pub variables: Scope,
    /// `An error occurred while executing the state ...` prefix for `States.Runtime` causes.
    pub cause_prefix: String,
    /// Whether the template reads more of `$$.Map.Item` than its value (worked out on the
    /// first item).
    pub(crate) reads_whole_item: OnceLock<bool>,
}

/// One item as the reader gives it, with what `$$.Map.Item` shows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct MapItem {
    pub index: u64,
    pub value: Value,
    /// `$$.Map.Item.Key`, when iterating a JSON object.
    pub key: Option<String>,
    /// `$$.Map.Item.Source` (`S3://bucket/key`), for items read by an ItemReader.
    pub source: Option<String>,
}

impl ItemSelection {
    /// The child input of one item (before batching).
    pub fn select(&self, item: MapItem) -> Result<Value, Failure> {
        let Some(template) = &self.template else { return Ok(item.value) };
        // `$$.Map.Item` is built only for a selector that reads more of it than its value
        // (paths into the value are applied to the value directly).
        let whole = *self.reads_whole_item.get_or_init(|| {
            let mut whole = false;
            template.visit_paths(&mut |path| whole |= path.root == PathRoot::Context && path.item_value.is_none());
            whole
        });
        let (map_item, value) = if whole {
            let mut map_item = Map::with_capacity(4);
            map_item.insert("Index".into(), json!(item.index));
            map_item.insert("Value".into(), item.value);
            if let Some(key) = item.key {
                map_item.insert("Key".into(), Value::String(key));
            }
            if let Some(source) = item.source {
                map_item.insert("Source".into(), Value::String(source));
            }
            (Some(Value::Object(map_item)), None)
        } else {
            (None, Some(item.value))
        };
        let item_value = map_item.as_ref().and_then(|item| item.get("Value")).or(value.as_ref());
        let random = || rand::random::<u64>();
        let eval = Eval {
            state: StateContext {
                execution: &self.execution,
                state_name: &self.state_name,
                entered_time: &self.entered_time,
                retry_count: 0,
                task_token: None,
                map_item: map_item.as_ref(),
                item_value,
            },
            scope: &self.variables,
            random: &random,
            cause_prefix: self.cause_prefix.clone(),
        };
        eval.template(template, &self.input)
    }
}

/// The child input of a batch: `{"Items": [...], "BatchInput": {...}}`, `BatchInput` only
/// when configured (features.md §2.5). Text when every item is text (the same text the
/// value would have).
pub fn batch_input(items: Vec<Payload>, batching: &Batching) -> Payload {
    if items.iter().all(|item| matches!(item, Payload::Text(_))) {
        let length = items.iter().map(|item| item.len() + 1).sum::<usize>();
        let mut text = String::with_capacity(length + 32);
        text.push_str("{\"Items\":[");
        // Items rendered side by side, comma-separated, into one text (CSV rows,
        // `column_selection::RenderedRows`) are copied as one slice.
        let texts: Vec<&JsonText> =
            items.iter().filter_map(|item| if let Payload::Text(text) = item { Some(text) } else { None }).collect();
        let mut run = 0;
        while run < texts.len() {
            let mut last = run;
            while last + 1 < texts.len() && texts[last].followed_by(texts[last + 1]) {
                last += 1;
            }
            if run > 0 {
                text.push(',');
            }
            text.push_str(texts[run].through(texts[last]));
            run = last + 1;
        }
        text.push(']');
        if let Some(batch_input) = &batching.batch_input {
            text.push_str(",\"BatchInput\":");
            text.push_str(&batch_input.to_string());
        }
        text.push('}');
        return Payload::Text(JsonText::from_canonical(text));
    }
    let mut input = Map::with_capacity(2);
    input.insert("Items".into(), Value::Array(items.into_iter().map(Payload::into_value).collect()));
    if let Some(batch_input) = &batching.batch_input {
        input.insert("BatchInput".into(), batch_input.clone());
    }
    Payload::Value(Value::Object(input))
}

/// Everything a map run needs, resolved by the interpreter.
#[derive(Clone)]
pub struct MapRunRequest {
    /// `arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>`.
    pub map_run_arn: String,
    pub execution_arn: String,
    pub state_machine_name: String,
    pub state_name: String,
    pub label: Option<String>,
    pub items: MapRunItems,
    pub selection: ItemSelection,
    pub batching: Option<Batching>,
    /// The ItemProcessor as a state machine of its own: children are executions.
    pub processor: Arc<StateMachine>,
    pub execution_type: StateMachineType,
    /// 0: no limit beyond the executor's own (AWS: 10,000).
    pub max_concurrency: u64,
    pub tolerance: Tolerance,
    pub result_writer: Option<ResultWriterRequest>,
    pub region: String,
    pub account: String,
    /// 0: a new map run; k > 0: the k-th redrive of the map run `map_run_arn` (features.md
    /// §2.12), which re-runs only its unsuccessful children and writes its results under
    /// `Redrive-<k>/`.
    pub redrive_count: u32,
    /// The parent's clock, task invoker and randomness; children run with them.
    pub environment: Environment,
}

/// A map run the interpreter redrives instead of starting a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRunRedrive {
    pub map_run_arn: String,
    /// The count this redrive gives the map run (1 for its first).
    pub redrive_count: u32,
}

impl MapRunRedrive {
    /// Whether a map run that failed with `error` is redriven when its parent is; AWS starts a
    /// new map run instead after `States.DataLimitExceeded` or a `States.Runtime` failure
    /// (features.md §2.12).
    pub fn follows_failure(error: Option<&str>) -> bool {
        !matches!(error, Some(names::DATA_LIMIT_EXCEEDED | names::RUNTIME))
    }
}

/// Runs map runs. `Ok` is the Map state's result (the array of child outputs, or
/// `{MapRunArn, ResultWriterDetails}` with a ResultWriter); `Err` fails the Map state (and
/// goes through its Retry and Catch): `States.ItemReaderFailed`,
/// `States.ExceedToleratedFailureThreshold`, `States.ResultWriterFailed`, ...
pub trait MapRunExecutor: Send + Sync {
    fn run(&self, request: MapRunRequest) -> BoxFuture<'static, Result<Value, Failure>>;

    /// Asked when the Distributed Map state `state_name` starts an attempt: the map run to
    /// redrive, when the execution is being redriven from this state and its failed attempt
    /// ended in a map run that can be redriven (features.md §2.12). The interpreter then
    /// records `MapRunRedriven` and runs the request under that ARN and count. By default
    /// none: a redriven execution starts a new map run.
    fn redriven(&self, _state_name: &str) -> Option<MapRunRedrive> {
        None
    }
}

/// The ARN of a map run: the Label, or the state's name, identifies it within the machine.
pub fn map_run_arn(region: &str, account: &str, machine: &str, label: &str, id: &str) -> String {
    format!("arn:aws:states:{region}:{account}:mapRun:{machine}/{label}:{id}")
}

/// The ARN of a child execution of a map run.
pub fn child_execution_arn(
    region: &str,
    account: &str,
    kind: StateMachineType,
    machine: &str,
    label: &str,
    name: &str,
) -> String {
    let noun = match kind {
        StateMachineType::Standard => "execution",
        StateMachineType::Express => "express",
    };
    format!("arn:aws:states:{region}:{account}:{noun}:{machine}/{label}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_thresholds() {
        let none = Tolerance::default();
        assert!(!none.exceeded(0, 10));
        assert!(none.exceeded(1, 10));
        let count = Tolerance { count: Some(1), percentage: None };
        assert!(!count.exceeded(1, 10));
        assert!(count.exceeded(2, 10));
        // 20 of 1021 items failed under 5%: the run succeeds (AWS's DescribeMapRun example).
        let pct = Tolerance { count: None, percentage: Some(5.0) };
        assert!(!pct.exceeded(20, 1021));
        assert!(pct.exceeded(52, 1021));
        let both = Tolerance { count: Some(100), percentage: Some(1.0) };
        assert!(both.exceeded(20, 1021));
        assert!(!Tolerance { count: None, percentage: Some(100.0) }.exceeded(10, 10));
    }

    #[test]
    fn batch_input_has_items_and_optional_batch_input() {
        let text = |value: Value| Payload::Text(JsonText::canonicalize(value.to_string().as_bytes()).unwrap());
        let with_input = Batching { batch_input: Some(json!({"k": "é\n"})), ..Batching::default() };
        for (batching, expected) in [
            (Batching::default(), json!({"Items": [1, {"a": [2]}]})),
            (with_input, json!({"Items": [1, {"a": [2]}], "BatchInput": {"k": "é\n"}})),
        ] {
            let values = batch_input(vec![json!(1).into(), json!({"a": [2]}).into()], &batching);
            assert_eq!(values, Payload::Value(expected.clone()));
            // Items all in text: the text of the same value.
            let texts = batch_input(vec![text(json!(1)), text(json!({"a": [2]}))], &batching);
            let expected_text = expected.to_string();
            assert!(matches!(&texts, Payload::Text(t) if t.as_str() == expected_text), "{texts:?}");
            // Some in text, some not: a value.
            assert_eq!(batch_input(vec![text(json!(1)), json!({"a": [2]}).into()], &batching), expected);
        }
    }

    /// Texts that follow one another in a shared text (an array's elements) are copied as one
    /// slice; any other order or gap gives the same batch as separate texts.
    #[test]
    fn batch_input_copies_neighbouring_texts_as_one_slice() {
        let shared = |array: &str| JsonText::canonicalize(array.as_bytes()).unwrap().array_elements().unwrap();
        let e = shared(r#"[1,{"a":[2,","]},"x,y",[]]"#);
        let f = shared(r#"[1,{"a":[2,","]}]"#);
        let batch = |items: Vec<&JsonText>| {
            let items = items.into_iter().map(|t| Payload::Text(t.clone())).collect();
            batch_input(items, &Batching::default()).to_text()
        };
        let value =
            |items: &[&JsonText]| json!({"Items": items.iter().map(|t| t.to_value()).collect::<Vec<_>>()}).to_string();
        for items in [
            vec![&e[0], &e[1], &e[2], &e[3]],
            vec![&e[1], &e[2]],
            vec![&e[0], &e[2], &e[3]],
            vec![&e[1], &e[0]],
            vec![&e[0], &f[1], &e[2]],
            vec![&e[0], &e[1], &f[0], &f[1], &e[2]],
            vec![&e[3]],
        ] {
            assert_eq!(batch(items.clone()), value(&items));
        }
    }

    #[test]
    fn item_selection_sees_the_item_the_input_and_variables() {
        let template =
            PayloadTemplate::compile(&json!({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "in.$": "$.a", "x.$": "$x", "s.$": "$$.Map.Item.Source"}))
                .unwrap();
        let selection = ItemSelection {
            template: Some(template),
            input: json!({"a": 1}),
            execution: ExecutionContext { execution: json!({}), redrive_count: None, state_machine: json!({}) },
            state_name: "M".into(),
            entered_time: "t".into(),
            variables: {
                let mut scope = Scope::default();
                scope.set("x".to_string(), json!("var"));
                scope
            },
            cause_prefix: String::new(),
            reads_whole_item: OnceLock::new(),
        };
        let item = MapItem { index: 3, value: json!("row"), key: None, source: Some("S3://b/k".into()) };
        assert_eq!(selection.select(item).unwrap(), json!({"v": "row", "i": 3, "in": 1, "x": "var", "s": "S3://b/k"}));
    }

    /// A selector reading only `$$.Map.Item.Value` paths (the value itself, its fields, an
    /// intrinsic's argument) resolves them against the item's value, with the same results and
    /// failures as when `$$.Map.Item` is built for another path.
    #[test]
    fn value_only_selectors_select_as_whole_item_ones() {
        let selection = |template: Value| ItemSelection {
            template: Some(PayloadTemplate::compile(&template).unwrap()),
            input: json!({}),
            execution: ExecutionContext { execution: json!({}), redrive_count: None, state_machine: json!({}) },
            state_name: "M".into(),
            entered_time: "t".into(),
            variables: Scope::default(),
            cause_prefix: String::new(),
            reads_whole_item: OnceLock::new(),
        };
        let item = || MapItem { index: 7, value: json!({"qty": "3", "c": "de"}), key: None, source: None };
        let value_only = json!({"all.$": "$$.Map.Item.Value", "c.$": "$$.Map.Item.Value.c",
            "qty.$": "States.StringToJson($$.Map.Item.Value.qty)"});
        let selected = selection(value_only.clone()).select(item()).unwrap();
        assert_eq!(selected, json!({"all": {"qty": "3", "c": "de"}, "c": "de", "qty": 3}));
        let mut whole = value_only;
        whole["i.$"] = json!("$$.Map.Item.Index");
        let mut expected = selected;
        expected["i"] = json!(7);
        assert_eq!(selection(whole).select(item()).unwrap(), expected);

        // A missing field fails the same way on both paths.
        let missing = |extra: Option<&str>| {
            let mut template = json!({"n.$": "$$.Map.Item.Value.nope"});
            if let Some(path) = extra {
                template["i.$"] = json!(path);
            }
            selection(template).select(item()).unwrap_err().cause
        };
        assert!(missing(None).is_some());
        assert_eq!(missing(None), missing(Some("$$.Map.Item.Index")));
    }
}
