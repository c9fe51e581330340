//! Query languages (features.md §1.2, §1.6): the `QueryLanguage` values, the rule that a
//! state cannot go back to JSONPath under a JSONata machine, and a light check of the
//! `{% … %}` expressions of JSONata states — they are not evaluated here, only scanned:
//! balanced brackets and closed strings, no `$$`, and `$states.result` /
//! `$states.errorOutput` only where AWS provides them.
//!
//! Which fields belong to which language is in `schema::field_language`.

use serde_json::{Map, Value};

use super::schema::StateType;
use super::values::is_jsonata_expression;
use super::{Loc, StateCx, Validator};

const LANGUAGES: &str = "[JSONPath, JSONata]";

/// Checks a `QueryLanguage` value; returns it when valid.
fn language_value<'v>(v: &mut Validator, value: &'v Value, loc: &Loc, owner: &str) -> Option<&'v str> {
    let text = v.expect_string(value, loc, &format!("'QueryLanguage' of {owner}"))?;
    if text == "JSONPath" || text == "JSONata" {
        Some(text)
    } else {
        v.schema(
            format!("Value should be one of the following: {LANGUAGES} ('QueryLanguage' of {owner} is '{text}')"),
            loc,
        );
        None
    }
}

/// The machine's language: whether it is JSONata.
pub(crate) fn machine_language(v: &mut Validator, obj: &Map<String, Value>) -> bool {
    match obj.get("QueryLanguage") {
        Some(value) => {
            language_value(v, value, &Loc::root().field("QueryLanguage"), "the definition") == Some("JSONata")
        }
        None => false,
    }
}

/// A state's language (its own `QueryLanguage`, else the machine's): whether it is JSONata.
pub(crate) fn state_language(v: &mut Validator, name: &str, obj: &Map<String, Value>, loc: &Loc) -> bool {
    let Some(value) = obj.get("QueryLanguage") else { return v.machine_jsonata };
    match language_value(v, value, &loc.field("QueryLanguage"), &format!("state '{name}'")) {
        Some("JSONata") => true,
        Some(_) => {
            if v.machine_jsonata {
                v.schema("'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine", loc);
            }
            false
        }
        None => v.machine_jsonata,
    }
}

/// Fields whose strings are never JSONata expressions (or hold nested states).
const NOT_EXPRESSIONS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Next",
    "End",
    "Default",
    "Resource",
    "Retry",
    "Credentials",
    "ItemProcessor",
    "Iterator",
    "Branches",
];

/// Where `$states.result` / `$states.errorOutput` may be used.
#[derive(Clone, Copy, Debug)]
struct Allowed {
    result: bool,
    error_output: bool,
}

const NEITHER: Allowed = Allowed { result: false, error_output: false };

pub(crate) fn check_expressions(v: &mut Validator, cx: &StateCx) {
    let has_result = matches!(cx.ty, StateType::Task | StateType::Map | StateType::Parallel);
    for (key, value) in cx.obj {
        if NOT_EXPRESSIONS.contains(&key.as_str()) {
            continue;
        }
        let loc = cx.at(key);
        match key.as_str() {
            "Output" | "Assign" => walk(v, cx, value, &loc, Allowed { result: has_result, error_output: false }),
            "Catch" => {
                each_member(v, cx, value, &loc, &["Output", "Assign"], Allowed { result: false, error_output: true })
            }
            "Choices" => each_member(v, cx, value, &loc, &["Condition", "Output", "Assign"], NEITHER),
            _ => walk(v, cx, value, &loc, NEITHER),
        }
    }
}

/// Walks the listed members of every object of an array (catchers, choice rules).
fn each_member(v: &mut Validator, cx: &StateCx, list: &Value, loc: &Loc, members: &[&str], allowed: Allowed) {
    let Some(items) = list.as_array() else { return };
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else { continue };
        for member in members {
            if let Some(value) = obj.get(*member) {
                walk(v, cx, value, &loc.index(i).field(member), allowed);
            }
        }
    }
}

fn walk(v: &mut Validator, cx: &StateCx, value: &Value, loc: &Loc, allowed: Allowed) {
    match value {
        Value::String(text) if is_jsonata_expression(text) => check_expression(v, cx, text, loc, allowed),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(v, cx, item, &loc.index(i), allowed);
            }
        }
        Value::Object(obj) => {
            for (key, item) in obj {
                // CSV column names are literal text.
                if key != "CSVHeaders" {
                    walk(v, cx, item, &loc.field(key), allowed);
                }
            }
        }
        _ => {}
    }
}

fn check_expression(v: &mut Validator, cx: &StateCx, text: &str, loc: &Loc, allowed: Allowed) {
    let body = &text[2..text.len() - 2];
    let name = cx.name;
    if body.trim().is_empty() {
        v.schema(format!("The JSONata expression '{text}' in state '{name}' is empty"), loc);
        return;
    }
    let scan = scan(body);
    if let Some(problem) = scan.problem {
        v.schema(format!("The JSONata expression '{text}' in state '{name}' is not well-formed: {problem}"), loc);
        return;
    }
    if scan.root_reference {
        v.schema(
            format!("Reference to '$$' is not supported: there is no input document in JSONata states; use $states.input ('{text}' in state '{name}')"),
            loc,
        );
    }
    if scan.result && !allowed.result {
        v.schema(
            format!("'$states.result' is only available in 'Output' and 'Assign' of Task, Map and Parallel states ('{text}' in state '{name}')"),
            loc,
        );
    }
    if scan.error_output && !allowed.error_output {
        v.schema(
            format!("'$states.errorOutput' is only available in 'Output' and 'Assign' of a Catcher ('{text}' in state '{name}')"),
            loc,
        );
    }
}

/// What a scan of an expression found.
#[derive(Debug, Default)]
struct Scan {
    problem: Option<String>,
    root_reference: bool,
    result: bool,
    error_output: bool,
}

/// Scans an expression's tokens, skipping strings, comments and backtick names.
fn scan(body: &str) -> Scan {
    let mut found = Scan::default();
    let chars: Vec<char> = body.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < chars.len() {
                    if chars[j] == '\\' && c != '`' {
                        j += 2;
                        continue;
                    }
                    if chars[j] == c {
                        closed = true;
                        break;
                    }
                    j += 1;
                }
                if !closed {
                    found.problem = Some(format!("unterminated {c} quote"));
                    return found;
                }
                i = j + 1;
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut j = i + 2;
                while j + 1 < chars.len() && !(chars[j] == '*' && chars[j + 1] == '/') {
                    j += 1;
                }
                if j + 1 >= chars.len() {
                    found.problem = Some("unterminated comment".to_string());
                    return found;
                }
                i = j + 2;
                continue;
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    found.problem = Some(format!("unexpected '{c}'"));
                    return found;
                }
            }
            '$' => {
                if chars.get(i + 1) == Some(&'$') {
                    found.root_reference = true;
                    i += 2;
                    continue;
                }
                let ident: String = chars[i + 1..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
                if ident == "states" {
                    let rest = i + 1 + ident.chars().count();
                    if chars.get(rest) == Some(&'.') {
                        let member: String =
                            chars[rest + 1..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
                        found.result |= member == "result";
                        found.error_output |= member == "errorOutput";
                    }
                }
                i += 1 + ident.chars().count();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(open) = stack.last() {
        found.problem = Some(format!("'{open}' is never closed"));
    }
    found
}
