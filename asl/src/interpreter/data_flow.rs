//! JSONPath data flow inside one state (features.md §1.4): InputPath → Parameters →
//! (work) → ResultSelector → ResultPath → OutputPath, payload templates, Assign, and the
//! exact `States.Runtime` causes AWS gives when a path does not resolve.

use serde_json::{Map, Value};

use super::context_object::StateContext;
use super::scope::Scope;
use crate::expr::{PathExpr, PathRoot};
use crate::failure::Failure;
use crate::intrinsic::IntrinsicEnv;
use crate::model::{AssignTemplate, PathField, PayloadTemplate};

/// Why a path did not resolve.
pub enum Unresolved {
    /// The path selected nothing; Jayway's message.
    Missing(String),
    /// `$name` names no variable.
    NoVariable(String),
}

/// Evaluation context of one state: `$$`, the variables in scope, randomness.
pub struct Eval<'a> {
    pub state: StateContext<'a>,
    pub scope: &'a Scope,
    pub random: &'a dyn Fn() -> u64,
    /// The `An error occurred while executing the state ...` prefix of runtime causes.
    pub cause_prefix: String,
}

impl Eval<'_> {
    pub fn runtime(&self, detail: impl std::fmt::Display) -> Failure {
        Failure::runtime(format!("{}{detail}", self.cause_prefix))
    }

    pub fn resolve(&self, expr: &PathExpr, input: &Value) -> Result<Value, Unresolved> {
        let select = |root: &Value| expr.path.select(root).map_err(|e| Unresolved::Missing(e.message));
        match &expr.root {
            PathRoot::Input => select(input),
            PathRoot::Context => {
                if let (Some(value), Some(path)) = (self.state.item_value, &expr.item_value) {
                    return path.select(value).map_err(|e| Unresolved::Missing(e.message));
                }
                if let (Some(item), Some(path)) = (self.state.map_item, &expr.map_item) {
                    return path.select(item).map_err(|e| Unresolved::Missing(e.message));
                }
                let only_map = self.state.map_item.is_some() && expr.text.starts_with("$$.Map");
                select(&self.state.to_value(only_map))
            }
            PathRoot::Variable(name) => match self.scope.get(name) {
                Some(value) => select(value),
                None => Err(Unresolved::NoVariable(name.clone())),
            },
        }
    }

    /// InputPath/OutputPath/ItemsPath-style selection: `null` gives `{}`, a missing path
    /// is `Invalid path '<p>' : <jayway message>`.
    pub fn select_path(&self, field: &PathField, value: &Value) -> Result<Value, Failure> {
        match field {
            PathField::Absent => Ok(value.clone()),
            PathField::Null => Ok(Value::Object(Map::new())),
            PathField::Path(expr) if expr.text == "$" => Ok(value.clone()),
            PathField::Path(expr) => self.resolve_for_path_field(expr, value),
        }
    }

    /// Like [`Eval::select_path`] but consumes the value (OutputPath): a path into the input
    /// moves the node it names out rather than copying it.
    pub fn select_path_owned(&self, field: &PathField, value: Value) -> Result<Value, Failure> {
        match field {
            PathField::Absent => Ok(value),
            PathField::Path(expr) if expr.text == "$" => Ok(value),
            PathField::Path(expr) if expr.root == PathRoot::Input => expr
                .path
                .select_owned(value)
                .map_err(|e| self.runtime(format!("Invalid path '{}' : {}", expr.text, e.message))),
            _ => self.select_path(field, &value),
        }
    }

    pub fn resolve_for_path_field(&self, expr: &PathExpr, value: &Value) -> Result<Value, Failure> {
        self.resolve(expr, value).map_err(|e| match e {
            Unresolved::Missing(message) => self.runtime(format!("Invalid path '{}' : {message}", expr.text)),
            Unresolved::NoVariable(name) => self.no_variable(&name),
        })
    }

    /// The integer a `...Path` field selects: a JSON integer, or a string holding one (AWS
    /// accepts `"2"`, e.g. from a variable); anything else is AWS's `States.Runtime`
    /// "The <field> field refers to value \"<v>\" which is not a valid integer: <path>".
    pub fn integer_at_path(&self, field: &str, path: &PathExpr, input: &Value) -> Result<i64, Failure> {
        let value = self.resolve_for_path_field(path, input)?;
        let integer = match &value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        integer.ok_or_else(|| {
            self.runtime(format!(
                "The {field} field refers to value \"{}\" which is not a valid integer: {}",
                shown(&value),
                path.text
            ))
        })
    }

    /// Like [`Eval::integer_at_path`] for a number ("... which is not a valid float: ...").
    pub fn float_at_path(&self, field: &str, path: &PathExpr, input: &Value) -> Result<f64, Failure> {
        let value = self.resolve_for_path_field(path, input)?;
        let float = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        float.ok_or_else(|| {
            self.runtime(format!(
                "The {field} field refers to value \"{}\" which is not a valid float: {}",
                shown(&value),
                path.text
            ))
        })
    }

    fn no_variable(&self, name: &str) -> Failure {
        self.runtime(format!("The variable '${name}' could not be found."))
    }

    /// ResultPath: merges `result` into `raw_input`.
    pub fn apply_result_path(&self, field: &PathField, raw_input: Value, result: Value) -> Result<Value, Failure> {
        match field {
            PathField::Absent => Ok(result),
            PathField::Null => Ok(raw_input),
            PathField::Path(expr) => {
                let mut target = raw_input;
                expr.path
                    .assign(&mut target, result)
                    .map_err(|e| self.runtime(format!("Invalid path '{}' : {}", expr.text, e.message)))?;
                Ok(target)
            }
        }
    }

    /// Evaluates a payload template against `input`.
    pub fn template(&self, template: &PayloadTemplate, input: &Value) -> Result<Value, Failure> {
        match template {
            PayloadTemplate::Literal(value) => Ok(value.clone()),
            PayloadTemplate::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, field) in fields {
                    map.insert(key.clone(), self.template(field, input)?);
                }
                Ok(Value::Object(map))
            }
            PayloadTemplate::Array(items) => {
                items.iter().map(|item| self.template(item, input)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            PayloadTemplate::Path { field, expr } => self.resolve_template_path(field, expr, input),
            PayloadTemplate::Intrinsic { field, call } => {
                let mut env = TemplateEnv { eval: self, input, field };
                call.evaluate(&mut env)
            }
        }
    }

    fn resolve_template_path(&self, field: &str, expr: &PathExpr, input: &Value) -> Result<Value, Failure> {
        self.resolve(expr, input).map_err(|e| match e {
            Unresolved::Missing(_) => self.runtime(format!(
                "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{}'",
                expr.text,
                compact(input)
            )),
            Unresolved::NoVariable(name) => self.no_variable(&name),
        })
    }

    /// Evaluates every entry of an `Assign` against the same snapshot; the caller applies
    /// the returned pairs afterwards.
    pub fn assign(&self, assign: &AssignTemplate, input: &Value) -> Result<Vec<(String, Value)>, Failure> {
        assign.entries.iter().map(|(name, template)| Ok((name.clone(), self.template(template, input)?))).collect()
    }
}

struct TemplateEnv<'e, 'a> {
    eval: &'e Eval<'a>,
    input: &'e Value,
    field: &'e str,
}

impl IntrinsicEnv for TemplateEnv<'_, '_> {
    fn resolve(&mut self, path: &PathExpr) -> Result<Value, Failure> {
        self.eval.resolve_template_path(self.field, path, self.input)
    }

    fn random_u64(&mut self) -> u64 {
        (self.eval.random)()
    }
}

/// A value as AWS shows it in a cause (inside quotes, after `==`): strings bare, the rest as JSON.
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// Compact JSON text, as AWS quotes values in causes.
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
