//! Retry and Catch (features.md §1.9).

use std::time::Duration;

use crate::failure::Failure;
use crate::model::{error_matches, Catcher, JitterStrategy, Retrier};

/// Attempt counters of one state execution, one per retrier; they persist across the
/// retries of this visit and reset when the state is entered again.
#[derive(Debug, Default)]
pub struct RetryCounters {
    attempts: Vec<u64>,
    /// Total retries so far (`$$.State.RetryCount`).
    pub total: u64,
}

impl RetryCounters {
    /// The delay before the next attempt, or `None` when no retrier applies or the one that
    /// applies is exhausted. `random` gives a number in [0, 1) for FULL jitter.
    pub fn next_delay(
        &mut self,
        retriers: &[Retrier],
        failure: &Failure,
        random: impl FnOnce() -> f64,
    ) -> Option<Duration> {
        if !failure.is_catchable() {
            return None;
        }
        let index = retriers.iter().position(|r| error_matches(&r.error_equals, failure.error_name()))?;
        let retrier = &retriers[index];
        if self.attempts.len() < retriers.len() {
            self.attempts.resize(retriers.len(), 0);
        }
        let attempt = self.attempts[index];
        if attempt >= retrier.max_attempts {
            return None;
        }
        self.attempts[index] += 1;
        self.total += 1;
        let mut seconds = retrier.interval_seconds * retrier.backoff_rate.powf(attempt as f64);
        if let Some(max) = retrier.max_delay_seconds {
            seconds = seconds.min(max);
        }
        if retrier.jitter_strategy == Some(JitterStrategy::Full) {
            seconds *= random();
        }
        Some(Duration::from_secs_f64(seconds.clamp(0.0, 1.0e9)))
    }
}

/// The first catcher whose `ErrorEquals` matches, unless the failure is uncatchable.
pub fn find_catcher<'a>(catchers: &'a [Catcher], failure: &Failure) -> Option<&'a Catcher> {
    if !failure.is_catchable() {
        return None;
    }
    catchers.iter().find(|c| error_matches(&c.error_equals, failure.error_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrier(json: serde_json::Value) -> Retrier {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn backoff_caps_and_exhaustion() {
        let retriers = vec![retrier(serde_json::json!({
            "ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 4, "MaxDelaySeconds": 10
        }))];
        let failure = Failure::new("Boom", "x");
        let mut counters = RetryCounters::default();
        let delays: Vec<_> =
            std::iter::from_fn(|| counters.next_delay(&retriers, &failure, || 0.5)).map(|d| d.as_secs()).collect();
        assert_eq!(delays, vec![2, 6, 10, 10]);
        assert_eq!(counters.total, 4);
    }

    #[test]
    fn runtime_errors_are_never_retried_or_caught() {
        let retriers = vec![retrier(serde_json::json!({"ErrorEquals": ["States.ALL"]}))];
        let failure = Failure::runtime("bad path");
        assert!(RetryCounters::default().next_delay(&retriers, &failure, || 0.0).is_none());
        let catchers: Vec<Catcher> =
            serde_json::from_value(serde_json::json!([{"ErrorEquals": ["States.ALL"], "Next": "X"}])).unwrap();
        assert!(find_catcher(&catchers, &failure).is_none());
    }

    #[test]
    fn task_failed_matches_all_but_timeout() {
        let retriers = vec![retrier(serde_json::json!({"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}))];
        let mut counters = RetryCounters::default();
        assert!(counters.next_delay(&retriers, &Failure::new("States.Timeout", ""), || 0.0).is_none());
        assert!(counters.next_delay(&retriers, &Failure::new("Lambda.Unknown", ""), || 0.0).is_some());
    }

    #[test]
    fn full_jitter_scales_the_delay() {
        let retriers = vec![retrier(serde_json::json!({
            "ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "JitterStrategy": "FULL"
        }))];
        let delay = RetryCounters::default().next_delay(&retriers, &Failure::new("E", ""), || 0.25).unwrap();
        assert_eq!(delay.as_secs_f64(), 2.5);
    }
}
