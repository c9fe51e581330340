//! Lambda functions as Task resources, in AWS's two forms:
//!
//! * `arn:aws:lambda:<region>:<account>:function:<name>`: the effective input is the event;
//!   the result is the function's payload itself; a function error fails the task with the
//!   `errorType` as Error and the error object (plus `requestId`) as Cause, serialised with
//!   Python's `", "` / `": "` separators.
//! * `arn:aws:states:::lambda:invoke`: Parameters `FunctionName` (name, partial or full ARN),
//!   `Payload`, `Qualifier`, `InvocationType` (RequestResponse only), `LogType`,
//!   `ClientContext` (accepted, unused); the result is the Invoke response
//!   (`ExecutedVersion`, `Payload`, `SdkHttpMetadata`, `SdkResponseMetadata`, `StatusCode`);
//!   a function error's Cause is the same object as compact JSON.
//!
//! Shapes pinned from the conformance corpus (`corpus/services`): `test_lambda_task_service`
//! `test_invoke_json_values_*` / `test_invoke_unsupported_param` (result shape, string
//! payloads sent raw, null payload sent as `{}`, LogType Tail), `test_task_lambda_*` and
//! `test_task_service_lambda_*` (error causes), `test_no_such_function` (unknown function),
//! `test_states_errors ... data_limit_exceeded` (oversized results).

use bytes::Bytes;
use serde_json::{Map, Value};
use stepmap_asl::failure::Failure;
use stepmap_asl::payload::{JsonText, Payload};
use stepmap_asl::task::TaskRequest;

use super::{
    check_result_size, compact_json, invalid_parameters, new_request_id, python_json, python_text, Deadline, Inner,
};
use crate::function_registry::{FunctionRef, FunctionTarget};
use crate::invoker::{command, lambda_endpoint};

/// Error name AWS gives when a function reports an error without an `errorType`.
pub const LAMBDA_UNKNOWN: &str = "Lambda.Unknown";

/// What a function invocation produced, before it is shaped for one of the two resource
/// forms. Both the command and the endpoint transports produce this.
#[derive(Clone, Debug)]
pub struct RawInvocation {
    pub request_id: String,
    pub executed_version: String,
    /// The response payload exactly as the function wrote it.
    pub payload: Vec<u8>,
    /// Whether the payload is an error object (Lambda's `X-Amz-Function-Error`).
    pub function_error: bool,
    /// Base64 of the last 4 KiB of the function's log, when `LogType` is `Tail`.
    pub log_result: Option<String>,
}

/// One call of a registered function.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    /// The function's name in the registry.
    pub function: &'a str,
    pub qualifier: Option<&'a str>,
    pub request_id: String,
    pub executed_version: String,
    pub region: &'a str,
    /// The event, as bytes to send (a warm runtime's: the payload's own text, not a copy).
    pub event: Bytes,
    pub want_log: bool,
    pub deadline: Option<Deadline>,
}

/// The `arn:aws:lambda:...:function:NAME` resource. The result is the payload as canonical
/// text when it is one JSON value: a Distributed Map child that passes it through then never
/// builds a value of it.
pub(crate) async fn invoke_function_arn(inner: &Inner, request: &TaskRequest, arn: &str) -> Result<Payload, Failure> {
    let reference = FunctionRef::parse(arn).unwrap_or_else(|| FunctionRef {
        name: arn.to_string(),
        region: None,
        account: None,
        qualifier: None,
    });
    let event = match &request.parameters {
        Payload::Value(parameters) => Event::Value(parameters),
        Payload::Text(parameters) => Event::Text(parameters),
    };
    let raw = call_function(inner, request, &reference, event, false).await?;
    if raw.function_error {
        return Err(function_failure(&raw, CauseStyle::Python));
    }
    let result = payload_result(raw.payload);
    check_result_size(&result, &request.resource_arn)?;
    Ok(result)
}

/// A function's payload as the task's result: its canonical text when it is one JSON value
/// (the payload itself, not a copy, when it is canonical already: a batch's response is
/// megabytes), else what parsing makes of it.
fn payload_result(mut payload: Vec<u8>) -> Payload {
    // A trailing newline (`print(json.dumps(...))`) is cut off in place; leading whitespace,
    // rare, is skipped in a copy. Parsing trims both anyway.
    let canonical = if payload.trim_ascii_start().len() == payload.len() {
        payload.truncate(payload.trim_ascii_end().len());
        JsonText::canonicalize_owned(payload)
    } else {
        JsonText::canonicalize(payload.trim_ascii()).ok_or(payload)
    };
    match canonical {
        Ok(text) => Payload::Text(text),
        Err(payload) => Payload::Value(parse_payload(&payload)),
    }
}

