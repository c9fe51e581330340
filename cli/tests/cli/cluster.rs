//! Coordinators as real processes, killed with SIGKILL: executions of a Wait + Pass workflow
//! survive the loss of the leader of three coordinators and the restart of a single one, each
//! state entered exactly once; a killed node restarted on its data directory catches up.

use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;

use crate::processes::{eventually, Cluster};

/// Pass, Wait (3 s), Pass: the Wait holds executions long enough to kill a coordinator under
/// them.
const WORKFLOW: &str = r#"{
  "StartAt": "First",
  "States": {
    "First": {"Type": "Pass", "Result": {"step": 1}, "ResultPath": "$.first", "Next": "Pause"},
    "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Last"},
    "Last": {"Type": "Pass", "End": true}
  }
}"#;
const STATES: [&str; 3] = ["First", "Pause", "Last"];

/// Bound on every wait for the cluster (elections, executions, catch-up).
const DEADLINE: Duration = Duration::from_secs(60);

async fn create_machine(client: &mut StatesClient, name: &str) -> anyhow::Result<String> {
    let request = pb::CreateStateMachineRequest {
        name: name.to_owned(),
        definition: WORKFLOW.to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/stepmap".to_owned(),
        r#type: String::new(),
    };
    let created = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_state_machine(request).await }
        })
        .await?;
    Ok(created.state_machine_arn)
}

/// Starts `count` executions named `run-<i>`, a few calls in flight at a time.
async fn start_executions(client: &StatesClient, machine: &str, count: usize) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(0..count)
        .map(|i| {
            let mut client = client.clone();
            let request = pb::StartExecutionRequest {
                state_machine_arn: machine.to_owned(),
                name: format!("run-{i}"),
                input: format!("{{\"i\":{i}}}"),
            };
            async move {
                let started = client
                    .call(|mut c| {
                        let request = request.clone();
                        async move { c.start_execution(request).await }
                    })
                    .await
                    .with_context(|| format!("StartExecution run-{i}"))?;
                anyhow::Ok(started.execution_arn)
            }
        })
        .buffered(16)
        .try_collect()
        .await
}

async fn history(client: &mut StatesClient, arn: &str) -> anyhow::Result<Vec<pb::HistoryEvent>> {
    let mut events = Vec::new();
    let mut next_token = String::new();
    loop {
        let request = pb::GetExecutionHistoryRequest {
            execution_arn: arn.to_owned(),
            max_results: 100,
            reverse_order: false,
            next_token: next_token.clone(),
        };
        let page = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.get_execution_history(request).await }
            })
            .await?;
        events.extend(page.events);
        if page.next_token.is_empty() {
            return Ok(events);
        }
        next_token = page.next_token;
    }
}

/// Every execution of `machine` with `status` (all pages).
async fn list(client: &mut StatesClient, machine: &str, status: &str) -> anyhow::Result<Vec<pb::ExecutionListItem>> {
    let mut executions = Vec::new();
    let mut next_token = String::new();
    loop {
        let request = pb::ListExecutionsRequest {
            state_machine_arn: machine.to_owned(),
            status_filter: status.to_owned(),
            max_results: 100,
            next_token: next_token.clone(),
            map_run_arn: String::new(),
        };
        let page = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.list_executions(request).await }
            })
            .await?;
        executions.extend(page.executions);
        if page.next_token.is_empty() {
            return Ok(executions);
        }
        next_token = page.next_token;
    }
}

