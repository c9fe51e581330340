//! How a coordinator that is not the leader refuses a call, and a channel that follows such
//! refusals to the leader. Every stepmap service is served by the leader only: a follower
//! answers FAILED_PRECONDITION with a [`v1::LeaderHint`] in the status details, and refusals
//! that are answers (AWS exceptions) name the exception in [`EXCEPTION_METADATA`].

use std::future::Future;
use std::time::Duration;

use prost::Message;
use tonic::transport::{Channel, Endpoint};

use crate::v1;

/// Metadata key of the leader's address on a not-leader status (also in the details).
pub const LEADER_ADDRESS_METADATA: &str = "x-stepmap-leader-address";
/// Metadata key of the leader's node id on a not-leader status.
pub const LEADER_ID_METADATA: &str = "x-stepmap-leader-id";
/// Metadata key of the AWS exception name (`ExecutionDoesNotExist`, ...) of a refused call.
pub const EXCEPTION_METADATA: &str = "x-stepmap-exception";

/// Attempts per call (each redirect or wait for an election counts one).
const MAX_ATTEMPTS: usize = 50;
/// Pause before retrying while the cluster has no leader.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(100);

/// The AWS exception name carried by a refused request's status, if `status` is one.
pub fn exception_name(status: &tonic::Status) -> Option<&str> {
    status.metadata().get(EXCEPTION_METADATA).and_then(|value| value.to_str().ok())
}

/// The leader hint carried by a not-leader status, if `status` is one.
pub fn leader_hint(status: &tonic::Status) -> Option<v1::LeaderHint> {
    // An AWS exception (e.g. TaskTimedOut, also FAILED_PRECONDITION) is an answer, not a
    // redirect: its empty details would otherwise decode as an empty hint.
    if status.code() != tonic::Code::FailedPrecondition || exception_name(status).is_some() {
        return None;
    }
    v1::LeaderHint::decode(status.details()).ok()
}

/// A lazily connected channel to `endpoint` (`http://host:port` or `host:port`).
pub fn channel(endpoint: &str) -> Result<Channel, tonic::Status> {
    let endpoint = if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
    Endpoint::from_shared(endpoint)
        .map(|e| e.connect_lazy())
        .map_err(|error| tonic::Status::invalid_argument(format!("invalid endpoint: {error}")))
}

/// A channel to the coordinator that leads, as far as the last answer told: calls through it
/// follow leader hints and wait out elections. A leader it was sent to that becomes
/// unreachable sends it back to the endpoint it started at (its "home"), which knows the new
/// leader once one is elected.
#[derive(Clone, Debug)]
pub struct LeaderChannel {
    home: String,
    endpoint: String,
    channel: Channel,
    max_attempts: usize,
}

impl LeaderChannel {
    /// Starts at `endpoint`; connects on the first call.
    pub fn new(endpoint: &str) -> Result<Self, tonic::Status> {
        Ok(Self {
            home: endpoint.to_owned(),
            endpoint: endpoint.to_owned(),
            channel: channel(endpoint)?,
            max_attempts: MAX_ATTEMPTS,
        })
    }

    /// Gives up on a call after `attempts` redirects or pauses (default 50, about 5 s
    /// without a leader): callers with other coordinators to try want to move on sooner.
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The coordinator calls go to now (the last leader this channel was sent to).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `call` with a client made by `client` over the current channel, following
    /// leader hints; while no leader is known (or the coordinator is unreachable) it tries
    /// again after a pause, up to a bound.
    pub async fn call<C, T, F, Fut>(&mut self, client: impl Fn(Channel) -> C, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for _ in 0..self.max_attempts {
            let status = match call(client(self.channel.clone())).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            match leader_hint(&status) {
                Some(hint) if !hint.leader_address.is_empty() && hint.leader_address != self.endpoint => {
                    self.channel = channel(&hint.leader_address)?;
                    self.endpoint = hint.leader_address.clone();
                }
                Some(_) => tokio::time::sleep(NO_LEADER_PAUSE).await,
                // The leader it was sent to is gone: back home, which will know the next one.
                None if status.code() == tonic::Code::Unavailable && self.endpoint != self.home => {
                    self.channel = channel(&self.home)?;
                    self.endpoint = self.home.clone();
                }
                None if status.code() == tonic::Code::Unavailable => tokio::time::sleep(NO_LEADER_PAUSE).await,
                None => return Err(status),
            }
            last = Some(status);
        }
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no leader")))
    }
}
