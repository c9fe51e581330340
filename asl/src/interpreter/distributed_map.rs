//! The Map state in DISTRIBUTED mode (features.md §2): the interpreter resolves every field
//! against the state's input — with AWS's `States.Runtime` causes for bad `...Path` values,
//! raised after `MapStateStarted` and before any map run exists — then hands the map run to
//! the environment's [`MapRunExecutor`](crate::map_run::MapRunExecutor) and records
//! `MapRunStarted` / `MapRunSucceeded` / `MapRunFailed` around it. When the executor says the
//! attempt redrives an earlier map run (a redriven execution resuming at this state), the
//! request carries that run's ARN and redrive count and `MapRunRedriven` takes the place of
//! `MapStateStarted` and `MapRunStarted`.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::data_flow::Eval;
use super::map::max_concurrency;
use super::parallel::AttemptFailure;
use super::runner::{failure_details, Exit, ResultFields, Runner, Visit};
use super::scope::Scope;
use super::Environment;
use crate::failure::Failure;
use crate::map_run::{
    map_run_arn, Batching, ItemSelection, MapRunItems, MapRunRequest, ResultWriterRequest, Tolerance,
};
use crate::model::{ItemBatcher, MapState, StateMachine, StateMachineType};

impl Runner {
    pub(super) async fn distributed_map_attempt(
        &self,
        visit: &mut Visit<'_>,
        s: &MapState,
        input: &Value,
        scope: &Scope,
    ) -> Result<Exit, AttemptFailure> {
        let processor = s.processor().ok_or_else(|| Failure::runtime("The Map state has no ItemProcessor."))?;
        let Some(executor) = self.env.map_runs.clone() else {
            let eval = self.eval(visit, scope, None);
            return Err(eval.runtime("Distributed Map states need a map run executor, and none is configured.").into());
        };
        let effective = self.eval(visit, scope, None).select_path(&s.input_path, input)?;
        // A redrive resumes the state's map run: the state started in the failed attempt.
        let redrive = executor.redriven(visit.name);
        if redrive.is_none() {
            // Distributed maps report length 0: items are counted by the map run (features.md §2.10).
            self.record(visit, "MapStateStarted", Some(json!({"length": 0})));
        }
        let request = {
            let eval = self.eval(visit, scope, None);
            let processor_machine = StateMachine {
                block: processor.block.clone(),
                comment: None,
                version: None,
                timeout_seconds: None,
                query_language: self.machine.query_language.clone(),
                // The parent's text includes the processor's.
                reads_execution_input: self.machine.reads_execution_input,
                definition: Some(processor.definition.clone()),
            };
            let label = s.label.clone().unwrap_or_else(|| visit.name.to_string());
            let arn = match &redrive {
                Some(redrive) => redrive.map_run_arn.clone(),
                None => map_run_arn(
                    &self.spec.region,
                    &self.spec.account,
                    &self.spec.state_machine_name,
                    &label,
                    &self.random_uuid(),
                ),
            };
            MapRunRequest {
                map_run_arn: arn,
                execution_arn: self.spec.execution_arn.clone(),
                state_machine_name: self.spec.state_machine_name.clone(),
                state_name: visit.name.to_string(),
                label: s.label.clone(),
                items: items(&eval, s, &effective)?,
                selection: ItemSelection {
                    template: s.selector().cloned(),
                    input: effective.clone(),
                    execution: self.exec_ctx.clone(),
                    state_name: visit.name.to_string(),
                    entered_time: visit.entered_time.clone(),
                    variables: scope.clone(),
                    cause_prefix: eval.cause_prefix.clone(),
                    reads_whole_item: OnceLock::new(),
                },
                batching: s.item_batcher.as_ref().map(|b| batching(&eval, b, &effective)).transpose()?,
                processor: Arc::new(processor_machine),
                execution_type: processor.processor_config.execution_type.unwrap_or(StateMachineType::Standard),
                max_concurrency: max_concurrency(&eval, s, &effective)?,
                tolerance: tolerance(&eval, s, &effective)?,
                result_writer: match &s.result_writer {
                    Some(writer) => Some(ResultWriterRequest {
                        writer: writer.clone(),
                        parameters: match &writer.parameters {
                            Some(template) => eval.template(template, &effective)?,
                            None => Value::Null,
                        },
                    }),
                    None => None,
                },
                region: self.spec.region.clone(),
                account: self.spec.account.clone(),
                redrive_count: redrive.as_ref().map_or(0, |r| r.redrive_count),
                // Children keep their history to themselves: the parent's event sink is not theirs.
                environment: Environment { events: None, ..self.env.clone() },
            }
        };
        let map_run_arn = request.map_run_arn.clone();
        match &redrive {
            Some(redrive) => self.record(
                visit,
                "MapRunRedriven",
                Some(json!({"mapRunArn": map_run_arn, "redriveCount": redrive.redrive_count})),
            ),
            None => self.record(visit, "MapRunStarted", Some(json!({"mapRunArn": map_run_arn}))),
        };
        self.history.flush().await;
        let result = match executor.run(request).await {
            Ok(result) => result,
            Err(failure) => {
                self.record(visit, "MapRunFailed", Some(failure_details(&failure)));
                return Err(AttemptFailure { failure, started: true });
            }
        };
        self.record(visit, "MapRunSucceeded", None);
        self.record(visit, "MapStateSucceeded", None);
        let fields = ResultFields {
            result_selector: s.result_selector.as_ref(),
            assign: s.assign.as_ref(),
            result_path: &s.result_path,
            output_path: &s.output_path,
            next: &s.next,
        };
        Ok(self.result_exit(visit, scope, fields, input.clone(), result.into())?)
    }

