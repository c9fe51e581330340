//! Executions end to end through the interpreter, with an in-memory task invoker and
//! virtual time. (The crate's one integration-test binary.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use stepmap_asl::clock::VirtualClock;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{run_execution, Environment, ExecutionOutcome, ExecutionSpec, ExecutionStatus};
use stepmap_asl::model::{StateMachine, StateMachineType};
use stepmap_asl::payload::{JsonText, Payload};
use stepmap_asl::task::{TaskInvoker, TaskRequest};

type Handler = Box<dyn Fn(&Value, usize) -> Result<Value, Failure> + Send + Sync>;

/// Task handlers by resource ARN; each call gets the parameters and its 0-based call number.
#[derive(Default)]
struct FakeInvoker {
    handlers: HashMap<String, Handler>,
    calls: Mutex<HashMap<String, usize>>,
    /// Results are returned as JSON text (as a Lambda function's are), not as values.
    text_results: bool,
}

impl FakeInvoker {
    fn with(
        mut self,
        resource: &str,
        handler: impl Fn(&Value, usize) -> Result<Value, Failure> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.insert(resource.to_string(), Box::new(handler));
        self
    }
}

impl TaskInvoker for FakeInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let entry = calls.entry(request.resource_arn.clone()).or_default();
            *entry += 1;
            *entry - 1
        };
        let result = match self.handlers.get(&request.resource_arn) {
            Some(handler) => handler(&request.parameters.value(), call),
            None => Err(Failure::new("Test.NoHandler", request.resource_arn.clone())),
        };
        let text = self.text_results;
        let payload = move |value: Value| match text {
            true => Payload::Text(JsonText::canonicalize(value.to_string().as_bytes()).expect("a value's text")),
            false => Payload::Value(value),
        };
        Box::pin(async move { result.map(payload) })
    }
}

const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:work";

fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn execute_with(definition: Value, input: Value, invoker: FakeInvoker) -> ExecutionOutcome {
    let machine = Arc::new(StateMachine::from_value(definition).expect("definition loads"));
    let clock = VirtualClock::new(start_time());
    let env = Environment {
        clock: Arc::new(clock.clone()),
        invoker: Arc::new(invoker),
        random: Arc::new({
            let counter = AtomicUsize::new(0);
            move || counter.fetch_add(0x9E37_79B9, Ordering::Relaxed) as u64
        }),
        map_runs: None,
        events: None,
        history_payloads: true,
    };
    let spec = ExecutionSpec::new("machine", "exec", StateMachineType::Standard, "123456789012", "us-east-1", input);
    clock.block_on(run_execution(machine, spec, env))
}

fn execute(definition: Value, input: Value) -> ExecutionOutcome {
    execute_with(definition, input, FakeInvoker::default())
}

fn event_types(outcome: &ExecutionOutcome) -> Vec<&str> {
    outcome.history.iter().map(|e| e.event_type.as_str()).collect()
}