/// The `arn:aws:states:::lambda:invoke` integration.
pub(crate) async fn invoke_integration(inner: &Inner, request: &TaskRequest) -> Result<Payload, Failure> {
    let parameters = request.parameters.value();
    let Value::Object(params) = parameters.as_ref() else {
        return Err(invalid_parameters(request, "The Parameters must be a JSON object"));
    };
    for key in params.keys() {
        if !matches!(
            key.as_str(),
            "FunctionName" | "Payload" | "Qualifier" | "InvocationType" | "LogType" | "ClientContext"
        ) {
            return Err(invalid_parameters(
                request,
                &format!("The field \"{key}\" is not supported by Step Functions"),
            ));
        }
    }
    let function_name = match params.get("FunctionName") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(invalid_parameters(request, "The value for the field 'FunctionName' must be a STRING")),
        None => return Err(invalid_parameters(request, "The field 'FunctionName' is required but was missing")),
    };
    // A name Lambda would reject is simply not found here: no function can be registered
    // under it.
    let mut reference = FunctionRef::parse(function_name).unwrap_or_else(|| FunctionRef {
        name: function_name.clone(),
        region: None,
        account: None,
        qualifier: None,
    });
    match params.get("Qualifier") {
        None | Some(Value::Null) => {}
        Some(Value::String(q)) if !q.is_empty() => reference.qualifier = Some(q.clone()),
        Some(_) => {
            return Err(invalid_parameters(request, "The value for the field 'Qualifier' must be a non-empty STRING"))
        }
    }
    match params.get("InvocationType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "RequestResponse" => {}
        Some(other) => {
            return Err(invalid_parameters(
                request,
                &format!("stepmap supports InvocationType 'RequestResponse' only, got {other}"),
            ))
        }
    }
    let want_log = match params.get("LogType") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "None" => false,
        Some(Value::String(t)) if t == "Tail" => true,
        Some(other) => {
            return Err(invalid_parameters(request, &format!("LogType must be 'None' or 'Tail', got {other}")))
        }
    };
    if params.contains_key("ClientContext") {
        tracing::debug!(state = %request.state_name, "lambda:invoke ClientContext is not passed to local functions");
    }
    let event = event_of(params.get("Payload"));

    let raw = call_function(inner, request, &reference, event, want_log).await?;
    if raw.function_error {
        return Err(function_failure(&raw, CauseStyle::Compact));
    }
    let result = Payload::Value(invoke_response(&raw));
    check_result_size(&result, "lambda")?;
    Ok(result)
}

/// The bytes lambda:invoke sends for `Payload` (AWS behaviour, corpus
/// `test_invoke_json_values_*`, `test_invoke`): absent or null → `{}`; a string holding JSON
/// is sent as that JSON text (so `"0.0"` arrives as the number 0.0); any other string as a
/// JSON string; other values as JSON.
fn event_of(payload: Option<&Value>) -> Event<'_> {
    match payload {
        None | Some(Value::Null) => Event::Exact(Bytes::from_static(b"{}")),
        Some(Value::String(text)) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            Event::Exact(Bytes::copy_from_slice(text.as_bytes()))
        }
        Some(value) => Event::Value(value),
    }
}

/// A function's event before it is written for the function's transport.
enum Event<'a> {
    /// Bytes sent as they are (lambda:invoke's JSON-text string payloads).
    Exact(Bytes),
    /// A value or JSON text. Commands and endpoints get it spaced as Python spaces JSON, so
    /// that a function echoing its input returns what a Python function returning its event
    /// returns on AWS. Warm runtimes get the compact text: the runtime parses the event before
    /// the handler sees it and writes the result itself, so spacing would only cost a pass
    /// here and a longer parse there.
    Value(&'a Value),
    Text(&'a JsonText),
}

impl Event<'_> {
    fn bytes(self, target: &FunctionTarget) -> Bytes {
        let runtime = matches!(target, FunctionTarget::Runtime { .. });
        match self {
            Event::Exact(bytes) => bytes,
            Event::Value(value) if runtime => compact_json(value).into(),
            Event::Text(text) if runtime => Bytes::from_owner(text.clone()),
            Event::Value(value) => python_json(value).into(),
            Event::Text(text) => python_text(text).into(),
        }
    }
}

