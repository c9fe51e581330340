//! The Task state: invocation through the [`TaskInvoker`](crate::task::TaskInvoker),
//! timeouts, the history events of each resource kind, Retry and Catch.

use std::time::Duration;

use futures::future::Either;
use serde_json::{json, Value};

use super::data_flow::compact;
use super::retry::{find_catcher, RetryCounters};
use super::runner::{failure_details, Exit, ResultFields, Runner, Visit};
use super::scope::Scope;
use crate::clock::Clock;
use crate::failure::{names, Failure};
use crate::model::TaskState;
use crate::resource::{IntegrationPattern, Resource};
use crate::task::TaskRequest;

/// Marks external work on the clock for as long as it lives, so virtual time stands still
/// while a task runs.
struct ExternalWork<'a>(&'a dyn Clock);

impl<'a> ExternalWork<'a> {
    fn start(clock: &'a dyn Clock) -> Self {
        clock.external_work_started();
        ExternalWork(clock)
    }
}

impl Drop for ExternalWork<'_> {
    fn drop(&mut self) {
        self.0.external_work_finished();
    }
}

/// Names of the events of one resource kind.
struct TaskEvents {
    prefix: &'static str,
    lambda: bool,
}

impl TaskEvents {
    fn of(resource: &Resource) -> TaskEvents {
        match resource {
            Resource::LambdaFunction { .. } => TaskEvents { prefix: "LambdaFunction", lambda: true },
            Resource::Activity { .. } => TaskEvents { prefix: "Activity", lambda: false },
            _ => TaskEvents { prefix: "Task", lambda: false },
        }
    }
    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
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

impl Runner {
    pub(super) async fn task(
        &self,
        visit: &mut Visit<'_>,
        s: &TaskState,
        input: Value,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let resource = Resource::parse(&s.resource);
        let mut counters = RetryCounters::default();
        loop {
            visit.retry_count = counters.total;
            let failure = match self.task_attempt(visit, s, &resource, &input, scope).await {
                Ok(exit) => return Ok(exit),
                Err(failure) => failure,
            };
            if let Some(delay) = counters.next_delay(&s.retry, &failure, || self.random_fraction()) {
                self.sleep(delay).await;
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
        input: &Value,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let (parameters, timeout) = {
            let eval = self.eval(visit, scope, None);
            let effective = eval.select_path(&s.input_path, input)?;
            let parameters = match &s.parameters {
                Some(template) => eval.template(template, &effective)?,
                None => effective,
            };
            let timeout = match (&s.timeout_seconds, &s.timeout_seconds_path) {
                (Some(seconds), _) => Some(*seconds),
                (None, Some(path)) => {
                    let value = eval.resolve_for_path_field(path, input)?;
                    Some(value.as_u64().filter(|v| *v > 0).ok_or_else(|| {
                        eval.runtime(format!(
                            "The TimeoutSecondsPath field refers to value \"{}\" which is not a valid positive integer: {}",
                            compact(&value),
                            path.text
                        ))
                    })?)
                }
                (None, None) => None,
            };
            if let Some(path) = &s.heartbeat_seconds_path {
                eval.resolve_for_path_field(path, input)?;
            }
            (parameters, timeout)
        };

        let events = TaskEvents::of(resource);
        let (resource_type, resource_name) = resource_fields(resource, &s.resource);
        let scheduled = if events.lambda {
            let mut details = self.with_payload(json!({"resource": s.resource}), "input", &parameters);
            if let Some(t) = timeout {
                details["timeoutInSeconds"] = t.into();
            }
            details
        } else {
            let mut details = json!({
                "resourceType": resource_type, "resource": resource_name,
                "region": self.spec.region,
            });
            if self.env.history_payloads {
                details["parameters"] = compact(&parameters).into();
            }
            if let Some(t) = timeout {
                details["timeoutInSeconds"] = t.into();
            }
            details
        };
        self.record(visit, &events.name("Scheduled"), Some(scheduled));
        let started =
            if events.lambda { None } else { Some(json!({"resourceType": resource_type, "resource": resource_name})) };
        self.record(visit, &events.name("Started"), started);

        let request = TaskRequest {
            resource_arn: s.resource.clone(),
            resource: resource.clone(),
            state_name: visit.name.to_string(),
            parameters,
            timeout: timeout.map(Duration::from_secs),
            region: self.spec.region.clone(),
            account: self.spec.account.clone(),
        };
        self.history.flush().await;
        let outcome = {
            let _work = ExternalWork::start(&*self.env.clock);
            let invocation = self.env.invoker.invoke(request);
            match timeout {
                None => Some(invocation.await),
                Some(seconds) => {
                    let deadline = self.env.clock.now() + chrono::TimeDelta::seconds(seconds as i64);
                    // The timer must be able to fire while the invocation runs, so it is
                    // registered before the work and raced against it.
                    match futures::future::select(invocation, self.env.clock.sleep_until(deadline)).await {
                        Either::Left((result, _)) => Some(result),
                        Either::Right(_) => None,
                    }
                }
            }
        };
        let with_resource = |mut details: Value| {
            if !events.lambda {
                details["resourceType"] = resource_type.clone().into();
                details["resource"] = resource_name.clone().into();
            }
            details
        };
        let result = match outcome {
            None => {
                let failure = Failure { error: Some(names::TIMEOUT.into()), cause: None };
                self.record(visit, &events.name("TimedOut"), Some(with_resource(failure_details(&failure))));
                return Err(failure);
            }
            Some(Err(failure)) => {
                self.record(visit, &events.name("Failed"), Some(with_resource(failure_details(&failure))));
                return Err(failure);
            }
            Some(Ok(result)) => result,
        };
        self.record(
            visit,
            &events.name("Succeeded"),
            Some(with_resource(self.with_payload(json!({}), "output", &result))),
        );

        let fields = ResultFields {
            result_selector: s.result_selector.as_ref(),
            assign: s.assign.as_ref(),
            result_path: &s.result_path,
            output_path: &s.output_path,
            next: &s.next,
        };
        self.result_exit(visit, scope, fields, input.clone(), result)
    }
}
