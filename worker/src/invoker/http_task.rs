//! The HTTP Task, `arn:aws:states:::http:invoke`.
//!
//! Parameters (AWS HTTP Task fields): `ApiEndpoint` (required URL), `Method` (required: GET,
//! POST, PUT, DELETE, PATCH, OPTIONS, HEAD), `Headers`, `QueryParameters`, `RequestBody`,
//! `Transform` (`RequestBodyEncoding` NONE | URL_ENCODED, `RequestEncodingOptions.ArrayFormat`
//! INDICES | REPEAT | COMMAS | BRACKETS), and `Authentication` / `InvocationConfig`, which
//! are accepted and ignored: stepmap has no EventBridge connections, put credentials in
//! `Headers` instead. Unlike AWS, plain `http://` endpoints are allowed (self-hosting).
//!
//! Result, as AWS gives it: `{"Headers": {"name": ["value", ...]}, "ResponseBody": ...,
//! "StatusCode": 200, "StatusText": "OK"}`; a JSON response body (Content-Type `...json`) is
//! parsed, any other body is a string. A non-2xx status fails with
//! `States.Http.StatusCode.<code>` and, as Cause, that same object as JSON, so a Catcher can
//! read the response. A request that cannot be sent or gets no answer within 60 s fails
//! with `States.Http.Socket`.

use std::time::Duration;

use serde_json::{Map, Value};
use stepmap_asl::failure::Failure;
use stepmap_asl::task::TaskRequest;

use stepmap_asl::payload::Payload;

use super::{check_result_size, compact_json, invalid_parameters, task_timeout, Inner};

/// AWS stops waiting for an HTTP Task's response after 60 seconds.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Error name when the request could not be made or timed out.
pub const HTTP_SOCKET: &str = "States.Http.Socket";

