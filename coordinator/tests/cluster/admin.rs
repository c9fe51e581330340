//! The `stepmap.v1.RaftAdmin` service through a real gRPC client: three coordinators, each
//! serving Raft transport and administration on one loopback port, as a deployment would.

use std::collections::BTreeMap;

use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{leader_hint, NodeId, RaftAdminService, RaftConfig, RaftNode, LEADER_ADDRESS_METADATA};
use stepmap_proto::v1::raft_admin_client::RaftAdminClient;
use stepmap_proto::v1::{ProposeRequest, RaftRole, ReadRequest, StatusRequest};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

use super::harness::eventually;
use super::kv::{put, Kv};
use super::network::ids;

async fn client(address: &str) -> RaftAdminClient<Channel> {
    RaftAdminClient::connect(format!("http://{address}")).await.expect("connect to admin service")
}

pub async fn admin_service_answers_with_leader_hint() {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in ids(3) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        peers.insert(id, listener.local_addr().expect("address").to_string());
        listeners.push((id, listener));
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for ((id, listener), dir) in listeners.into_iter().zip(&dirs) {
        let mut config = RaftConfig::new(id, peers.clone(), dir.path());
        config.tick_interval = std::time::Duration::from_millis(20);
        config.heartbeat_ticks = 2;
        let node = RaftNode::start(config, Kv::default(), GrpcTransport::new(id, &peers)).expect("start node");
        let transport = RaftTransportService::new();
        transport.attach(node.mailbox());
        let admin = RaftAdminService::new(node.clone());
        servers.push(tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(transport.into_server())
                .add_service(admin.into_server())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        ));
        nodes.push(node);
    }

    // Ask any node who leads, through the Status call.
    let any = &peers[&NodeId::new(1).expect("id")];
    let leader = eventually("a leader reported by Status", || async {
        let status = client(any).await.status(StatusRequest {}).await.ok()?.into_inner();
        let hint = status.leader?;
        let leader = NodeId::new(hint.leader_id)?;
        let leader_status = client(&peers[&leader]).await.status(StatusRequest {}).await.ok()?.into_inner();
        (leader_status.role() == RaftRole::Leader && hint.leader_address == peers[&leader]).then_some(leader)
    })
    .await;
    let follower = ids(3).into_iter().find(|id| *id != leader).expect("a follower");

    // A follower refuses with FAILED_PRECONDITION and says where the leader is.
    let status = client(&peers[&follower])
        .await
        .propose(ProposeRequest { command: put("a", "1") })
        .await
        .expect_err("a follower does not accept proposals");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let hint = leader_hint(&status).expect("leader hint in the details");
    assert_eq!(hint.leader_id, leader.get());
    assert_eq!(status.metadata().get(LEADER_ADDRESS_METADATA).and_then(|v| v.to_str().ok()), Some(&*peers[&leader]));

    // Retrying at the hinted address succeeds, and a read there sees the write.
    let mut leader_client = client(&hint.leader_address).await;
    let proposed = eventually("a proposal accepted by the hinted leader", || {
        let mut leader_client = leader_client.clone();
        async move { leader_client.propose(ProposeRequest { command: put("a", "1") }).await.ok() }
    })
    .await
    .into_inner();
    assert!(proposed.index > 0);
    let read = leader_client.read(ReadRequest { query: b"a".to_vec() }).await.expect("read").into_inner();
    assert!(read.index >= proposed.index);
    assert_eq!(read.response, b"1");

    for node in &nodes {
        node.shutdown().await;
    }
    for server in servers {
        server.abort();
    }
}
