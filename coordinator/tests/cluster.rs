//! Cluster tests of the Raft node (DESIGN.md §5, layer 3): three in-process nodes with real
//! raft-engine storage, over a transport whose faults the test controls. Every scenario body
//! in `cluster/scenarios.rs` runs twice: over the in-process transport and over real gRPC on
//! loopback. Tests expected to take more than ~10 s are named `heavy_`.

mod cluster {
    pub mod admin;
    pub mod api;
    pub mod executions;
    pub mod fleet;
    pub mod harness;
    pub mod kv;
    pub mod map_runs;
    pub mod network;
    pub mod redrive;
    pub mod scenarios;
    pub mod task_tokens;
}

use cluster::network::{Grpc, InProcess};
use cluster::scenarios;

/// Logs to the test's captured output when RUST_LOG is set.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

macro_rules! scenario {
    ($test:ident, $network:ident, $size:expr, $body:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            init_tracing();
            $body($network::new($size).await).await;
        }
    };
}

scenario!(in_process_leader_election, InProcess, 3, scenarios::leader_election);
scenario!(grpc_leader_election, Grpc, 3, scenarios::leader_election);

scenario!(in_process_single_node, InProcess, 1, scenarios::single_node);
scenario!(grpc_single_node, Grpc, 1, scenarios::single_node);

scenario!(in_process_log_replication_and_reads, InProcess, 3, scenarios::log_replication_and_reads);
scenario!(grpc_log_replication_and_reads, Grpc, 3, scenarios::log_replication_and_reads);

scenario!(in_process_partitioned_leader_steps_down, InProcess, 3, scenarios::partitioned_leader_steps_down);
scenario!(grpc_partitioned_leader_steps_down, Grpc, 3, scenarios::partitioned_leader_steps_down);

scenario!(in_process_minority_cannot_commit, InProcess, 3, scenarios::minority_cannot_commit);
scenario!(grpc_minority_cannot_commit, Grpc, 3, scenarios::minority_cannot_commit);

scenario!(
    in_process_restart_recovers_from_snapshot_and_log,
    InProcess,
    3,
    scenarios::restart_recovers_from_snapshot_and_log
);
scenario!(grpc_restart_recovers_from_snapshot_and_log, Grpc, 3, scenarios::restart_recovers_from_snapshot_and_log);

scenario!(
    in_process_lagging_node_catches_up_via_snapshot,
    InProcess,
    3,
    scenarios::lagging_node_catches_up_via_snapshot
);
scenario!(grpc_lagging_node_catches_up_via_snapshot, Grpc, 3, scenarios::lagging_node_catches_up_via_snapshot);

scenario!(in_process_message_loss_and_reordering, InProcess, 3, scenarios::message_loss_and_reordering);
scenario!(grpc_message_loss_and_reordering, Grpc, 3, scenarios::message_loss_and_reordering);

scenario!(in_process_five_nodes_tolerate_two_failures, InProcess, 5, scenarios::five_nodes_tolerate_two_failures);
scenario!(grpc_five_nodes_tolerate_two_failures, Grpc, 5, scenarios::five_nodes_tolerate_two_failures);

scenario!(
    in_process_leader_crash_during_concurrent_proposals,
    InProcess,
    3,
    scenarios::leader_crash_during_concurrent_proposals
);
scenario!(grpc_leader_crash_during_concurrent_proposals, Grpc, 3, scenarios::leader_crash_during_concurrent_proposals);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_admin_service_answers_with_leader_hint() {
    init_tracing();
    cluster::admin::admin_service_answers_with_leader_hint().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_executions_survive_a_leader_crash() {
    init_tracing();
    cluster::executions::executions_survive_a_leader_crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_every_states_operation_through_the_client() {
    init_tracing();
    cluster::api::every_operation_through_the_grpc_client().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_map_runs_through_the_client() {
    init_tracing();
    cluster::map_runs::map_runs_through_the_grpc_client().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_map_runs_across_a_change_of_leader() {
    init_tracing();
    cluster::map_runs::map_runs_across_a_change_of_leader().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_activities_through_the_client() {
    init_tracing();
    cluster::task_tokens::activities_through_the_grpc_client().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callbacks_wait_for_the_task_token() {
    init_tracing();
    cluster::task_tokens::callbacks_wait_for_the_task_token().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_abandoned_activity_tasks_are_not_handed_out() {
    init_tracing();
    cluster::task_tokens::abandoned_activity_tasks_are_not_handed_out().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_task_token_wait_survives_a_change_of_leader() {
    init_tracing();
    cluster::task_tokens::a_task_token_wait_survives_a_change_of_leader().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_redrive_execution_through_the_client() {
    init_tracing();
    cluster::redrive::redrive_through_the_grpc_client().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_redriven_execution_survives_a_change_of_leader() {
    init_tracing();
    cluster::redrive::a_redriven_execution_survives_a_change_of_leader().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_redriven_activity_gets_a_new_task_token() {
    init_tracing();
    cluster::redrive::a_redriven_activity_gets_a_new_task_token().await;
}

/// A linearizable read is served as soon as the leader has confirmed it, not at the next tick:
/// in virtual time (which only moves when every task waits on a timer) it takes no time at
/// all, while a tick is a whole second.
#[tokio::test(start_paused = true)]
async fn read_index_does_not_wait_for_a_tick() {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use stepmap_coordinator::transport::InProcessNetwork;
    use stepmap_coordinator::{NodeId, RaftConfig, RaftNode, StateMachine};

    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let id = NodeId::new(1).expect("non-zero");
    let mut config = RaftConfig::new(id, BTreeMap::from([(id, "in-process/1".to_owned())]), dir.path());
    config.tick_interval = Duration::from_secs(1);
    let network = InProcessNetwork::new();
    let node = RaftNode::start(config, cluster::kv::Kv::default(), network.transport()).expect("start");
    network.register(node.mailbox());
    node.wait_for(Duration::from_secs(60), |status| status.is_leader()).await.expect("leader");
    node.propose(cluster::kv::put("a", "1")).await.expect("propose");
    for _ in 0..3 {
        let start = tokio::time::Instant::now();
        let (_, value) = node.read(|kv| kv.query(b"a")).await.expect("read");
        assert_eq!(value, b"1");
        assert_eq!(start.elapsed(), Duration::ZERO, "the read waited for a tick");
    }
    node.shutdown().await;
}