/// Looks the function up and runs it through its transport.
async fn call_function(
    inner: &Inner,
    request: &TaskRequest,
    reference: &FunctionRef,
    event: Event<'_>,
    want_log: bool,
) -> Result<RawInvocation, Failure> {
    let Some((name, spec)) = inner.registry.lookup(&reference.name) else {
        tracing::warn!(function = %reference.name, state = %request.state_name, "function not in the registry");
        return Err(function_not_found(reference, request));
    };
    let event = event.bytes(&spec.target);
    let invocation = Invocation {
        function: name,
        qualifier: reference.qualifier.as_deref(),
        request_id: new_request_id(),
        executed_version: executed_version(reference.qualifier.as_deref()),
        region: reference.region.as_deref().unwrap_or(&request.region),
        event,
        want_log,
        deadline: Deadline::earliest(request.timeout, spec.timeout),
    };
    tracing::debug!(function = name, request_id = %invocation.request_id, "invoking function");
    match &spec.target {
        FunctionTarget::Command { argv, env } => command::run(argv, env, invocation).await,
        FunctionTarget::Endpoint { url } => lambda_endpoint::invoke(&inner.http, url, invocation).await,
        FunctionTarget::Runtime { .. } => {
            // The ARN the runtime sees as `Lambda-Runtime-Invoked-Function-Arn`: what the
            // caller named, completed with the execution's region and account.
            let invoked_arn = format!(
                "arn:aws:lambda:{}:{}:function:{name}{}",
                invocation.region,
                reference.account.as_deref().unwrap_or(&request.account),
                reference.qualifier.as_deref().map(|q| format!(":{q}")).unwrap_or_default()
            );
            let pool = inner.warm_pool(name, invocation.region, &invocation.request_id)?;
            pool.invoke(invocation, invoked_arn, request.timeout, spec.timeout, request.progress.clone()).await
        }
    }
}

/// Every registered function has one version; a numeric qualifier names it, an alias
/// resolves to `$LATEST`.
fn executed_version(qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => q.to_string(),
        _ => "$LATEST".to_string(),
    }
}

/// `Lambda.ResourceNotFoundException` exactly as AWS words it (corpus
/// `test_task_service_lambda ... test_no_such_function`).
pub fn function_not_found(reference: &FunctionRef, request: &TaskRequest) -> Failure {
    let arn = reference.qualified_arn(&request.region, &request.account);
    service_failure("ResourceNotFoundException", &format!("Function not found: {arn}"), 404, &new_request_id())
}

