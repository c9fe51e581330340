//! Execution history in AWS's GetExecutionHistory shape (features.md §2.10).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

/// One event: `id` is 1-based and sequential; `previous_event_id` links an event to the one
/// before it on the same path of the execution (branches of a Parallel have their own).
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    pub event_type: String,
    pub details: Option<Value>,
}

impl HistoryEvent {
    /// The name of the details field AWS uses for this event type: state enter/exit events
    /// share `stateEnteredEventDetails`/`stateExitedEventDetails`, others are the type in
    /// lower camel case.
    pub fn details_key(&self) -> String {
        if self.event_type.ends_with("StateEntered") {
            return "stateEnteredEventDetails".into();
        }
        if self.event_type.ends_with("StateExited") {
            return "stateExitedEventDetails".into();
        }
        let mut chars = self.event_type.chars();
        let first = chars.next().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
        format!("{first}{}EventDetails", chars.as_str())
    }
}

impl Serialize for HistoryEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if self.previous_event_id != 0 {
            map.serialize_entry("previousEventId", &self.previous_event_id)?;
        }
        map.serialize_entry("timestamp", &crate::timestamp::format(self.timestamp))?;
        map.serialize_entry("type", &self.event_type)?;
        if let Some(details) = &self.details {
            map.serialize_entry(&self.details_key(), details)?;
        }
        map.end()
    }
}

/// The inverse of `Serialize`: reads an event in AWS's GetExecutionHistory shape, taking the
/// one `...EventDetails` field as the details whatever its name.
impl<'de> Deserialize<'de> for HistoryEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let id = map.get("id").and_then(Value::as_u64).ok_or_else(|| D::Error::missing_field("id"))?;
        let previous_event_id = map.get("previousEventId").and_then(Value::as_u64).unwrap_or(0);
        let timestamp = map
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(crate::timestamp::parse)
            .ok_or_else(|| D::Error::missing_field("timestamp"))?
            .with_timezone(&Utc);
        let event_type =
            map.get("type").and_then(Value::as_str).ok_or_else(|| D::Error::missing_field("type"))?.to_string();
        let details_key = map.keys().find(|key| key.ends_with("EventDetails")).cloned();
        let details = details_key.and_then(|key| map.remove(&key));
        Ok(HistoryEvent { id, previous_event_id, timestamp, event_type, details })
    }
}

/// Where events go as they are recorded, for a caller that must make each one durable before
/// the execution moves on (the coordinator commits them through Raft).
///
/// Contract: [`EventSink::record`] is called synchronously, in event id order, as each event
/// is recorded. The interpreter awaits the returned futures, in the same order, before it
/// enters the next state, before any Task invocation or Map Run, before any sleep (Wait,
/// retry interval) and before the execution's result is returned. A future that never
/// completes (the sink can no longer make events durable, e.g. the node lost leadership)
/// stalls the execution there; its owner is expected to drop it.
pub trait EventSink: Send + Sync {
    fn record(&self, event: &HistoryEvent) -> BoxFuture<'static, ()>;
}

