//! The `stepmap.v1.States` API through the real gRPC client: three coordinators, each
//! serving Raft transport and the API on one loopback port, as a deployment does. Every
//! operation, bad requests (AWS exception name, message naming the field), and a client
//! sent to a follower ending up at the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stepmap_coordinator::api::{StatesClient, StatesService};
use stepmap_coordinator::driver::ExecutionDriver;
use stepmap_coordinator::state::{ArnScope, ReplicatedState};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{exception_name, CoordinatorNode, NodeId, RaftConfig, RaftNode};
use stepmap_proto::v1 as pb;
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::harness::eventually;
use super::network::ids;

const WAIT_PASS: &str = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"Next":"P"},"P":{"Type":"Pass","Result":"done","End":true}}}"#;
const LONG_WAIT: &str = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}"#;
const FAIL: &str = r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"Oops","Cause":"on purpose"}}}"#;

pub struct Deployment {
    peers: BTreeMap<NodeId, String>,
    pub nodes: Vec<(CoordinatorNode, ExecutionDriver)>,
    servers: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Deployment {
    pub async fn start() -> Self {
        Self::start_with(FunctionRegistry::new()).await
    }

    /// Three coordinators whose Task states run the functions of `registry`;
    /// GetActivityTask polls for 1 s.
    pub async fn start_with(registry: FunctionRegistry) -> Self {
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
            config.tick_interval = Duration::from_millis(20);
            config.heartbeat_ticks = 2;
            let node =
                RaftNode::start(config, ReplicatedState::default(), GrpcTransport::new(id, &peers)).expect("start");
            let transport = RaftTransportService::new();
            transport.attach(node.mailbox());
            let invoker = Arc::new(LocalInvoker::new(registry.clone()).expect("invoker"));
            let driver = ExecutionDriver::start(node.clone(), invoker.clone());
            let states = StatesService::new(node.clone(), driver.clone(), ArnScope::default(), invoker)
                .with_activity_poll(Duration::from_secs(1));
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(transport.into_server())
                    .add_service(states.into_server())
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            ));
            nodes.push((node, driver));
        }
        Self { peers, nodes, servers, _dirs: dirs }
    }

    pub async fn follower_address(&self) -> String {
        eventually("a follower that knows the leader", || async {
            self.nodes
                .iter()
                .map(|(n, _)| n.status())
                .find(|s| !s.is_leader() && s.leader.is_some())
                .map(|s| self.peers[&s.node_id].clone())
        })
        .await
    }

    pub async fn shutdown(self) {
        for (node, driver) in &self.nodes {
            driver.shutdown();
            node.shutdown().await;
        }
        for server in self.servers {
            server.abort();
        }
    }
}

/// Asserts that `result` is refused with `exception`, and that the message names `field`.
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, exception: &str, field: &str) {
    let status = result.expect_err("the request must be refused");
    assert_eq!(exception_name(&status), Some(exception), "{status:?}");
    assert!(status.message().starts_with(exception), "{}", status.message());
    assert!(status.message().contains(field), "message does not name '{field}': {}", status.message());
}

pub async fn create(
    client: &mut StatesClient,
    name: &str,
    definition: &str,
    machine_type: &str,
) -> Result<pb::CreateStateMachineResponse, tonic::Status> {
    let request = pb::CreateStateMachineRequest {
        name: name.into(),
        definition: definition.into(),
        role_arn: String::new(),
        r#type: machine_type.into(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_state_machine(request).await }
        })
        .await
}

pub async fn start(
    client: &mut StatesClient,
    machine: &str,
    name: &str,
    input: &str,
) -> Result<pb::StartExecutionResponse, tonic::Status> {
    let request =
        pb::StartExecutionRequest { state_machine_arn: machine.into(), name: name.into(), input: input.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.start_execution(request).await }
        })
        .await
}

pub async fn describe(client: &mut StatesClient, arn: &str) -> Result<pb::DescribeExecutionResponse, tonic::Status> {
    let request = pb::DescribeExecutionRequest { execution_arn: arn.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_execution(request).await }
        })
        .await
}

