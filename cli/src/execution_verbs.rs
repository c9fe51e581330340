//! `start-execution`, `describe-execution`, `get-execution-history`, `list-executions`,
//! `stop-execution`, `redrive-execution`: the execution verbs of the AWS CLI.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;

use crate::api_client::{call, insert_some, print, with_client, EndpointArgs};

/// How often `--watch` asks for news.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Args)]
pub struct StartExecutionArgs {
    #[arg(long = "state-machine-arn")]
    state_machine_arn: String,
    /// JSON text or @FILE. Default `{}`.
    #[arg(long)]
    input: Option<String>,
    /// Default: a random UUID.
    #[arg(long, default_value = "")]
    name: String,
    /// Follow the execution: print its history events as they are committed, then its end.
    /// Exit code 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ExecutionArnArgs {
    #[arg(long = "execution-arn")]
    execution_arn: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct GetExecutionHistoryArgs {
    #[arg(long = "execution-arn")]
    execution_arn: String,
    #[arg(long = "max-results", default_value_t = 0)]
    max_results: i32,
    #[arg(long = "reverse-order")]
    reverse_order: bool,
    #[arg(long = "next-token", default_value = "")]
    next_token: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ListExecutionsArgs {
    /// The machine whose executions to list.
    #[arg(long = "state-machine-arn", default_value = "", required_unless_present = "map_run_arn")]
    state_machine_arn: String,
    /// Or the map run whose (STANDARD) child executions to list.
    #[arg(long = "map-run-arn", default_value = "", conflicts_with = "state_machine_arn")]
    map_run_arn: String,
    #[arg(long = "status-filter", default_value = "")]
    status_filter: String,
    #[arg(long = "max-results", default_value_t = 0)]
    max_results: i32,
    #[arg(long = "next-token", default_value = "")]
    next_token: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct StopExecutionArgs {
    #[arg(long = "execution-arn")]
    execution_arn: String,
    #[arg(long)]
    error: Option<String>,
    #[arg(long)]
    cause: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct RedriveExecutionArgs {
    #[arg(long = "execution-arn")]
    execution_arn: String,
    /// Makes a repeated request idempotent (1 to 64 printable characters). Default: a random
    /// UUID, as the AWS CLI generates one, so that the client's own retries of this call
    /// cannot redrive twice or be refused.
    #[arg(long = "client-token")]
    client_token: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

async fn describe(client: &mut StatesClient, arn: &str) -> anyhow::Result<pb::DescribeExecutionResponse> {
    let request = pb::DescribeExecutionRequest { execution_arn: arn.to_owned() };
    call!(client, describe_execution, request)
}

async fn history_page(
    client: &mut StatesClient,
    request: pb::GetExecutionHistoryRequest,
) -> anyhow::Result<pb::GetExecutionHistoryResponse> {
    call!(client, get_execution_history, request)
}

/// One event in AWS's GetExecutionHistory shape.
fn event_json(event: pb::HistoryEvent) -> Value {
    let details: Option<Value> = serde_json::from_str(&event.details).ok();
    let mut out = json!({"timestamp": event.timestamp, "type": event.r#type, "id": event.id});
    if event.previous_event_id != 0 {
        out["previousEventId"] = event.previous_event_id.into();
    }
    if let Some(details) = details {
        let history_event = stepmap_asl::history::HistoryEvent {
            id: event.id,
            previous_event_id: event.previous_event_id,
            timestamp: chrono::Utc::now(),
            event_type: out["type"].as_str().unwrap_or_default().to_owned(),
            details: None,
        };
        out[history_event.details_key()] = details;
    }
    out
}

fn execution_json(e: pb::DescribeExecutionResponse) -> Value {
    let mut out = json!({
        "executionArn": e.execution_arn, "stateMachineArn": e.state_machine_arn, "name": e.name,
        "status": e.status, "startDate": e.start_date, "input": e.input,
    });
    insert_some(&mut out, "stopDate", e.stop_date);
    insert_some(&mut out, "output", e.output);
    insert_some(&mut out, "error", e.error);
    insert_some(&mut out, "cause", e.cause);
    if let Some(count) = e.redrive_count {
        out["redriveCount"] = count.into();
    }
    insert_some(&mut out, "redriveDate", e.redrive_date);
    insert_some(&mut out, "redriveStatus", e.redrive_status);
    insert_some(&mut out, "redriveStatusReason", e.redrive_status_reason);
    insert_some(&mut out, "mapRunArn", e.map_run_arn);
    out
}

pub fn start_execution(args: StartExecutionArgs) -> anyhow::Result<u8> {
    let input = crate::input::read_input(args.input.as_deref())?;
    let request = pb::StartExecutionRequest {
        state_machine_arn: args.state_machine_arn,
        name: args.name,
        input: serde_json::to_string(&input)?,
    };
    let watch = args.watch;
    with_client(&args.endpoint, async |client| {
        let started = call!(client, start_execution, request)?;
        print(json!({"executionArn": started.execution_arn, "startDate": started.start_date}));
        if !watch {
            return Ok(0);
        }
        let mut seen = 0;
        loop {
            let described = describe(client, &started.execution_arn).await?;
            let page = history_page(
                client,
                pb::GetExecutionHistoryRequest {
                    execution_arn: started.execution_arn.clone(),
                    max_results: 1000,
                    reverse_order: false,
                    next_token: String::new(),
                },
            )
            .await?;
            let fresh: Vec<_> = page.events.into_iter().filter(|e| e.id > seen).collect();
            for event in fresh {
                seen = event.id;
                outln!("{}", serde_json::to_string(&event_json(event)).unwrap_or_default());
            }
            if described.status != "RUNNING" {
                let succeeded = described.status == "SUCCEEDED";
                print(execution_json(described));
                return Ok(if succeeded { 0 } else { 1 });
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    })
}

pub fn describe_execution(args: ExecutionArnArgs) -> anyhow::Result<u8> {
    let described = with_client(&args.endpoint, async |client| describe(client, &args.execution_arn).await)?;
    print(execution_json(described));
    Ok(0)
}

pub fn get_execution_history(args: GetExecutionHistoryArgs) -> anyhow::Result<u8> {
    let request = pb::GetExecutionHistoryRequest {
        execution_arn: args.execution_arn,
        max_results: args.max_results,
        reverse_order: args.reverse_order,
        next_token: args.next_token,
    };
    let page = with_client(&args.endpoint, async |client| history_page(client, request).await)?;
    let mut out = json!({"events": page.events.into_iter().map(event_json).collect::<Vec<_>>()});
    insert_some(&mut out, "nextToken", Some(page.next_token).filter(|t| !t.is_empty()));
    print(out);
    Ok(0)
}

pub fn list_executions(args: ListExecutionsArgs) -> anyhow::Result<u8> {
    let request = pb::ListExecutionsRequest {
        state_machine_arn: args.state_machine_arn,
        status_filter: args.status_filter,
        max_results: args.max_results,
        next_token: args.next_token,
        map_run_arn: args.map_run_arn,
    };
    let listed = with_client(&args.endpoint, async |client| call!(client, list_executions, request))?;
    let executions: Vec<Value> = listed
        .executions
        .into_iter()
        .map(|e| {
            let mut out = json!({"executionArn": e.execution_arn, "stateMachineArn": e.state_machine_arn, "name": e.name, "status": e.status, "startDate": e.start_date});
            insert_some(&mut out, "stopDate", e.stop_date);
            if let Some(count) = e.redrive_count {
                out["redriveCount"] = count.into();
            }
            insert_some(&mut out, "redriveDate", e.redrive_date);
            out
        })
        .collect();
    let mut out = json!({"executions": executions});
    insert_some(&mut out, "nextToken", Some(listed.next_token).filter(|t| !t.is_empty()));
    print(out);
    Ok(0)
}

pub fn stop_execution(args: StopExecutionArgs) -> anyhow::Result<u8> {
    let request = pb::StopExecutionRequest { execution_arn: args.execution_arn, error: args.error, cause: args.cause };
    let stopped = with_client(&args.endpoint, async |client| call!(client, stop_execution, request))?;
    print(json!({"stopDate": stopped.stop_date}));
    Ok(0)
}

pub fn redrive_execution(args: RedriveExecutionArgs) -> anyhow::Result<u8> {
    let client_token = Some(args.client_token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()));
    let request = pb::RedriveExecutionRequest { execution_arn: args.execution_arn, client_token };
    let redriven = with_client(&args.endpoint, async |client| call!(client, redrive_execution, request))?;
    print(json!({"redriveDate": redriven.redrive_date}));
    Ok(0)
}