/// Waits until every execution has entered the Wait state, then returns how many are still
/// running: the coordinator is killed under those.
async fn wait_until_waiting(client: &mut StatesClient, machine: &str, arns: &[String]) -> anyhow::Result<usize> {
    futures::stream::iter(arns)
        .map(|arn| {
            let mut client = client.clone();
            async move {
                eventually("the execution in its Wait state", DEADLINE, async || {
                    let events = history(&mut client, arn).await?;
                    Ok(events.iter().any(|e| e.r#type == "WaitStateEntered").then_some(()))
                })
                .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    let running = list(client, machine, "RUNNING").await?.len();
    anyhow::ensure!(
        running > 0,
        "every execution ended before the coordinator could be killed under them (the Wait is too short \
         for this machine)"
    );
    Ok(running)
}

/// Every execution SUCCEEDED; its history has consecutive ids, enters each state exactly
/// once, and ends with ExecutionSucceeded carrying the first state's result.
async fn check_succeeded(client: &mut StatesClient, machine: &str, arns: &[String]) -> anyhow::Result<()> {
    eventually("every execution SUCCEEDED", DEADLINE, || {
        let mut client = client.clone();
        async move {
            let closed = list(&mut client, machine, "").await?;
            anyhow::ensure!(closed.len() == arns.len(), "{} executions listed, {} started", closed.len(), arns.len());
            if let Some(other) = closed.iter().find(|e| e.status != "RUNNING" && e.status != "SUCCEEDED") {
                anyhow::bail!("{} ended {}", other.execution_arn, other.status);
            }
            Ok(closed.iter().all(|e| e.status == "SUCCEEDED").then_some(()))
        }
    })
    .await?;
    for arn in arns {
        let events = history(client, arn).await?;
        for (i, event) in events.iter().enumerate() {
            anyhow::ensure!(event.id == i as u64 + 1, "{arn}: event {} at position {i}", event.id);
        }
        for state in STATES {
            let entered = events
                .iter()
                .filter(|e| e.r#type.ends_with("StateEntered"))
                .filter(|e| {
                    serde_json::from_str::<Value>(&e.details).ok().and_then(|d| d["name"].as_str().map(str::to_owned))
                        == Some(state.to_owned())
                })
                .count();
            anyhow::ensure!(entered == 1, "{arn} entered {state} {entered} times: {events:#?}");
        }
        let last = events.last().context("empty history")?;
        anyhow::ensure!(last.r#type == "ExecutionSucceeded", "{arn} ends with {}", last.r#type);
        let details: Value = serde_json::from_str(&last.details)?;
        let output: Value = serde_json::from_str(details["output"].as_str().context("output")?)?;
        anyhow::ensure!(output["first"]["step"] == 1, "{arn} output {output}");
    }
    Ok(())
}

/// Three coordinators; 100 executions; `kill -9` of the leader while they wait; all of them
/// succeed on the new leader, each state entered once; the killed node, restarted on its data
/// directory, catches up and then carries a quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_survive_kill_9_of_the_leader() -> anyhow::Result<()> {
    const EXECUTIONS: usize = 100;
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.leader().await?;
    let mut client = cluster.node(leader).client()?;
    let machine = create_machine(&mut client, "wait-pass").await?;
    let arns = start_executions(&client, &machine, EXECUTIONS).await?;
    let running = wait_until_waiting(&mut client, &machine, &arns).await?;
    eprintln!("killing leader {leader} under {running} running executions");
    cluster.node(leader).kill()?;

    // The client at the dead node cannot follow a hint from it: start again at a survivor.
    let survivor = cluster.others(leader)[0];
    let mut client = cluster.node(survivor).client()?;
    let new_leader = cluster.leader().await?;
    anyhow::ensure!(new_leader != leader, "the killed node cannot lead");
    check_succeeded(&mut client, &machine, &arns).await?;

    // Restarted on its data directory, the killed node catches up with the leader...
    cluster.node(leader).start()?;
    let leader_status = cluster.node(new_leader).status().await?;
    let restarted = eventually("the restarted node caught up", DEADLINE, || async {
        let status = cluster.nodes[&leader].status().await?;
        let hint = status.leader.as_ref().map_or(0, |l| l.leader_id);
        Ok((status.applied_index >= leader_status.applied_index && hint == new_leader).then_some(status))
    })
    .await?;
    eprintln!("restarted node applied {} (leader had {})", restarted.applied_index, leader_status.applied_index);

    // ...and is a working voter: with the other follower gone, a write needs its vote.
    let other = cluster.others(leader).into_iter().find(|id| *id != new_leader).context("a second follower")?;
    cluster.node(other).kill()?;
    let mut client = cluster.node(new_leader).client()?;
    create_machine(&mut client, "after-restart").await?;
    Ok(())
}

/// One coordinator killed with SIGKILL while its executions wait, restarted on its data
/// directory: it continues them to SUCCEEDED, each state entered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_coordinator_continues_executions_after_kill_9() -> anyhow::Result<()> {
    const EXECUTIONS: usize = 20;
    let mut cluster = Cluster::start(1)?;
    cluster.leader().await?;
    let mut client = cluster.node(1).client()?;
    let machine = create_machine(&mut client, "wait-pass").await?;
    let arns = start_executions(&client, &machine, EXECUTIONS).await?;
    let running = wait_until_waiting(&mut client, &machine, &arns).await?;
    eprintln!("killing the coordinator under {running} running executions");
    cluster.node(1).kill()?;
    cluster.node(1).start()?;
    cluster.leader().await?;
    let mut client = cluster.node(1).client()?;
    check_succeeded(&mut client, &machine, &arns).await
}
