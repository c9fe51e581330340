//! RedriveExecution through the real gRPC client (features.md §2.12): a failed execution
//! redriven from its failed Task state to success, with fresh Retry counters and a fresh
//! TimeoutSeconds; the redrive fields of DescribeExecution; the refusals; client-token
//! idempotency; aborted executions redriven twice; and a redriven execution that survives a
//! change of leader.
//!
//! The flaky Task is a local command function: it fails while a counter file says so, so the
//! test decides between attempts whether the next one succeeds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;
use stepmap_worker::function_registry::{FunctionRegistry, FunctionSpec};

use super::api::{assert_refused, create, describe, history, start, wait_closed, Deployment};
use super::harness::eventually;

const FLAKY: &str = "arn:aws:lambda:us-east-1:123456789012:function:flaky";

/// `flaky` counts its calls in `calls` and fails while `failures` holds a positive number
/// (decrementing it); `sleepy` is slow while `slow` exists.
struct FlakyFunction {
    dir: tempfile::TempDir,
}

impl FlakyFunction {
    fn new() -> Self {
        let function = Self { dir: tempfile::tempdir().expect("temp dir") };
        function.fail_next(0);
        std::fs::write(function.path("calls"), "").expect("calls file");
        function
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn registry(&self) -> FunctionRegistry {
        let (failures, calls) = (self.path("failures"), self.path("calls"));
        let script = format!(
            r#"cat > /dev/null; echo call >> {calls}; n=$(cat {failures});
if [ "$n" -gt 0 ]; then echo $((n - 1)) > {failures}; echo '{{"errorType":"Flaky.Error","errorMessage":"not yet"}}'; exit 1; fi
echo '{{"ok":true}}'"#,
            calls = calls.display(),
            failures = failures.display(),
        );
        let mut registry = FunctionRegistry::new();
        registry.insert("flaky", FunctionSpec::command(["sh", "-c", script.as_str()]));
        // `sleepy` sleeps past any short TimeoutSeconds while the `slow` file exists.
        let slow = self.path("slow");
        let script = format!(
            r#"cat > /dev/null; if [ -f {slow} ]; then sleep 10; fi; echo '{{"awake":true}}'"#,
            slow = slow.display()
        );
        registry.insert("sleepy", FunctionSpec::command(["sh", "-c", script.as_str()]));
        registry
    }

    fn set_slow(&self, slow: bool) {
        if slow {
            std::fs::write(self.path("slow"), "").expect("slow file");
        } else {
            std::fs::remove_file(self.path("slow")).expect("slow file");
        }
    }

    fn fail_next(&self, count: u32) {
        write_atomically(&self.path("failures"), &count.to_string());
    }

    fn calls(&self) -> usize {
        std::fs::read_to_string(self.path("calls")).expect("calls file").lines().count()
    }
}

fn write_atomically(path: &Path, text: &str) {
    let part = path.with_extension("part");
    std::fs::write(&part, text).expect("write");
    std::fs::rename(&part, path).expect("rename");
}

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

async fn redrive(
    client: &mut StatesClient,
    arn: &str,
    token: Option<&str>,
) -> Result<pb::RedriveExecutionResponse, tonic::Status> {
    let request = pb::RedriveExecutionRequest { execution_arn: arn.into(), client_token: token.map(str::to_owned) };
    call!(client, redrive_execution, request)
}

/// Every event of the execution: (id, previous id, type, details).
async fn events(client: &mut StatesClient, arn: &str) -> Vec<(u64, u64, String, Value)> {
    let page = history(client, arn, 1000, false, "").await.expect("history");
    assert!(page.next_token.is_empty());
    page.events
        .into_iter()
        .map(|e| (e.id, e.previous_event_id, e.r#type, serde_json::from_str(&e.details).unwrap_or(Value::Null)))
        .collect()
}

fn types(events: &[(u64, u64, String, Value)]) -> Vec<&str> {
    events.iter().map(|(_, _, t, _)| t.as_str()).collect()
}

/// Asserts ids 1, 2, 3, … and previous ids that point backwards.
fn assert_consistent_ids(events: &[(u64, u64, String, Value)]) {
    for (index, (id, previous, kind, _)) in events.iter().enumerate() {
        assert_eq!(*id, index as u64 + 1, "ids are sequential: {events:?}");
        assert!(*previous < *id, "{kind} {id} points forward to {previous}");
    }
}

fn entered(events: &[(u64, u64, String, Value)], state: &str) -> usize {
    events.iter().filter(|(_, _, t, d)| t.ends_with("StateEntered") && d["name"] == state).count()
}

/// Pass → flaky Task (one retry) → Wait `pause` seconds → Pass, within the execution's
/// `timeout_seconds`.
fn machine(timeout_seconds: u64, pause: u64) -> String {
    json!({
        "TimeoutSeconds": timeout_seconds,
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"ready": true}, "ResultPath": "$.prepare", "Next": "Flaky"},
            "Flaky": {
                "Type": "Task", "Resource": FLAKY, "ResultPath": "$.flaky",
                "Retry": [{"ErrorEquals": ["Flaky.Error"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                "Next": "Pause"
            },
            "Pause": {"Type": "Wait", "Seconds": pause, "Next": "Done"},
            "Done": {"Type": "Pass", "End": true}
        }
    })
    .to_string()
}

pub async fn redrive_through_the_grpc_client() {
    let flaky = FlakyFunction::new();
    let deployment = Deployment::start_with(flaky.registry()).await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");
    let machine = create(&mut client, "flaky", &machine(5, 0), "STANDARD").await.expect("create").state_machine_arn;

    // The first run: the attempt and its one retry fail.
    flaky.fail_next(2);
    let started_at = tokio::time::Instant::now();
    let execution = start(&mut client, &machine, "e-1", r#"{"n":1}"#).await.expect("start").execution_arn;
    let failed = wait_closed(&mut client, &execution).await;
    assert_eq!((failed.status.as_str(), failed.error.as_deref()), ("FAILED", Some("Flaky.Error")), "{failed:?}");
    assert_eq!(
        (failed.redrive_count, failed.redrive_date.as_deref(), failed.redrive_status.as_deref()),
        (Some(0), None, Some("REDRIVABLE"))
    );
    assert_eq!(failed.redrive_status_reason, None);

    // Past the execution's TimeoutSeconds, so that only a timeout restarted by the redrive
    // lets it finish; one more failure, which only a fresh Retry counter absorbs.
    tokio::time::sleep_until(started_at + Duration::from_millis(5_500)).await;
    flaky.fail_next(1);
    let redriven = redrive(&mut client, &execution, Some("token-1")).await.expect("redrive");
    // The same token again: the same answer, not a second redrive (nor a refusal).
    let repeated = redrive(&mut client, &execution, Some("token-1")).await.expect("repeated redrive");
    assert_eq!(repeated.redrive_date, redriven.redrive_date);
    let done = wait_closed(&mut client, &execution).await;
    assert_eq!(done.status, "SUCCEEDED", "{done:?}");
    let output: Value = serde_json::from_str(done.output.as_deref().expect("output")).expect("JSON");
    assert_eq!(output, json!({"n": 1, "prepare": {"ready": true}, "flaky": {"ok": true}}));
    assert_eq!(flaky.calls(), 4);
    assert_eq!(
        (done.redrive_count, done.redrive_date.as_deref(), done.redrive_status.as_deref()),
        (Some(1), Some(redriven.redrive_date.as_str()), Some("NOT_REDRIVABLE"))
    );
    assert_eq!(done.redrive_status_reason.as_deref(), Some("Execution is SUCCEEDED and cannot be redriven"));

    let seen = events(&mut client, &execution).await;
    assert_consistent_ids(&seen);
    let attempt = ["LambdaFunctionScheduled", "LambdaFunctionStarted"];
    let mut expected = vec!["ExecutionStarted", "PassStateEntered", "PassStateExited", "TaskStateEntered"];
    for outcome in ["LambdaFunctionFailed", "LambdaFunctionFailed"] {
        expected.extend(attempt);
        expected.push(outcome);
    }
    expected.extend(["ExecutionFailed", "ExecutionRedriven"]);
    for outcome in ["LambdaFunctionFailed", "LambdaFunctionSucceeded"] {
        expected.extend(attempt);
        expected.push(outcome);
    }
    expected.extend([
        "TaskStateExited",
        "WaitStateEntered",
        "WaitStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]);
    assert_eq!(types(&seen), expected);
    assert_eq!((entered(&seen, "Prepare"), entered(&seen, "Flaky")), (1, 1), "no state entered twice");
    let (redriven_id, redriven_previous, _, details) = &seen[11];
    assert_eq!((*redriven_id, *redriven_previous), (12, 11));
    assert_eq!(details, &json!({"redriveCount": 1}));
    assert_eq!(seen[12].1, 12, "the re-run follows the ExecutionRedriven event");
    let request = pb::ListExecutionsRequest {
        state_machine_arn: machine.clone(),
        status_filter: String::new(),
        max_results: 0,
        next_token: String::new(),
        map_run_arn: String::new(),
    };
    let listed = call!(client, list_executions, request).expect("list");
    let item = &listed.executions[0];
    assert_eq!((item.redrive_count, item.redrive_date.as_deref()), (Some(1), Some(redriven.redrive_date.as_str())));

    // Refusals.
    assert_refused(
        redrive(&mut client, &execution, None).await,
        "ExecutionNotRedrivable",
        "Execution is SUCCEEDED and cannot be redriven",
    );
    let unknown = execution.replace(":e-1", ":none");
    assert_refused(redrive(&mut client, &unknown, None).await, "ExecutionDoesNotExist", "none");
    assert_refused(redrive(&mut client, "arn:aws:states:x", None).await, "InvalidArn", "executionArn");
    assert_refused(redrive(&mut client, &execution, Some(&"t".repeat(65))).await, "ValidationException", "clientToken");
    let waiting = create(
        &mut client,
        "waiting",
        r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
        "STANDARD",
    )
    .await
    .expect("create")
    .state_machine_arn;
    let running = start(&mut client, &waiting, "w-1", "{}").await.expect("start").execution_arn;
    assert_refused(
        redrive(&mut client, &running, None).await,
        "ExecutionNotRedrivable",
        "Execution is RUNNING and cannot be redriven",
    );
    let described = describe(&mut client, &running).await.expect("describe");
    assert_eq!(
        (described.redrive_status.as_deref(), described.redrive_status_reason.as_deref()),
        (Some("NOT_REDRIVABLE"), Some("Execution is RUNNING and cannot be redriven"))
    );

    // An aborted execution is redrivable, twice: it waits in its Wait state again.
    for round in 1..=2u64 {
        let request = pb::StopExecutionRequest { execution_arn: running.clone(), error: None, cause: None };
        call!(client, stop_execution, request).expect("stop");
        assert_eq!(describe(&mut client, &running).await.expect("describe").status, "ABORTED");
        redrive(&mut client, &running, None).await.expect("redrive an aborted execution");
        let described = describe(&mut client, &running).await.expect("describe");
        assert_eq!((described.status.as_str(), described.redrive_count), ("RUNNING", Some(round as u32)));
        assert_eq!(described.stop_date, None);
    }
    // The Wait is running again (not re-entered): the history holds each attempt's end.
    let seen = eventually("the redriven wait", || {
        let mut client = client.clone();
        let running = running.clone();
        async move { Some(events(&mut client, &running).await).filter(|events| events.len() == 6) }
    })
    .await;
    assert_consistent_ids(&seen);
    assert_eq!(
        types(&seen),
        [
            "ExecutionStarted",
            "WaitStateEntered",
            "ExecutionAborted",
            "ExecutionRedriven",
            "ExecutionAborted",
            "ExecutionRedriven"
        ]
    );
    assert_eq!(seen[5].3, json!({"redriveCount": 2}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(describe(&mut client, &running).await.expect("describe").status, "RUNNING");

    // A Task that timed out gets a fresh TimeoutSeconds in the redrive.
    let napping = json!({
        "StartAt": "FirstRun",
        "States": {
            // Replayed after the redrive: it must see the RedriveCount it saw (0), or the
            // replay diverges.
            "FirstRun": {"Type": "Choice", "Default": "Diverged", "Choices": [
                {"Variable": "$$.Execution.RedriveCount", "NumericEquals": 0, "Next": "Nap"}
            ]},
            "Diverged": {"Type": "Fail", "Error": "Diverged"},
            "Nap": {
                "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:sleepy",
                "TimeoutSeconds": 1, "End": true,
                "ResultSelector": {"awake.$": "$.awake", "redrives.$": "$$.Execution.RedriveCount"}
            }
        }
    });
    let napping =
        create(&mut client, "napping", &napping.to_string(), "STANDARD").await.expect("create").state_machine_arn;
    flaky.set_slow(true);
    let nap = start(&mut client, &napping, "n-1", "{}").await.expect("start").execution_arn;
    let timed_out = wait_closed(&mut client, &nap).await;
    assert_eq!((timed_out.status.as_str(), timed_out.error.as_deref()), ("FAILED", Some("States.Timeout")));
    flaky.set_slow(false);
    redrive(&mut client, &nap, None).await.expect("redrive");
    let awake = wait_closed(&mut client, &nap).await;
    assert_eq!((awake.status.as_str(), awake.output.as_deref()), ("SUCCEEDED", Some(r#"{"awake":true,"redrives":1}"#)));
    let seen = events(&mut client, &nap).await;
    assert_consistent_ids(&seen);
    let kinds = types(&seen);
    assert_eq!(
        kinds[6..],
        [
            "LambdaFunctionTimedOut",
            "ExecutionFailed",
            "ExecutionRedriven",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );

    // EXPRESS executions are not redrivable, and show no redrive fields.
    let quick =
        create(&mut client, "quick", r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"E"}}}"#, "EXPRESS")
            .await
            .expect("create")
            .state_machine_arn;
    let request = pb::StartExecutionRequest { state_machine_arn: quick, name: "q-1".into(), input: String::new() };
    let synced = call!(client, start_sync_execution, request).expect("sync");
    assert_eq!(synced.status, "FAILED");
    assert_refused(redrive(&mut client, &synced.execution_arn, None).await, "ExecutionNotRedrivable", "EXPRESS");
    let described = describe(&mut client, &synced.execution_arn).await.expect("describe");
    assert_eq!((described.redrive_count, described.redrive_status), (None, None));

    deployment.shutdown().await;
}

pub async fn a_redriven_execution_survives_a_change_of_leader() {
    let flaky = FlakyFunction::new();
    let deployment = Deployment::start_with(flaky.registry()).await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");
    let machine = create(&mut client, "paused", &machine(600, 3), "STANDARD").await.expect("create").state_machine_arn;
    flaky.fail_next(2);
    let execution = start(&mut client, &machine, "e-1", "{}").await.expect("start").execution_arn;
    assert_eq!(wait_closed(&mut client, &execution).await.status, "FAILED");

    flaky.fail_next(0);
    redrive(&mut client, &execution, None).await.expect("redrive");
    // Once the redriven execution waits in Pause, leadership moves: the new leader replays
    // the history through the redrive and finishes the wait.
    eventually("the redriven execution in its Wait state", || {
        let mut client = client.clone();
        let execution = execution.clone();
        async move { events(&mut client, &execution).await.iter().any(|e| e.2 == "WaitStateEntered").then_some(()) }
    })
    .await;
    let (leader, _) = deployment.nodes.iter().find(|(n, _)| n.status().is_leader()).expect("a leader");
    let old = leader.status().node_id;
    let to = deployment.nodes.iter().map(|(n, _)| n.status().node_id).find(|id| *id != old).expect("another node");
    leader.transfer_leadership(to).await.expect("transfer");
    let moved_at = chrono::Utc::now();
    eventually("the new leader", || async {
        deployment.nodes.iter().any(|(n, _)| n.status().is_leader() && n.status().node_id == to).then_some(())
    })
    .await;

    let done = wait_closed(&mut client, &execution).await;
    assert_eq!((done.status.as_str(), done.redrive_count), ("SUCCEEDED", Some(1)), "{done:?}");
    let seen = events(&mut client, &execution).await;
    assert_consistent_ids(&seen);
    assert_eq!(seen.iter().filter(|e| e.2 == "ExecutionRedriven").count(), 1);
    assert_eq!(seen.iter().filter(|e| e.2 == "WaitStateEntered").count(), 1, "{seen:?}");
    assert_eq!((entered(&seen, "Prepare"), entered(&seen, "Flaky")), (1, 1));
    assert_eq!(seen.iter().filter(|e| e.2 == "LambdaFunctionSucceeded").count(), 1);
    assert_eq!(flaky.calls(), 3, "the new leader answered the redriven Task from the history");
    // The wait ended after the move, under the new leader.
    let page = history(&mut client, &execution, 1000, false, "").await.expect("history");
    let exit_time = page.events.iter().find(|e| e.r#type == "WaitStateExited").expect("exit").timestamp.clone();
    let exit_time = chrono::DateTime::parse_from_rfc3339(&exit_time).expect("timestamp");
    assert!(exit_time >= moved_at - chrono::TimeDelta::milliseconds(1), "{exit_time} < {moved_at}");

    deployment.shutdown().await;
}

/// Takes the next task of `activity`, polling (each poll lasts at most the deployment's 1 s).
async fn take_task(client: &mut StatesClient, activity: &str) -> String {
    for _ in 0..30 {
        let request = pb::GetActivityTaskRequest { activity_arn: activity.into(), worker_name: "w".into() };
        let task = call!(client, get_activity_task, request).expect("get activity task");
        if !task.task_token.is_empty() {
            return task.task_token;
        }
    }
    panic!("no task of {activity} arrived");
}

/// A redriven activity Task is scheduled with a new task token: the failed attempt's token is
/// closed, and a worker completes the redriven one.
pub async fn a_redriven_activity_gets_a_new_task_token() {
    let deployment = Deployment::start().await;
    let mut client = StatesClient::new(&deployment.follower_address().await).expect("client");
    let request = pb::CreateActivityRequest { name: "work".into() };
    let activity = call!(client, create_activity, request).expect("create activity").activity_arn;
    let definition = json!({
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": activity, "TimeoutSeconds": 60, "End": true}}
    });
    let machine =
        create(&mut client, "worked", &definition.to_string(), "STANDARD").await.expect("create").state_machine_arn;
    let execution = start(&mut client, &machine, "e-1", "{}").await.expect("start").execution_arn;

    let first = take_task(&mut client, &activity).await;
    let request =
        pb::SendTaskFailureRequest { task_token: first.clone(), error: "Worker.Broken".into(), cause: String::new() };
    call!(client, send_task_failure, request).expect("failure");
    let failed = wait_closed(&mut client, &execution).await;
    assert_eq!((failed.status.as_str(), failed.error.as_deref()), ("FAILED", Some("Worker.Broken")));

    redrive(&mut client, &execution, None).await.expect("redrive");
    let second = take_task(&mut client, &activity).await;
    assert_ne!(second, first, "the redriven attempt has its own token");
    let request = pb::SendTaskSuccessRequest { task_token: second, output: r#"{"fixed":true}"#.into() };
    call!(client, send_task_success, request).expect("success");
    let done = wait_closed(&mut client, &execution).await;
    assert_eq!((done.status.as_str(), done.output.as_deref()), ("SUCCEEDED", Some(r#"{"fixed":true}"#)), "{done:?}");
    let seen = events(&mut client, &execution).await;
    assert_consistent_ids(&seen);
    assert_eq!(
        types(&seen),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityFailed",
            "ExecutionFailed",
            "ExecutionRedriven",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivitySucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    deployment.shutdown().await;
}