pub async fn history(
    client: &mut StatesClient,
    arn: &str,
    max_results: i32,
    reverse_order: bool,
    next_token: &str,
) -> Result<pb::GetExecutionHistoryResponse, tonic::Status> {
    let request = pb::GetExecutionHistoryRequest {
        execution_arn: arn.into(),
        max_results,
        reverse_order,
        next_token: next_token.into(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.get_execution_history(request).await }
        })
        .await
}

async fn list(
    client: &mut StatesClient,
    machine: &str,
    status_filter: &str,
    max_results: i32,
    next_token: &str,
) -> Result<pb::ListExecutionsResponse, tonic::Status> {
    let request = pb::ListExecutionsRequest {
        state_machine_arn: machine.into(),
        status_filter: status_filter.into(),
        max_results,
        next_token: next_token.into(),
        map_run_arn: String::new(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.list_executions(request).await }
        })
        .await
}

pub async fn wait_closed(client: &mut StatesClient, arn: &str) -> pb::DescribeExecutionResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe(client, arn).await.expect("describe");
        if described.status != "RUNNING" {
            return described;
        }
        assert!(tokio::time::Instant::now() < deadline, "{arn} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn every_operation_through_the_grpc_client() {
    let deployment = Deployment::start().await;
    // Sent to a follower: the client follows the leader hint.
    let follower = deployment.follower_address().await;
    let mut client = StatesClient::new(&follower).expect("client");

    // ValidateStateMachineDefinition.
    let request = pb::ValidateStateMachineDefinitionRequest {
        definition: r#"{"StartAt":"X","States":{}}"#.into(),
        r#type: String::new(),
    };
    let report = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.validate_state_machine_definition(request).await }
        })
        .await
        .expect("validate");
    assert_eq!(report.result, "FAIL");
    assert!(!report.diagnostics.is_empty());
    let request = pb::ValidateStateMachineDefinitionRequest { definition: WAIT_PASS.into(), r#type: "STANDARD".into() };
    let report = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.validate_state_machine_definition(request).await }
        })
        .await
        .expect("validate");
    assert_eq!(report.result, "OK");
    let request = pb::ValidateStateMachineDefinitionRequest { definition: WAIT_PASS.into(), r#type: "BOGUS".into() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.validate_state_machine_definition(request).await }
            })
            .await,
        "ValidationException",
        "BOGUS",
    );

    // CreateStateMachine, with its refusals.
    let created = create(&mut client, "wait-pass", WAIT_PASS, "").await.expect("create");
    assert_ne!(client.endpoint(), follower, "the client moved to the leader");
    let machine = created.state_machine_arn.clone();
    assert_eq!(machine, "arn:aws:states:us-east-1:123456789012:stateMachine:wait-pass");
    assert_eq!(create(&mut client, "wait-pass", WAIT_PASS, "").await.expect("idempotent").state_machine_arn, machine);
    assert_refused(create(&mut client, "wait-pass", FAIL, "").await, "StateMachineAlreadyExists", "wait-pass");
    assert_refused(create(&mut client, "bad name", WAIT_PASS, "").await, "InvalidName", "name");
    assert_refused(
        create(&mut client, "broken", r#"{"StartAt":"Nope","States":{}}"#, "").await,
        "InvalidDefinition",
        "Definition",
    );
    assert_refused(create(&mut client, "typed", WAIT_PASS, "SLOW").await, "ValidationException", "SLOW");
    let failing = create(&mut client, "failing", FAIL, "").await.expect("create").state_machine_arn;
    let long = create(&mut client, "long", LONG_WAIT, "").await.expect("create").state_machine_arn;
    let express =
        create(&mut client, "quick", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#, "EXPRESS")
            .await
            .expect("create")
            .state_machine_arn;

    // DescribeStateMachine, ListStateMachines (paged), UpdateStateMachine.
    let request = pb::DescribeStateMachineRequest { state_machine_arn: machine.clone() };
    let described = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_state_machine(request).await }
        })
        .await
        .expect("describe");
    assert_eq!(
        (described.name.as_str(), described.r#type.as_str(), described.definition.as_str()),
        ("wait-pass", "STANDARD", WAIT_PASS)
    );
    let request = pb::DescribeStateMachineRequest {
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:none".into(),
    };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.describe_state_machine(request).await }
            })
            .await,
        "StateMachineDoesNotExist",
        "none",
    );
    let request = pb::DescribeStateMachineRequest { state_machine_arn: "not-an-arn".into() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.describe_state_machine(request).await }
            })
            .await,
        "InvalidArn",
        "not-an-arn",
    );
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListStateMachinesRequest { max_results: 2, next_token: token.clone() };
        let page = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.list_state_machines(request).await }
            })
            .await
            .expect("list");
        names.extend(page.state_machines.into_iter().map(|m| m.name));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(names, ["failing", "long", "quick", "wait-pass"]);
    let request = pb::ListStateMachinesRequest { max_results: 5000, next_token: String::new() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.list_state_machines(request).await }
            })
            .await,
        "ValidationException",
        "maxResults",
    );
    let request = pb::UpdateStateMachineRequest {
        state_machine_arn: failing.clone(),
        definition: Some(FAIL.replace("Oops", "Updated")),
        role_arn: None,
    };
    let updated = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.update_state_machine(request).await }
        })
        .await
        .expect("update");
    assert!(!updated.revision_id.is_empty());
    let request = pb::UpdateStateMachineRequest {
        state_machine_arn: failing.clone(),
        definition: Some("{".into()),
        role_arn: None,
    };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.update_state_machine(request).await }
            })
            .await,
        "InvalidDefinition",
        "Definition",
    );
    let request =
        pb::UpdateStateMachineRequest { state_machine_arn: failing.clone(), definition: None, role_arn: None };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.update_state_machine(request).await }
            })
            .await,
        "ValidationException",
        "definition",
    );

    // StartExecution: idempotency, refusals; DescribeExecution; GetExecutionHistory.
    let first = start(&mut client, &machine, "run-1", r#"{"n":1}"#).await.expect("start");
    assert_eq!(
        start(&mut client, &machine, "run-1", r#"{"n":1}"#).await.expect("same start").execution_arn,
        first.execution_arn
    );
    assert_refused(start(&mut client, &machine, "run-1", r#"{"n":2}"#).await, "ExecutionAlreadyExists", "run-1");
    assert_refused(start(&mut client, &machine, "a/b", "{}").await, "InvalidName", "name");
    assert_refused(start(&mut client, &machine, "x", "{not json").await, "InvalidExecutionInput", "Input");
    assert_refused(
        start(&mut client, "arn:aws:states:us-east-1:123456789012:stateMachine:none", "x", "{}").await,
        "StateMachineDoesNotExist",
        "none",
    );
    assert_refused(
        start(&mut client, "arn:aws:states:us-east-1:123456789012:execution:m:e", "x", "{}").await,
        "InvalidArn",
        "stateMachineArn",
    );
    let done = wait_closed(&mut client, &first.execution_arn).await;
    assert_eq!(done.status, "SUCCEEDED");
    assert_eq!(done.output.as_deref(), Some("\"done\""));
    assert_eq!(done.input, r#"{"n":1}"#);
    assert_refused(start(&mut client, &machine, "run-1", r#"{"n":1}"#).await, "ExecutionAlreadyExists", "run-1");
    assert_refused(
        describe(&mut client, "arn:aws:states:us-east-1:123456789012:execution:wait-pass:none").await,
        "ExecutionDoesNotExist",
        "none",
    );
    assert_refused(describe(&mut client, "arn:aws:states:x").await, "InvalidArn", "executionArn");

    let all = history(&mut client, &first.execution_arn, 0, false, "").await.expect("history");
    let types: Vec<&str> = all.events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "WaitStateEntered",
            "WaitStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = history(&mut client, &first.execution_arn, 4, true, &token).await.expect("page");
        paged.extend(page.events.into_iter().map(|e| e.id));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(paged, [6, 5, 4, 3, 2, 1]);
    assert_refused(history(&mut client, &first.execution_arn, 0, false, "garbage").await, "InvalidToken", "garbage");
    assert_refused(
        history(&mut client, &first.execution_arn, -1, false, "").await,
        "ValidationException",
        "maxResults",
    );

    // A failing execution; StopExecution; ListExecutions with filter and pages.
    let failed = start(&mut client, &failing, "f-1", "{}").await.expect("start");
    let failed = wait_closed(&mut client, &failed.execution_arn).await;
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref(), failed.cause.as_deref()),
        ("FAILED", Some("Updated"), Some("on purpose"))
    );
    assert_eq!(failed.output, None);
    for i in 0..3 {
        start(&mut client, &long, &format!("l-{i}"), "{}").await.expect("start");
    }
    let stopped_arn = format!("{}:l-1", long.replace(":stateMachine:", ":execution:"));
    let request = pb::StopExecutionRequest {
        execution_arn: stopped_arn.clone(),
        error: Some("Manual".into()),
        cause: Some("test".into()),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.stop_execution(request).await }
        })
        .await
        .expect("stop");
    let stopped = describe(&mut client, &stopped_arn).await.expect("describe");
    assert_eq!((stopped.status.as_str(), stopped.error.as_deref()), ("ABORTED", Some("Manual")));
    let request = pb::StopExecutionRequest {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:long:none".into(),
        error: None,
        cause: None,
    };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.stop_execution(request).await }
            })
            .await,
        "ExecutionDoesNotExist",
        "none",
    );
    let request =
        pb::StopExecutionRequest { execution_arn: stopped_arn.clone(), error: Some("e".repeat(300)), cause: None };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.stop_execution(request).await }
            })
            .await,
        "ValidationException",
        "error",
    );

    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(&mut client, &long, "", 2, &token).await.expect("list");
        listed.extend(page.executions.into_iter().map(|e| (e.name, e.status)));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    let expected: Vec<(String, String)> = [("l-2", "RUNNING"), ("l-1", "ABORTED"), ("l-0", "RUNNING")]
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    assert_eq!(listed, expected);
    let running = list(&mut client, &long, "RUNNING", 0, "").await.expect("list");
    assert_eq!(running.executions.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["l-2", "l-0"]);
    assert_refused(list(&mut client, &long, "DONE", 0, "").await, "ValidationException", "statusFilter");
    assert_refused(list(&mut client, &long, "", 0, "h:1").await, "InvalidToken", "h:1");
    assert_refused(
        list(&mut client, "arn:aws:states:us-east-1:123456789012:stateMachine:none", "", 0, "").await,
        "StateMachineDoesNotExist",
        "none",
    );

    // StartSyncExecution: Express only.
    let request = pb::StartExecutionRequest {
        state_machine_arn: express.clone(),
        name: "sync-1".into(),
        input: r#"{"a":1}"#.into(),
    };
    let synced = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.start_sync_execution(request).await }
        })
        .await
        .expect("sync");
    assert_eq!((synced.status.as_str(), synced.output.as_deref()), ("SUCCEEDED", Some(r#"{"a":1}"#)));
    assert!(synced.execution_arn.contains(":express:quick:sync-1:"), "{}", synced.execution_arn);
    assert_eq!(describe(&mut client, &synced.execution_arn).await.expect("describe").status, "SUCCEEDED");
    let request =
        pb::StartExecutionRequest { state_machine_arn: machine.clone(), name: "sync-2".into(), input: String::new() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.start_sync_execution(request).await }
            })
            .await,
        "StateMachineTypeNotSupported",
        "not supported",
    );

    // DeleteStateMachine.
    let request = pb::DeleteStateMachineRequest { state_machine_arn: failing.clone() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.delete_state_machine(request).await }
        })
        .await
        .expect("delete");
    let request = pb::DescribeStateMachineRequest { state_machine_arn: failing.clone() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.describe_state_machine(request).await }
            })
            .await,
        "StateMachineDoesNotExist",
        "failing",
    );
    let request = pb::DeleteStateMachineRequest { state_machine_arn: "nope".into() };
    assert_refused(
        client
            .call(|mut c| {
                let request = request.clone();
                async move { c.delete_state_machine(request).await }
            })
            .await,
        "InvalidArn",
        "stateMachineArn",
    );

    deployment.shutdown().await;
}
