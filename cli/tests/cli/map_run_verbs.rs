//! `list-map-runs`, `describe-map-run`, `update-map-run` against a real one-node coordinator
//! (default object store), on a Distributed Map slow enough to be updated while it runs.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stepmap_proto::v1 as pb;

use crate::processes::{eventually, Cluster};

/// Three inline items, each child waits 1 s, one child at a time.
const SLOW_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items","MaxConcurrency":1,
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"End":true}}},"End":true}}}"#;

fn stepmap(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepmap"))
        .args(args)
        .args(["--endpoint", endpoint])
        .env_remove("STEPMAP_ENDPOINT")
        .output()
        .expect("run the stepmap binary")
}

/// Runs a verb that must succeed; its stdout as JSON.
fn json(endpoint: &str, args: &[&str]) -> Value {
    let output = stepmap(endpoint, args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_run_verbs_print_aws_json() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1)?;
    let leader = cluster.leader().await?;
    let node = cluster.node(leader);
    let endpoint = format!("http://{}", node.address);
    let mut client = node.client()?;
    let request = pb::CreateStateMachineRequest {
        name: "slow".into(),
        definition: SLOW_MAP.into(),
        role_arn: String::new(),
        r#type: String::new(),
    };
    let machine = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_state_machine(request).await }
        })
        .await?
        .state_machine_arn;
    let request = pb::StartExecutionRequest {
        state_machine_arn: machine,
        name: "e1".into(),
        input: r#"{"items":[1,2,3]}"#.into(),
    };
    let execution = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.start_execution(request).await }
        })
        .await?
        .execution_arn;

    let map_run = eventually("the map run to be listed", Duration::from_secs(30), async || {
        let listed = json(&endpoint, &["list-map-runs", "--execution-arn", &execution]);
        Ok(listed["mapRuns"][0]["mapRunArn"].as_str().map(str::to_owned))
    })
    .await?;
    let updated = json(
        &endpoint,
        &["update-map-run", "--map-run-arn", &map_run, "--max-concurrency", "3", "--tolerated-failure-count", "1"],
    );
    assert_eq!(updated, serde_json::json!({}));
    let described = json(&endpoint, &["describe-map-run", "--map-run-arn", &map_run]);
    assert_eq!(described["executionArn"], execution.as_str());
    assert_eq!((described["maxConcurrency"].as_u64(), described["toleratedFailureCount"].as_u64()), (Some(3), Some(1)));

    let ended = eventually("the map run to end", Duration::from_secs(30), async || {
        let described = json(&endpoint, &["describe-map-run", "--map-run-arn", &map_run]);
        Ok((described["status"] != "RUNNING").then_some(described))
    })
    .await?;
    assert_eq!(ended["status"], "SUCCEEDED");
    assert_eq!((ended["itemCounts"]["succeeded"].as_u64(), ended["itemCounts"]["total"].as_u64()), (Some(3), Some(3)));
    assert!(ended["stopDate"].is_string());

    let late = stepmap(&endpoint, &["update-map-run", "--map-run-arn", &map_run, "--max-concurrency", "2"]);
    assert_eq!(late.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&late.stderr).contains("(ValidationException)"));
    let garbage = stepmap(&endpoint, &["describe-map-run", "--map-run-arn", "garbage"]);
    assert_eq!(garbage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("(InvalidArn)"));
    Ok(())
}
