//! `describe-map-run`, `list-map-runs`, `update-map-run`: the Map Run verbs of the AWS CLI,
//! printing AWS's JSON (camelCase).

use clap::Args;
use serde_json::{json, Value};
use stepmap_proto::v1 as pb;

use crate::api_client::{call, insert_some, print, with_client, EndpointArgs};

#[derive(Args)]
pub struct DescribeMapRunArgs {
    #[arg(long = "map-run-arn")]
    map_run_arn: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ListMapRunsArgs {
    /// The parent execution.
    #[arg(long = "execution-arn")]
    execution_arn: String,
    #[arg(long = "max-results", default_value_t = 0)]
    max_results: i32,
    #[arg(long = "next-token", default_value = "")]
    next_token: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct UpdateMapRunArgs {
    #[arg(long = "map-run-arn")]
    map_run_arn: String,
    #[arg(long = "max-concurrency", allow_negative_numbers = true)]
    max_concurrency: Option<i64>,
    #[arg(long = "tolerated-failure-percentage", allow_negative_numbers = true)]
    tolerated_failure_percentage: Option<f64>,
    #[arg(long = "tolerated-failure-count", allow_negative_numbers = true)]
    tolerated_failure_count: Option<i64>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// `MapRunItemCounts` / `MapRunExecutionCounts` as AWS prints them.
fn counts_json(c: Option<pb::MapRunCounts>) -> Value {
    let c = c.unwrap_or_default();
    json!({
        "pending": c.pending, "running": c.running, "succeeded": c.succeeded, "failed": c.failed,
        "timedOut": c.timed_out, "aborted": c.aborted, "total": c.total, "resultsWritten": c.results_written,
        "failuresNotRedrivable": c.failures_not_redrivable, "pendingRedrive": c.pending_redrive,
    })
}

fn map_run_json(m: pb::DescribeMapRunResponse) -> Value {
    let mut out = json!({
        "mapRunArn": m.map_run_arn, "executionArn": m.execution_arn, "status": m.status,
        "startDate": m.start_date, "maxConcurrency": m.max_concurrency,
        "toleratedFailurePercentage": m.tolerated_failure_percentage,
        "toleratedFailureCount": m.tolerated_failure_count,
        "itemCounts": counts_json(m.item_counts), "executionCounts": counts_json(m.execution_counts),
        "redriveCount": m.redrive_count,
    });
    insert_some(&mut out, "stopDate", m.stop_date);
    insert_some(&mut out, "redriveDate", m.redrive_date);
    out
}

pub fn describe_map_run(args: DescribeMapRunArgs) -> anyhow::Result<u8> {
    let request = pb::DescribeMapRunRequest { map_run_arn: args.map_run_arn };
    let described = with_client(&args.endpoint, async |client| call!(client, describe_map_run, request))?;
    print(map_run_json(described));
    Ok(0)
}

pub fn list_map_runs(args: ListMapRunsArgs) -> anyhow::Result<u8> {
    let request = pb::ListMapRunsRequest {
        execution_arn: args.execution_arn,
        max_results: args.max_results,
        next_token: args.next_token,
    };
    let listed = with_client(&args.endpoint, async |client| call!(client, list_map_runs, request))?;
    let map_runs: Vec<Value> = listed
        .map_runs
        .into_iter()
        .map(|m| {
            let mut out = json!({"executionArn": m.execution_arn, "mapRunArn": m.map_run_arn, "stateMachineArn": m.state_machine_arn, "startDate": m.start_date});
            insert_some(&mut out, "stopDate", m.stop_date);
            out
        })
        .collect();
    let mut out = json!({"mapRuns": map_runs});
    insert_some(&mut out, "nextToken", Some(listed.next_token).filter(|t| !t.is_empty()));
    print(out);
    Ok(0)
}

pub fn update_map_run(args: UpdateMapRunArgs) -> anyhow::Result<u8> {
    let request = pb::UpdateMapRunRequest {
        map_run_arn: args.map_run_arn,
        max_concurrency: args.max_concurrency,
        tolerated_failure_percentage: args.tolerated_failure_percentage,
        tolerated_failure_count: args.tolerated_failure_count,
    };
    with_client(&args.endpoint, async |client| call!(client, update_map_run, request))?;
    // AWS's UpdateMapRun answers with an empty object.
    print(json!({}));
    Ok(0)
}
