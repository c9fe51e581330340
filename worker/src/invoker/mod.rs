//! [`LocalInvoker`]: runs Task states on this machine, dispatching on the resource.
//!
//! | resource | runs through |
//! |---|---|
//! | `arn:aws:lambda:<region>:<account>:function:<name>` | [`lambda`]: the registry's command, warm runtime pool ([`warm_pool`]) or endpoint; result = the payload |
//! | `arn:aws:states:::lambda:invoke` | [`lambda`]: same functions; result = AWS's Invoke response shape |
//! | `arn:aws:states:::http:invoke` | [`http_task`] |
//!
//! Anything else should have been refused when the definition was validated; if it still
//! arrives here it fails with `States.Runtime`.

pub mod command;
pub mod http_task;
pub mod lambda;
pub mod lambda_endpoint;
pub mod runtime_api;
pub mod warm_pool;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use stepmap_asl::failure::{names, Failure};
use stepmap_asl::payload::{JsonText, Payload};
use stepmap_asl::resource::{IntegrationPattern, Resource};
use stepmap_asl::task::{TaskInvoker, TaskRequest};

use crate::error::WorkerError;
use crate::function_registry::{FunctionRegistry, FunctionTarget};
use crate::invoker::warm_pool::WarmPool;

/// The largest task result Step Functions accepts: 256 KiB of UTF-8.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// Runs Task states locally: Lambda functions through the [`FunctionRegistry`], HTTP tasks
/// directly. Cheap to clone; clones share the registry, the HTTP connection pool and the warm
/// runtime pools. The runtime pools are shut down (their processes killed) when the last
/// clone is dropped.
#[derive(Clone)]
pub struct LocalInvoker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) registry: FunctionRegistry,
    pub(crate) http: reqwest::Client,
    /// One pool per `runtime` function, started by the function's first invocation: a pool
    /// lives on the tokio runtime its invocations run on, which `new` may not have, and a
    /// function that is never called costs no processes.
    warm_pools: BTreeMap<String, OnceLock<WarmPool>>,
}

impl LocalInvoker {
    /// Builds an invoker over `registry`. Fails only if the HTTP client cannot be built
    /// (e.g. no TLS roots).
    pub fn new(registry: FunctionRegistry) -> Result<Self, WorkerError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("stepmap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WorkerError::HttpClient)?;
        let warm_pools = registry
            .names()
            .filter(|name| {
                registry.lookup(name).is_some_and(|(_, spec)| matches!(spec.target, FunctionTarget::Runtime { .. }))
            })
            .map(|name| (name.to_string(), OnceLock::new()))
            .collect();
        Ok(LocalInvoker { inner: Arc::new(Inner { registry, http, warm_pools }) })
    }

    pub fn registry(&self) -> &FunctionRegistry {
        &self.inner.registry
    }

    /// Runs one task; the same as [`TaskInvoker::invoke`] without the boxing.
    pub async fn run(&self, request: TaskRequest) -> Result<Payload, Failure> {
        self.inner.dispatch(request).await
    }
}

impl std::fmt::Debug for LocalInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalInvoker").field("registry", &self.inner.registry).finish()
    }
}

impl TaskInvoker for LocalInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.dispatch(request).await })
    }
}

impl Inner {
    /// The warm pool of the registered `runtime` function `name`, started on first use on the
    /// current tokio runtime; `region` becomes its processes' `AWS_REGION`.
    pub(crate) fn warm_pool(&self, name: &str, region: &str, request_id: &str) -> Result<&WarmPool, Failure> {
        let spec = self.registry.lookup(name).map(|(_, spec)| spec);
        match (self.warm_pools.get(name), spec.map(|spec| &spec.target)) {
            (Some(cell), Some(FunctionTarget::Runtime { argv, env, concurrency })) => {
                Ok(cell.get_or_init(|| WarmPool::start(name, argv, env, *concurrency, region)))
            }
            // The pools are made from the same registry; this guards programmatic misuse.
            _ => Err(lambda::service_failure(
                "ServiceException",
                &format!("function {name} has no warm runtime pool"),
                500,
                request_id,
            )),
        }
    }

    async fn dispatch(&self, request: TaskRequest) -> Result<Payload, Failure> {
        tracing::debug!(
            state = %request.state_name,
            resource = %request.resource_arn,
            "invoking task"
        );
        let result = match &request.resource {
            Resource::LambdaFunction { arn, .. } => {
                let arn = arn.clone();
                lambda::invoke_function_arn(self, &request, &arn).await
            }
            Resource::Integration { service, action, pattern: IntegrationPattern::RequestResponse } => {
                match (service.as_str(), action.as_str()) {
                    ("lambda", "invoke") => lambda::invoke_integration(self, &request).await,
                    ("http", "invoke") => http_task::invoke(self, &request).await,
                    _ => Err(unsupported(&request)),
                }
            }
            _ => Err(unsupported(&request)),
        };
        if let Err(failure) = &result {
            tracing::debug!(state = %request.state_name, %failure, "task failed");
        }
        result
    }
}

