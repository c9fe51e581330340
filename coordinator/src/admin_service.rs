//! The `stepmap.v1.RaftAdmin` gRPC service: propose, linearizable read and status of one node.

use stepmap_proto::v1::raft_admin_server::{RaftAdmin, RaftAdminServer};
use stepmap_proto::v1::{ProposeRequest, ProposeResponse, ReadRequest, ReadResponse, StatusRequest, StatusResponse};

use crate::raft_node::RaftNode;
use crate::state_machine::StateMachine;

/// Serves [`RaftAdmin`] for one node. Errors go through the crate's single mapping to gRPC
/// status, so a follower answers `FAILED_PRECONDITION` with the leader hint.
pub struct RaftAdminService<S: StateMachine> {
    node: RaftNode<S>,
}

impl<S: StateMachine> RaftAdminService<S> {
    pub fn new(node: RaftNode<S>) -> Self {
        Self { node }
    }

    pub fn into_server(self) -> RaftAdminServer<Self> {
        RaftAdminServer::new(self)
    }
}

#[tonic::async_trait]
impl<S: StateMachine> RaftAdmin for RaftAdminService<S> {
    async fn propose(
        &self,
        request: tonic::Request<ProposeRequest>,
    ) -> Result<tonic::Response<ProposeResponse>, tonic::Status> {
        let applied = self.node.propose(request.into_inner().command).await?;
        Ok(tonic::Response::new(ProposeResponse { index: applied.index, response: applied.response }))
    }

    async fn read(&self, request: tonic::Request<ReadRequest>) -> Result<tonic::Response<ReadResponse>, tonic::Status> {
        let query = request.into_inner().query;
        let (index, response) = self.node.read(move |state: &S| state.query(&query)).await?;
        Ok(tonic::Response::new(ReadResponse { index, response }))
    }

    async fn status(
        &self,
        _request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
        let status = self.node.status();
        let leader_address = status.leader.and_then(|leader| self.node.peer_address(leader));
        Ok(tonic::Response::new(status.to_proto(leader_address)))
    }
}
