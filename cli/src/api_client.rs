//! What every client verb shares: `--endpoint`, a runtime, the leader-following client,
//! and printing results as the AWS CLI does (JSON, camelCase).

use clap::Args;
use serde_json::Value;
use stepmap_coordinator::api::StatesClient;
use stepmap_coordinator::exception_name;

#[derive(Args, Clone)]
pub struct EndpointArgs {
    /// A coordinator's API address; followers redirect to the leader.
    #[arg(long, default_value = "http://127.0.0.1:7300", env = "STEPMAP_ENDPOINT", global = true)]
    pub endpoint: String,
}

/// Runs `verb` with a client of `endpoint` on a fresh runtime.
pub fn with_client<T>(
    endpoint: &EndpointArgs,
    verb: impl AsyncFnOnce(&mut StatesClient) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = StatesClient::new(&endpoint.endpoint).map_err(describe_status)?;
        verb(&mut client).await
    })
}

/// A refused call as the AWS CLI shows it: `An error occurred (ExecutionDoesNotExist) ...`.
pub fn describe_status(status: tonic::Status) -> anyhow::Error {
    match exception_name(&status) {
        Some(name) => anyhow::anyhow!("An error occurred ({name}): {}", status.message()),
        None => anyhow::anyhow!("{} ({:?})", status.message(), status.code()),
    }
}

pub fn print(value: Value) {
    outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// Inserts `key` only when `value` is present, as the AWS CLI omits absent fields.
pub fn insert_some(object: &mut Value, key: &str, value: Option<String>) {
    if let (Some(value), Some(map)) = (value, object.as_object_mut()) {
        map.insert(key.to_owned(), Value::String(value));
    }
}

/// One unary call of `$method` through a [`StatesClient`], following leader hints;
/// a refusal becomes the AWS CLI's message (`describe_status`).
macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        $client
            .call(|mut c| {
                let request = request.clone();
                async move { c.$method(request).await }
            })
            .await
            .map_err($crate::api_client::describe_status)
    }};
}
pub(crate) use call;
