//! Task tokens through the real gRPC client: activities served with GetActivityTask and
//! completed with SendTask*, `.waitForTaskToken` callbacks, heartbeat timeouts, the
//! exceptions of bad requests, and a wait that survives a change of leader.

use serde_json::{json, Value};
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;
use stepmap_worker::function_registry::{FunctionRegistry, FunctionSpec};

use super::api::{assert_refused, create, describe, history, start, wait_closed, Deployment};
use super::harness::eventually;

/// Runs one call with leader following.
macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        $client
            .call(|mut c| {
                let request = request.clone();
                async move { c.$method(request).await }
            })
            .await
    }};
}

fn activity_machine(activity: &str, heartbeat: u64) -> String {
    json!({
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task", "Resource": activity, "TimeoutSeconds": 60, "HeartbeatSeconds": heartbeat,
                "ResultPath": "$.result", "Next": "Done"
            },
            "Done": {"Type": "Pass", "End": true}
        }
    })
    .to_string()
}

/// Every event of the execution: (type, details).
async fn events(client: &mut StatesClient, arn: &str) -> Vec<(String, Value)> {
    let page = history(client, arn, 1000, false, "").await.expect("history");
    page.events.into_iter().map(|e| (e.r#type, serde_json::from_str(&e.details).unwrap_or(Value::Null))).collect()
}

fn count(events: &[(String, Value)], kind: &str) -> usize {
    events.iter().filter(|(t, _)| t == kind).count()
}

async fn get_task(client: &mut StatesClient, activity: &str, worker: &str) -> pb::GetActivityTaskResponse {
    let request = pb::GetActivityTaskRequest { activity_arn: activity.into(), worker_name: worker.into() };
    call!(client, get_activity_task, request).expect("get activity task")
}

/// Polls until a task arrives (each poll lasts at most the deployment's 1 s).
async fn take_task(client: &mut StatesClient, activity: &str, worker: &str) -> pb::GetActivityTaskResponse {
    for _ in 0..30 {
        let task = get_task(client, activity, worker).await;
        if !task.task_token.is_empty() {
            return task;
        }
    }
    panic!("no task of {activity} arrived");
}

async fn succeed(
    client: &mut StatesClient,
    token: &str,
    output: &str,
) -> Result<pb::SendTaskSuccessResponse, tonic::Status> {
    call!(client, send_task_success, pb::SendTaskSuccessRequest { task_token: token.into(), output: output.into() })
}

pub async fn activities_through_the_grpc_client() {
    let deployment = Deployment::start().await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");

    let created = call!(client, create_activity, pb::CreateActivityRequest { name: "work".into() }).expect("create");
    let again = call!(client, create_activity, pb::CreateActivityRequest { name: "work".into() }).expect("again");
    assert_eq!(created.activity_arn, again.activity_arn, "CreateActivity is idempotent");
    let activity = created.activity_arn.clone();
    let described = call!(client, describe_activity, pb::DescribeActivityRequest { activity_arn: activity.clone() })
        .expect("describe");
    assert_eq!(described.name, "work");
    let listed =
        call!(client, list_activities, pb::ListActivitiesRequest { max_results: 0, next_token: String::new() })
            .expect("list");
    assert_eq!(listed.activities.iter().map(|a| a.activity_arn.as_str()).collect::<Vec<_>>(), [activity.as_str()]);
    assert_refused(
        call!(client, create_activity, pb::CreateActivityRequest { name: "a b".into() }),
        "InvalidName",
        "name",
    );
    let bad_arn = pb::DescribeActivityRequest { activity_arn: "arn:nope".into() };
    assert_refused(call!(client, describe_activity, bad_arn), "InvalidArn", "activityArn");
    let missing =
        pb::GetActivityTaskRequest { activity_arn: activity.replace("work", "other"), worker_name: String::new() };
    assert_refused(call!(client, get_activity_task, missing), "ActivityDoesNotExist", "other");
    // Nothing scheduled: the long poll ends with no task.
    assert!(get_task(&mut client, &activity, "w").await.task_token.is_empty());

    // Success: the worker's output becomes the task's result.
    let machine = create(&mut client, "activity", &activity_machine(&activity, 30), "STANDARD").await.expect("machine");
    let execution = start(&mut client, &machine.state_machine_arn, "ok", r#"{"n":1}"#).await.expect("start");
    let task = take_task(&mut client, &activity, "w1").await;
    assert_eq!(serde_json::from_str::<Value>(&task.input).unwrap(), json!({"n": 1}));
    call!(client, send_task_heartbeat, pb::SendTaskHeartbeatRequest { task_token: task.task_token.clone() })
        .expect("heartbeat");
    succeed(&mut client, &task.task_token, r#"{"ok":true}"#).await.expect("success");
    let closed = wait_closed(&mut client, &execution.execution_arn).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    assert_eq!(
        serde_json::from_str::<Value>(closed.output.as_deref().unwrap_or("null")).unwrap(),
        json!({"n": 1, "result": {"ok": true}})
    );
    let seen = events(&mut client, &execution.execution_arn).await;
    let kinds: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    let started = kinds.iter().position(|t| *t == "ActivityStarted").expect("ActivityStarted");
    assert_eq!(&kinds[started - 1..=started + 1], ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"]);
    assert_eq!(seen[started].1["workerName"], "w1");
    assert_eq!(seen[started - 1].1["heartbeatInSeconds"], 30);

    // The token is spent; bad tokens and outputs are refused by name.
    assert_refused(succeed(&mut client, &task.task_token, "{}").await, "TaskTimedOut", "Task Timed Out");
    let unknown = "A".repeat(43);
    assert_refused(succeed(&mut client, &unknown, "{}").await, "TaskDoesNotExist", "Task Does Not Exist");
    assert_refused(succeed(&mut client, "not-a-token", "{}").await, "InvalidToken", "taskToken");
    assert_refused(succeed(&mut client, "", "{}").await, "ValidationException", "taskToken");

    // Failure: SendTaskFailure's error and cause fail the state.
    let execution = start(&mut client, &machine.state_machine_arn, "fails", "{}").await.expect("start");
    let task = take_task(&mut client, &activity, "w2").await;
    assert_refused(succeed(&mut client, &task.task_token, "{not json").await, "InvalidOutput", "Invalid Output");
    let failure =
        pb::SendTaskFailureRequest { task_token: task.task_token, error: "Boom".into(), cause: "broken".into() };
    call!(client, send_task_failure, failure).expect("failure");
    let closed = wait_closed(&mut client, &execution.execution_arn).await;
    assert_eq!(
        (closed.status.as_str(), closed.error.as_deref(), closed.cause.as_deref()),
        ("FAILED", Some("Boom"), Some("broken"))
    );
    assert_eq!(count(&events(&mut client, &execution.execution_arn).await, "ActivityFailed"), 1);

    // A missed heartbeat times the task out (States.Timeout, as AWS records it).
    let quiet = create(&mut client, "quiet", &activity_machine(&activity, 1), "STANDARD").await.expect("machine");
    let execution = start(&mut client, &quiet.state_machine_arn, "quiet", "{}").await.expect("start");
    let task = take_task(&mut client, &activity, "w3").await;
    let closed = wait_closed(&mut client, &execution.execution_arn).await;
    assert_eq!((closed.status.as_str(), closed.error.as_deref()), ("FAILED", Some("States.Timeout")));
    assert_eq!(count(&events(&mut client, &execution.execution_arn).await, "ActivityTimedOut"), 1);
    assert_refused(succeed(&mut client, &task.task_token, "{}").await, "TaskTimedOut", "Task Timed Out");

    call!(client, delete_activity, pb::DeleteActivityRequest { activity_arn: activity.clone() }).expect("delete");
    let gone = pb::DescribeActivityRequest { activity_arn: activity };
    assert_refused(call!(client, describe_activity, gone), "ActivityDoesNotExist", "work");
    deployment.shutdown().await;
}

pub async fn callbacks_wait_for_the_task_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event_file = dir.path().join("event.json");
    let mut registry = FunctionRegistry::new();
    let script = format!("cat > {}.part && mv {0}.part {0} && echo '{{\"queued\":true}}'", event_file.display());
    registry.insert("notify", FunctionSpec::command(["sh", "-c", script.as_str()]));
    let deployment = Deployment::start_with(registry).await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");

    let definition = json!({
        "StartAt": "Ask",
        "States": {"Ask": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
            "End": true
        }}
    });
    let machine = create(&mut client, "callback", &definition.to_string(), "STANDARD").await.expect("machine");
    let execution = start(&mut client, &machine.state_machine_arn, "c", r#"{"order":7}"#).await.expect("start");
    let event: Value = eventually("the function to receive the token", || async {
        std::fs::read_to_string(&event_file).ok().and_then(|text| serde_json::from_str(&text).ok())
    })
    .await;
    assert_eq!(event["order"], 7);
    let token = event["token"].as_str().expect("token").to_owned();
    // The service call was made; the task waits for the token.
    assert_eq!(describe(&mut client, &execution.execution_arn).await.expect("describe").status, "RUNNING");
    succeed(&mut client, &token, r#"{"approved":true}"#).await.expect("success");
    let closed = wait_closed(&mut client, &execution.execution_arn).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    assert_eq!(
        serde_json::from_str::<Value>(closed.output.as_deref().unwrap_or("null")).unwrap(),
        json!({"approved": true})
    );
    let seen = events(&mut client, &execution.execution_arn).await;
    let kinds: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    let submitted = kinds.iter().position(|t| *t == "TaskSubmitted").expect("TaskSubmitted");
    assert_eq!(
        &kinds[submitted - 2..=submitted + 1],
        ["TaskScheduled", "TaskStarted", "TaskSubmitted", "TaskSucceeded"]
    );
    assert_eq!(
        serde_json::from_str::<Value>(seen[submitted].1["output"].as_str().unwrap()).unwrap()["Payload"],
        json!({"queued": true})
    );
    deployment.shutdown().await;
}

pub async fn a_task_token_wait_survives_a_change_of_leader() {
    let deployment = Deployment::start().await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");
    let activity =
        call!(client, create_activity, pb::CreateActivityRequest { name: "slow".into() }).expect("create").activity_arn;
    let machine = create(&mut client, "slow", &activity_machine(&activity, 50), "STANDARD").await.expect("machine");
    let execution = start(&mut client, &machine.state_machine_arn, "moved", "{}").await.expect("start");
    let task = take_task(&mut client, &activity, "w").await;

    let (leader, _) = deployment.nodes.iter().find(|(n, _)| n.status().is_leader()).expect("a leader");
    let old = leader.status().node_id;
    let to = deployment.nodes.iter().map(|(n, _)| n.status().node_id).find(|id| *id != old).expect("another node");
    leader.transfer_leadership(to).await.expect("transfer");
    eventually("the new leader", || async {
        deployment.nodes.iter().any(|(n, _)| n.status().is_leader() && n.status().node_id == to).then_some(())
    })
    .await;
    // The new leader replays the execution and waits on the same token; the old one let go.
    eventually("the new leader to drive the execution", || async {
        deployment.nodes.iter().all(|(n, d)| d.driven() == usize::from(n.status().node_id == to)).then_some(())
    })
    .await;
    succeed(&mut client, &task.task_token, r#""late but fine""#).await.expect("success");
    let closed = wait_closed(&mut client, &execution.execution_arn).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let seen = events(&mut client, &execution.execution_arn).await;
    for kind in ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"] {
        assert_eq!(count(&seen, kind), 1, "{kind} in {seen:?}");
    }
    deployment.shutdown().await;
}

/// A task whose attempt is abandoned (its Parallel branch stopped because a sibling failed,
/// the failure caught) is not handed to an activity worker afterwards.
pub async fn abandoned_activity_tasks_are_not_handed_out() {
    let deployment = Deployment::start().await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");
    let activity =
        call!(client, create_activity, pb::CreateActivityRequest { name: "left".into() }).expect("create").activity_arn;
    let definition = json!({
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel", "Next": "Hold",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Hold"}],
                "Branches": [
                    {"StartAt": "Ask", "States": {"Ask": {"Type": "Task", "Resource": activity, "End": true}}},
                    {"StartAt": "Pause", "States": {
                        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Boom"},
                        "Boom": {"Type": "Fail", "Error": "Boom"}
                    }}
                ]
            },
            "Hold": {"Type": "Wait", "Seconds": 30, "End": true}
        }
    });
    let machine = create(&mut client, "abandon", &definition.to_string(), "STANDARD").await.expect("machine");
    let execution = start(&mut client, &machine.state_machine_arn, "a", "{}").await.expect("start");
    let arn = execution.execution_arn.clone();
    // The activity task was scheduled before the sibling failed.
    eventually("the branch failure to be caught", || {
        let mut client = client.clone();
        let arn = arn.clone();
        async move {
            let seen = events(&mut client, &arn).await;
            (count(&seen, "ActivityScheduled") == 1 && count(&seen, "WaitStateEntered") == 2).then_some(())
        }
    })
    .await;
    assert_eq!(describe(&mut client, &arn).await.expect("describe").status, "RUNNING");
    // Long polls: the abandoned task never comes.
    for _ in 0..2 {
        assert!(get_task(&mut client, &activity, "late").await.task_token.is_empty());
    }
    deployment.shutdown().await;
}
