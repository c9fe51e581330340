//! A `stepmap.v1.States` client that retries at the leader: a follower's refusal carries the
//! leader's address (FAILED_PRECONDITION + LeaderHint), and while no leader is known the call
//! is retried after a short pause (see [`LeaderChannel`]).

use std::future::Future;

use stepmap_proto::leader::LeaderChannel;
use stepmap_proto::v1::states_client::StatesClient as GrpcStatesClient;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct StatesClient {
    channel: LeaderChannel,
}

impl StatesClient {
    /// A client of the coordinator at `endpoint` (`http://host:port` or `host:port`). Connects
    /// lazily, on the first call.
    pub fn new(endpoint: &str) -> Result<Self, tonic::Status> {
        Ok(Self { channel: LeaderChannel::new(endpoint)? })
    }

    /// The coordinator this client currently talks to (the last leader it was sent to).
    pub fn endpoint(&self) -> &str {
        self.channel.endpoint()
    }

    /// Runs `call` against the current coordinator, following leader hints.
    pub async fn call<T, F, Fut>(&mut self, call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(GrpcStatesClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.channel.call(GrpcStatesClient::new, call).await
    }
}
