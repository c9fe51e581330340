//! Applying compiled paths: Jayway's evaluation, including the exceptions it throws for
//! definite paths (AWS quotes their messages in `States.Runtime` causes), and ResultPath's
//! write with intermediate objects created as needed.

use serde_json::{Map, Number, Value};

use super::token::{render, Function, Token};
use super::PathError;

/// Jayway's `isDefinite`: every token selects at most one node. A path ending in a
/// function yields the function's single value whatever comes before it.
pub(crate) fn is_definite(tokens: &[Token]) -> bool {
    if matches!(tokens.last(), Some(Token::Function(_))) {
        return true;
    }
    let last = tokens.len().saturating_sub(1);
    tokens.iter().enumerate().all(|(i, token)| token.is_definite(i == last))
}

/// The input of a trailing function: the prefix's value, or the list of its matches.
fn function_input(prefix: &[Token], base: &Value, root: &Value) -> Result<Value, PathError> {
    if is_definite(prefix) {
        select_definite_from(prefix, base, root)
    } else {
        Ok(Value::Array(select_all(prefix, base, root)))
    }
}

/// Every match of an indefinite path, in document order; never fails. `root` is what `$`
/// means inside filters.
pub(crate) fn select_all(tokens: &[Token], base: &Value, root: &Value) -> Vec<Value> {
    if let Some((Token::Function(function), prefix)) = tokens.split_last() {
        return function_input(prefix, base, root)
            .ok()
            .and_then(|input| apply_function(*function, &input).ok())
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    walk(tokens, base, root, &mut out);
    out
}

/// Applies a definite path, failing as Jayway does when the node is not there.
pub(crate) fn select_definite(tokens: &[Token], root: &Value) -> Result<Value, PathError> {
    select_definite_from(tokens, root, root)
}

/// [`select_definite`] taking the node out of `root` instead of copying it, where the path
/// names one node (OutputPath `$.Items` over a batch, say).
pub(crate) fn take_definite(tokens: &[Token], mut root: Value) -> Result<Value, PathError> {
    match locate_definite(tokens, &root, &root)? {
        Located::Computed(value) => Ok(value),
        Located::Node(_) => {
            let mut node = &mut root;
            for token in tokens {
                // `locate_definite` found every step: single names and indices only.
                node = match (token, node) {
                    (Token::Property(names), Value::Object(map)) => map.get_mut(&names[0]),
                    (Token::Index(indices), Value::Array(items)) => {
                        effective_index(items.len(), indices[0]).map(move |i| &mut items[i])
                    }
                    _ => None,
                }
                .expect("a located node");
            }
            Ok(node.take())
        }
    }
}

/// Where a definite path leads: a node of the input, or a value computed from it (a function,
/// several properties merged).
enum Located<'a> {
    Node(&'a Value),
    Computed(Value),
}

fn select_definite_from(tokens: &[Token], base: &Value, root: &Value) -> Result<Value, PathError> {
    Ok(match locate_definite(tokens, base, root)? {
        Located::Node(node) => node.clone(),
        Located::Computed(value) => value,
    })
}

fn locate_definite<'a>(tokens: &[Token], base: &'a Value, root: &Value) -> Result<Located<'a>, PathError> {
    if let Some((Token::Function(function), prefix)) = tokens.split_last() {
        let input = function_input(prefix, base, root)?;
        return apply_function(*function, &input).map(Located::Computed).map_err(|message| PathError { message });
    }
    let mut node = base;
    for (i, token) in tokens.iter().enumerate() {
        let is_leaf = i + 1 == tokens.len();
        match token {
            Token::Property(names) => {
                let Value::Object(map) = node else {
                    return Err(not_an_object(token, &tokens[..i], node));
                };
                if names.len() > 1 {
                    return Ok(Located::Computed(merge_properties(map, names)));
                }
                match map.get(&names[0]) {
                    Some(value) => node = value,
                    None if is_leaf => return Err(no_results(tokens)),
                    None => {
                        return Err(PathError {
                            message: format!("Missing property in path {}", render(&tokens[..=i])),
                        })
                    }
                }
            }
            Token::Index(indices) => {
                let Value::Array(items) = node else {
                    return Err(PathError {
                        message: format!("Filter: {token} can only be applied to arrays. Current context is: {node}"),
                    });
                };
                match element(items, indices[0]) {
                    Some(value) => node = value,
                    None => return Err(no_results(tokens)),
                }
            }
            // `is_definite` admits no other token.
            _ => return Ok(Located::Computed(Value::Array(select_all(tokens, base, root)))),
        }
    }
    Ok(Located::Node(node))
}

