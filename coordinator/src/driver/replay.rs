//! Deterministic replay: how a new leader continues an execution from its committed history.
//!
//! The interpreter is restarted from the execution's start with an environment that answers
//! as the first run was answered, for as long as the recorded history lasts:
//!
//! - the clock's `now` is the timestamp of the event about to be recorded, and sleeps that
//!   the first run got past (events exist after them) end at once;
//! - a Task whose outcome was recorded (`...Succeeded` / `...Failed`) gets that outcome
//!   instead of running again; one recorded as timed out never answers, so its timer wins;
//! - randomness comes from the execution's seed.
//!
//! Once the regenerated events pass the recorded ones, the environment is the real one: the
//! wall clock, the real invoker. The sink (`event_commit.rs`) skips events already
//! committed and checks that each regenerated one has the recorded type and state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use stepmap_asl::clock::{Clock, SystemClock};
use stepmap_asl::failure::Failure;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::interpreter::RandomSource;
use stepmap_asl::task::{TaskInvoker, TaskRequest};

/// The recorded history of one execution and how far the rerun has got through it.
pub struct Replay {
    recorded: Vec<HistoryEvent>,
    /// The id of the last event the rerun recorded (0 before the first).
    cursor: AtomicU64,
}

impl Replay {
    pub fn new(recorded: Vec<HistoryEvent>) -> Arc<Self> {
        Arc::new(Self { recorded, cursor: AtomicU64::new(0) })
    }

    /// The recorded event with `id`, if the first run got that far.
    pub fn recorded(&self, id: u64) -> Option<&HistoryEvent> {
        id.checked_sub(1).and_then(|index| self.recorded.get(index as usize))
    }

    pub fn recorded_len(&self) -> u64 {
        self.recorded.len() as u64
    }

    /// Notes that the rerun recorded event `id`.
    pub fn advance_to(&self, id: u64) {
        self.cursor.fetch_max(id, Ordering::SeqCst);
    }

    /// The next event the rerun will record, if it is still within the recorded history.
    fn next_recorded(&self) -> Option<&HistoryEvent> {
        self.recorded(self.cursor.load(Ordering::SeqCst) + 1)
    }

    fn replaying(&self) -> bool {
        self.next_recorded().is_some()
    }
}

/// The wall clock, except while replaying (see the module documentation).
pub struct ReplayClock {
    pub replay: Arc<Replay>,
}

impl Clock for ReplayClock {
    fn now(&self) -> DateTime<Utc> {
        match self.replay.next_recorded() {
            Some(event) => event.timestamp,
            // Never before what was recorded, should the wall clock have stepped back.
            None => match self.replay.recorded.last() {
                Some(last) => Utc::now().max(last.timestamp),
                None => Utc::now(),
            },
        }
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        if self.replay.replaying() {
            return Box::pin(std::future::ready(()));
        }
        SystemClock.sleep_until(deadline)
    }
}

/// The real invoker, except for tasks whose outcome is recorded.
pub struct ReplayInvoker {
    pub replay: Arc<Replay>,
    pub inner: Arc<dyn TaskInvoker>,
}

impl TaskInvoker for ReplayInvoker {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, Failure>> {
        // The interpreter invokes right after recording `...Started`: the next recorded
        // event, if any, is this attempt's outcome.
        let Some(outcome) = self.replay.next_recorded() else { return self.inner.invoke(request) };
        let details = outcome.details.clone().unwrap_or_default();
        let text = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_owned);
        if outcome.event_type.ends_with("Succeeded") {
            let output = text("output").and_then(|output| serde_json::from_str(&output).ok()).unwrap_or(Value::Null);
            Box::pin(std::future::ready(Ok(output)))
        } else if outcome.event_type.ends_with("Failed") {
            Box::pin(std::future::ready(Err(Failure { error: text("error"), cause: text("cause") })))
        } else {
            // Timed out the first time: the interpreter's timer (already due) decides again.
            Box::pin(std::future::pending())
        }
    }
}

/// SplitMix64 from the execution's seed: the same numbers on every run of the execution.
pub fn seeded_random(seed: u64) -> RandomSource {
    let state = AtomicU64::new(seed);
    Arc::new(move || {
        let mut z = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}
