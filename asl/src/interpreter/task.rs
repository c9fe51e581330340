//! The Task state: invocation through the [`TaskInvoker`](crate::task::TaskInvoker),
//! timeouts, the history events of each resource kind, Retry and Catch.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use super::data_flow::compact;
use super::retry::{find_catcher, RetryCounters};
use super::runner::{failure_details, Exit, ResultFields, Runner, Visit};
use super::scope::Scope;
use crate::clock::ExternalWork;
use crate::failure::{names, Failure};
use crate::model::TaskState;
use crate::payload::{JsonText, Payload};
use crate::resource::{IntegrationPattern, Resource};
use crate::task::{TaskProgress, TaskRequest};

/// Which family of history events a resource records (`LambdaFunction...`,
/// `Activity...`, `Task...`): their names and the shape of their details.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EventFamily {
    Lambda,
    Activity,
    Task,
}

impl EventFamily {
    fn of(resource: &Resource) -> EventFamily {
        match resource {
            Resource::LambdaFunction { .. } => EventFamily::Lambda,
            Resource::Activity { .. } => EventFamily::Activity,
            _ => EventFamily::Task,
        }
    }

    fn name(self, suffix: &str) -> String {
        let prefix = match self {
            EventFamily::Lambda => "LambdaFunction",
            EventFamily::Activity => "Activity",
            EventFamily::Task => "Task",
        };
        format!("{prefix}{suffix}")
    }
}

/// Whether an attempt of `resource` waits for a task token (`$$.Task.Token`).
fn uses_task_token(resource: &Resource) -> bool {
    matches!(resource, Resource::Activity { .. }) || resource.is_callback()
}

/// `resourceType`/`resource` as AWS shows them in Task events (`lambda` / `invoke`).
fn resource_fields(resource: &Resource, uri: &str) -> (String, String) {
    match resource {
        Resource::Integration { service, action, pattern } => {
            let suffix = match pattern {
                IntegrationPattern::RequestResponse => "",
                IntegrationPattern::Sync => ".sync",
                IntegrationPattern::Sync2 => ".sync:2",
                IntegrationPattern::WaitForTaskToken => ".waitForTaskToken",
            };
            (service.clone(), format!("{action}{suffix}"))
        }
        _ => (String::new(), uri.to_string()),
    }
}

/// The input a Task attempt starts from.
enum AttemptInput<'a> {
    /// The state's input, taken by the only attempt.
    Owned(Value),
    /// The state's input, kept for the retries and a Catch.
    Borrowed(&'a Value),
    /// The state's input as text, for the resource as it is: no InputPath or Parameters
    /// reads it, and no *Path field, Retry or Catch needs it (the only attempt).
    Text(JsonText),
}

impl Runner {
    pub(super) async fn task(
        &self,
        visit: &mut Visit<'_>,
        s: &TaskState,
        input: Payload,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let resource = Resource::parse(&s.resource);
        // Needed only once, the input is taken by the attempt instead of a copy (a child of a
        // Distributed Map gets its whole batch as input).
        if s.uses_input_once() {
            let input = match input {
                // Nothing looks inside the input before the resource gets it: it stays text.
                Payload::Text(text) if s.hands_input_over() => AttemptInput::Text(text),
                input => AttemptInput::Owned(input.into_value()),
            };
            return self.task_attempt(visit, s, &resource, input, scope).await;
        }
        let input = input.into_value();
        let mut counters = RetryCounters::default();
        loop {
            visit.retry_count = counters.total;
            let failure = match self.task_attempt(visit, s, &resource, AttemptInput::Borrowed(&input), scope).await {
                Ok(exit) => return Ok(exit),
                Err(failure) => failure,
            };
            if let Some(delay) = counters.next_delay(&s.retry, &failure, || self.random_fraction()) {
                self.retry_sleep(visit, delay).await;
                continue;
            }
            return match find_catcher(&s.catch, &failure) {
                Some(catcher) => self.catch_exit(visit, catcher, input, &failure, scope),
                None => Err(failure),
            };
        }
    }

