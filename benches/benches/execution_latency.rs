//! Fixed cost of one execution on a running cluster: StartExecution to SUCCEEDED, as a client
//! sees it, on three coordinators in this process (each with its gRPC server on 127.0.0.1,
//! Raft over gRPC, raft-engine with fsync in a temporary directory).
//!
//! ```text
//! cargo bench -p stepmap-benches --bench execution_latency             # 200 executions
//! cargo bench -p stepmap-benches --bench execution_latency -- --test   # 5 executions (smoke)
//! ```
//!
//! The workflow is Pass → Pass → Succeed (STANDARD): StartExecution commits the start, then
//! the leader's driver commits the events of each step before the next (one log entry per
//! state, since a state's exit and the next state's entry share one), so this is the Raft
//! round trips of a short execution plus the API calls. The client learns the end by calling
//! DescribeExecution (a ReadIndex read) in a loop without pause, as a waiting client would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stepmap_coordinator::api::{StatesClient, StatesService};
use stepmap_coordinator::driver::ExecutionDriver;
use stepmap_coordinator::state::{ArnScope, ReplicatedState};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{CoordinatorNode, NodeId, RaftConfig, RaftNode};
use stepmap_proto::v1 as pb;
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

const DEFINITION: &str = r#"{"StartAt":"A","States":{
  "A":{"Type":"Pass","Result":{"step":1},"Next":"B"},
  "B":{"Type":"Pass","Next":"Done"},
  "Done":{"Type":"Succeed"}}}"#;

struct Cluster {
    nodes: Vec<(CoordinatorNode, ExecutionDriver)>,
    leader_address: String,
    servers: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 1..=3 {
            let id = NodeId::new(id).expect("non-zero");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            peers.insert(id, listener.local_addr().expect("address").to_string());
            listeners.push((id, listener));
        }
        let mut nodes = Vec::new();
        let mut servers = Vec::new();
        for (id, listener) in listeners {
            let config = RaftConfig::new(id, peers.clone(), dir.path().join(format!("node-{id}")));
            let node =
                RaftNode::start(config, ReplicatedState::default(), GrpcTransport::new(id, &peers)).expect("start");
            let transport = RaftTransportService::new();
            transport.attach(node.mailbox());
            let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).expect("invoker"));
            let driver = ExecutionDriver::start(node.clone(), invoker.clone());
            let states = StatesService::new(node.clone(), driver.clone(), ArnScope::default(), invoker);
            servers.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(transport.into_server())
                    .add_service(states.into_server())
                    // As `stepmap coordinator` serves: TCP_NODELAY on accepted sockets.
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await
                    .expect("server");
            }));
            nodes.push((node, driver));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some((node, _)) = nodes.iter().find(|(n, _)| n.status().is_leader()) {
                break node.status().node_id;
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { leader_address: peers[&leader].clone(), nodes, servers, _dir: dir }
    }

    async fn shutdown(self) {
        for (node, driver) in &self.nodes {
            driver.shutdown();
            node.shutdown().await;
        }
        for server in self.servers {
            server.abort();
        }
    }
}

/// StartExecution → SUCCEEDED of one execution, as the client sees it.
async fn one(client: &mut StatesClient, machine: &str, name: String) -> Duration {
    let begin = Instant::now();
    let request = pb::StartExecutionRequest { state_machine_arn: machine.into(), name, input: "{}".into() };
    let started = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.start_execution(request).await }
        })
        .await
        .expect("start");
    let describe = pb::DescribeExecutionRequest { execution_arn: started.execution_arn };
    loop {
        let described = client
            .call(|mut c| {
                let request = describe.clone();
                async move { c.describe_execution(request).await }
            })
            .await
            .expect("describe");
        match described.status.as_str() {
            "RUNNING" => continue,
            "SUCCEEDED" => return begin.elapsed(),
            other => panic!("execution ended {other}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let count = if test { 5 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let cluster = Cluster::start().await;
        let mut client = StatesClient::new(&cluster.leader_address).expect("client");
        let create = pb::CreateStateMachineRequest {
            name: "latency".into(),
            definition: DEFINITION.into(),
            role_arn: String::new(),
            r#type: "STANDARD".into(),
        };
        let machine = client
            .call(|mut c| {
                let request = create.clone();
                async move { c.create_state_machine(request).await }
            })
            .await
            .expect("create")
            .state_machine_arn;
        // Warm the connections and the leader's caches.
        one(&mut client, &machine, "warm-up".into()).await;
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            samples.push(one(&mut client, &machine, format!("e{i}")).await);
        }
        samples.sort();
        println!(
            "\nStartExecution → SUCCEEDED, Pass → Pass → Succeed, 3 coordinators on 127.0.0.1 (fsync), {count} executions one after another"
        );
        println!(
            "p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
            percentile(&samples, 0.5),
            percentile(&samples, 0.9),
            percentile(&samples, 0.99),
            percentile(&samples, 1.0)
        );
        cluster.shutdown().await;
    });
}