/// Collects the events of one execution. Safe to share between concurrently running
/// branches.
#[derive(Default)]
pub struct History {
    events: Mutex<Vec<HistoryEvent>>,
    sink: Option<Arc<dyn EventSink>>,
    /// The sink's futures not yet awaited, in event id order.
    pending: Mutex<VecDeque<BoxFuture<'static, ()>>>,
    /// Serialises [`History::flush`] so that concurrent branches await the sink's futures in
    /// id order, never one ahead of an earlier one.
    flushing: futures::lock::Mutex<()>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("events", &self.events).field("sink", &self.sink.is_some()).finish()
    }
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// A history that hands every event to `sink` as it is recorded.
    pub fn with_sink(sink: Option<Arc<dyn EventSink>>) -> History {
        History { sink, ..History::default() }
    }

    /// Appends an event and returns its id.
    pub fn record(
        &self,
        timestamp: DateTime<Utc>,
        previous_event_id: u64,
        event_type: impl Into<String>,
        details: Option<Value>,
    ) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let id = events.len() as u64 + 1;
        let event = HistoryEvent { id, previous_event_id, timestamp, event_type: event_type.into(), details };
        if let Some(sink) = &self.sink {
            // Under the events lock, so that the sink sees ids in order.
            let commit = sink.record(&event);
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push_back(commit);
        }
        events.push(event);
        id
    }

    /// Awaits the sink's futures for every event recorded so far (a no-op without a sink).
    pub async fn flush(&self) {
        if self.sink.is_none() {
            return;
        }
        let _serialised = self.flushing.lock().await;
        loop {
            let next = self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some(commit) = next else { return };
            // If this flush is dropped mid-way (an execution timeout won the race), the future
            // goes back to the front so that the next flush awaits it first.
            let mut in_flight = InFlight { history: self, commit: Some(commit) };
            if let Some(commit) = in_flight.commit.as_mut() {
                commit.await;
            }
            in_flight.commit = None;
        }
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<HistoryEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn into_events(self) -> Vec<HistoryEvent> {
        self.events.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

struct InFlight<'a> {
    history: &'a History,
    commit: Option<BoxFuture<'static, ()>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(commit) = self.commit.take() {
            self.history.pending.lock().unwrap_or_else(|e| e.into_inner()).push_front(commit);
        }
    }
}

/// `{"truncated": false}`, the `inputDetails`/`outputDetails` of payload-carrying events.
pub fn not_truncated() -> Value {
    json!({ "truncated": false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_aws_shape() {
        let history = History::new();
        let now = Utc::now();
        history.record(now, 0, "ExecutionStarted", Some(json!({"input": "{}"})));
        history.record(now, 1, "PassStateEntered", Some(json!({"name": "A"})));
        history.record(now, 2, "MapStateSucceeded", None);
        let events = serde_json::to_value(history.snapshot()).unwrap();
        assert_eq!(events[0]["executionStartedEventDetails"]["input"], "{}");
        assert!(events[0].get("previousEventId").is_none());
        assert_eq!(events[1]["stateEnteredEventDetails"]["name"], "A");
        assert_eq!(events[1]["previousEventId"], 1);
        assert_eq!(events[2]["type"], "MapStateSucceeded");
        let back: Vec<HistoryEvent> = serde_json::from_value(events).unwrap();
        let original = history.snapshot();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].details, original[1].details);
        assert_eq!(back[1].previous_event_id, 1);
        assert_eq!(back[2].details, None);
        assert_eq!(crate::timestamp::format(back[0].timestamp), crate::timestamp::format(now));
    }

    struct Recorder {
        seen: Arc<Mutex<Vec<u64>>>,
        awaited: Arc<Mutex<Vec<u64>>>,
    }

    impl EventSink for Recorder {
        fn record(&self, event: &HistoryEvent) -> BoxFuture<'static, ()> {
            self.seen.lock().unwrap().push(event.id);
            let awaited = self.awaited.clone();
            let id = event.id;
            Box::pin(async move { awaited.lock().unwrap().push(id) })
        }
    }

    #[test]
    fn sink_sees_events_at_record_time_and_flush_awaits_them_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let awaited = Arc::new(Mutex::new(Vec::new()));
        let history = History::with_sink(Some(Arc::new(Recorder { seen: seen.clone(), awaited: awaited.clone() })));
        history.record(Utc::now(), 0, "ExecutionStarted", None);
        history.record(Utc::now(), 1, "PassStateEntered", None);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        assert!(awaited.lock().unwrap().is_empty(), "futures are lazy until flushed");
        futures::executor::block_on(history.flush());
        assert_eq!(*awaited.lock().unwrap(), vec![1, 2]);
        futures::executor::block_on(history.flush());
        assert_eq!(*awaited.lock().unwrap(), vec![1, 2], "each future is awaited once");
    }
}
