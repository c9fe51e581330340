//! The Context Object (`$$`, features.md §1.5).

use serde_json::{json, Map, Value};

/// The parts of `$$` that are fixed for a whole execution.
#[derive(Clone, Debug)]
pub struct ExecutionContext {
    /// `{"Id", "Input", "Name", "RoleArn", "StartTime", "RedriveCount"}`
    pub execution: Value,
    /// `{"Id", "Name"}`
    pub state_machine: Value,
}

/// What `$$` shows inside one state.
pub struct StateContext<'a> {
    pub execution: &'a ExecutionContext,
    pub state_name: &'a str,
    pub entered_time: &'a str,
    pub retry_count: u64,
    pub task_token: Option<&'a str>,
    /// `$$.Map.Item`, only while evaluating a Map's ItemSelector.
    pub map_item: Option<&'a Value>,
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
        root.insert("Execution".into(), self.execution.execution.clone());
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
