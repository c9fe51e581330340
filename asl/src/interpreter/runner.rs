//! The execution loop: runs `States` blocks state by state, records the enter/exit
//! events and applies what every state type shares (Assign, the payload size limit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use futures::FutureExt;
use serde_json::{json, Map, Value};

use super::context_object::{ExecutionContext, StateContext};
use super::data_flow::{compact, Eval};
use super::scope::Scope;
use super::{choice, Environment, ExecutionOutcome, ExecutionSpec, ExecutionStatus};
use crate::failure::{names, Failure};
use crate::history::{not_truncated, History};
use crate::model::{
    AssignTemplate, Catcher, ChoiceState, FailState, PassState, PathField, PayloadTemplate, State, StateBlock,
    StateMachine, StateMachineType, SucceedState, Transition,
};
use crate::payload::Payload;
use crate::timestamp;

/// AWS's payload limit for state input and output: 256 KiB of UTF-8.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

pub(crate) struct Runner {
    pub(crate) machine: Arc<StateMachine>,
    pub(crate) spec: ExecutionSpec,
    pub(crate) env: Environment,
    pub(crate) history: History,
    pub(crate) exec_ctx: ExecutionContext,
    failed_state: Mutex<Option<String>>,
}

/// One visit of a state: its name, when it was entered, and the event chain it extends.
pub(crate) struct Visit<'a> {
    pub name: &'a str,
    pub entered_id: u64,
    pub entered_time: String,
    /// `entered_time` as a time: relative Wait delays count from it (so that a replayed
    /// execution, whose clock answers the recorded entry time, resumes a wait where it was).
    pub entered_at: chrono::DateTime<chrono::Utc>,
    /// The id of the last event recorded on this path of the execution.
    pub last_event: u64,
    /// When that event was recorded: retry intervals count from the failure's event, so a
    /// replaying leader resumes an interval where it was instead of starting it again.
    pub last_at: chrono::DateTime<chrono::Utc>,
    pub retry_count: u64,
    /// `$$.Task.Token` of the current Task attempt (activities and callbacks).
    pub task_token: Option<String>,
}

/// The fields that shape the output of a state producing a result (Task, Parallel, Map).
pub(crate) struct ResultFields<'a> {
    pub result_selector: Option<&'a PayloadTemplate>,
    pub assign: Option<&'a AssignTemplate>,
    pub result_path: &'a PathField,
    pub output_path: &'a PathField,
    pub next: &'a Option<String>,
}

/// How a state ended when it did not fail.
pub(crate) struct Exit {
    /// Text only when a Task passed a result through untouched (see [`Runner::result_exit`]).
    pub output: Payload,
    pub transition: Transition,
    pub assigned: Vec<(String, Value)>,
}

enum Step {
    Next(String, Payload),
    End(Payload),
}

impl Runner {
    pub(crate) fn new(machine: Arc<StateMachine>, spec: ExecutionSpec, env: Environment) -> Runner {
        let start = timestamp::format(env.clock.now());
        let mut execution = Map::with_capacity(6);
        execution.insert("Id".into(), spec.execution_arn.clone().into());
        if machine.reads_execution_input {
            execution.insert("Input".into(), spec.input.value().into_owned());
        }
        execution.insert("Name".into(), spec.execution_name.clone().into());
        execution.insert("RoleArn".into(), spec.role_arn.clone().into());
        execution.insert("StartTime".into(), start.into());
        let execution = Value::Object(execution);
        // Express executions cannot be redriven, and AWS gives them no RedriveCount.
        let redrive_count = (spec.machine_type == StateMachineType::Standard).then(|| spec.redrive_count.clone());
        let exec_ctx = ExecutionContext {
            execution,
            redrive_count,
            state_machine: json!({ "Id": spec.state_machine_arn, "Name": spec.state_machine_name }),
        };
        let history = History::with_sink(env.events.clone());
        Runner { machine, spec, env, history, exec_ctx, failed_state: Mutex::new(None) }
    }

