//! A `stepmap.v1.States` client that retries at the leader: a follower's refusal carries the
//! leader's address (FAILED_PRECONDITION + LeaderHint), and while no leader is known the call
//! is retried after a short pause.

use std::future::Future;
use std::time::Duration;

use stepmap_proto::v1::states_client::StatesClient as GrpcStatesClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::leader_hint;

/// Attempts per call (each redirect or wait for an election counts one).
const MAX_ATTEMPTS: usize = 50;
/// Pause before retrying while the cluster has no leader.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct StatesClient {
    endpoint: String,
    client: GrpcStatesClient<Channel>,
}

fn channel(endpoint: &str) -> Result<Channel, tonic::Status> {
    let endpoint = if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
    Endpoint::from_shared(endpoint)
        .map(|e| e.connect_lazy())
        .map_err(|error| tonic::Status::invalid_argument(format!("invalid endpoint: {error}")))
}

impl StatesClient {
    /// A client of the coordinator at `endpoint` (`http://host:port` or `host:port`). Connects
    /// lazily, on the first call.
    pub fn new(endpoint: &str) -> Result<Self, tonic::Status> {
        Ok(Self { endpoint: endpoint.to_owned(), client: GrpcStatesClient::new(channel(endpoint)?) })
    }

    /// The coordinator this client currently talks to (the last leader it was sent to).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `call` against the current coordinator, following leader hints.
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(GrpcStatesClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let status = match call(self.client.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            match leader_hint(&status) {
                Some(hint) if !hint.leader_address.is_empty() && hint.leader_address != self.endpoint => {
                    self.endpoint = hint.leader_address.clone();
                    self.client = GrpcStatesClient::new(channel(&hint.leader_address)?);
                }
                Some(_) => tokio::time::sleep(NO_LEADER_PAUSE).await,
                None if status.code() == tonic::Code::Unavailable => tokio::time::sleep(NO_LEADER_PAUSE).await,
                None => return Err(status),
            }
            last = Some(status);
        }
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no leader")))
    }
}