/// Writes `value` at a Reference Path, creating missing intermediate objects.
pub(crate) fn assign(tokens: &[Token], root: &mut Value, value: Value) -> Result<(), PathError> {
    let Some(last) = tokens.len().checked_sub(1) else {
        *root = value;
        return Ok(());
    };
    let mut node = root;
    for (i, token) in tokens.iter().enumerate() {
        let missing = || PathError { message: format!("Missing property in path {}", render(&tokens[..=i])) };
        match token {
            Token::Property(names) if names.len() == 1 => {
                let Value::Object(map) = node else { return Err(missing()) };
                if i == last {
                    map.insert(names[0].clone(), value);
                    return Ok(());
                }
                node = map.entry(names[0].clone()).or_insert_with(|| Value::Object(Map::new()));
            }
            Token::Index(indices) if indices.len() == 1 => {
                let Value::Array(items) = node else { return Err(missing()) };
                let Some(index) = effective_index(items.len(), indices[0]) else { return Err(missing()) };
                if i == last {
                    items[index] = value;
                    return Ok(());
                }
                node = &mut items[index];
            }
            _ => {
                return Err(PathError {
                    message: format!("{} is not a reference path and cannot be written to", render(tokens)),
                })
            }
        }
    }
    Ok(())
}

fn walk(tokens: &[Token], node: &Value, root: &Value, out: &mut Vec<Value>) {
    let Some((token, rest)) = tokens.split_first() else {
        out.push(node.clone());
        return;
    };
    match token {
        Token::Property(names) => {
            if let Value::Object(map) = node {
                if names.len() > 1 && rest.is_empty() {
                    out.push(merge_properties(map, names));
                } else {
                    for name in names {
                        if let Some(value) = map.get(name) {
                            walk(rest, value, root, out);
                        }
                    }
                }
            }
        }
        Token::Index(indices) => {
            if let Value::Array(items) = node {
                for index in indices {
                    if let Some(value) = element(items, *index) {
                        walk(rest, value, root, out);
                    }
                }
            }
        }
        Token::Slice { start, end } => {
            if let Value::Array(items) = node {
                let (from, to) = slice_bounds(items.len(), *start, *end);
                for value in &items[from..to] {
                    walk(rest, value, root, out);
                }
            }
        }
        Token::Wildcard => match node {
            Value::Array(items) => items.iter().for_each(|value| walk(rest, value, root, out)),
            Value::Object(map) => map.values().for_each(|value| walk(rest, value, root, out)),
            _ => {}
        },
        Token::DeepScan => scan(rest, node, root, out),
        Token::Filter(filter) => match node {
            Value::Array(items) => {
                for item in items.iter().filter(|item| filter.holds(item, root)) {
                    walk(rest, item, root, out);
                }
            }
            Value::Object(_) if filter.holds(node, root) => walk(rest, node, root, out),
            _ => {}
        },
        Token::Function(function) => out.extend(apply_function(*function, node)),
    }
}

/// `..`: the rest applies to `node` and to every node below it, parents before children.
/// A filter after `..` tests each node itself rather than the elements of each array, so
/// that no node is matched twice.
fn scan(rest: &[Token], node: &Value, root: &Value, out: &mut Vec<Value>) {
    match rest.first() {
        Some(Token::Filter(filter)) if !node.is_array() && filter.holds(node, root) => {
            walk(&rest[1..], node, root, out)
        }
        Some(Token::Filter(_)) => {}
        _ if node.is_object() || node.is_array() => walk(rest, node, root, out),
        _ => {}
    }
    match node {
        Value::Array(items) => items.iter().for_each(|child| scan(rest, child, root, out)),
        Value::Object(map) => map.values().for_each(|child| scan(rest, child, root, out)),
        _ => {}
    }
}