    pub(crate) async fn run(mut self) -> ExecutionOutcome {
        let start_time = self.env.clock.now();
        let started = self.history.record(
            start_time,
            0,
            "ExecutionStarted",
            Some(self.with_text(
                json!({"roleArn": self.spec.role_arn, "stateMachineArn": self.spec.state_machine_arn}),
                "input",
                || self.spec.input.to_text(),
            )),
        );
        let mut scope = Scope::default();
        let mut last = started;
        let machine = self.machine.clone();
        // The spec's input is no longer needed: the first state takes it.
        let input = std::mem::take(&mut self.spec.input);
        let body = self.run_block(&machine.block, input, &mut scope, &mut last);
        let result = match machine.timeout_seconds {
            None => Some(body.await),
            Some(seconds) => {
                let deadline = start_time + chrono::TimeDelta::seconds(seconds as i64);
                match futures::future::select(body, self.env.clock.sleep_until(deadline)).await {
                    Either::Left((result, _)) => Some(result),
                    Either::Right(_) => None,
                }
            }
        };
        let last = self.history.len() as u64;
        let now = self.env.clock.now();
        let (status, output, failure) = match result {
            Some(Ok(output)) => {
                self.history.record(
                    now,
                    last,
                    "ExecutionSucceeded",
                    Some(self.with_text(json!({}), "output", || output.to_text())),
                );
                (ExecutionStatus::Succeeded, Some(output), None)
            }
            Some(Err(failure)) => {
                self.history.record(now, last, "ExecutionFailed", Some(failure_details(&failure)));
                (ExecutionStatus::Failed, None, Some(failure))
            }
            None => {
                let failure = Failure { error: Some(names::TIMEOUT.into()), cause: None };
                self.history.record(now, last, "ExecutionTimedOut", Some(failure_details(&failure)));
                (ExecutionStatus::TimedOut, None, Some(failure))
            }
        };
        self.history.flush().await;
        let failed_state = self.failed_state.lock().unwrap_or_else(|e| e.into_inner()).take();
        ExecutionOutcome {
            status,
            output,
            error: failure.as_ref().and_then(|f| f.error.clone()),
            cause: failure.and_then(|f| f.cause),
            failed_state,
            start_time,
            stop_time: now,
            history: self.history.into_events(),
        }
    }

