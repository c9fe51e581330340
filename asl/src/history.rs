//! Execution history in AWS's GetExecutionHistory shape (features.md §2.10).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
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

/// Collects the events of one execution. Safe to share between concurrently running
/// branches.
#[derive(Debug, Default)]
pub struct History {
    events: Mutex<Vec<HistoryEvent>>,
}

impl History {
    pub fn new() -> History {
        History::default()
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
        events.push(HistoryEvent { id, previous_event_id, timestamp, event_type: event_type.into(), details });
        id
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
    }
}
