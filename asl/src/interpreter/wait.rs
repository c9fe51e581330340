//! The Wait state (features.md §1.3 Wait), with AWS's runtime error texts.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::data_flow::{shown, Unresolved};
use super::runner::{Exit, Runner, Visit};
use super::scope::Scope;
use crate::failure::Failure;
use crate::model::{Transition, WaitState};
use crate::timestamp;

/// AWS rejects delays beyond 2^31 - 1 seconds ("Wait state delay is too long.").
const MAX_DELAY_SECONDS: i64 = i32::MAX as i64;

impl Runner {
    pub(super) async fn wait(
        &self,
        visit: &Visit<'_>,
        s: &WaitState,
        input: Value,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let (effective, deadline, assigned) = {
            let eval = self.eval(visit, scope, None);
            let effective = eval.select_path(&s.input_path, &input)?;
            let now = visit.entered_at;
            let deadline: DateTime<Utc> = if let Some(seconds) = &s.seconds {
                let seconds = seconds.as_i64().unwrap_or_default();
                now + TimeDelta::seconds(seconds.clamp(0, MAX_DELAY_SECONDS))
            } else if let Some(text) = &s.timestamp {
                timestamp::parse(text)
                    .ok_or_else(|| eval.runtime(format!("The Timestamp field is not a valid timestamp: {text}")))?
                    .with_timezone(&Utc)
            } else if let Some(path) = &s.seconds_path {
                let value = match eval.resolve(path, &effective) {
                    Ok(value) => value,
                    Err(Unresolved::NoVariable(name)) => {
                        return Err(eval.runtime(format!("The variable '${name}' could not be found.")))
                    }
                    Err(Unresolved::Missing(_)) => {
                        return Err(eval.runtime(format!(
                            "The SecondsPath parameter does not reference an input value: {}",
                            path.text
                        )))
                    }
                };
                let seconds = match &value {
                    Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64(),
                    _ => None,
                }
                .ok_or_else(|| {
                    eval.runtime(format!(
                        "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                        path.text,
                        shown(&value)
                    ))
                })?;
                if seconds < 0 {
                    return Err(eval.runtime(format!(
                        "The SecondsPath parameter references a negative value: {} == {seconds}",
                        path.text
                    )));
                }
                if seconds > MAX_DELAY_SECONDS {
                    return Err(eval.runtime("Wait state delay is too long."));
                }
                now + TimeDelta::seconds(seconds)
            } else if let Some(path) = &s.timestamp_path {
                let value = eval.resolve(path, &effective).map_err(|_| {
                    eval.runtime(format!(
                        "The TimestampPath parameter does not reference an input value: {}",
                        path.text
                    ))
                })?;
                let parsed = value.as_str().and_then(timestamp::parse).ok_or_else(|| {
                    eval.runtime(format!(
                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                        path.text,
                        shown(&value)
                    ))
                })?;
                parsed.with_timezone(&Utc)
            } else {
                now
            };
            if (deadline - now).num_seconds() > MAX_DELAY_SECONDS {
                return Err(eval.runtime("Wait state delay is too long."));
            }
            let assigned = match &s.assign {
                Some(assign) => eval.assign(assign, &effective)?,
                None => Vec::new(),
            };
            (effective, deadline, assigned)
        };
        self.history.flush().await;
        self.env.clock.sleep_until(deadline).await;
        let eval = self.eval(visit, scope, None);
        let output = eval.select_path_owned(&s.output_path, effective)?;
        Ok(Exit { output: output.into(), transition: Transition::from_fields(&s.next), assigned })
    }
}
