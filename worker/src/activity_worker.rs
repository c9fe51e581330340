//! Activities served by fleet workers: `stepmap worker --activity <activity>=<function>`
//! long-polls the coordinators for the activity's tasks (GetActivityTask, as any activity
//! worker does, features.md §3), runs each with a function of the worker's registry — the
//! task's input is the function's event — and answers with SendTaskSuccess (the function's
//! result) or SendTaskFailure (its Lambda-style error and cause), sending SendTaskHeartbeat
//! while it runs. So a Task state on an activity runs on the same fleet, with the same
//! functions, as Lambda Tasks and map run children; the activity's TimeoutSeconds and
//! HeartbeatSeconds are kept by the coordinator, as for any activity worker.
//!
//! One task at a time per `--activity`; a worker draining (SIGTERM) takes no more tasks and
//! finishes the one it runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::payload::Payload;
use stepmap_asl::resource::Resource;
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_proto::leader::LeaderChannel;
use stepmap_proto::v1::states_client::StatesClient;
use stepmap_proto::v1::{
    GetActivityTaskRequest, SendTaskFailureRequest, SendTaskHeartbeatRequest, SendTaskSuccessRequest,
};
use tonic::transport::Channel;
use tonic::Status;

/// Pause after a poll failed (no coordinator reachable) before the next.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One `--activity` a worker serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityBinding {
    /// `arn:aws:states:<region>:<account>:activity:<name>`.
    pub activity_arn: String,
    /// The registry's function that runs its tasks.
    pub function: String,
}

impl ActivityBinding {
    /// Parses `<activity ARN or name>=<function>`; a bare name is an activity of `region`
    /// and `account`.
    pub fn parse(text: &str, region: &str, account: &str) -> Result<ActivityBinding, String> {
        let (activity, function) = text
            .split_once('=')
            .filter(|(a, f)| !a.is_empty() && !f.is_empty())
            .ok_or_else(|| format!("'{text}' is not <activity>=<function>"))?;
        let activity_arn = if activity.starts_with("arn:") {
            match Resource::parse(activity) {
                Resource::Activity { .. } => activity.to_owned(),
                _ => return Err(format!("'{activity}' is not an activity ARN")),
            }
        } else {
            format!("arn:aws:states:{region}:{account}:activity:{activity}")
        };
        Ok(ActivityBinding { activity_arn, function: function.to_owned() })
    }
}

