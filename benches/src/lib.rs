//! Shared pieces of the benchmarks: workloads and a no-op environment.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use stepmap_asl::clock::VirtualClock;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{run_execution, Environment, ExecutionOutcome, ExecutionSpec};
use stepmap_asl::model::{StateMachine, StateMachineType};
use stepmap_asl::payload::Payload;
use stepmap_asl::task::{TaskInvoker, TaskRequest};

/// A task invoker that returns its input: measures the engine, not the task.
pub struct EchoInvoker;

impl TaskInvoker for EchoInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        Box::pin(futures::future::ready(Ok(request.parameters)))
    }
}

/// A chain of `length` Pass states.
pub fn pass_chain(length: usize) -> Value {
    let mut states = Map::new();
    for i in 0..length {
        let mut state = json!({"Type": "Pass"});
        if i + 1 == length {
            state["End"] = json!(true);
        } else {
            state["Next"] = json!(format!("P{}", i + 1));
        }
        states.insert(format!("P{i}"), state);
    }
    json!({"StartAt": "P0", "States": states})
}

/// A 10-state JSONPath workflow exercising the common data-flow features: payload
/// templates, intrinsics, variables, Choice, a Task, an inline Map and a Parallel.
pub fn ten_state_workflow() -> Value {
    json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"id.$": "$.order.id", "qty.$": "States.StringToJson($.order.qty)",
                        "lines.$": "$.order.lines", "tags.$": "States.StringSplit($.order.tags, ',')"},
                        "Assign": {"orderId.$": "$.id"}, "Next": "Route"},
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.qty", "NumericGreaterThan": 10, "Next": "Bulk"}], "Default": "Price"},
            "Bulk": {"Type": "Pass", "Result": true, "ResultPath": "$.bulk", "Next": "Price"},
            "Price": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:price",
                      "ResultSelector": {"lines.$": "$.lines"}, "ResultPath": "$.priced", "Next": "Lines"},
            "Lines": {"Type": "Map", "ItemsPath": "$.lines", "ItemSelector": {"sku.$": "$$.Map.Item.Value.sku", "n.$": "$$.Map.Item.Index"},
                      "ItemProcessor": {"StartAt": "Line", "States": {"Line": {"Type": "Pass", "End": true}}},
                      "ResultPath": "$.lineResults", "Next": "Both"},
            "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "Label", "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": true}}},
                {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": 2, "End": true}}}]},
            "Label": {"Type": "Pass", "Parameters": {"label.$": "States.Format('order {} x{}', $orderId, $.qty)"}, "ResultPath": "$.label", "Next": "Hash"},
            "Hash": {"Type": "Pass", "Parameters": {"h.$": "States.Hash($.label.label, 'SHA-256')"}, "ResultPath": "$.hash", "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [{"Variable": "$.hash.h", "IsString": true, "Next": "Done"}], "Default": "Done"},
            "Done": {"Type": "Succeed", "OutputPath": "$.label"}
        }
    })
}

pub fn ten_state_input() -> Value {
    json!({"order": {"id": "o-1", "qty": "12", "tags": "a,b,c",
                     "lines": [{"sku": "x"}, {"sku": "y"}, {"sku": "z"}]}})
}

pub fn load(definition: Value) -> Arc<StateMachine> {
    Arc::new(StateMachine::from_value(definition).expect("benchmark definition loads"))
}

/// Runs one execution in virtual time, on this thread.
pub fn execute(machine: &Arc<StateMachine>, input: &Value) -> ExecutionOutcome {
    let clock = VirtualClock::new(chrono::Utc::now());
    let env = Environment::new(Arc::new(clock.clone()), Arc::new(EchoInvoker));
    let spec =
        ExecutionSpec::new("bench", "run", StateMachineType::Standard, "123456789012", "us-east-1", input.clone());
    clock.block_on(run_execution(machine.clone(), spec, env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepmap_asl::interpreter::ExecutionStatus;

    /// The benchmark workloads must stay valid, or the numbers measure an early failure.
    #[test]
    fn workloads_succeed() {
        let chain = execute(&load(pass_chain(50)), &json!({"a": 1}));
        assert_eq!(chain.status, ExecutionStatus::Succeeded);
        assert_eq!(chain.output.map(Payload::into_value), Some(json!({"a": 1})));
        let outcome = execute(&load(ten_state_workflow()), &ten_state_input());
        assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{:?} {:?}", outcome.error, outcome.cause);
        assert_eq!(outcome.output.map(Payload::into_value), Some(json!({"label": "order o-1 x12"})));
    }
}