fn single(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

#[test]
fn data_flow_table() {
    // (name, state, input, expected output)
    let cases = vec![
        ("pass copies input", json!({"Type": "Pass", "End": true}), json!({"a": 1}), json!({"a": 1})),
        ("result replaces", json!({"Type": "Pass", "Result": {"x": 1}, "End": true}), json!({"a": 1}), json!({"x": 1})),
        (
            "result path merges",
            json!({"Type": "Pass", "Result": 5, "ResultPath": "$.b.c", "End": true}),
            json!({"a": 1}),
            json!({"a": 1, "b": {"c": 5}}),
        ),
        (
            "result path null keeps input",
            json!({"Type": "Pass", "Result": 5, "ResultPath": null, "End": true}),
            json!({"a": 1}),
            json!({"a": 1}),
        ),
        (
            "input path",
            json!({"Type": "Pass", "InputPath": "$.a", "End": true}),
            json!({"a": {"b": 2}}),
            json!({"b": 2}),
        ),
        ("input path null", json!({"Type": "Pass", "InputPath": null, "End": true}), json!({"a": 1}), json!({})),
        ("output path", json!({"Type": "Pass", "OutputPath": "$.a", "End": true}), json!({"a": [1, 2]}), json!([1, 2])),
        ("output path null", json!({"Type": "Pass", "OutputPath": null, "End": true}), json!({"a": 1}), json!({})),
        (
            "parameters template",
            json!({"Type": "Pass", "Parameters": {"x.$": "$.a", "lit": "v", "deep": {"y.$": "$.b[1]"}}, "End": true}),
            json!({"a": 1, "b": [5, 6]}),
            json!({"x": 1, "lit": "v", "deep": {"y": 6}}),
        ),
        (
            "context object",
            json!({"Type": "Pass", "Parameters": {"name.$": "$$.State.Name", "exec.$": "$$.Execution.Name", "in.$": "$$.Execution.Input.a"}, "End": true}),
            json!({"a": 7}),
            json!({"name": "S", "exec": "exec", "in": 7}),
        ),
        (
            "intrinsic in parameters",
            json!({"Type": "Pass", "Parameters": {"s.$": "States.Format('Hello, {}!', $.who)"}, "End": true}),
            json!({"who": "world"}),
            json!({"s": "Hello, world!"}),
        ),
        (
            "indefinite path gathers",
            json!({"Type": "Pass", "Parameters": {"ids.$": "$.items[*].id"}, "End": true}),
            json!({"items": [{"id": 1}, {"id": 2}]}),
            json!({"ids": [1, 2]}),
        ),
    ];
    for (name, state, input, expected) in cases {
        let outcome = execute(single(state), input);
        assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{name}: {:?} {:?}", outcome.error, outcome.cause);
        assert_eq!(outcome.output.map(Payload::into_value), Some(expected), "{name}");
    }
}

#[test]
fn missing_paths_fail_with_aws_runtime_causes() {
    let cases = vec![
        (
            json!({"Type": "Pass", "InputPath": "$.nope", "End": true}),
            "An error occurred while executing the state 'S' (entered at the event id #2). Invalid path '$.nope' : No results for path: $['nope']",
        ),
        (
            json!({"Type": "Pass", "Parameters": {"v.$": "$.nope"}, "End": true}),
            "An error occurred while executing the state 'S' (entered at the event id #2). The JSONPath '$.nope' specified for the field 'v.$' could not be found in the input '{\"a\":1}'",
        ),
    ];
    for (state, cause) in cases {
        let outcome = execute(single(state), json!({"a": 1}));
        assert_eq!(outcome.status, ExecutionStatus::Failed);
        assert_eq!(outcome.error.as_deref(), Some("States.Runtime"));
        assert_eq!(outcome.cause.as_deref(), Some(cause));
        assert_eq!(event_types(&outcome), vec!["ExecutionStarted", "PassStateEntered", "ExecutionFailed"]);
    }
}

#[test]
fn variables_are_assigned_after_the_state_and_scoped() {
    let definition = json!({
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": {"n": 1}, "Assign": {"count.$": "$.n", "fixed": "x"}, "Next": "B"},
            "B": {"Type": "Pass", "Parameters": {"c.$": "$count", "f.$": "$fixed"}, "Assign": {"count.$": "States.MathAdd($count, 1)"}, "Next": "C"},
            "C": {"Type": "Pass", "Parameters": {"c.$": "$count", "prev.$": "$.c"}, "End": true}
        }
    });
    let outcome = execute(definition, json!({}));
    assert_eq!(outcome.output.map(Payload::into_value), Some(json!({"c": 2, "prev": 1})), "{:?}", outcome.cause);
}

#[test]
fn choice_routes_and_defaults() {
    let definition = json!({
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [
                {"Variable": "$.n", "IsPresent": false, "Next": "Missing"},
                {"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Not": {"Variable": "$.s", "StringEquals": "no"}}], "Next": "Big"}
            ], "Default": "Small"},
            "Big": {"Type": "Pass", "Result": "big", "End": true},
            "Missing": {"Type": "Pass", "Result": "missing", "End": true},
            "Small": {"Type": "Pass", "Result": "small", "End": true}
        }
    });
    for (input, expected) in [
        (json!({"n": 5, "s": "yes"}), "big"),
        (json!({"n": 5, "s": "no"}), "small"),
        (json!({}), "missing"),
        (json!({"n": "5"}), "small"),
    ] {
        assert_eq!(
            execute(definition.clone(), input.clone()).output.map(Payload::into_value),
            Some(json!(expected)),
            "{input}"
        );
    }
    // A Variable path that selects nothing is a States.Runtime failure (AWS), unlike a
    // type mismatch, which is just false.
    let missing = execute(definition.clone(), json!({"n": 5}));
    assert_eq!(missing.error.as_deref(), Some("States.Runtime"));
    assert!(missing.cause.unwrap_or_default().contains("Invalid path '$.s'"));
    let no_default = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
        {"Variable": "$.n", "NumericEquals": 1, "Next": "X"}]}, "X": {"Type": "Succeed"}}});
    let outcome = execute(no_default, json!({"n": 2}));
    assert_eq!(outcome.error.as_deref(), Some("States.NoChoiceMatched"));
}