/// Serves `binding` until `shutdown` resolves (a task being run is finished first).
pub async fn serve_activity(
    coordinators: Vec<String>,
    binding: ActivityBinding,
    worker_name: String,
    heartbeat: Duration,
    invoker: Arc<dyn TaskInvoker>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0;
    let Some(mut channel) = coordinator(&coordinators, next) else { return };
    loop {
        let request =
            GetActivityTaskRequest { activity_arn: binding.activity_arn.clone(), worker_name: worker_name.clone() };
        let poll = states_call(&mut channel, request, |mut c, r| async move { c.get_activity_task(r).await });
        let task = tokio::select! {
            () = &mut shutdown => return,
            task = poll => task,
        };
        let task = match task {
            Ok(task) if task.task_token.is_empty() => continue,
            Ok(task) => task,
            Err(status) => {
                tracing::info!(activity = %binding.activity_arn, error = %status.message(), "activity poll failed");
                // The next coordinator of the list, after a pause.
                next += 1;
                let Some(other) = coordinator(&coordinators, next) else { return };
                channel = other;
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        tracing::debug!(activity = %binding.activity_arn, "activity task taken");
        let result = run_task(&binding, &task.input, invoker.as_ref(), heartbeat, &mut channel, &task.task_token).await;
        answer(&mut channel, &task.task_token, result).await;
    }
}

/// Runs one task's input through the binding's function, heartbeating meanwhile.
async fn run_task(
    binding: &ActivityBinding,
    input: &str,
    invoker: &dyn TaskInvoker,
    heartbeat: Duration,
    channel: &mut LeaderChannel,
    token: &str,
) -> Result<Value, Failure> {
    let parameters: Value = serde_json::from_str(input)
        .map_err(|e| Failure::new("States.Runtime", format!("the activity task's input is not JSON: {e}")))?;
    let (region, account) = region_and_account(&binding.activity_arn);
    let resource = format!("arn:aws:lambda:{region}:{account}:function:{}", binding.function);
    let request = TaskRequest {
        resource: Resource::parse(&resource),
        resource_arn: resource,
        state_name: String::new(),
        parameters: parameters.into(),
        timeout: None,
        region,
        account,
        task_token: None,
        heartbeat: None,
        started_at: None,
        progress: None,
    };
    let invocation = invoker.invoke(request);
    tokio::pin!(invocation);
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    loop {
        tokio::select! {
            result = &mut invocation => return result.map(Payload::into_value),
            _ = ticker.tick() => {
                let request = SendTaskHeartbeatRequest { task_token: token.to_owned() };
                let sent = states_call(channel, request, |mut c, r| async move { c.send_task_heartbeat(r).await }).await;
                if let Err(status) = sent {
                    // Timed out or closed meanwhile: the answer will be refused too.
                    tracing::info!(error = %status.message(), "activity heartbeat refused");
                }
            }
        }
    }
}

/// SendTaskSuccess or SendTaskFailure for `token`.
async fn answer(channel: &mut LeaderChannel, token: &str, result: Result<Value, Failure>) {
    let task_token = token.to_owned();
    let sent = match result {
        Ok(output) => {
            let request = SendTaskSuccessRequest { task_token, output: output.to_string() };
            states_call(channel, request, |mut c, r| async move { c.send_task_success(r).await }).await.map(|_| ())
        }
        Err(failure) => {
            let (error, cause) = (failure.error.unwrap_or_default(), failure.cause.unwrap_or_default());
            let request = SendTaskFailureRequest { task_token, error, cause };
            states_call(channel, request, |mut c, r| async move { c.send_task_failure(r).await }).await.map(|_| ())
        }
    };
    if let Err(status) = sent {
        // The task timed out, or its execution ended: nobody takes the answer.
        tracing::info!(error = %status.message(), "activity task answer refused");
    }
}

/// A channel to the `n`-th coordinator of the list (round robin), following the leader from
/// there; `None` for an empty list or a bad address.
fn coordinator(coordinators: &[String], n: usize) -> Option<LeaderChannel> {
    let endpoint = coordinators.get(n % coordinators.len().max(1))?;
    LeaderChannel::new(endpoint)
        .map_err(|status| tracing::warn!(endpoint, error = %status.message(), "bad coordinator address"))
        .ok()
}

/// One States call of `request` through `channel` (which follows the leader).
async fn states_call<Req: Clone, Resp, Fut>(
    channel: &mut LeaderChannel,
    request: Req,
    method: impl Fn(StatesClient<Channel>, Req) -> Fut,
) -> Result<Resp, Status>
where
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    channel.call(StatesClient::new, |c| method(c, request.clone())).await
}

/// The region and account of an activity ARN (`arn:aws:states:<region>:<account>:...`).
fn region_and_account(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.get(3).copied().unwrap_or_default().to_owned(), parts.get(4).copied().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_name_an_activity_and_a_function() {
        let binding = ActivityBinding::parse("approve=approver", "eu-west-1", "111").unwrap();
        assert_eq!(binding.activity_arn, "arn:aws:states:eu-west-1:111:activity:approve");
        assert_eq!(binding.function, "approver");
        let arn = "arn:aws:states:us-east-1:222:activity:a";
        assert_eq!(ActivityBinding::parse(&format!("{arn}=f"), "x", "y").unwrap().activity_arn, arn);
        assert!(ActivityBinding::parse("approve", "r", "a").is_err());
        assert!(ActivityBinding::parse("arn:aws:lambda:r:1:function:f=g", "r", "a").is_err());
        assert_eq!(region_and_account(arn), ("us-east-1".into(), "222".into()));
    }
}
