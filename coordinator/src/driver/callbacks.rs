//! Task attempts that wait for a task token: activities (an external worker takes the task
//! with GetActivityTask) and `.waitForTaskToken` service integrations (the service is
//! called with the token, which comes back through SendTaskSuccess / SendTaskFailure).
//!
//! The token's life is replicated state (`state/task_tokens.rs`), so the wait survives a
//! change of leader: the new leader replays the execution, mints the same token (it comes
//! from the execution's seeded random source), finds the record as it was left and goes on
//! waiting. A service call is made once per token unless a leader died between making it and
//! committing its answer (at-least-once, as AWS's integrations are).
//!
//! Waiting is driven by [`TaskTokenSignal`], which this leader's API and invokers bump after
//! every token command they commit, with a periodic re-read as the safety net for changes
//! committed elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use stepmap_asl::failure::{names, Failure};
use stepmap_asl::payload::Payload;
use stepmap_asl::resource::{IntegrationPattern, Resource};
use stepmap_asl::task::{TaskInvoker, TaskProgress, TaskRequest};
use tokio::sync::watch;

use crate::error::Error;
use crate::proposer::{propose, propose_while_leader, CoordinatorNode};
use crate::state::{ActivityArn, ApiError, Command, ExecutionArn, TaskTokenRecord, TaskTokenStatus};

/// The longest a waiting task goes without re-reading its token's record.
const RECHECK: Duration = Duration::from_secs(1);

/// Bumped whenever this node commits a change to a task token; waiters re-read on a change.
#[derive(Clone)]
pub struct TaskTokenSignal(Arc<watch::Sender<u64>>);

impl Default for TaskTokenSignal {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl TaskTokenSignal {
    pub fn bump(&self) {
        self.0.send_modify(|generation| *generation += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Waits for the next bump, at most `limit`.
    pub async fn changed_within(changes: &mut watch::Receiver<u64>, limit: Duration) {
        let _ = tokio::time::timeout(limit, changes.changed()).await;
    }
}

/// The invoker of one STANDARD execution driven by this leader: token-waiting attempts are
/// served here, everything else goes to `inner`.
pub struct CallbackInvoker {
    pub node: CoordinatorNode,
    pub execution: ExecutionArn,
    pub inner: Arc<dyn TaskInvoker>,
    pub signal: TaskTokenSignal,
    /// Set when the driver lets go of the execution (see [`AbandonGuard`]).
    pub released: Arc<AtomicBool>,
}

impl TaskInvoker for CallbackInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        let Some(token) = request.task_token.clone() else { return self.inner.invoke(request) };
        let waiter = TokenWait {
            node: self.node.clone(),
            execution: self.execution.clone(),
            inner: self.inner.clone(),
            signal: self.signal.clone(),
            token,
            released: self.released.clone(),
        };
        Box::pin(waiter.run(request).map(|result| result.map(Payload::from)))
    }
}

struct TokenWait {
    node: CoordinatorNode,
    execution: ExecutionArn,
    inner: Arc<dyn TaskInvoker>,
    signal: TaskTokenSignal,
    token: String,
    released: Arc<AtomicBool>,
}

/// Closes the token of an attempt the interpreter abandoned without an outcome — a Parallel
/// branch stopped because a sibling failed, a TimeoutSeconds timer that fired — so that its
/// activity task is not handed out and late SendTask* calls are refused. When the driver let
/// go of the execution instead (leadership lost, execution stopped) the token is left as it is:
/// the next leader's replay waits on it again.
struct AbandonGuard {
    node: CoordinatorNode,
    signal: TaskTokenSignal,
    token: String,
    released: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.armed || self.released.load(Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (node, signal) = (self.node.clone(), self.signal.clone());
        let command = Command::AbandonTaskToken { token: std::mem::take(&mut self.token), date: Utc::now() };
        runtime.spawn(async move {
            if propose(&node, &command).await.is_ok() {
                signal.bump();
            }
        });
    }
}

impl TokenWait {
    async fn run(self, request: TaskRequest) -> Result<Value, Failure> {
        let activity = match &request.resource {
            Resource::Activity { arn, .. } => Some(ActivityArn::parse("Resource", arn).map_err(|error| {
                Failure::runtime(format!(
                    "An error occurred while executing the state '{}'. {error}",
                    request.state_name
                ))
            })?),
            _ => None,
        };
        let mut record = TaskTokenRecord::issue(
            self.token.clone(),
            self.execution.clone(),
            request.state_name.clone(),
            activity.clone(),
            request.parameters.to_text(),
            request.timeout.map(|t| t.as_secs()),
            request.heartbeat.map(|h| h.as_secs()),
            Utc::now(),
        );
        // A callback's deadlines are the interpreter's: both count from its Started event.
        if let (None, Some(started)) = (&activity, request.started_at) {
            record.start_clocks(started);
        }
        match self.commit(Command::IssueTaskToken { record: Box::new(record) }).await {
            Ok(()) => {}
            Err(ApiError::ActivityDoesNotExist { arn }) => {
                return Err(Failure::runtime(format!(
                    "An error occurred while executing the state '{}'. The activity '{arn}' does not exist.",
                    request.state_name
                )));
            }
            Err(error) => return Err(Failure::runtime(error.to_string())),
        }
        let mut guard = AbandonGuard {
            node: self.node.clone(),
            signal: self.signal.clone(),
            token: self.token.clone(),
            released: self.released.clone(),
            armed: true,
        };
        if activity.is_none() {
            // A failed service call returns with the guard armed: nobody will wait on it.
            self.submit(&request).await?;
        }
        let outcome = self.wait(&request).await;
        // The token reached its end (or vanished): nothing to close.
        guard.armed = false;
        outcome
    }

