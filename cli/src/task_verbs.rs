//! Client verbs for task tokens and activities, named like the AWS CLI's:
//! `send-task-success`, `send-task-failure`, `send-task-heartbeat`, `create-activity`,
//! `describe-activity`, `list-activities`, `delete-activity`, `get-activity-task`.

use clap::Args;
use serde_json::{json, Value};
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;

use crate::api_client::{call, print, with_client, EndpointArgs};
use crate::input;

#[derive(Args)]
pub struct SendTaskSuccessArgs {
    #[arg(long = "task-token")]
    task_token: String,
    /// The task's result: JSON text, or @file.
    #[arg(long = "task-output")]
    task_output: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct SendTaskFailureArgs {
    #[arg(long = "task-token")]
    task_token: String,
    #[arg(long)]
    error: Option<String>,
    #[arg(long)]
    cause: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct TaskTokenArgs {
    #[arg(long = "task-token")]
    task_token: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct CreateActivityArgs {
    #[arg(long)]
    name: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ActivityArnArgs {
    #[arg(long = "activity-arn")]
    activity_arn: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ListActivitiesArgs {
    /// At most this many (AWS: 1..1000, default 100); every page is fetched.
    #[arg(long = "max-results", default_value_t = 0)]
    max_results: i32,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct GetActivityTaskArgs {
    #[arg(long = "activity-arn")]
    activity_arn: String,
    /// Shown in the ActivityStarted event.
    #[arg(long = "worker-name")]
    worker_name: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

pub fn send_task_success(args: SendTaskSuccessArgs) -> anyhow::Result<u8> {
    let output = input::read_json_argument("--task-output", &args.task_output)?.to_string();
    let request = pb::SendTaskSuccessRequest { task_token: args.task_token, output };
    with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, send_task_success, request))?;
    Ok(0)
}

pub fn send_task_failure(args: SendTaskFailureArgs) -> anyhow::Result<u8> {
    let request = pb::SendTaskFailureRequest {
        task_token: args.task_token,
        error: args.error.unwrap_or_default(),
        cause: args.cause.unwrap_or_default(),
    };
    with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, send_task_failure, request))?;
    Ok(0)
}

pub fn send_task_heartbeat(args: TaskTokenArgs) -> anyhow::Result<u8> {
    let request = pb::SendTaskHeartbeatRequest { task_token: args.task_token };
    with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, send_task_heartbeat, request))?;
    Ok(0)
}

pub fn create_activity(args: CreateActivityArgs) -> anyhow::Result<u8> {
    let request = pb::CreateActivityRequest { name: args.name };
    let created =
        with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, create_activity, request))?;
    print(json!({"activityArn": created.activity_arn, "creationDate": created.creation_date}));
    Ok(0)
}

pub fn describe_activity(args: ActivityArnArgs) -> anyhow::Result<u8> {
    let request = pb::DescribeActivityRequest { activity_arn: args.activity_arn };
    let activity =
        with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, describe_activity, request))?;
    print(json!({
        "activityArn": activity.activity_arn,
        "name": activity.name,
        "creationDate": activity.creation_date,
    }));
    Ok(0)
}

pub fn list_activities(args: ListActivitiesArgs) -> anyhow::Result<u8> {
    let activities = with_client(&args.endpoint, async |client: &mut StatesClient| {
        let mut all = Vec::new();
        let mut next_token = String::new();
        loop {
            let request = pb::ListActivitiesRequest { max_results: args.max_results, next_token: next_token.clone() };
            let page = call!(client, list_activities, request)?;
            all.extend(
                page.activities
                    .into_iter()
                    .map(|a| json!({"activityArn": a.activity_arn, "name": a.name, "creationDate": a.creation_date})),
            );
            if page.next_token.is_empty() {
                return anyhow::Ok(all);
            }
            next_token = page.next_token;
        }
    })?;
    print(json!({ "activities": Value::Array(activities) }));
    Ok(0)
}

pub fn delete_activity(args: ActivityArnArgs) -> anyhow::Result<u8> {
    let request = pb::DeleteActivityRequest { activity_arn: args.activity_arn };
    with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, delete_activity, request))?;
    Ok(0)
}

/// Prints `{"taskToken", "input"}`, or `{}` when no task arrived within the poll (the AWS
/// CLI prints the same).
pub fn get_activity_task(args: GetActivityTaskArgs) -> anyhow::Result<u8> {
    let request = pb::GetActivityTaskRequest {
        activity_arn: args.activity_arn,
        worker_name: args.worker_name.unwrap_or_default(),
    };
    let task =
        with_client(&args.endpoint, async |client: &mut StatesClient| call!(client, get_activity_task, request))?;
    if task.task_token.is_empty() {
        print(json!({}));
    } else {
        print(json!({"taskToken": task.task_token, "input": task.input}));
    }
    Ok(0)
}
