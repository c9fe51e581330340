//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`, `Assign`, ...):
//! JSON where every key ending in `.$` takes its value from a path or an intrinsic call
//! (features.md §1.4). Compiled once so that evaluation does no parsing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::expr::PathExpr;
use crate::intrinsic::IntrinsicCall;

/// A compiled template. Subtrees without any `.$` key are kept as one literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum PayloadTemplate {
    Literal(Value),
    Object(Vec<(String, PayloadTemplate)>),
    Array(Vec<PayloadTemplate>),
    /// `"key.$": "$.path"`; `field` is the key as written (with `.$`), for error messages.
    Path {
        field: String,
        expr: PathExpr,
    },
    /// `"key.$": "States.Format(...)"`.
    Intrinsic {
        field: String,
        call: IntrinsicCall,
    },
}

impl PayloadTemplate {
    pub fn compile(value: &Value) -> Result<PayloadTemplate, String> {
        match value {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                let mut dynamic = false;
                for (key, item) in map {
                    if let Some(stripped) = key.strip_suffix(".$") {
                        let text = item.as_str().ok_or_else(|| {
                            format!("The value for the field '{key}' must be a STRING that contains a JSONPath or an intrinsic function call")
                        })?;
                        fields.push((stripped.to_string(), compile_dynamic(key, text)?));
                        dynamic = true;
                    } else {
                        let compiled = PayloadTemplate::compile(item)?;
                        dynamic |= !matches!(compiled, PayloadTemplate::Literal(_));
                        fields.push((key.clone(), compiled));
                    }
                }
                if dynamic {
                    Ok(PayloadTemplate::Object(fields))
                } else {
                    Ok(PayloadTemplate::Literal(value.clone()))
                }
            }
            Value::Array(items) => {
                let compiled: Vec<_> = items.iter().map(PayloadTemplate::compile).collect::<Result<_, _>>()?;
                if compiled.iter().all(|c| matches!(c, PayloadTemplate::Literal(_))) {
                    Ok(PayloadTemplate::Literal(value.clone()))
                } else {
                    Ok(PayloadTemplate::Array(compiled))
                }
            }
            other => Ok(PayloadTemplate::Literal(other.clone())),
        }
    }

    /// Calls `visit` with every path the template reads, intrinsic arguments included.
    pub fn visit_paths(&self, visit: &mut dyn FnMut(&PathExpr)) {
        match self {
            PayloadTemplate::Literal(_) => {}
            PayloadTemplate::Object(fields) => fields.iter().for_each(|(_, field)| field.visit_paths(visit)),
            PayloadTemplate::Array(items) => items.iter().for_each(|item| item.visit_paths(visit)),
            PayloadTemplate::Path { expr, .. } => visit(expr),
            PayloadTemplate::Intrinsic { call, .. } => call.visit_paths(visit),
        }
    }

    /// Whether evaluating the template twice on the same input may give different values
    /// (it calls `States.UUID` or `States.MathRandom`).
    pub fn is_random(&self) -> bool {
        match self {
            PayloadTemplate::Literal(_) | PayloadTemplate::Path { .. } => false,
            PayloadTemplate::Object(fields) => fields.iter().any(|(_, field)| field.is_random()),
            PayloadTemplate::Array(items) => items.iter().any(PayloadTemplate::is_random),
            PayloadTemplate::Intrinsic { call, .. } => call.is_random(),
        }
    }

    /// The template as written: what [`PayloadTemplate::compile`] compiles back to this
    /// template (how a map run's ItemSelector travels to workers).
    pub fn to_value(&self) -> Value {
        match self {
            PayloadTemplate::Literal(value) => value.clone(),
            PayloadTemplate::Array(items) => Value::Array(items.iter().map(PayloadTemplate::to_value).collect()),
            PayloadTemplate::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (name, template) in fields {
                    match template {
                        PayloadTemplate::Path { field, expr } => {
                            map.insert(field.clone(), Value::String(expr.text.clone()))
                        }
                        PayloadTemplate::Intrinsic { field, call } => {
                            map.insert(field.clone(), Value::String(call.as_str().to_owned()))
                        }
                        other => map.insert(name.clone(), other.to_value()),
                    };
                }
                Value::Object(map)
            }
            // Only object members are dynamic; a bare one stands for `{"<field>": "<text>"}`.
            PayloadTemplate::Path { expr, .. } => Value::String(expr.text.clone()),
            PayloadTemplate::Intrinsic { call, .. } => Value::String(call.as_str().to_owned()),
        }
    }

    /// Compiles the value of one dynamic `Assign`/template entry given its key and text.
    pub fn compile_entry(field: &str, text: &str) -> Result<PayloadTemplate, String> {
        compile_dynamic(field, text)
    }
}

fn compile_dynamic(field: &str, text: &str) -> Result<PayloadTemplate, String> {
    let invalid =
        || format!("The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call");
    if IntrinsicCall::looks_like_call(text) {
        let call = IntrinsicCall::parse(text).map_err(|e| format!("{}: {e}", invalid()))?;
        Ok(PayloadTemplate::Intrinsic { field: field.to_string(), call })
    } else if PathExpr::looks_like_path(text) {
        let expr = PathExpr::parse(text).map_err(|e| format!("{}: {e}", invalid()))?;
        Ok(PayloadTemplate::Path { field: field.to_string(), expr })
    } else {
        Err(invalid())
    }
}

impl<'de> Deserialize<'de> for PayloadTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PayloadTemplate::compile(&value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PayloadTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// `Assign`: a JSON object of variable name → value, where `name.$` keys are dynamic.
/// All values are evaluated against the same snapshot and only then assigned.
#[derive(Clone, Debug, PartialEq)]
pub struct AssignTemplate {
    pub entries: Vec<(String, PayloadTemplate)>,
}

impl<'de> Deserialize<'de> for AssignTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in &map {
            let entry = match (key.strip_suffix(".$"), value.as_str()) {
                (Some(name), Some(text)) => (name.to_string(), compile_dynamic(key, text)),
                (Some(_), None) => (key.clone(), Err(format!("The value for the field '{key}' must be a string"))),
                (None, _) => (key.clone(), PayloadTemplate::compile(value)),
            };
            entries.push((entry.0, entry.1.map_err(serde::de::Error::custom)?));
        }
        Ok(AssignTemplate { entries })
    }
}