    /// Calls the service of a `.waitForTaskToken` task, unless a previous leader did.
    async fn submit(&self, request: &TaskRequest) -> Result<(), Failure> {
        if let Some(output) = self.record().await.and_then(|r| r.submitted_output) {
            let output = serde_json::from_str(&output).unwrap_or(Value::Null);
            request.report(TaskProgress::Submitted { output });
            return Ok(());
        }
        let mut call = request.clone();
        if let Resource::Integration { service, action, .. } = &request.resource {
            call.resource = Resource::Integration {
                service: service.clone(),
                action: action.clone(),
                pattern: IntegrationPattern::RequestResponse,
            };
            call.resource_arn = request.resource_arn.trim_end_matches(".waitForTaskToken").to_owned();
        }
        call.progress = None;
        let output = self.inner.invoke(call).await?;
        let text = output.to_text();
        let output = output.into_value();
        // Best effort: should it not commit, a resuming leader calls the service again.
        let _ = self.commit(Command::SubmitTaskToken { token: self.token.clone(), output: text }).await;
        request.report(TaskProgress::Submitted { output });
        Ok(())
    }

    /// Waits for the token's end, reporting an activity's start on the way.
    async fn wait(&self, request: &TaskRequest) -> Result<Value, Failure> {
        let mut changes = self.signal.subscribe();
        loop {
            let Some(record) = self.record().await else {
                return Err(Failure::runtime(format!("The task token of state '{}' vanished.", request.state_name)));
            };
            match &record.status {
                TaskTokenStatus::Scheduled => {}
                TaskTokenStatus::Started { worker_name, .. } => {
                    request.report(TaskProgress::ActivityStarted { worker_name: worker_name.clone() });
                }
                TaskTokenStatus::Succeeded { output, .. } => {
                    return serde_json::from_str(output)
                        .map_err(|error| Failure::runtime(format!("The task output is not JSON: {error}")));
                }
                TaskTokenStatus::Failed { error, cause, .. } => {
                    return Err(Failure { error: error.clone(), cause: cause.clone() });
                }
                // AWS records a missed heartbeat as States.Timeout.
                TaskTokenStatus::TimedOut { .. } => {
                    return Err(Failure { error: Some(names::TIMEOUT.into()), cause: None });
                }
            }
            let now = Utc::now();
            if record.expired_at(now) {
                let _ = self.commit(Command::TimeOutTaskToken { token: self.token.clone(), date: now }).await;
                continue;
            }
            let until_deadline = record
                .next_deadline()
                .and_then(|deadline| (deadline - now).to_std().ok())
                .map_or(RECHECK, |left| left.min(RECHECK) + Duration::from_millis(1));
            TaskTokenSignal::changed_within(&mut changes, until_deadline).await;
        }
    }

    async fn record(&self) -> Option<TaskTokenRecord> {
        let token = self.token.clone();
        match self.node.local_read(move |state| state.task_tokens.get(&token).cloned()).await {
            Ok((_, record)) => record,
            // The node is stopping; the driver drops this execution.
            Err(_) => std::future::pending().await,
        }
    }

    /// Commits a token command and wakes the other waiters. Only the command's refusal is
    /// returned; while the outcome is unknown it retries, and off the leader it waits for
    /// the driver to drop the execution.
    async fn commit(&self, command: Command) -> Result<(), ApiError> {
        match propose_while_leader(&self.node, &command).await {
            Ok(_) => {
                self.signal.bump();
                Ok(())
            }
            Err(Error::Api(refusal)) => Err(refusal),
            Err(_) => std::future::pending().await,
        }
    }
}
