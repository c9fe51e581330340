//! A map run as data: everything a worker needs to run any part of it, serialisable so that it
//! can travel from the coordinator that plans the run to the workers that run its children
//! (DESIGN.md §3). [`MapRunRequest::to_job`] writes it; [`MapRunJob::into_request`] gives a
//! worker back the request its children are run from, with the worker's own environment.
//!
//! Templates travel as written (they are compiled again on the worker), the ItemProcessor as
//! its definition, and the variables the ItemSelector may read as one flat object.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::failure::Failure;
use crate::interpreter::{Environment, ExecutionContext, RedriveCount, Scope};
use crate::map_run::{Batching, ItemSelection, MapRunItems, MapRunRequest, ResultWriterRequest, Tolerance};
use crate::model::{PayloadTemplate, ReaderConfig, ResultWriter, StateMachine, StateMachineType};

/// A serialisable [`MapRunRequest`] (without the environment, which is the runner's).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapRunJob {
    pub map_run_arn: String,
    pub execution_arn: String,
    pub state_machine_name: String,
    pub state_name: String,
    pub label: Option<String>,
    pub items: JobItems,
    pub selection: JobSelection,
    pub batching: Option<Batching>,
    /// The ItemProcessor's `{StartAt, States, ...}` as written, with the parent's
    /// `QueryLanguage` when it has one.
    pub processor: Value,
    pub execution_type: StateMachineType,
    pub max_concurrency: u64,
    pub tolerated_failure_count: Option<u64>,
    pub tolerated_failure_percentage: Option<f64>,
    pub result_writer: Option<JobResultWriter>,
    pub region: String,
    pub account: String,
    /// Where the children's executions are archived (STANDARD children, whose history is
    /// inspectable): a bucket of the cluster's object store. Set by the coordinator that
    /// plans the run; `None`: not archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_archive_bucket: Option<String>,
    /// [`MapRunRequest::redrive_count`].
    #[serde(default)]
    pub redrive_count: u32,
}

/// [`MapRunItems`], serialisable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "Kind", rename_all = "PascalCase")]
pub enum JobItems {
    #[serde(rename_all = "PascalCase")]
    Inline { items: Vec<Value> },
    #[serde(rename_all = "PascalCase")]
    Reader { resource: String, config: Box<ReaderConfig>, parameters: Value, max_items: Option<i64> },
}

/// [`ItemSelection`], serialisable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobSelection {
    pub item_selector: Option<Value>,
    pub input: Value,
    /// `$$.Execution` and `$$.StateMachine` of the parent.
    pub execution: Value,
    pub state_machine: Value,
    pub redrive_count: Option<u64>,
    pub state_name: String,
    pub entered_time: String,
    pub variables: Map<String, Value>,
    pub cause_prefix: String,
}

/// [`ResultWriterRequest`], serialisable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobResultWriter {
    pub writer: ResultWriter,
    pub parameters: Value,
}

impl MapRunRequest {
    /// This request as data for workers.
    pub fn to_job(&self) -> MapRunJob {
        let selection = &self.selection;
        MapRunJob {
            map_run_arn: self.map_run_arn.clone(),
            execution_arn: self.execution_arn.clone(),
            state_machine_name: self.state_machine_name.clone(),
            state_name: self.state_name.clone(),
            label: self.label.clone(),
            items: match &self.items {
                MapRunItems::Inline(items) => JobItems::Inline { items: items.clone() },
                MapRunItems::Reader { resource, config, parameters, max_items } => JobItems::Reader {
                    resource: resource.clone(),
                    config: config.clone(),
                    parameters: parameters.clone(),
                    max_items: *max_items,
                },
            },
            selection: JobSelection {
                item_selector: selection.template.as_ref().map(PayloadTemplate::to_value),
                input: selection.input.clone(),
                execution: selection.execution.execution.clone(),
                state_machine: selection.execution.state_machine.clone(),
                redrive_count: selection.execution.redrive_count.as_ref().map(RedriveCount::get),
                state_name: selection.state_name.clone(),
                entered_time: selection.entered_time.clone(),
                variables: selection.variables.flatten(),
                cause_prefix: selection.cause_prefix.clone(),
            },
            batching: self.batching.clone(),
            processor: processor_definition(&self.processor),
            execution_type: self.execution_type,
            max_concurrency: self.max_concurrency,
            tolerated_failure_count: self.tolerance.count,
            tolerated_failure_percentage: self.tolerance.percentage,
            result_writer: self
                .result_writer
                .as_ref()
                .map(|w| JobResultWriter { writer: w.writer.clone(), parameters: w.parameters.clone() }),
            region: self.region.clone(),
            account: self.account.clone(),
            child_archive_bucket: None,
            redrive_count: self.redrive_count,
        }
    }
}

/// The processor machine's definition as data.
fn processor_definition(processor: &StateMachine) -> Value {
    let mut definition = processor.definition.as_deref().cloned().unwrap_or(Value::Null);
    if let (Value::Object(fields), Some(language)) = (&mut definition, &processor.query_language) {
        fields.entry("QueryLanguage").or_insert_with(|| Value::String(language.clone()));
    }
    definition
}

