//! The server side of the AWS Lambda Runtime API, the HTTP protocol every Lambda runtime
//! polls (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//!
//! | request | meaning |
//! |---|---|
//! | `GET /2018-06-01/runtime/invocation/next` | long poll; answers with the next event |
//! | `POST /2018-06-01/runtime/invocation/{id}/response` | the invocation's result → `202` |
//! | `POST /2018-06-01/runtime/invocation/{id}/error` | a function error → `202` |
//! | `POST /2018-06-01/runtime/init/error` | the runtime could not initialise → `202` |
//!
//! One server serves one runtime process (one generation of a pool slot, see `warm_pool`): it
//! only parses HTTP and hands every call to the slot over a channel, so all decisions (which
//! event, whether a request id is current) are taken in one place, the slot's task. The server
//! runs inside that task too ([`RuntimeApiServer::serve`] is a future the slot polls beside
//! its other work), so that a call and its answer pass between two futures of one task, not
//! between tasks that the runtime's threads would have to wake for each other. Dropping the
//! future stops the listener and every open connection with it.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::compact_json;

/// Lambda's limit on a synchronous response payload, the number its error message states
/// ("6 MB"); a bigger response or error body is refused with `413` and fails the invocation
/// with `Function.ResponseSizeTooLarge`.
pub(crate) const MAX_RESPONSE_BYTES: usize = 6_291_556;

const PREFIX: &str = "/2018-06-01/runtime/";

/// One call of the runtime, as the slot sees it. Every variant carries the channel the HTTP
/// answer comes back on.
#[derive(Debug)]
pub(crate) enum RuntimeCall {
    /// `GET .../invocation/next`: answered when the slot has an event for this runtime.
    Next { reply: oneshot::Sender<NextInvocation> },
    /// `POST .../invocation/{id}/response`.
    Response { request_id: String, body: Bytes, reply: oneshot::Sender<Verdict> },
    /// `POST .../invocation/{id}/error`; `error_type` is the `Lambda-Runtime-Function-Error-Type` header.
    Error { request_id: String, error_type: Option<String>, body: Bytes, reply: oneshot::Sender<Verdict> },
    /// A response or error body over [`MAX_RESPONSE_BYTES`]: the invocation fails.
    TooLarge { request_id: String, reply: oneshot::Sender<Verdict> },
    /// `POST .../init/error`.
    InitError { error_type: Option<String>, body: Bytes, reply: oneshot::Sender<Verdict> },
}

/// The event handed to a runtime polling `next`, with the headers Lambda sends along.
#[derive(Clone, Debug)]
pub(crate) struct NextInvocation {
    pub request_id: String,
    pub event: Bytes,
    /// Milliseconds since the Unix epoch at which the invocation times out.
    pub deadline_ms: u64,
    pub invoked_function_arn: String,
    pub trace_id: String,
}

/// The slot's answer to a POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `202 Accepted`.
    Accepted,
    /// `400`: the request id is not the invocation this runtime holds (late, or made up).
    UnknownRequest,
    /// `403`: an init error from a runtime that already initialised.
    NotInitializing,
}

/// A Runtime API endpoint bound to `127.0.0.1:<ephemeral port>`, served by [`Self::serve`].
pub(crate) struct RuntimeApiServer {
    listener: TcpListener,
    address: SocketAddr,
}

impl RuntimeApiServer {
    /// Binds a fresh loopback port.
    pub(crate) async fn bind() -> io::Result<RuntimeApiServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        Ok(RuntimeApiServer { listener, address })
    }

    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves the endpoint, handing every call to `calls`, for as long as the future is polled:
    /// it never completes. The connections are driven inside it (not spawned), on the task
    /// that polls it; the calls' receiver must be polled by the same task or keep up on its
    /// own. Dropping the future closes the listener and every connection.
    pub(crate) async fn serve(self, calls: mpsc::Sender<RuntimeCall>) -> Infallible {
        let mut connections = FuturesUnordered::new();
        // After a failed accept, accepting waits a while; the connections go on meanwhile.
        let mut backoff: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                () = async { if let Some(sleep) = backoff.as_mut() { sleep.await } }, if backoff.is_some() => {
                    backoff = None;
                }
                accepted = self.listener.accept(), if backoff.is_none() => match accepted {
                    Ok((stream, _peer)) => {
                        // Small request/response exchanges: without NODELAY, Nagle's algorithm
                        // and delayed ACKs add tens of milliseconds to every invocation.
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%error, "runtime API: cannot set TCP_NODELAY");
                        }
                        let calls = calls.clone();
                        connections.push(async move {
                            let service = service_fn(move |request| handle(request, calls.clone()));
                            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                                tracing::debug!(%error, "runtime API connection ended");
                            }
                        });
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "runtime API: accept failed");
                        backoff = Some(Box::pin(tokio::time::sleep(std::time::Duration::from_millis(50))));
                    }
                },
                Some(()) = connections.next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// What a request asks for, from its method and path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Next,
    Post(Post),
}

