//! The execution driver on an in-process cluster of three coordinators: executions of a
//! Wait + Pass workflow survive a leader crash, each state entered exactly once, and the
//! crashed node catches up when restarted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stepmap_asl::model::StateMachineType;
use stepmap_coordinator::driver::ExecutionDriver;
use stepmap_coordinator::state::{ArnScope, Command, ExecutionRecord, ExecutionStatus, ReplicatedState, Response};
use stepmap_coordinator::transport::InProcessNetwork;
use stepmap_coordinator::{propose, CoordinatorNode, Error, NodeId, RaftConfig, RaftNode};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use tempfile::TempDir;

use super::harness::eventually;
use super::network::ids;

const WORKFLOW: &str = r#"{
  "StartAt": "First",
  "States": {
    "First": {"Type": "Pass", "Result": {"step": 1}, "ResultPath": "$.first", "Next": "Pause"},
    "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Last"},
    "Last": {"Type": "Pass", "End": true}
  }
}"#;

struct Coordinator {
    node: CoordinatorNode,
    driver: ExecutionDriver,
}

struct Cluster {
    network: InProcessNetwork,
    peers: BTreeMap<NodeId, String>,
    dirs: BTreeMap<NodeId, TempDir>,
    running: BTreeMap<NodeId, Coordinator>,
}

impl Cluster {
    fn start() -> Self {
        let peers: BTreeMap<NodeId, String> = ids(3).into_iter().map(|id| (id, format!("in-process/{id}"))).collect();
        let dirs = ids(3).into_iter().map(|id| (id, tempfile::tempdir().expect("temp dir"))).collect();
        let mut cluster = Self { network: InProcessNetwork::new(), peers, dirs, running: BTreeMap::new() };
        for id in ids(3) {
            cluster.start_node(id);
        }
        cluster
    }

    fn start_node(&mut self, id: NodeId) {
        let mut config = RaftConfig::new(id, self.peers.clone(), self.dirs[&id].path());
        config.tick_interval = Duration::from_millis(20);
        config.heartbeat_ticks = 2;
        config.snapshot_interval = 200;
        config.log_retention = 50;
        config.request_timeout = Duration::from_secs(3);
        let node = RaftNode::start(config, ReplicatedState::default(), self.network.transport()).expect("start node");
        self.network.register(node.mailbox());
        let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).expect("invoker"));
        let driver = ExecutionDriver::start(node.clone(), invoker);
        self.running.insert(id, Coordinator { node, driver });
    }

    async fn kill(&mut self, id: NodeId) {
        let coordinator = self.running.remove(&id).expect("running");
        coordinator.driver.shutdown();
        self.network.unregister(id);
        coordinator.node.shutdown().await;
    }

    async fn leader(&self) -> NodeId {
        eventually("a leader", || async {
            self.running.values().map(|c| c.node.status()).find(|s| s.is_leader()).map(|s| s.node_id)
        })
        .await
    }

    /// Proposes at the current leader, retrying while leadership moves.
    async fn propose(&self, command: Command) -> Response {
        eventually("a committed command", || {
            let command = command.clone();
            async move {
                let leader = self.leader().await;
                match propose(&self.running[&leader].node, &command).await {
                    Ok(response) => Some(response),
                    Err(Error::Api(error)) => panic!("refused: {error}"),
                    Err(_) => None,
                }
            }
        })
        .await
    }

    async fn executions(&self, id: NodeId) -> Vec<ExecutionRecord> {
        let (_, state) = self.running[&id].node.local_read(|s| s.executions.clone()).await.expect("local read");
        state.into_values().collect()
    }
}

pub async fn executions_survive_a_leader_crash() {
    let mut cluster = Cluster::start();
    let scope = ArnScope::default();
    let machine = scope.state_machine("wait-pass");
    cluster
        .propose(Command::CreateStateMachine {
            arn: machine.clone(),
            name: "wait-pass".into(),
            definition: WORKFLOW.into(),
            machine_type: StateMachineType::Standard,
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            date: chrono::Utc::now(),
            revision_id: "r1".into(),
        })
        .await;
    const COUNT: usize = 20;
    for i in 0..COUNT {
        let arn = machine.execution(&format!("run-{i}"));
        cluster
            .propose(Command::StartExecution {
                arn: arn.clone(),
                input: format!("{{\"i\":{i}}}"),
                date: chrono::Utc::now(),
                seed: i as u64,
            })
            .await;
        // The API launches at once on the leader; here the leader may have moved, which the
        // new leader's resume covers.
        let leader = cluster.leader().await;
        let record =
            cluster.running[&leader].node.local_read(move |s| s.executions.get(&arn).cloned()).await.expect("read").1;
        if let Some(record) = record {
            cluster.running[&leader].driver.launch(record);
        }
    }

    // Crash the leader while executions wait in "Pause".
    let leader = cluster.leader().await;
    eventually("executions waiting", || async {
        let executions = cluster.executions(leader).await;
        executions.iter().any(|e| e.history.iter().any(|ev| ev.event_type == "WaitStateEntered")).then_some(())
    })
    .await;
    cluster.kill(leader).await;

    let survivor = cluster.leader().await;
    let finished = eventually("every execution closed", || async {
        let executions = cluster.executions(survivor).await;
        (executions.len() == COUNT && executions.iter().all(|e| e.status != ExecutionStatus::Running))
            .then_some(executions)
    })
    .await;
    for execution in &finished {
        assert_eq!(
            execution.status,
            ExecutionStatus::Succeeded,
            "{}: {:?} {:?}",
            execution.arn,
            execution.error,
            execution.cause
        );
        for state in ["First", "Pause", "Last"] {
            let entered = execution
                .history
                .iter()
                .filter(|e| e.event_type.ends_with("StateEntered"))
                .filter(|e| e.details.as_ref().and_then(|d| d.get("name")).and_then(|n| n.as_str()) == Some(state))
                .count();
            assert_eq!(entered, 1, "{} entered {state} {entered} times", execution.arn);
        }
        for (i, event) in execution.history.iter().enumerate() {
            assert_eq!(event.id, i as u64 + 1);
        }
        let output: serde_json::Value =
            serde_json::from_str(execution.output.as_deref().expect("output")).expect("json");
        assert_eq!(output["first"]["step"], 1);
    }

    // The crashed node, restarted on its data directory, catches up.
    cluster.start_node(leader);
    let reference: Vec<_> = finished.iter().map(|e| (e.arn.clone(), e.status, e.history.len())).collect();
    eventually("the restarted node caught up", || async {
        let mut mine: Vec<_> =
            cluster.executions(leader).await.iter().map(|e| (e.arn.clone(), e.status, e.history.len())).collect();
        mine.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected = reference.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        (mine == expected).then_some(())
    })
    .await;
    for id in cluster.running.keys().copied().collect::<Vec<_>>() {
        cluster.kill(id).await;
    }
}
