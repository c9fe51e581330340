//! Workflow variables (features.md §1.7): one scope per `States` block; Parallel branches
//! and Map iterations read the enclosing scopes but write only their own.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

#[derive(Clone, Debug, Default)]
pub struct Scope {
    local: HashMap<String, Value>,
    outer: Option<Arc<Scope>>,
}

impl Scope {
    /// A fresh inner scope that can read `outer`.
    pub fn inner(outer: Arc<Scope>) -> Scope {
        Scope { local: HashMap::new(), outer: Some(outer) }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.local.get(name) {
            Some(value) => Some(value),
            None => self.outer.as_deref().and_then(|outer| outer.get(name)),
        }
    }

    pub fn set(&mut self, name: String, value: Value) {
        self.local.insert(name, value);
    }

    /// Every variable this scope can read, inner ones hiding outer ones of the same name:
    /// what a worker needs to evaluate a map run's ItemSelector as this scope would.
    pub fn flatten(&self) -> serde_json::Map<String, Value> {
        let mut all = self.outer.as_deref().map(Scope::flatten).unwrap_or_default();
        for (name, value) in &self.local {
            all.insert(name.clone(), value.clone());
        }
        all
    }
}
