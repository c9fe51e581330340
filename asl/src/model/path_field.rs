//! Path-valued fields as they appear in definitions, compiled once at load time.

use serde::{Deserialize, Deserializer};

use crate::expr::PathExpr;

/// An `InputPath`/`OutputPath`/`ResultPath`-style field: absent (the default `$`), `null`
/// (a special meaning per field), or a path.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PathField {
    #[default]
    Absent,
    Null,
    Path(PathExpr),
}

impl PathField {
    /// The path, unless the field is absent or null.
    pub fn path(&self) -> Option<&PathExpr> {
        match self {
            PathField::Path(p) => Some(p),
            _ => None,
        }
    }

    /// True when the field is absent or exactly `$` — the identity.
    pub fn is_identity(&self) -> bool {
        match self {
            PathField::Absent => true,
            PathField::Null => false,
            PathField::Path(p) => p.text == "$",
        }
    }
}

impl<'de> Deserialize<'de> for PathField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Present-but-null arrives here as None; absent fields never reach this function
        // (they take `#[serde(default)]`).
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(PathField::Null),
            Some(text) => PathExpr::parse(&text)
                .map(PathField::Path)
                .map_err(|e| serde::de::Error::custom(format!("invalid path '{text}': {e}"))),
        }
    }
}

/// A required path (Choice `Variable`, `SecondsPath`, ...).
impl<'de> Deserialize<'de> for PathExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PathExpr::parse(&text).map_err(|e| serde::de::Error::custom(format!("invalid path '{text}': {e}")))
    }
}