impl MapRunJob {
    /// The request to run this job's children with `environment` (the runner's clock, task
    /// invoker and map run executor). Fails (`States.Runtime`) on a job this build cannot read.
    pub fn into_request(self, environment: Environment) -> Result<MapRunRequest, Failure> {
        let invalid = |what: &str, error: String| Failure::runtime(format!("the map run's {what} is invalid: {error}"));
        let processor =
            StateMachine::from_value(self.processor).map_err(|e| invalid("ItemProcessor", e.to_string()))?;
        let template = self
            .selection
            .item_selector
            .as_ref()
            .map(PayloadTemplate::compile)
            .transpose()
            .map_err(|e| invalid("ItemSelector", e))?;
        let mut variables = Scope::default();
        for (name, value) in self.selection.variables {
            variables.set(name, value);
        }
        Ok(MapRunRequest {
            map_run_arn: self.map_run_arn,
            execution_arn: self.execution_arn,
            state_machine_name: self.state_machine_name,
            state_name: self.state_name,
            label: self.label,
            items: match self.items {
                JobItems::Inline { items } => MapRunItems::Inline(items),
                JobItems::Reader { resource, config, parameters, max_items } => {
                    MapRunItems::Reader { resource, config, parameters, max_items }
                }
            },
            selection: ItemSelection {
                template,
                input: self.selection.input,
                execution: ExecutionContext {
                    execution: self.selection.execution,
                    redrive_count: self.selection.redrive_count.map(RedriveCount::fixed),
                    state_machine: self.selection.state_machine,
                },
                state_name: self.selection.state_name,
                entered_time: self.selection.entered_time,
                variables,
                cause_prefix: self.selection.cause_prefix,
                reads_whole_item: OnceLock::new(),
            },
            batching: self.batching,
            processor: Arc::new(processor),
            execution_type: self.execution_type,
            max_concurrency: self.max_concurrency,
            tolerance: Tolerance { count: self.tolerated_failure_count, percentage: self.tolerated_failure_percentage },
            result_writer: self
                .result_writer
                .map(|w| ResultWriterRequest { writer: w.writer, parameters: w.parameters }),
            region: self.region,
            account: self.account,
            redrive_count: self.redrive_count,
            environment,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::map_run::MapItem;
    use crate::task::{TaskInvoker, TaskRequest};

    struct NoTasks;

    impl TaskInvoker for NoTasks {
        fn invoke(
            &self,
            _: TaskRequest,
        ) -> futures::future::BoxFuture<'static, Result<crate::payload::Payload, Failure>> {
            Box::pin(async { Err(Failure::runtime("no tasks here")) })
        }
    }

    #[test]
    fn templates_round_trip_as_written() {
        let written = json!({
            "literal": {"a": [1, 2]},
            "path.$": "$.a",
            "call.$": "States.Format('{}', $$.Map.Item.Index)",
            "nested": {"v.$": "$$.Map.Item.Value", "k": true},
            "list": [{"x.$": "$x"}, 3]
        });
        let template = PayloadTemplate::compile(&written).unwrap();
        assert_eq!(template.to_value(), written);
        assert_eq!(PayloadTemplate::compile(&template.to_value()).unwrap(), template);
    }

    #[test]
    fn a_job_selects_items_as_its_request_did() {
        let definition = json!({
            "StartAt": "M",
            "States": {"M": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}
                },
                "ItemSelector": {"v.$": "$$.Map.Item.Value", "x.$": "$x", "in.$": "$.a"},
                "End": true
            }}
        });
        let machine = StateMachine::from_value(definition).unwrap();
        let crate::model::State::Map(map) = machine.block.state("M").unwrap() else { panic!("a Map state") };
        let processor = map.processor().unwrap();
        let mut outer = Scope::default();
        outer.set("x".into(), json!("outer"));
        let scope = Scope::inner(Arc::new(outer));
        let request = MapRunRequest {
            map_run_arn: "arn:aws:states:r:1:mapRun:m/M:id".into(),
            execution_arn: "arn:aws:states:r:1:execution:m:e".into(),
            state_machine_name: "m".into(),
            state_name: "M".into(),
            label: None,
            items: MapRunItems::Inline(vec![json!(1), json!(2)]),
            selection: ItemSelection {
                template: map.selector().cloned(),
                input: json!({"a": 7}),
                execution: ExecutionContext {
                    execution: json!({"Id": "e"}),
                    redrive_count: None,
                    state_machine: json!({}),
                },
                state_name: "M".into(),
                entered_time: "t".into(),
                variables: scope,
                cause_prefix: String::new(),
                reads_whole_item: OnceLock::new(),
            },
            batching: Some(Batching {
                max_items_per_batch: Some(5),
                batch_input: Some(json!({"b": 1})),
                ..Batching::default()
            }),
            processor: Arc::new(StateMachine {
                definition: Some(processor.definition.clone()),
                ..StateMachine::from_value(processor.definition.as_ref().clone()).unwrap()
            }),
            execution_type: StateMachineType::Express,
            max_concurrency: 3,
            tolerance: Tolerance { count: Some(2), percentage: None },
            result_writer: None,
            region: "r".into(),
            account: "1".into(),
            redrive_count: 2,
            environment: Environment::new(Arc::new(crate::clock::SystemClock), Arc::new(NoTasks)),
        };
        let text = serde_json::to_string(&request.to_job()).unwrap();
        let job: MapRunJob = serde_json::from_str(&text).unwrap();
        let back = job.into_request(request.environment.clone()).unwrap();
        let item = MapItem { index: 0, value: json!("row"), key: None, source: None };
        assert_eq!(back.selection.select(item.clone()).unwrap(), request.selection.select(item).unwrap());
        assert_eq!(back.batching, request.batching);
        assert_eq!((back.max_concurrency, back.tolerance), (3, request.tolerance));
        assert_eq!(back.processor.block.start_at, "P");
        assert_eq!(back.execution_type, StateMachineType::Express);
        assert_eq!(back.redrive_count, 2);
    }
}