/// The POST calls: they carry a body and get a [`Verdict`].
#[derive(Debug, PartialEq, Eq)]
enum Post {
    Response(String),
    Error(String),
    InitError,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(PREFIX)?;
    match (method, rest) {
        (&Method::GET, "invocation/next") => Some(Route::Next),
        (&Method::POST, "init/error") => Some(Route::Post(Post::InitError)),
        (&Method::POST, rest) => {
            let rest = rest.strip_prefix("invocation/")?;
            let (id, action) = rest.rsplit_once('/')?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            match action {
                "response" => Some(Route::Post(Post::Response(id.to_string()))),
                "error" => Some(Route::Post(Post::Error(id.to_string()))),
                _ => None,
            }
        }
        _ => None,
    }
}

async fn handle(
    request: Request<Incoming>,
    calls: mpsc::Sender<RuntimeCall>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let post = match route(request.method(), request.uri().path()) {
        None => {
            let message = format!("no such Runtime API call: {} {}", request.method(), request.uri().path());
            return Ok(error_response(StatusCode::NOT_FOUND, "InvalidRequest", &message));
        }
        Some(Route::Next) => {
            let (reply, answer) = oneshot::channel();
            if calls.send(RuntimeCall::Next { reply }).await.is_err() {
                return Ok(shutting_down());
            }
            return Ok(match answer.await {
                Ok(next) => next_response(next),
                // The slot ended this runtime's generation (the process is being replaced).
                Err(_) => shutting_down(),
            });
        }
        Some(Route::Post(post)) => post,
    };

    let error_type = request
        .headers()
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let body = Limited::new(request.into_body(), MAX_RESPONSE_BYTES).collect().await.map(|b| b.to_bytes());
    let too_large = match &body {
        Ok(_) => false,
        Err(error) => error.is::<http_body_util::LengthLimitError>(),
    };
    let (reply, answer) = oneshot::channel();
    let call = match (post, body) {
        (Post::Response(request_id) | Post::Error(request_id), Err(_)) if too_large => {
            RuntimeCall::TooLarge { request_id, reply }
        }
        (_, Err(error)) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                &format!("cannot read the body: {error}"),
            ))
        }
        (Post::Response(request_id), Ok(body)) => RuntimeCall::Response { request_id, body, reply },
        (Post::Error(request_id), Ok(body)) => RuntimeCall::Error { request_id, error_type, body, reply },
        (Post::InitError, Ok(body)) => RuntimeCall::InitError { error_type, body, reply },
    };
    if calls.send(call).await.is_err() {
        return Ok(shutting_down());
    }
    Ok(match answer.await {
        Ok(Verdict::Accepted) if too_large => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("the payload exceeds {MAX_RESPONSE_BYTES} bytes"),
        ),
        Ok(Verdict::Accepted) => {
            let mut response = Response::new(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)));
            *response.status_mut() = StatusCode::ACCEPTED;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Ok(Verdict::UnknownRequest) => {
            error_response(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
        }
        Ok(Verdict::NotInitializing) => error_response(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "The runtime has already initialised; init errors are accepted only before the first invocation",
        ),
        Err(_) => shutting_down(),
    })
}

fn next_response(next: NextInvocation) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(next.event));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut set = |name: &'static str, value: &str| match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(error) => tracing::warn!(header = name, %error, "runtime API: header value not sendable"),
    };
    set("Lambda-Runtime-Aws-Request-Id", &next.request_id);
    set("Lambda-Runtime-Deadline-Ms", &next.deadline_ms.to_string());
    set("Lambda-Runtime-Invoked-Function-Arn", &next.invoked_function_arn);
    set("Lambda-Runtime-Trace-Id", &next.trace_id);
    response
}

fn shutting_down() -> Response<Full<Bytes>> {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "the runtime is being shut down")
}

fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = compact_json(&json!({"errorMessage": message, "errorType": error_type}));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(route(&get, "/2018-06-01/runtime/invocation/next"), Some(Route::Next));
        let post_route = |p: Post| Some(Route::Post(p));
        assert_eq!(
            route(&post, "/2018-06-01/runtime/invocation/abc-1/response"),
            post_route(Post::Response("abc-1".into()))
        );
        assert_eq!(route(&post, "/2018-06-01/runtime/invocation/abc-1/error"), post_route(Post::Error("abc-1".into())));
        assert_eq!(route(&post, "/2018-06-01/runtime/init/error"), post_route(Post::InitError));
        assert_eq!(route(&post, "/2018-06-01/runtime/invocation/next"), None);
        assert_eq!(route(&get, "/2018-06-01/runtime/invocation/abc/response"), None);
        assert_eq!(route(&post, "/2018-06-01/runtime/invocation//response"), None);
        assert_eq!(route(&post, "/2018-06-01/runtime/invocation/a/b/response"), None);
        assert_eq!(route(&get, "/2020-01-01/runtime/invocation/next"), None);
    }
}