const FIELDS: &[&str] = &[
    "ApiEndpoint",
    "Method",
    "Authentication",
    "InvocationConfig",
    "Headers",
    "QueryParameters",
    "RequestBody",
    "Transform",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrayFormat {
    Indices,
    Repeat,
    Commas,
    Brackets,
}

pub(crate) async fn invoke(inner: &Inner, request: &TaskRequest) -> Result<Payload, Failure> {
    let invalid = |problem: &str| invalid_parameters(request, problem);
    let parameters = request.parameters.value();
    let Value::Object(params) = parameters.as_ref() else {
        return Err(invalid("The Parameters must be a JSON object"));
    };
    if let Some(key) = params.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(&format!("The field \"{key}\" is not supported by Step Functions")));
    }

    let endpoint = match params.get("ApiEndpoint") {
        Some(Value::String(endpoint)) => endpoint,
        Some(_) => return Err(invalid("The value for the field 'ApiEndpoint' must be a STRING")),
        None => return Err(invalid("The field 'ApiEndpoint' is required but was missing")),
    };
    let mut url = match reqwest::Url::parse(endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(_) | Err(_) => return Err(invalid(&format!("The ApiEndpoint '{endpoint}' is not a valid http(s) URL"))),
    };
    let method = match params.get("Method").and_then(Value::as_str) {
        Some(m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD")) => {
            reqwest::Method::from_bytes(m.as_bytes()).map_err(|_| invalid("invalid Method"))?
        }
        Some(other) => return Err(invalid(&format!("The Method '{other}' is not supported"))),
        None => return Err(invalid("The field 'Method' is required and must be a STRING")),
    };
    if params.contains_key("Authentication") || params.contains_key("InvocationConfig") {
        tracing::debug!(state = %request.state_name, "HTTP Task connection settings are ignored by stepmap");
    }

    if let Some(query) = params.get("QueryParameters") {
        let Value::Object(query) = query else {
            return Err(invalid("QueryParameters must be a JSON object"));
        };
        let mut pairs = Vec::new();
        for (key, value) in query {
            match value {
                Value::Array(items) => {
                    for item in items {
                        pairs.push((
                            key.clone(),
                            scalar_text(item).ok_or_else(|| {
                                invalid("QueryParameters values must be strings, numbers, booleans or arrays of them")
                            })?,
                        ));
                    }
                }
                other => pairs.push((
                    key.clone(),
                    scalar_text(other).ok_or_else(|| {
                        invalid("QueryParameters values must be strings, numbers, booleans or arrays of them")
                    })?,
                )),
            }
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
    }

    let mut builder = inner.http.request(method, url.clone()).timeout(HTTP_TIMEOUT);
    let mut has_content_type = false;
    if let Some(headers) = params.get("Headers") {
        let Value::Object(headers) = headers else {
            return Err(invalid("Headers must be a JSON object"));
        };
        for (name, value) in headers {
            let value =
                scalar_text(value).ok_or_else(|| invalid("Headers values must be strings, numbers or booleans"))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&format!("'{name}' is not a valid header name")))?;
            let value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| invalid(&format!("the value of header '{name}' is not valid")))?;
            has_content_type |= name == reqwest::header::CONTENT_TYPE;
            builder = builder.header(name, value);
        }
    }

    let url_encoded = match params.get("Transform") {
        None | Some(Value::Null) => None,
        Some(Value::Object(transform)) => match transform.get("RequestBodyEncoding").and_then(Value::as_str) {
            None | Some("NONE") => None,
            Some("URL_ENCODED") => {
                let format =
                    transform.get("RequestEncodingOptions").and_then(|o| o.get("ArrayFormat")).and_then(Value::as_str);
                Some(match format {
                    None | Some("INDICES") => ArrayFormat::Indices,
                    Some("REPEAT") => ArrayFormat::Repeat,
                    Some("COMMAS") => ArrayFormat::Commas,
                    Some("BRACKETS") => ArrayFormat::Brackets,
                    Some(other) => return Err(invalid(&format!("ArrayFormat '{other}' is not supported"))),
                })
            }
            Some(other) => return Err(invalid(&format!("RequestBodyEncoding '{other}' is not supported"))),
        },
        Some(_) => return Err(invalid("Transform must be a JSON object")),
    };

    match (params.get("RequestBody"), url_encoded) {
        (None, _) => {}
        (Some(Value::Object(body)), Some(format)) => {
            let mut pairs = Vec::new();
            flatten_form(None, &Value::Object(body.clone()), format, &mut pairs);
            if !has_content_type {
                builder = builder.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            builder = builder.body(encode_form(&pairs));
        }
        (Some(_), Some(_)) => return Err(invalid("a URL_ENCODED RequestBody must be a JSON object")),
        (Some(Value::String(text)), None) => builder = builder.body(text.clone()),
        (Some(value), None) => {
            if !has_content_type {
                builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            builder = builder.body(compact_json(value));
        }
    }

    let call = async {
        let response = builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, headers, body))
    };
    // The state's TimeoutSeconds, when shorter than the HTTP Task's own 60 s, wins.
    let outcome = match request.timeout.filter(|t| *t < HTTP_TIMEOUT) {
        Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| task_timeout())?,
        None => call.await,
    };
    let (status, headers, body) = outcome.map_err(|error| {
        tracing::warn!(state = %request.state_name, %url, %error, "HTTP Task request failed");
        let cause = if error.is_timeout() {
            format!("The HTTP request to '{url}' timed out after {} seconds", HTTP_TIMEOUT.as_secs())
        } else {
            format!("The HTTP request to '{url}' failed: {error}")
        };
        Failure::new(HTTP_SOCKET, cause)
    })?;

    let mut header_map: Map<String, Value> = Map::new();
    for (name, value) in &headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match header_map.entry(name.as_str()) {
            serde_json::map::Entry::Occupied(mut entry) => {
                if let Value::Array(values) = entry.get_mut() {
                    values.push(value);
                }
            }
            serde_json::map::Entry::Vacant(entry) => {
                entry.insert(Value::Array(vec![value]));
            }
        }
    }
    let is_json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let text = String::from_utf8_lossy(&body).into_owned();
    let response_body =
        if is_json { serde_json::from_str(&text).unwrap_or(Value::String(text)) } else { Value::String(text) };

    let mut result = Map::new();
    result.insert("Headers".into(), Value::Object(header_map));
    result.insert("ResponseBody".into(), response_body);
    result.insert("StatusCode".into(), status.as_u16().into());
    result.insert("StatusText".into(), status.canonical_reason().unwrap_or_default().into());
    let result = Value::Object(result);

    if !status.is_success() {
        tracing::debug!(state = %request.state_name, %url, %status, "HTTP Task got an error status");
        return Err(Failure::new(format!("States.Http.StatusCode.{}", status.as_u16()), compact_json(&result)));
    }
    let result = Payload::Value(result);
    check_result_size(&result, "http")?;
    Ok(result)
}

/// The text of a header/query value; `None` for objects and arrays.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Flattens a JSON body into form pairs: nested objects as `a[b]=c`, arrays as the
/// ArrayFormat says (`a[0]=x`, `a=x&a=y`, `a=x,y`, `a[]=x`).
fn flatten_form(prefix: Option<&str>, value: &Value, format: ArrayFormat, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, item) in object {
                let name = match prefix {
                    Some(prefix) => format!("{prefix}[{key}]"),
                    None => key.clone(),
                };
                flatten_form(Some(&name), item, format, out);
            }
        }
        Value::Array(items) => {
            let name = prefix.unwrap_or_default();
            if format == ArrayFormat::Commas && items.iter().all(|i| !i.is_object() && !i.is_array()) {
                let joined: Vec<String> = items.iter().filter_map(scalar_text).collect();
                out.push((name.to_string(), joined.join(",")));
                return;
            }
            for (index, item) in items.iter().enumerate() {
                let item_name = match format {
                    ArrayFormat::Indices => format!("{name}[{index}]"),
                    ArrayFormat::Brackets => format!("{name}[]"),
                    ArrayFormat::Repeat | ArrayFormat::Commas => name.to_string(),
                };
                flatten_form(Some(&item_name), item, format, out);
            }
        }
        scalar => {
            if let (Some(name), Some(text)) = (prefix, scalar_text(scalar)) {
                out.push((name.to_string(), text));
            }
        }
    }
}

/// `application/x-www-form-urlencoded` serialisation (the WHATWG byte serializer).
fn encode_form(pairs: &[(String, String)]) -> String {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(byte as char),
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}