/// A Lambda service error (not a function error), worded like the AWS Java SDK exception
/// that Step Functions reports: `Lambda.<Code>` / `<message> (Service: AWSLambda; ...)`.
pub fn service_failure(code: &str, message: &str, status: u16, request_id: &str) -> Failure {
    Failure::new(
        format!("Lambda.{code}"),
        format!(
            "{message} (Service: AWSLambda; Status Code: {status}; Error Code: {code}; Request ID: \
             {request_id}; Proxy: null)"
        ),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CauseStyle {
    /// `{"errorMessage": "...", "errorType": "..."}`: function-ARN resources.
    Python,
    /// `{"errorMessage":"...","errorType":"..."}`: lambda:invoke.
    Compact,
}

/// The failure for a function error. Error = `errorType`; Cause = the error object with the
/// invocation's `requestId` added, keys in the order AWS prints them (errorMessage,
/// errorType, requestId, stackTrace, then anything else). Without an `errorType` the error is
/// `Lambda.Unknown`, as AWS reports errors Lambda could not classify.
fn function_failure(raw: &RawInvocation, style: CauseStyle) -> Failure {
    let object = match serde_json::from_slice::<Value>(raw.payload.trim_ascii()) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    let error_type = object
        .as_ref()
        .and_then(|o| o.get("errorType"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match (object, error_type) {
        (Some(object), Some(error_type)) => {
            let cause = Value::Object(ordered_error_object(object, &raw.request_id));
            let cause = match style {
                CauseStyle::Python => python_json(&cause),
                CauseStyle::Compact => compact_json(&cause),
            };
            Failure::new(error_type, cause)
        }
        _ => Failure::new(
            LAMBDA_UNKNOWN,
            format!(
                "The cause could not be determined because Lambda did not return an error type. \
                 Returned payload: {}",
                String::from_utf8_lossy(raw.payload.trim_ascii())
            ),
        ),
    }
}

fn ordered_error_object(mut object: Map<String, Value>, request_id: &str) -> Map<String, Value> {
    let mut ordered = Map::new();
    for key in ["errorMessage", "errorType"] {
        if let Some(value) = object.remove(key) {
            ordered.insert(key.to_string(), value);
        }
    }
    let request_id = object.remove("requestId").unwrap_or_else(|| Value::String(request_id.to_string()));
    ordered.insert("requestId".to_string(), request_id);
    if let Some(trace) = object.remove("stackTrace") {
        ordered.insert("stackTrace".to_string(), trace);
    }
    ordered.extend(object);
    ordered
}

/// A function's success payload as a JSON value: empty → null; JSON → parsed; anything else
/// → the text as a JSON string (what Step Functions does with a raw, non-JSON payload).
pub fn parse_payload(payload: &[u8]) -> Value {
    let trimmed = payload.trim_ascii();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(trimmed).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(trimmed).into_owned()))
}

/// The lambda:invoke result: the Invoke response as Step Functions serialises it, key order
/// and header names copied from the corpus (`test_invoke_json_values_*`,
/// `test_invoke_unsupported_param` for `LogResult`).
fn invoke_response(raw: &RawInvocation) -> Value {
    let content_length = raw.payload.trim_ascii().len().to_string();
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let trace_id = trace_id();
    let text = |s: &str| Value::String(s.to_string());
    let list = |s: &str| Value::Array(vec![Value::String(s.to_string())]);

    let mut all = Map::new();
    if let Some(log) = &raw.log_result {
        all.insert("X-Amz-Log-Result".into(), list(log));
    }
    all.insert("X-Amz-Executed-Version".into(), list(&raw.executed_version));
    all.insert("x-amzn-Remapped-Content-Length".into(), list("0"));
    all.insert("Connection".into(), list("keep-alive"));
    all.insert("x-amzn-RequestId".into(), list(&raw.request_id));
    all.insert("Content-Length".into(), list(&content_length));
    all.insert("Date".into(), list(&date));
    all.insert("X-Amzn-Trace-Id".into(), list(&trace_id));
    all.insert("Content-Type".into(), list("application/json"));

    let mut headers = Map::new();
    headers.insert("Connection".into(), text("keep-alive"));
    headers.insert("Content-Length".into(), text(&content_length));
    headers.insert("Content-Type".into(), text("application/json"));
    headers.insert("Date".into(), text(&date));
    headers.insert("X-Amz-Executed-Version".into(), text(&raw.executed_version));
    if let Some(log) = &raw.log_result {
        headers.insert("X-Amz-Log-Result".into(), text(log));
    }
    headers.insert("x-amzn-Remapped-Content-Length".into(), text("0"));
    headers.insert("x-amzn-RequestId".into(), text(&raw.request_id));
    headers.insert("X-Amzn-Trace-Id".into(), text(&trace_id));

    let mut metadata = Map::new();
    metadata.insert("AllHttpHeaders".into(), Value::Object(all));
    metadata.insert("HttpHeaders".into(), Value::Object(headers));
    metadata.insert("HttpStatusCode".into(), 200.into());

    let mut response_metadata = Map::new();
    response_metadata.insert("RequestId".into(), text(&raw.request_id));

    let mut result = Map::new();
    result.insert("ExecutedVersion".into(), text(&raw.executed_version));
    if let Some(log) = &raw.log_result {
        result.insert("LogResult".into(), text(log));
    }
    result.insert("Payload".into(), parse_payload(&raw.payload));
    result.insert("SdkHttpMetadata".into(), Value::Object(metadata));
    result.insert("SdkResponseMetadata".into(), Value::Object(response_metadata));
    result.insert("StatusCode".into(), 200.into());
    Value::Object(result)
}

/// An X-Ray style trace header (`Root=1-<time>-<96 random bits>;Parent=...;Sampled=0`), only
/// so that the header has the usual form.
pub(crate) fn trace_id() -> String {
    let seconds = chrono::Utc::now().timestamp().max(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{seconds:08x}-{};Parent={};Sampled=0", &random[..24], &random[16..32])
}