#[test]
fn retry_waits_with_backoff_in_virtual_time() {
    let definition = single(json!({
        "Type": "Task", "Resource": LAMBDA, "End": true,
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 3, "BackoffRate": 2, "MaxAttempts": 3}]
    }));
    let invoker = FakeInvoker::default().with(LAMBDA, |_, call| {
        if call < 3 {
            Err(Failure::new("Flaky", "try again"))
        } else {
            Ok(json!("done"))
        }
    });
    let outcome = execute_with(definition, json!({}), invoker);
    assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{:?}", outcome.cause);
    let scheduled: Vec<i64> = outcome
        .history
        .iter()
        .filter(|e| e.event_type == "LambdaFunctionScheduled")
        .map(|e| (e.timestamp - start_time()).num_seconds())
        .collect();
    assert_eq!(scheduled, vec![0, 3, 9, 21]);
}

#[test]
fn retries_exhausted_then_caught() {
    let definition = json!({
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": LAMBDA, "Next": "Done",
                  "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"}]},
            "Handle": {"Type": "Pass", "End": true},
            "Done": {"Type": "Succeed"}
        }
    });
    let invoker = FakeInvoker::default().with(LAMBDA, |_, _| Err(Failure::new("Boom", "it broke")));
    let outcome = execute_with(definition, json!({"keep": true}), invoker);
    assert_eq!(
        outcome.output.clone().map(Payload::into_value),
        Some(json!({"keep": true, "error": {"Error": "Boom", "Cause": "it broke"}}))
    );
    assert_eq!(
        event_types(&outcome),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
}

#[test]
fn wait_forms_use_virtual_time() {
    let definition = json!({
        "StartAt": "W1",
        "States": {
            "W1": {"Type": "Wait", "Seconds": 3600, "Next": "W2"},
            "W2": {"Type": "Wait", "SecondsPath": "$.s", "Next": "W3"},
            "W3": {"Type": "Wait", "Timestamp": "2024-01-02T00:00:00Z", "Next": "W4"},
            "W4": {"Type": "Wait", "TimestampPath": "$.t", "End": true}
        }
    });
    let outcome = execute(definition, json!({"s": 60, "t": "2024-01-01T00:00:00Z"}));
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!((outcome.stop_time - start_time()).num_seconds(), 86400);
    let bad = execute(single(json!({"Type": "Wait", "SecondsPath": "$.s", "End": true})), json!({"s": -1}));
    assert_eq!(
        bad.cause.as_deref(),
        Some("An error occurred while executing the state 'S' (entered at the event id #2). The SecondsPath parameter references a negative value: $.s == -1")
    );
}

#[test]
fn parallel_and_inline_map() {
    let definition = json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Parallel", "Next": "M", "ResultPath": "$.branches", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Result": 1, "End": true}}},
                {"StartAt": "B2", "States": {"B2": {"Type": "Wait", "Seconds": 5, "Next": "B2b"}, "B2b": {"Type": "Pass", "Result": 2, "End": true}}}
            ]},
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.mapped",
                  "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "k.$": "$.k"},
                  "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}},
                  "End": true}
        }
    });
    let outcome = execute(definition, json!({"items": ["a", "b", "c"], "k": 0}));
    assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{:?}", outcome.cause);
    let output = outcome.output.unwrap().into_value();
    assert_eq!(output["branches"], json!([1, 2]));
    assert_eq!(
        output["mapped"],
        json!([{"v": "a", "i": 0, "k": 0}, {"v": "b", "i": 1, "k": 0}, {"v": "c", "i": 2, "k": 0}])
    );
}

#[test]
fn map_iteration_failure_fails_the_map_with_its_error() {
    let definition = single(json!({
        "Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "ItemError", "Cause": "bad item"}}}
    }));
    let outcome = execute(definition, json!([1]));
    assert_eq!(outcome.error.as_deref(), Some("ItemError"));
    assert_eq!(
        event_types(&outcome),
        vec![
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapIterationStarted",
            "FailStateEntered",
            "MapIterationFailed",
            "MapStateFailed",
            "ExecutionFailed"
        ]
    );
}