fn unsupported(request: &TaskRequest) -> Failure {
    Failure::runtime(format!(
        "An error occurred while executing the state '{}'. stepmap cannot run the resource '{}'.",
        request.state_name, request.resource_arn
    ))
}

/// A task whose Parameters cannot start it (missing or mistyped fields). AWS reports these
/// as `States.Runtime`, which Retry and Catch do not handle.
pub(crate) fn invalid_parameters(request: &TaskRequest, problem: &str) -> Failure {
    Failure::runtime(format!(
        "An error occurred while executing the state '{}'. The Parameters '{}' could not be used \
         to start the Task: [{}]",
        request.state_name,
        request.parameters.to_text(),
        problem
    ))
}

/// `States.DataLimitExceeded` when a result is over 256 KiB. `label` is what AWS names in the
/// cause: the service (`lambda`, `http`) for integrations, the ARN for a Lambda function
/// resource (corpus: `test_states_errors ... data_limit_exceeded_on_large_utf8_response`).
pub(crate) fn check_result_size(result: &Payload, label: &str) -> Result<(), Failure> {
    let size = result.len();
    if size > MAX_RESULT_BYTES {
        return Err(Failure::new(
            names::DATA_LIMIT_EXCEEDED,
            format!(
                "The state/task '{label}' returned a result with a size exceeding the maximum \
                 number of bytes service limit."
            ),
        ));
    }
    Ok(())
}

/// `States.Timeout` for a task that outlived its TimeoutSeconds. AWS gives no cause.
pub(crate) fn task_timeout() -> Failure {
    Failure { error: Some(names::TIMEOUT.to_string()), cause: None }
}

pub(crate) fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Which limit bounds a function run: the state's TimeoutSeconds or the function's own timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    Task(Duration),
    Function(Duration),
}

impl Deadline {
    /// The earlier of the two limits; the task's wins a tie because its failure
    /// (`States.Timeout`) is the one the interpreter would report anyway.
    pub fn earliest(task: Option<Duration>, function: Option<Duration>) -> Option<Deadline> {
        match (task, function) {
            (Some(t), Some(f)) if f < t => Some(Deadline::Function(f)),
            (Some(t), _) => Some(Deadline::Task(t)),
            (None, Some(f)) => Some(Deadline::Function(f)),
            (None, None) => None,
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            Deadline::Task(d) | Deadline::Function(d) => d,
        }
    }
}

/// Compact JSON (`{"a":1,"b":[1,2]}`), the form AWS uses for `lambda:invoke` error causes.
pub(crate) fn compact_json(value: &Value) -> String {
    // Serialising a `Value` into a String cannot fail (no I/O, string keys only).
    serde_json::to_string(value).unwrap_or_default()
}

/// JSON with Python's default separators (`{"a": 1, "b": [1, 2]}`). AWS formats the cause of
/// a Lambda function-ARN task failure this way, and the Python Lambda runtime writes results
/// this way, so echoing functions see the same bytes (and Content-Length) as on AWS.
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if value.serialize(&mut serializer).is_err() {
        return compact_json(value);
    }
    String::from_utf8(out).unwrap_or_else(|_| compact_json(value))
}

/// [`python_json`] of the value canonical JSON `text` denotes, without parsing it: in
/// canonical text every `,` and `:` outside strings separates, and gets its space.
pub(crate) fn python_text(text: &JsonText) -> String {
    let bytes = text.as_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8);
    let mut start = 0;
    text.for_each_outside_strings([b',', b':'], |i, _| {
        out.extend_from_slice(&bytes[start..=i]);
        out.push(b' ');
        start = i + 1;
    });
    out.extend_from_slice(&bytes[start..]);
    // Only ASCII spaces were inserted into UTF-8 text.
    String::from_utf8(out).unwrap_or_else(|_| text.as_str().to_owned())
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn python_text_spaces_canonical_text_as_python_json_spaces_the_value() {
        for value in [
            json!({"Items": [{"a": 1, "b": "x,y: z"}, [], {}], "BatchInput": {"k": null}}),
            json!(["quote \" , : inside", "back\\slash\\", "\\\",:", "é\n\t"]),
            json!("plain"),
            json!(1.5),
        ] {
            let text = JsonText::canonicalize(value.to_string().as_bytes()).unwrap();
            assert_eq!(python_text(&text), python_json(&value), "{text}");
        }
    }
}
