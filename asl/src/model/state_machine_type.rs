use serde::{Deserialize, Serialize};

/// STANDARD (exactly-once, full history) or EXPRESS (at-least-once, in memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateMachineType {
    #[default]
    Standard,
    Express,
}

impl std::str::FromStr for StateMachineType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "STANDARD" => Ok(StateMachineType::Standard),
            "EXPRESS" => Ok(StateMachineType::Express),
            other => Err(format!("unknown state machine type '{other}' (expected STANDARD or EXPRESS)")),
        }
    }
}

impl std::fmt::Display for StateMachineType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateMachineType::Standard => "STANDARD",
            StateMachineType::Express => "EXPRESS",
        })
    }
}
