//! Task states of leader-driven executions on the worker fleet (DESIGN.md §3): the invoker a
//! driven execution calls for a Lambda or HTTP Task when the cluster has workers. The
//! invocation becomes one unit of work in the replicated work ledger (`ScheduleTaskWork`),
//! leased to a polling worker like a map run's unit — so a worker that dies loses its lease at
//! expiry and the invocation runs again elsewhere, and a result counts only for the current
//! lease epoch — and the worker's outcome is the Task's result. What workers cannot serve
//! (activities, callbacks, nested executions) goes to the coordinator's own invoker.
//!
//! The work is dropped once its result is taken, or when the attempt is abandoned (its
//! TimeoutSeconds fired, a sibling branch failed): a worker still running it then finds its
//! lease revoked. A new leader drops the work its predecessors scheduled (`DropTaskWork`) and
//! replays the executions: an outcome already in the history is not asked for again; one that
//! was not recorded is invoked again (at least once, as AWS's Task integrations are).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::map_run::Tolerance;
use stepmap_asl::payload::Payload;
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_worker::map_run::MapRunControl;
use stepmap_worker::task_job::{task_result, TaskJob};

use super::{Dispatcher, WATCH_INTERVAL};
use crate::error::Error;
use crate::proposer::{propose, propose_while_leader};
use crate::state::{task_work_key, Command, ExecutionArn, MapRunArn, UnitStatus};

/// The Task invoker of one execution driven by this leader (see the module doc).
pub struct FleetTaskInvoker {
    pub dispatcher: Dispatcher,
    pub execution: ExecutionArn,
    /// For what workers do not serve.
    pub inner: Arc<dyn TaskInvoker>,
}

impl TaskInvoker for FleetTaskInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        if !TaskJob::runs_on_workers(&request) {
            return self.inner.invoke(request);
        }
        let (dispatcher, execution) = (self.dispatcher.clone(), self.execution.clone());
        Box::pin(async move { run(dispatcher, execution, request).await.map(Payload::from) })
    }
}

async fn run(dispatcher: Dispatcher, execution: ExecutionArn, request: TaskRequest) -> Result<Value, Failure> {
    let node = dispatcher.inner.node.clone();
    let key = task_work_key(&execution, &uuid::Uuid::new_v4().simple().to_string());
    let job = serde_json::to_string(&TaskJob::from_request(&request))
        .map_err(|e| Failure::runtime(format!("the task cannot be described to workers: {e}")))?;
    // Adopted first, so that the work is handed out as soon as it is recorded.
    let (_guard, changed) = dispatcher.adopt(&key, MapRunControl::new(0, Tolerance::default()), 1);
    let term = node.status().term;
    let schedule = Command::ScheduleTaskWork { key: key.clone(), execution, job, term };
    // Dropped however the attempt ends, also when the schedule's outcome stays unknown.
    let _end = EndOnDrop { dispatcher: dispatcher.clone(), key: key.clone() };
    match propose_while_leader(&node, &schedule).await {
        Ok(_) => {}
        Err(Error::Api(error)) => return Err(Failure::runtime(format!("the task cannot be scheduled: {error}"))),
        // No longer the leader: the execution is continued (and the task invoked) elsewhere.
        Err(_) => return std::future::pending().await,
    }
    dispatcher.work_changed();
    tracing::debug!(task = %key, state = %request.state_name, "task scheduled on the fleet");
    loop {
        let wake = changed.notified();
        let lookup = key.clone();
        let read =
            node.local_read(move |state| state.work.runs.get(&lookup).and_then(|w| w.units.first()).cloned()).await;
        match read {
            Ok((_, Some(record))) => match &record.status {
                UnitStatus::Done { outcome } => return task_result(outcome),
                UnitStatus::Leased { .. } => dispatcher.watch(&key, &[(0, record.epoch)]),
                UnitStatus::Pending => {}
            },
            // Dropped: the parent closed under it, or a newer leader took over; nobody waits
            // for this result here any more.
            Ok((_, None)) | Err(_) => return std::future::pending().await,
        }
        let _ = tokio::time::timeout(WATCH_INTERVAL, wake).await;
    }
}

/// Drops the task's work when its attempt is over: taken, timed out or abandoned.
struct EndOnDrop {
    dispatcher: Dispatcher,
    key: MapRunArn,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let node = self.dispatcher.inner.node.clone();
        let command = Command::EndTaskWork { key: self.key.clone() };
        runtime.spawn(async move {
            if let Err(error) = propose(&node, &command).await {
                tracing::debug!(%error, "task work not dropped; the parent's end drops it");
            }
        });
    }
}