    /// Runs a `{StartAt, States}` block from its start to an end state.
    pub(crate) fn run_block<'a>(
        &'a self,
        block: &'a StateBlock,
        input: Payload,
        scope: &'a mut Scope,
        last: &'a mut u64,
    ) -> BoxFuture<'a, Result<Payload, Failure>> {
        async move {
            let mut name = block.start_at.as_str();
            let mut input = input;
            loop {
                let state = block
                    .state(name)
                    .ok_or_else(|| Failure::runtime(format!("The state '{name}' does not exist in the definition.")))?;
                match self.run_state(name, state, input, scope, last).await? {
                    Step::End(output) => return Ok(output),
                    Step::Next(next, output) => {
                        name = block.states.get_key_value(&next).map(|(k, _)| k.as_str()).ok_or_else(|| {
                            Failure::runtime(format!("The state '{next}' does not exist in the definition."))
                        })?;
                        input = output;
                    }
                }
            }
        }
        .boxed()
    }

    async fn run_state(
        &self,
        name: &str,
        state: &State,
        input: Payload,
        scope: &mut Scope,
        last: &mut u64,
    ) -> Result<Step, Failure> {
        let entered = self.env.clock.now();
        let entered_id = self.history.record(
            entered,
            *last,
            format!("{}StateEntered", state.type_name()),
            Some(self.with_text(json!({"name": name}), "input", || input.to_text())),
        );
        let mut visit = Visit {
            name,
            entered_id,
            entered_time: timestamp::format(entered),
            entered_at: entered,
            last_event: entered_id,
            last_at: entered,
            retry_count: 0,
            task_token: None,
        };
        // Every event so far (the previous state's exit, this entry) is durable before the
        // state does anything (EventSink contract).
        self.history.flush().await;
        // Only a Task may take its input as text (see `Runner::task`).
        let result = match state {
            State::Task(s) => self.task(&mut visit, s, input, scope).await,
            State::Pass(s) => self.pass(&visit, s, input.into_value(), scope),
            State::Choice(s) => self.choice(&visit, s, input.into_value(), scope),
            State::Wait(s) => self.wait(&visit, s, input.into_value(), scope).await,
            State::Parallel(s) => self.parallel(&mut visit, s, input.into_value(), scope).await,
            State::Map(s) => self.map(&mut visit, s, input.into_value(), scope).await,
            State::Succeed(s) => self.succeed(&visit, s, input.into_value(), scope),
            State::Fail(s) => Err(self.fail(&visit, s, &input.into_value(), scope)),
        };
        let exit = match result {
            Ok(exit) => exit,
            Err(failure) => {
                let mut failed = self.failed_state.lock().unwrap_or_else(|e| e.into_inner());
                failed.get_or_insert_with(|| name.to_string());
                return Err(failure);
            }
        };
        let output_text = self.env.history_payloads.then(|| exit.output.to_text());
        let output_len = output_text.as_ref().map_or_else(|| exit.output.len(), String::len);
        if output_len > MAX_PAYLOAD_BYTES {
            return Err(Failure::new(
                names::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{name}' returned a result with a size exceeding the maximum number of bytes service limit."
                ),
            ));
        }
        let mut details = json!({"name": name});
        if let Some(text) = output_text {
            details["output"] = text.into();
            details["outputDetails"] = not_truncated();
        }
        if !exit.assigned.is_empty() {
            let assigned: Map<String, Value> =
                exit.assigned.iter().map(|(k, v)| (k.clone(), Value::String(compact(v)))).collect();
            details["assignedVariables"] = Value::Object(assigned);
            details["assignedVariablesDetails"] = not_truncated();
        }
        *last = self.history.record(
            self.env.clock.now(),
            visit.last_event,
            format!("{}StateExited", state.type_name()),
            Some(details),
        );
        for (variable, value) in exit.assigned {
            scope.set(variable, value);
        }
        Ok(match exit.transition {
            Transition::Next(next) => Step::Next(next, exit.output),
            Transition::End => Step::End(exit.output),
        })
    }

    /// The exit of a state that produced `result` (features.md §1.4): ResultSelector and
    /// Assign both see the raw result; ResultPath merges the selection into the raw input;
    /// OutputPath selects the output. A result still in text is passed on as text when none
    /// of these looks inside it (it is then parsed only if the next state needs the value).
    pub(crate) fn result_exit(
        &self,
        visit: &Visit<'_>,
        scope: &Scope,
        fields: ResultFields<'_>,
        raw_input: Value,
        result: Payload,
    ) -> Result<Exit, Failure> {
        let untouched = fields.assign.is_none()
            && fields.result_selector.is_none()
            && fields.result_path.is_identity()
            && fields.output_path.is_identity();
        let result = match result {
            Payload::Text(text) if untouched => {
                let transition = Transition::from_fields(fields.next);
                return Ok(Exit { output: Payload::Text(text), transition, assigned: Vec::new() });
            }
            result => result.into_value(),
        };
        let eval = self.eval(visit, scope, None);
        let assigned = match fields.assign {
            Some(assign) => eval.assign(assign, &result)?,
            None => Vec::new(),
        };
        let selected = match fields.result_selector {
            Some(template) => eval.template(template, &result)?,
            None => result,
        };
        let output = eval.apply_result_path(fields.result_path, raw_input, selected)?;
        let output = eval.select_path_owned(fields.output_path, output)?;
        Ok(Exit { output: output.into(), transition: Transition::from_fields(fields.next), assigned })
    }

    /// `details` with `key` (`input` / `output`) and its `...Details` added, unless this
    /// execution records no payloads.
    pub(crate) fn with_payload(&self, details: Value, key: &str, payload: &Value) -> Value {
        self.with_text(details, key, || compact(payload))
    }

    /// [`Self::with_payload`] for a payload given as its text, made only when recorded.
    pub(crate) fn with_text(&self, mut details: Value, key: &str, text: impl FnOnce() -> String) -> Value {
        if self.env.history_payloads {
            details[key] = text().into();
            details[format!("{key}Details")] = not_truncated();
        }
        details
    }

    /// The evaluation context of a state visit.
    pub(crate) fn eval<'a>(&'a self, visit: &'a Visit<'_>, scope: &'a Scope, map_item: Option<&'a Value>) -> Eval<'a> {
        let item_value = map_item.and_then(|item| item.get("Value"));
        Eval {
            state: StateContext {
                execution: &self.exec_ctx,
                state_name: visit.name,
                entered_time: &visit.entered_time,
                retry_count: visit.retry_count,
                task_token: visit.task_token.as_deref(),
                map_item,
                item_value,
            },
            scope,
            random: &*self.env.random,
            cause_prefix: format!(
                "An error occurred while executing the state '{}' (entered at the event id #{}). ",
                visit.name, visit.entered_id
            ),
        }
    }

    pub(crate) async fn sleep(&self, duration: Duration) {
        self.history.flush().await;
        let delta = chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX);
        let deadline =
            self.env.clock.now().checked_add_signed(delta).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        self.env.clock.sleep_until(deadline).await
    }

    /// Waits out a Task's retry interval of `duration`, counted from the visit's last event
    /// (the attempt's failure), so that a replaying leader resumes the interval where it was.
    /// (Parallel and Map retries count from now: their failure happens in a branch.)
    pub(crate) async fn retry_sleep(&self, visit: &Visit<'_>, duration: Duration) {
        self.history.flush().await;
        let delta = chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX);
        let deadline = visit.last_at.checked_add_signed(delta).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        self.env.clock.sleep_until(deadline).await
    }

    /// A number in [0, 1) for retry jitter.
    pub(crate) fn random_fraction(&self) -> f64 {
        ((self.env.random)() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn record(&self, visit: &mut Visit<'_>, event_type: &str, details: Option<Value>) -> u64 {
        visit.last_at = self.env.clock.now();
        visit.last_event = self.history.record(visit.last_at, visit.last_event, event_type, details);
        visit.last_event
    }

    /// The exit through a Catcher: Error Output placed by the catcher's ResultPath into
    /// the raw input, the catcher's Assign seeing the Error Output as `$`.
    pub(crate) fn catch_exit(
        &self,
        visit: &Visit<'_>,
        catcher: &Catcher,
        raw_input: Value,
        failure: &Failure,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let eval = self.eval(visit, scope, None);
        let error_output = failure.to_error_output();
        let assigned = match &catcher.assign {
            Some(assign) => eval.assign(assign, &error_output)?,
            None => Vec::new(),
        };
        let output = eval.apply_result_path(&catcher.result_path, raw_input, error_output)?;
        Ok(Exit { output: output.into(), transition: Transition::Next(catcher.next.clone()), assigned })
    }

    fn pass(&self, visit: &Visit<'_>, s: &PassState, input: Value, scope: &Scope) -> Result<Exit, Failure> {
        let eval = self.eval(visit, scope, None);
        // When the result replaces the input (ResultPath `$`), the raw input is not needed
        // again and InputPath can take it instead of copying it (a batch of items, say).
        let (effective, raw_input) = if s.result_path.is_identity() {
            (eval.select_path_owned(&s.input_path, input)?, Value::Null)
        } else {
            (eval.select_path(&s.input_path, &input)?, input)
        };
        let effective = match &s.parameters {
            Some(template) => eval.template(template, &effective)?,
            None => effective,
        };
        let result = match &s.result {
            Some(result) => result.clone(),
            None => effective,
        };
        let assigned = match &s.assign {
            Some(assign) => eval.assign(assign, &result)?,
            None => Vec::new(),
        };
        let output = eval.apply_result_path(&s.result_path, raw_input, result)?;
        let output = eval.select_path_owned(&s.output_path, output)?;
        Ok(Exit { output: output.into(), transition: Transition::from_fields(&s.next), assigned })
    }

    fn choice(&self, visit: &Visit<'_>, s: &ChoiceState, input: Value, scope: &Scope) -> Result<Exit, Failure> {
        let eval = self.eval(visit, scope, None);
        let effective = eval.select_path(&s.input_path, &input)?;
        let mut chosen = None;
        for rule in &s.choices {
            if choice::evaluate(&eval, &rule.condition, &effective)? {
                chosen = Some((rule.next.clone(), rule.assign.as_ref().or(s.assign.as_ref())));
                break;
            }
        }
        let (next, assign) = match (chosen, &s.default) {
            (Some(chosen), _) => chosen,
            (None, Some(default)) => (default.clone(), s.assign.as_ref()),
            (None, None) => {
                return Err(Failure::new(
                    names::NO_CHOICE_MATCHED,
                    format!("{}No Choice rule matched and there is no Default.", eval.cause_prefix),
                ))
            }
        };
        let assigned = match assign {
            Some(assign) => eval.assign(assign, &effective)?,
            None => Vec::new(),
        };
        let output = eval.select_path_owned(&s.output_path, effective)?;
        Ok(Exit { output: output.into(), transition: Transition::Next(next), assigned })
    }

    fn succeed(&self, visit: &Visit<'_>, s: &SucceedState, input: Value, scope: &Scope) -> Result<Exit, Failure> {
        let eval = self.eval(visit, scope, None);
        let effective = eval.select_path(&s.input_path, &input)?;
        let output = eval.select_path_owned(&s.output_path, effective)?;
        Ok(Exit { output: output.into(), transition: Transition::End, assigned: Vec::new() })
    }

    fn fail(&self, visit: &Visit<'_>, s: &FailState, input: &Value, scope: &Scope) -> Failure {
        let eval = self.eval(visit, scope, None);
        let dynamic = |field: &Option<crate::model::DynamicString>, fixed: &Option<String>| match field {
            Some(template) => eval.template(template, input).map(|value| match value {
                Value::String(text) => Some(text),
                other => Some(compact(&other)),
            }),
            None => Ok(fixed.clone()),
        };
        let error = match dynamic(&s.error_path, &s.error) {
            Ok(error) => error,
            Err(failure) => return failure,
        };
        match dynamic(&s.cause_path, &s.cause) {
            Ok(cause) => Failure { error, cause },
            Err(failure) => failure,
        }
    }
}

/// `{error, cause}` details of failure events, omitting what is absent.
pub(crate) fn failure_details(failure: &Failure) -> Value {
    let mut details = Map::new();
    if let Some(error) = &failure.error {
        details.insert("error".into(), error.clone().into());
    }
    if let Some(cause) = &failure.cause {
        details.insert("cause".into(), cause.clone().into());
    }
    Value::Object(details)
}