#[test]
fn task_timeout_and_machine_timeout() {
    let slow: FakeInvoker = FakeInvoker::default();
    // No handler: the fake fails at once, so use a Wait for the machine timeout instead.
    let definition =
        json!({"TimeoutSeconds": 10, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let outcome = execute_with(definition, json!({}), slow);
    assert_eq!(outcome.status, ExecutionStatus::TimedOut);
    assert_eq!(outcome.error.as_deref(), Some("States.Timeout"));
    assert_eq!((outcome.stop_time - start_time()).num_seconds(), 10);
}

#[test]
fn fail_state_paths_and_intrinsics() {
    let definition = single(json!({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('code {}', $.c)"}));
    let outcome = execute(definition, json!({"e": "MyError", "c": 42}));
    assert_eq!(outcome.error.as_deref(), Some("MyError"));
    assert_eq!(outcome.cause.as_deref(), Some("code 42"));
}

#[test]
fn oversized_output_is_data_limit_exceeded() {
    let big = "x".repeat(300 * 1024);
    let outcome = execute(single(json!({"Type": "Pass", "Result": big, "End": true})), json!({}));
    assert_eq!(outcome.error.as_deref(), Some("States.DataLimitExceeded"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from)
        ]
    }

    fn json_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
        proptest::collection::btree_map("[a-e]", json_leaf(), 0..6).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// ResultPath merges never lose input fields they do not target.
        #[test]
        fn result_path_keeps_untargeted_fields(input in json_object(), target in "[f-j]", inner in "[a-e]", result in json_leaf()) {
            let state = json!({"Type": "Pass", "Result": result, "ResultPath": format!("$.{target}.{inner}"), "End": true});
            let outcome = execute(single(state), Value::Object(input.clone()));
            prop_assert_eq!(outcome.status, ExecutionStatus::Succeeded);
            let output = outcome.output.unwrap().into_value();
            for (key, value) in &input {
                if key != &target {
                    prop_assert_eq!(&output[key], value);
                }
            }
            prop_assert_eq!(&output[&target][&inner], &result);
        }
    }
}

/// A Task result that arrives as text stays text when it becomes the execution's output
/// untouched, and is parsed when a field looks inside it or a next state takes it; either
/// way the output is the same value.
#[test]
fn a_task_result_in_text_is_parsed_only_when_a_state_looks_inside_it() {
    let task = |extra: Value| {
        let mut state = json!({"Type": "Task", "Resource": LAMBDA, "End": true});
        state.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        state
    };
    let result = json!({"rows": [{"id": 1, "name": "caf\u{e9}"}], "n": 1.5});
    let cases = [
        ("passed through", single(task(json!({}))), true, result.clone()),
        (
            "ResultPath $ and OutputPath $",
            single(task(json!({"ResultPath": "$", "OutputPath": "$"}))),
            true,
            result.clone(),
        ),
        ("ResultPath", single(task(json!({"ResultPath": "$.r"}))), false, json!({"in": 1, "r": result})),
        ("ResultSelector", single(task(json!({"ResultSelector": {"n.$": "$.n"}}))), false, json!({"n": 1.5})),
        ("OutputPath", single(task(json!({"OutputPath": "$.n"}))), false, json!(1.5)),
        ("Assign", single(task(json!({"Assign": {"x.$": "$.n"}}))), false, result.clone()),
        (
            "a next state",
            json!({"StartAt": "T", "States": {
                "T": {"Type": "Task", "Resource": LAMBDA, "Next": "P"},
                "P": {"Type": "Pass", "End": true}}}),
            false,
            result.clone(),
        ),
    ];
    for (name, definition, stays_text, expected) in cases {
        let returned = result.clone();
        let invoker =
            FakeInvoker { text_results: true, ..FakeInvoker::default() }.with(LAMBDA, move |_, _| Ok(returned.clone()));
        let outcome = execute_with(definition, json!({"in": 1}), invoker);
        let output = outcome.output.clone().unwrap_or_else(|| panic!("{name}: {:?}", outcome.cause));
        assert_eq!(matches!(output, Payload::Text(_)), stays_text, "{name}");
        assert_eq!(output.into_value(), expected, "{name}");
        // The history holds the same texts as with a value result.
        let succeeded = outcome.history.iter().find(|e| e.event_type == "ExecutionSucceeded").unwrap();
        assert_eq!(succeeded.details.as_ref().unwrap()["output"], json!(expected.to_string()), "{name}");
    }
}