    /// A UUID from the execution's randomness, so that a replayed execution names its map
    /// runs the same way.
    fn random_uuid(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(self.env.random)().to_le_bytes());
        bytes[8..].copy_from_slice(&(self.env.random)().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }
}

/// The items: an ItemReader's source (ItemsPath is then ignored, as AWS does), or the array
/// ItemsPath selects.
fn items(eval: &Eval<'_>, s: &MapState, effective: &Value) -> Result<MapRunItems, Failure> {
    let Some(reader) = &s.item_reader else {
        return match eval.select_path(&s.items_path, effective)? {
            Value::Array(items) => Ok(MapRunItems::Inline(items)),
            other => Err(eval
                .runtime(format!("Map state input must be an array but was: {}", super::data_flow::compact(&other)))),
        };
    };
    let config = &reader.reader_config;
    let max_items = match (&config.max_items, &config.max_items_path) {
        (Some(value), _) => value.as_i64(),
        (None, Some(path)) => Some(eval.integer_at_path("MaxItemsPath", path, effective)?),
        (None, None) => None,
    };
    let parameters = match &reader.parameters {
        Some(template) => eval.template(template, effective)?,
        None => Value::Null,
    };
    Ok(MapRunItems::Reader {
        resource: reader.resource.clone(),
        config: Box::new(config.clone()),
        parameters,
        max_items,
    })
}

fn batching(eval: &Eval<'_>, b: &ItemBatcher, effective: &Value) -> Result<Batching, Failure> {
    let size = |value: &Option<Value>, path: &Option<crate::expr::PathExpr>, field: &str| -> Result<_, Failure> {
        Ok(match (value, path) {
            (Some(value), _) => value.as_u64(),
            (None, Some(path)) => {
                let n = eval.integer_at_path(field, path, effective)?;
                Some(
                    u64::try_from(n)
                        .map_err(|_| eval.runtime(format!("{} must be positive.", &field[..field.len() - 4])))?,
                )
            }
            (None, None) => None,
        })
    };
    Ok(Batching {
        max_items_per_batch: size(&b.max_items_per_batch, &b.max_items_per_batch_path, "MaxItemsPerBatchPath")?,
        max_input_bytes_per_batch: size(
            &b.max_input_bytes_per_batch,
            &b.max_input_bytes_per_batch_path,
            "MaxInputBytesPerBatchPath",
        )?,
        batch_input: b.batch_input.as_ref().map(|template| eval.template(template, effective)).transpose()?,
    })
}

/// `ToleratedFailureCount(Path)` and `ToleratedFailurePercentage(Path)` with AWS's checks.
fn tolerance(eval: &Eval<'_>, s: &MapState, effective: &Value) -> Result<Tolerance, Failure> {
    let count = match (&s.tolerated_failure_count, &s.tolerated_failure_count_path) {
        (Some(value), _) => value.as_i64(),
        (None, Some(path)) => Some(eval.integer_at_path("ToleratedFailureCountPath", path, effective)?),
        (None, None) => None,
    };
    let count = match count {
        Some(n) if n < 0 => return Err(eval.runtime("ToleratedFailureCount cannot be negative.")),
        other => other.map(|n| n as u64),
    };
    let percentage = match (&s.tolerated_failure_percentage, &s.tolerated_failure_percentage_path) {
        (Some(value), _) => value.as_f64(),
        (None, Some(path)) => Some(eval.float_at_path("ToleratedFailurePercentagePath", path, effective)?),
        (None, None) => None,
    };
    if percentage.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
        return Err(eval.runtime("ToleratedFailurePercentage must be between 0 and 100."));
    }
    Ok(Tolerance { count, percentage })
}
