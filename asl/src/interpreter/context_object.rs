//! The Context Object (`$$`, features.md §1.5).

use std::sync::Arc;

use serde_json::{json, Map, Value};

/// The parts of `$$` that are fixed for a whole execution.
#[derive(Clone, Debug)]
pub struct ExecutionContext {
    /// `{"Id", "Input", "Name", "RoleArn", "StartTime"}`
    pub execution: Value,
    /// `$$.Execution.RedriveCount` (STANDARD executions only).
    pub redrive_count: Option<RedriveCount>,
    /// `{"Id", "Name"}`
    pub state_machine: Value,
}

/// `$$.Execution.RedriveCount`: a number, or read when `$$` is built. A coordinator replaying
/// a redriven execution answers the count of the redrive whose part of the history is being
/// replayed, so states before the resume point see what they saw the first time.
#[derive(Clone)]
pub struct RedriveCount(Arc<dyn Fn() -> u64 + Send + Sync>);

impl RedriveCount {
    pub fn fixed(count: u64) -> Self {
        RedriveCount(Arc::new(move || count))
    }

    pub fn live(count: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        RedriveCount(Arc::new(count))
    }

    pub fn get(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for RedriveCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedriveCount({})", self.get())
    }
}

/// What `$$` shows inside one state.
pub struct StateContext<'a> {
    pub execution: &'a ExecutionContext,
    pub state_name: &'a str,
    pub entered_time: &'a str,
    pub retry_count: u64,
    pub task_token: Option<&'a str>,
    /// `$$.Map.Item`, only while evaluating a Map's ItemSelector (and only if the selector
    /// reads more of it than its value).
    pub map_item: Option<&'a Value>,
    /// `$$.Map.Item.Value`, while evaluating a Map's ItemSelector.
    pub item_value: Option<&'a Value>,
}

impl StateContext<'_> {
    /// Builds `$$` as a JSON value. `Map.Item` alone is built without the rest when that
    /// is all a path needs (the common ItemSelector case, once per item).
    pub fn to_value(&self, only_map: bool) -> Value {
        let mut root = Map::new();
        if let Some(item) = self.map_item {
            root.insert("Map".into(), json!({ "Item": item }));
            if only_map {
                return Value::Object(root);
            }
        }
        let mut execution = self.execution.execution.clone();
        if let (Some(count), Value::Object(fields)) = (&self.execution.redrive_count, &mut execution) {
            fields.insert("RedriveCount".into(), count.get().into());
        }
        root.insert("Execution".into(), execution);
        root.insert(
            "State".into(),
            json!({"EnteredTime": self.entered_time, "Name": self.state_name, "RetryCount": self.retry_count}),
        );
        root.insert("StateMachine".into(), self.execution.state_machine.clone());
        if let Some(token) = self.task_token {
            root.insert("Task".into(), json!({ "Token": token }));
        }
        Value::Object(root)
    }
}
