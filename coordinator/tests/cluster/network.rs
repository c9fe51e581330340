//! The two networks the scenarios run over: in process and real gRPC on loopback. Both put the
//! same `NetworkFilter` in front of the real transport, so faults mean the same thing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use stepmap_coordinator::transport::{
    FilteredTransport, GrpcTransport, InProcessNetwork, NetworkFilter, RaftTransportService, Transport,
};
use stepmap_coordinator::{NodeId, RaftNode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use super::kv::Kv;

pub trait Network: Send + Sync + 'static {
    /// Every node's address (leader hints; for gRPC also where its transport listens).
    fn peers(&self) -> BTreeMap<NodeId, String>;
    /// A transport for a node that is starting.
    fn transport(&self, node: NodeId) -> Arc<dyn Transport>;
    /// Makes a started node reachable.
    fn attach(&self, node: &RaftNode<Kv>);
    /// Makes a stopping node unreachable.
    fn detach(&self, node: NodeId);
    fn filter(&self) -> &NetworkFilter;
}

pub fn ids(size: u64) -> Vec<NodeId> {
    (1..=size).map(|i| NodeId::new(i).expect("non-zero")).collect()
}

pub struct InProcess {
    network: InProcessNetwork,
    filter: NetworkFilter,
    size: u64,
}

impl InProcess {
    pub async fn new(size: u64) -> Self {
        Self { network: InProcessNetwork::new(), filter: NetworkFilter::new(), size }
    }
}

impl Network for InProcess {
    fn peers(&self) -> BTreeMap<NodeId, String> {
        ids(self.size).into_iter().map(|id| (id, format!("in-process/{id}"))).collect()
    }

    fn transport(&self, _node: NodeId) -> Arc<dyn Transport> {
        Arc::new(FilteredTransport::new(self.network.transport(), self.filter.clone()))
    }

    fn attach(&self, node: &RaftNode<Kv>) {
        self.network.register(node.mailbox());
    }

    fn detach(&self, node: NodeId) {
        self.network.unregister(node);
    }

    fn filter(&self) -> &NetworkFilter {
        &self.filter
    }
}

/// One tonic server per node on 127.0.0.1, port chosen by the OS, alive for the whole test so
/// that a restarted node is found at the same address.
pub struct Grpc {
    addresses: BTreeMap<NodeId, String>,
    services: HashMap<NodeId, RaftTransportService>,
    servers: Vec<JoinHandle<()>>,
    filter: NetworkFilter,
}

impl Grpc {
    pub async fn new(size: u64) -> Self {
        let mut addresses = BTreeMap::new();
        let mut services = HashMap::new();
        let mut servers = Vec::new();
        for id in ids(size) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            addresses.insert(id, listener.local_addr().expect("local address").to_string());
            let service = RaftTransportService::new();
            services.insert(id, service.clone());
            servers.push(tokio::spawn(async move {
                let served = tonic::transport::Server::builder()
                    .add_service(service.into_server())
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await;
                if let Err(error) = served {
                    panic!("raft transport server failed: {error}");
                }
            }));
        }
        Self { addresses, services, servers, filter: NetworkFilter::new() }
    }
}

impl Drop for Grpc {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Network for Grpc {
    fn peers(&self) -> BTreeMap<NodeId, String> {
        self.addresses.clone()
    }

    fn transport(&self, node: NodeId) -> Arc<dyn Transport> {
        Arc::new(FilteredTransport::new(GrpcTransport::new(node, &self.addresses), self.filter.clone()))
    }

    fn attach(&self, node: &RaftNode<Kv>) {
        self.services[&node.id()].attach(node.mailbox());
    }

    fn detach(&self, node: NodeId) {
        self.services[&node].detach();
    }

    fn filter(&self) -> &NetworkFilter {
        &self.filter
    }
}
