//! A path as it appears in a definition: `$...` applies to the state's input, `$$...` to the
//! Context Object, `$name...` to the workflow variable `name` (features.md §1.4, §1.7).

use crate::jsonpath::{JsonPath, PathSyntaxError};

/// What a path is applied to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRoot {
    /// `$` — the input of the current step.
    Input,
    /// `$$` — the Context Object.
    Context,
    /// `$name` — a workflow variable.
    Variable(String),
}

/// A path with its root resolved. `path` is always `$`-rooted relative to that root:
/// `$$.Execution.Id` becomes root `Context` and path `$.Execution.Id`; `$v.a` becomes root
/// `Variable("v")` and path `$.a`.
#[derive(Clone, Debug, PartialEq)]
pub struct PathExpr {
    pub text: String,
    pub root: PathRoot,
    pub path: JsonPath,
    /// For `$$.Map.Item...`: the rest of the path, applied to the item's context directly
    /// (an ItemSelector evaluates such paths once per item; building `$$` each time is waste).
    pub map_item: Option<JsonPath>,
    /// For `$$.Map.Item.Value...`: the rest of the path, applied to the item's value (an
    /// ItemSelector that reads only the value does not build `$$.Map.Item` at all). Boxed:
    /// most paths have none, and templates hold many paths.
    pub item_value: Option<Box<JsonPath>>,
}

impl PathExpr {
    pub fn parse(text: &str) -> Result<PathExpr, PathSyntaxError> {
        let syntax = |message: &str| PathSyntaxError { message: message.to_string() };
        let (root, rest) = if let Some(rest) = text.strip_prefix("$$") {
            (PathRoot::Context, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            let name_len = rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            if name_len == 0 {
                (PathRoot::Input, rest)
            } else {
                (PathRoot::Variable(rest[..name_len].to_string()), &rest[name_len..])
            }
        } else {
            return Err(syntax("a path must start with '$'"));
        };
        let path = JsonPath::parse(&format!("${rest}"))?;
        let after = |names: &[&str]| if root == PathRoot::Context { path.after_names(names) } else { None };
        let (map_item, item_value) = (after(&["Map", "Item"]), after(&["Map", "Item", "Value"]).map(Box::new));
        Ok(PathExpr { text: text.to_string(), root, path, map_item, item_value })
    }

    /// Whether `text` looks like a path (starts with `$`).
    pub fn looks_like_path(text: &str) -> bool {
        text.starts_with('$')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_recognised() {
        assert_eq!(PathExpr::parse("$.a").unwrap().root, PathRoot::Input);
        assert_eq!(PathExpr::parse("$").unwrap().root, PathRoot::Input);
        assert_eq!(PathExpr::parse("$$.Execution.Id").unwrap().root, PathRoot::Context);
        let var = PathExpr::parse("$counter.value").unwrap();
        assert_eq!(var.root, PathRoot::Variable("counter".into()));
        assert_eq!(var.path.as_str(), "$.value");
        assert_eq!(PathExpr::parse("$x").unwrap().path.as_str(), "$");
        assert!(PathExpr::parse("a.b").is_err());
    }
}