/// Several names at the leaf: Jayway returns one object holding those that exist.
fn merge_properties(map: &Map<String, Value>, names: &[String]) -> Value {
    let mut merged = Map::new();
    for name in names {
        if let Some(value) = map.get(name) {
            merged.insert(name.clone(), value.clone());
        }
    }
    Value::Object(merged)
}

fn effective_index(len: usize, index: i64) -> Option<usize> {
    let resolved = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&resolved).then_some(resolved as usize)
}

fn element(items: &[Value], index: i64) -> Option<&Value> {
    effective_index(items.len(), index).map(|i| &items[i])
}

/// Jayway's slice bounds: negative values count from the end, all are clamped.
fn slice_bounds(len: usize, start: Option<i64>, end: Option<i64>) -> (usize, usize) {
    let clamp = |v: i64| -> usize {
        let v = if v < 0 { len as i64 + v } else { v };
        v.clamp(0, len as i64) as usize
    };
    let from = start.map_or(0, clamp);
    let to = end.map_or(len, clamp);
    (from, to.max(from))
}

fn no_results(tokens: &[Token]) -> PathError {
    PathError { message: format!("No results for path: {}", render(tokens)) }
}

/// Jayway's message for a property read on something that is not an object; AWS runs
/// Jayway on Jackson, so the class names are Java's.
fn not_an_object(token: &Token, upstream: &[Token], found: &Value) -> PathError {
    let class = match found {
        Value::Null => "null",
        Value::Bool(_) => "java.lang.Boolean",
        Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => "java.lang.Integer",
        Value::Number(n) if n.is_i64() || n.is_u64() => "java.lang.Long",
        Value::Number(_) => "java.lang.Double",
        Value::String(_) => "java.lang.String",
        Value::Array(_) => "java.util.ArrayList",
        Value::Object(_) => "java.util.LinkedHashMap",
    };
    PathError {
        message: format!(
            "Expected to find an object with property {token} in path {} but found '{class}'. This is not a json object according to the JsonProvider: 'com.jayway.jsonpath.spi.json.JacksonJsonProvider'.",
            render(upstream)
        ),
    }
}

/// Jayway's path functions. Numeric aggregates return doubles, as Jayway's do.
fn apply_function(function: Function, input: &Value) -> Result<Value, String> {
    let numbers = || -> Result<Vec<f64>, String> {
        let Value::Array(items) = input else {
            return Err(format!("Aggregation function attempted to calculate value using {input}"));
        };
        let values: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
        if values.is_empty() {
            return Err("Aggregation function attempted to calculate value using empty array".into());
        }
        Ok(values)
    };
    let double = |v: f64| Number::from_f64(v).map(Value::Number).ok_or_else(|| format!("{v} is not a JSON number"));
    match function {
        Function::Length => match input {
            Value::Array(items) => Ok(items.len().into()),
            Value::Object(map) => Ok(map.len().into()),
            Value::String(s) => Ok(s.chars().count().into()),
            other => Err(format!("Function length() cannot be applied to {other}")),
        },
        Function::Min => double(numbers()?.into_iter().fold(f64::INFINITY, f64::min)),
        Function::Max => double(numbers()?.into_iter().fold(f64::NEG_INFINITY, f64::max)),
        Function::Sum => double(numbers()?.into_iter().sum()),
        Function::Avg => {
            let values = numbers()?;
            double(values.iter().sum::<f64>() / values.len() as f64)
        }
        Function::Stddev => {
            let values = numbers()?;
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            double((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt())
        }
        Function::Keys => match input {
            Value::Object(map) => Ok(Value::Array(map.keys().cloned().map(Value::String).collect())),
            other => Err(format!("Function keys() cannot be applied to {other}")),
        },
        Function::First | Function::Last => match input {
            Value::Array(items) => {
                let item = if function == Function::First { items.first() } else { items.last() };
                item.cloned().ok_or_else(|| "Function first()/last() applied to an empty array".to_string())
            }
            other => Err(format!("Function first()/last() cannot be applied to {other}")),
        },
    }
}
