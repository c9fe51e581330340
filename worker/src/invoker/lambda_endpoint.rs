//! Functions behind an HTTP endpoint speaking the Lambda Invoke API — for example the AWS
//! Lambda Runtime Interface Emulator, or any server implementing
//! `POST {endpoint}/2015-03-31/functions/{name}/invocations`.
//!
//! The event is the request body. `200` + body is the result; a function error is signalled
//! by the `X-Amz-Function-Error` header with the error object as body. Any other status is a
//! Lambda service error, reported as `Lambda.<ErrorCode>` (from `X-Amzn-ErrorType`, else from
//! the status) with the AWS SDK's cause wording. A connection failure is
//! `Lambda.SdkClientException` (`Unable to execute HTTP request: ...`), as the SDK says.

use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde_json::Value;
use stepmap_asl::failure::Failure;

use super::lambda::{service_failure, Invocation, RawInvocation};
use super::{compact_json, task_timeout, Deadline};

/// Calls the function at `endpoint` (a base URL).
pub async fn invoke(
    client: &reqwest::Client,
    endpoint: &str,
    invocation: Invocation<'_>,
) -> Result<RawInvocation, Failure> {
    let url = invocation_url(endpoint, invocation.function, invocation.qualifier)?;
    let mut builder = client
        .post(url.clone())
        .header("Content-Type", "application/json")
        .header("X-Amz-Invocation-Type", "RequestResponse")
        .body(invocation.event.clone());
    if invocation.want_log {
        builder = builder.header("X-Amz-Log-Type", "Tail");
    }
    let call = async {
        let response = builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, headers, body))
    };
    let outcome = match invocation.deadline {
        Some(deadline) => tokio::time::timeout(deadline.duration(), call).await.ok(),
        None => Some(call.await),
    };
    let (status, headers, body) = match outcome {
        Some(Ok(parts)) => parts,
        Some(Err(error)) => {
            tracing::warn!(function = invocation.function, %url, %error, "Lambda endpoint unreachable");
            return Err(Failure::new("Lambda.SdkClientException", format!("Unable to execute HTTP request: {error}")));
        }
        None => {
            let deadline = invocation.deadline;
            tracing::warn!(function = invocation.function, ?deadline, "Lambda endpoint timed out");
            return match invocation.deadline {
                Some(Deadline::Function(limit)) => Ok(timed_out(&invocation, limit.as_secs_f64())),
                _ => Err(task_timeout()),
            };
        }
    };

    let header = |name: &str| header_text(&headers, name);
    let request_id = header("x-amzn-RequestId").unwrap_or_else(|| invocation.request_id.clone());
    if !status.is_success() {
        return Err(service_error(status.as_u16(), &headers, &body, &request_id));
    }
    Ok(RawInvocation {
        request_id,
        executed_version: header("X-Amz-Executed-Version").unwrap_or_else(|| invocation.executed_version.clone()),
        payload: body.to_vec(),
        function_error: headers.contains_key("X-Amz-Function-Error"),
        log_result: if invocation.want_log {
            // The endpoint's own log tail if it sent one, else an empty log.
            Some(header("X-Amz-Log-Result").unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(b"")))
        } else {
            None
        },
    })
}

/// `{endpoint}/2015-03-31/functions/{name}/invocations[?Qualifier=q]`, path-encoded.
fn invocation_url(endpoint: &str, function: &str, qualifier: Option<&str>) -> Result<reqwest::Url, Failure> {
    let bad = |why: String| {
        Failure::new(
            "Lambda.SdkClientException",
            format!("Unable to execute HTTP request: bad endpoint {endpoint:?}: {why}"),
        )
    };
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    url.path_segments_mut().map_err(|()| bad("not a base URL".into()))?.pop_if_empty().extend([
        "2015-03-31",
        "functions",
        function,
        "invocations",
    ]);
    if let Some(qualifier) = qualifier {
        url.query_pairs_mut().append_pair("Qualifier", qualifier);
    }
    Ok(url)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A non-2xx answer from the endpoint, as Lambda's REST-JSON error: the code in
/// `X-Amzn-ErrorType` (`Code:docs-url`) or the body's `__type`/`code`, the message in the
/// body's `message`/`Message`.
fn service_error(status: u16, headers: &HeaderMap, body: &[u8], request_id: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field =
        |names: &[&str]| names.iter().find_map(|name| parsed.as_ref()?.get(*name)?.as_str().map(str::to_string));
    let code = header_text(headers, "X-Amzn-ErrorType")
        .map(|t| t.split(':').next().unwrap_or_default().to_string())
        .or_else(|| field(&["__type", "code", "Code"]).map(|t| t.rsplit('#').next().unwrap_or_default().to_string()))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            match status {
                404 => "ResourceNotFoundException",
                429 => "TooManyRequestsException",
                400..=499 => "InvalidRequestContentException",
                _ => "ServiceException",
            }
            .to_string()
        });
    let message = field(&["message", "Message", "errorMessage"]).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body).trim().to_string();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text
        }
    });
    service_failure(&code, &message, status, request_id)
}

/// The function's own timeout passed; Lambda reports `Sandbox.Timedout`.
fn timed_out(invocation: &Invocation<'_>, seconds: f64) -> RawInvocation {
    let payload = serde_json::json!({
        "errorType": "Sandbox.Timedout",
        "errorMessage": format!(
            "RequestId: {} Error: Task timed out after {seconds:.2} seconds",
            invocation.request_id
        ),
    });
    RawInvocation {
        request_id: invocation.request_id.clone(),
        executed_version: invocation.executed_version.clone(),
        payload: compact_json(&payload).into_bytes(),
        function_error: true,
        log_result: None,
    }
}
