//! The [`EventSink`] of a leader-driven execution: every history event is committed
//! through Raft before the interpreter moves on.
//!
//! Events are buffered as they are recorded; the first of their futures that the
//! interpreter awaits commits the whole buffer in one `RecordEvents` command (so a state's
//! exit and the next state's entry share one log entry), the others then find their event
//! committed. The interpreter awaits the futures one at a time in id order (the `EventSink`
//! contract), so no two commits of one execution overlap.
//!
//! Events the first run already committed (replay) are not proposed again; they are
//! compared with the recorded ones instead, and a mismatch (a non-deterministic
//! definition) fails the execution with `States.Runtime` rather than writing a history that
//! contradicts itself.
//!
//! The interpreter numbers events from 1 on every run; after a redrive its ids are not the
//! history's (`Replay::history_id`). Events are compared and committed with history ids.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;
use stepmap_asl::clock::{Clock, ExternalWork};
use stepmap_asl::history::{EventSink, HistoryEvent};
use tokio::sync::Notify;

use super::replay::Replay;
use crate::proposer::{propose_while_leader, CoordinatorNode};
use crate::state::{Command, ExecutionArn};

pub struct RaftEventSink {
    node: CoordinatorNode,
    /// The execution's clock: virtual time stands still while a commit is awaited.
    clock: Arc<dyn Clock>,
    arn: ExecutionArn,
    replay: Arc<Replay>,
    buffer: Arc<Mutex<Batch>>,
    /// Notified when the execution must stop being driven here (closed elsewhere, replay
    /// diverged, leadership lost); the driver drops the execution's future.
    stop: Arc<Notify>,
}

#[derive(Default)]
struct Batch {
    events: Vec<HistoryEvent>,
    committed_up_to: u64,
}

impl RaftEventSink {
    pub fn new(
        node: CoordinatorNode,
        clock: Arc<dyn Clock>,
        arn: ExecutionArn,
        replay: Arc<Replay>,
        stop: Arc<Notify>,
    ) -> Self {
        let committed_up_to = replay.recorded_len();
        let buffer = Arc::new(Mutex::new(Batch { events: Vec::new(), committed_up_to }));
        Self { node, clock, arn, replay, buffer, stop }
    }
}

impl EventSink for RaftEventSink {
    fn record(&self, event: &HistoryEvent) -> BoxFuture<'static, ()> {
        self.replay.advance_to(event.id);
        let id = self.replay.history_id(event.id);
        if let Some(recorded) = self.replay.at(id) {
            let same = recorded.event_type == event.event_type
                && recorded.details.as_ref().and_then(|d| d.get("name"))
                    == event.details.as_ref().and_then(|d| d.get("name"));
            if same {
                return Box::pin(std::future::ready(()));
            }
            tracing::error!(execution = %self.arn, id, recorded = %recorded.event_type, replayed = %event.event_type, "replay diverged from the recorded history");
            return Box::pin(fail_diverged(
                self.node.clone(),
                self.arn.clone(),
                self.replay.clone(),
                self.stop.clone(),
                id,
            ));
        }
        let event = HistoryEvent {
            id,
            previous_event_id: self.replay.previous_id(event.id, event.previous_event_id),
            ..event.clone()
        };
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).events.push(event);
        let (node, arn, buffer, stop) = (self.node.clone(), self.arn.clone(), self.buffer.clone(), self.stop.clone());
        let clock = self.clock.clone();
        Box::pin(async move {
            let _work = ExternalWork::start(clock);
            let events = {
                let mut batch = buffer.lock().unwrap_or_else(|e| e.into_inner());
                if batch.committed_up_to >= id {
                    return;
                }
                std::mem::take(&mut batch.events)
            };
            let last = events.last().map_or(id, |e| e.id);
            let command = Command::RecordEvents { arn: arn.clone(), events };
            if commit(&node, &arn, &command, &stop).await {
                buffer.lock().unwrap_or_else(|e| e.into_inner()).committed_up_to = last;
            } else {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Commits `command`, retrying while the outcome is unknown (RecordEvents is idempotent).
/// Returns false, after notifying `stop`, when the execution cannot go on here.
async fn commit(node: &CoordinatorNode, arn: &ExecutionArn, command: &Command, stop: &Notify) -> bool {
    match propose_while_leader(node, command).await {
        Ok(_) => true,
        Err(error) => {
            tracing::info!(execution = %arn, %error, "execution no longer driven here");
            stop.notify_one();
            false
        }
    }
}

/// Closes an execution whose rerun left its recorded history.
async fn fail_diverged(node: CoordinatorNode, arn: ExecutionArn, replay: Arc<Replay>, stop: Arc<Notify>, at: u64) {
    let id = replay.recorded_len() + 1;
    let failed = HistoryEvent {
        id,
        previous_event_id: id - 1,
        timestamp: chrono::Utc::now(),
        event_type: "ExecutionFailed".into(),
        details: Some(json!({
            "error": "States.Runtime",
            "cause": format!("The execution could not be resumed: replaying it diverged from its recorded history at event {at}."),
        })),
    };
    commit(&node, &arn, &Command::RecordEvents { arn: arn.clone(), events: vec![failed] }, &stop).await;
    stop.notify_one();
    std::future::pending::<()>().await
}