    async fn task_attempt(
        &self,
        visit: &mut Visit<'_>,
        s: &TaskState,
        resource: &Resource,
        input: AttemptInput<'_>,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        // The token exists before Parameters are evaluated, so that `$$.Task.Token` can be
        // passed on; drawn from the execution's random source, it is the same when a new
        // leader replays the execution.
        visit.task_token = uses_task_token(resource).then(|| self.mint_task_token());
        let borrowed = match &input {
            AttemptInput::Borrowed(input) => Some(*input),
            AttemptInput::Owned(_) | AttemptInput::Text(_) => None,
        };
        // ResultPath needs the raw input unless the result replaces it.
        let raw_input = match borrowed {
            Some(input) if !s.result_path.is_identity() => input.clone(),
            _ => Value::Null,
        };
        let (parameters, timeout, heartbeat) = {
            let eval = self.eval(visit, scope, None);
            let effective = match input {
                AttemptInput::Owned(input) => eval.select_path_owned(&s.input_path, input)?.into(),
                AttemptInput::Borrowed(input) => eval.select_path(&s.input_path, input)?.into(),
                AttemptInput::Text(text) => Payload::Text(text),
            };
            // The *Path fields below exist only when the input was borrowed.
            let input = borrowed.unwrap_or(&Value::Null);
            let parameters = match &s.parameters {
                Some(template) => eval.template(template, &effective.value())?.into(),
                None => effective,
            };
            let seconds = |field: &str, fixed: Option<u64>, path: Option<&crate::expr::PathExpr>| match (fixed, path) {
                (Some(seconds), _) => Ok(Some(seconds)),
                (None, Some(path)) => {
                    let value = eval.resolve_for_path_field(path, input)?;
                    // HeartbeatSecondsPath was never checked before it was enforced; it keeps
                    // accepting an integer in a string, as AWS's other *Path integers do.
                    let from_text = || match &value {
                        Value::String(text) if field == "HeartbeatSecondsPath" => text.trim().parse().ok(),
                        _ => None,
                    };
                    value.as_u64().or_else(from_text).filter(|v| *v > 0).map(Some).ok_or_else(|| {
                        eval.runtime(format!(
                            "The {field} field refers to value \"{}\" which is not a valid positive integer: {}",
                            compact(&value),
                            path.text
                        ))
                    })
                }
                (None, None) => Ok(None),
            };
            let timeout = seconds("TimeoutSecondsPath", s.timeout_seconds, s.timeout_seconds_path.as_ref())?;
            let heartbeat = seconds("HeartbeatSecondsPath", s.heartbeat_seconds, s.heartbeat_seconds_path.as_ref())?;
            (parameters, timeout, heartbeat)
        };

        let family = EventFamily::of(resource);
        let (resource_type, resource_name) = resource_fields(resource, &s.resource);
        let mut scheduled = match family {
            EventFamily::Lambda | EventFamily::Activity => {
                self.with_text(json!({"resource": s.resource}), "input", || parameters.to_text())
            }
            EventFamily::Task => {
                let mut details = json!({
                    "resourceType": resource_type, "resource": resource_name,
                    "region": self.spec.region,
                });
                if self.env.history_payloads {
                    details["parameters"] = parameters.to_text().into();
                }
                details
            }
        };
        if let Some(t) = timeout {
            scheduled["timeoutInSeconds"] = t.into();
        }
        if let (Some(h), EventFamily::Activity | EventFamily::Task) = (heartbeat, family) {
            scheduled["heartbeatInSeconds"] = h.into();
        }
        self.record(visit, &family.name("Scheduled"), Some(scheduled));
        // TimeoutSeconds counts from the Started event (for an activity: when a worker takes
        // the task). Its time is read before recording it, which on a replay is the recorded
        // time, so a timer survives a change of leader.
        let mut deadline = None;
        let mut started_at = None;
        let start_timer = |started: chrono::DateTime<chrono::Utc>| {
            timeout.map(|seconds| started + chrono::TimeDelta::seconds(seconds as i64))
        };
        if family != EventFamily::Activity {
            let started = if family == EventFamily::Lambda {
                None
            } else {
                Some(json!({"resourceType": resource_type, "resource": resource_name}))
            };
            let now = self.env.clock.now();
            (deadline, started_at) = (start_timer(now), Some(now));
            self.record(visit, &family.name("Started"), started);
        }

        let (progress, mut milestones) = futures::channel::mpsc::unbounded();
        let request = TaskRequest {
            resource_arn: s.resource.clone(),
            resource: resource.clone(),
            state_name: visit.name.to_string(),
            parameters,
            timeout: timeout.map(Duration::from_secs),
            region: self.spec.region.clone(),
            account: self.spec.account.clone(),
            task_token: visit.task_token.clone(),
            heartbeat: heartbeat.map(Duration::from_secs),
            started_at,
            progress: Some(progress),
        };
        self.history.flush().await;
        let outcome = {
            let _work = ExternalWork::start(self.env.clock.clone());
            let mut invocation = self.env.invoker.invoke(request).fuse();
            let (mut activity_started, mut submitted, mut dispatched) = (false, false, false);
            loop {
                let mut timer = match deadline {
                    Some(deadline) => self.env.clock.sleep_until(deadline).fuse(),
                    None => futures::future::pending().boxed().fuse(),
                };
                // Milestones first (they precede the outcome in the history), then the
                // outcome, then the timer: an outcome that is ready wins over a due timer.
                let milestone = futures::select_biased! {
                    milestone = milestones.next() => milestone,
                    result = invocation => break Some(result),
                    () = timer => break None,
                };
                match milestone {
                    Some(TaskProgress::ActivityStarted { worker_name })
                        if family == EventFamily::Activity && !activity_started =>
                    {
                        activity_started = true;
                        deadline = start_timer(self.env.clock.now());
                        self.record(visit, "ActivityStarted", Some(json!({"workerName": worker_name})));
                        self.history.flush().await;
                    }
                    Some(TaskProgress::Submitted { output }) if family == EventFamily::Task && !submitted => {
                        submitted = true;
                        let details = json!({"resourceType": resource_type, "resource": resource_name});
                        self.record(visit, "TaskSubmitted", Some(self.with_payload(details, "output", &output)));
                        self.history.flush().await;
                    }
                    Some(TaskProgress::Queued) if family != EventFamily::Activity && !dispatched => deadline = None,
                    Some(TaskProgress::Dispatched) if family != EventFamily::Activity && !dispatched => {
                        dispatched = true;
                        deadline = start_timer(self.env.clock.now());
                    }
                    // A repeated or foreign milestone, or the invoker dropped its sender.
                    _ => {}
                }
            }
        };
        let with_resource = |mut details: Value| {
            if family == EventFamily::Task {
                details["resourceType"] = resource_type.clone().into();
                details["resource"] = resource_name.clone().into();
            }
            details
        };
        let result = match outcome {
            None => {
                let failure = Failure { error: Some(names::TIMEOUT.into()), cause: None };
                self.record(visit, &family.name("TimedOut"), Some(with_resource(failure_details(&failure))));
                return Err(failure);
            }
            // An invoker's timeout (e.g. a heartbeat that did not come) is a timeout too.
            Some(Err(failure)) if matches!(failure.error_name(), names::TIMEOUT | names::HEARTBEAT_TIMEOUT) => {
                self.record(visit, &family.name("TimedOut"), Some(with_resource(failure_details(&failure))));
                return Err(failure);
            }
            Some(Err(failure)) => {
                self.record(visit, &family.name("Failed"), Some(with_resource(failure_details(&failure))));
                return Err(failure);
            }
            Some(Ok(result)) => result,
        };
        self.record(
            visit,
            &family.name("Succeeded"),
            Some(with_resource(self.with_text(json!({}), "output", || result.to_text()))),
        );

        let fields = ResultFields {
            result_selector: s.result_selector.as_ref(),
            assign: s.assign.as_ref(),
            result_path: &s.result_path,
            output_path: &s.output_path,
            next: &s.next,
        };
        self.result_exit(visit, scope, fields, raw_input, result)
    }

    /// A task token: 32 bytes from the execution's random source, base64url.
    fn mint_task_token(&self) -> String {
        use base64::Engine;
        let bytes: Vec<u8> = (0..4).flat_map(|_| (self.env.random)().to_be_bytes()).collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
