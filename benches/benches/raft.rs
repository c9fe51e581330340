//! Committed commands per second on a three-node Raft cluster: real gRPC transport on
//! loopback, real raft-engine directories (fsync) in a temporary directory, all three nodes in
//! this process.
//!
//! ```text
//! cargo bench -p stepmap-benches --bench raft               # criterion, then a summary table
//! cargo bench -p stepmap-benches --bench raft -- --summary  # only the summary table
//! cargo bench -p stepmap-benches --bench raft -- --test     # each criterion bench once (smoke)
//! ```
//!
//! What is measured: `RaftNode::propose` on the leader of a 256-byte command, which returns
//! once the entry is committed (on disk on a majority: the leader and at least one follower,
//! each fsyncing) and applied on the leader. "One at a time": a single proposer awaits each
//! proposal before the next, so every command pays a full round of replication and two
//! fsyncs. "Batched": `N` proposers keep `N` proposals in flight; the node has no batching API
//! of its own, but its driver drains every queued proposal before the next Ready, so one
//! append message and one fsync per node carry many entries.
//!
//! The three nodes share this machine's cores and disk, so the numbers are a floor for a
//! cluster of separate machines with the same disks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{Error, NodeId, RaftConfig, RaftNode, StateMachine};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Bytes per command: about a small `RecordEvents` command of the execution driver.
const COMMAND_BYTES: usize = 256;
/// The concurrency levels of the batched runs.
const CONCURRENCY: [usize; 4] = [4, 16, 64, 256];

/// Counts applied commands and their bytes; the snapshot is the two counters.
#[derive(Default)]
struct Counter {
    commands: u64,
    bytes: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.commands += 1;
        self.bytes += command.len() as u64;
        self.commands.to_le_bytes().to_vec()
    }

    fn query(&self, _query: &[u8]) -> Vec<u8> {
        self.commands.to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        [self.commands.to_le_bytes(), self.bytes.to_le_bytes()].concat()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let word = |at: usize| -> Result<u64, String> {
            let bytes = snapshot.get(at..at + 8).ok_or("short snapshot")?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| "short snapshot")?))
        };
        *self = Counter { commands: word(0)?, bytes: word(8)? };
        Ok(())
    }
}

/// Three nodes with production Raft settings (`RaftConfig::new`), each behind its own tonic
/// server on 127.0.0.1.
struct Cluster {
    nodes: Vec<RaftNode<Counter>>,
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
            let node = RaftNode::start(config, Counter::default(), GrpcTransport::new(id, &peers)).expect("start");
            let service = RaftTransportService::new();
            service.attach(node.mailbox());
            servers.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service.into_server())
                    // As `stepmap coordinator` serves: TCP_NODELAY on accepted sockets.
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await
                    .expect("raft transport server");
            }));
            nodes.push(node);
        }
        let cluster = Self { nodes, servers, _dir: dir };
        cluster.leader().await;
        cluster
    }

    /// The current leader, waiting (bounded) through an election.
    async fn leader(&self) -> RaftNode<Counter> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(node) = self.nodes.iter().find(|n| n.status().is_leader()) {
                return node.clone();
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commits `count` commands with `concurrency` proposers, each awaiting its proposal
    /// before the next; returns the wall time.
    async fn commit(&self, count: usize, concurrency: usize) -> Duration {
        let concurrency = concurrency.clamp(1, count.max(1));
        let leader = self.leader().await;
        let start = Instant::now();
        let proposers: Vec<_> = (0..concurrency)
            .map(|p| {
                let share = count / concurrency + usize::from(p < count % concurrency);
                let mut leader = leader.clone();
                let nodes = self.nodes.clone();
                tokio::spawn(async move {
                    let command = vec![b'x'; COMMAND_BYTES];
                    for _ in 0..share {
                        loop {
                            match leader.propose(command.clone()).await {
                                Ok(_) => break,
                                // Leadership moved (it should not, on an idle machine): follow it.
                                Err(
                                    Error::NotLeader { .. } | Error::ProposalDropped { .. } | Error::Timeout { .. },
                                ) => {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    if let Some(node) = nodes.iter().find(|n| n.status().is_leader()) {
                                        leader = node.clone();
                                    }
                                }
                                Err(error) => panic!("proposal failed: {error}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for proposer in proposers {
            proposer.await.expect("proposer");
        }
        start.elapsed()
    }

    async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
        for server in self.servers {
            server.abort();
        }
    }
}

fn criterion_benches(cluster: &Cluster, rt: &tokio::runtime::Runtime) {
    let mut c = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5)).configure_from_args();
    let mut group = c.benchmark_group("raft/commit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_at_a_time", |b| b.iter_custom(|iters| rt.block_on(cluster.commit(iters as usize, 1))));
    for concurrency in [16, 256] {
        group.bench_function(format!("batched_{concurrency}_in_flight"), |b| {
            b.iter_custom(|iters| rt.block_on(cluster.commit(iters as usize, concurrency)))
        });
    }
    group.finish();
    c.final_summary();
}

fn summary(cluster: &Cluster, rt: &tokio::runtime::Runtime) {
    println!("\n3 nodes, gRPC on 127.0.0.1, raft-engine with fsync; {COMMAND_BYTES}-byte commands; best of 3 runs");
    println!("{:<24} {:>9} {:>12} {:>14} {:>16}", "proposals", "commands", "seconds", "commands/s", "mean latency ms");
    let line = |label: &str, count: usize, concurrency: usize| {
        let best = (0..3).map(|_| rt.block_on(cluster.commit(count, concurrency))).min().expect("three runs");
        let rate = count as f64 / best.as_secs_f64();
        let latency = best.as_secs_f64() * 1000.0 * concurrency as f64 / count as f64;
        println!("{label:<24} {count:>9} {:>12.3} {rate:>14.0} {latency:>16.2}", best.as_secs_f64());
    };
    line("one at a time", 500, 1);
    for concurrency in CONCURRENCY {
        line(&format!("batched, {concurrency} in flight"), 5_000.max(concurrency * 40), concurrency);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let cluster = rt.block_on(Cluster::start());
    if !args.iter().any(|a| a == "--summary") {
        criterion_benches(&cluster, &rt);
    }
    if !args.iter().any(|a| a == "--test") {
        summary(&cluster, &rt);
    }
    rt.block_on(cluster.shutdown());
}
