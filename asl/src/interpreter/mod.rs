//! The interpreter: runs one execution of a [`StateMachine`] to its end, recording AWS
//! history events (features.md §1–2.2).
//!
//! Everything outside the language comes through [`Environment`]: the clock, the task
//! invoker and randomness. Given the same environment answers, an execution is
//! deterministic — which is what lets a coordinator replay it from its recorded history.

mod choice;
pub(crate) mod context_object;
pub(crate) mod data_flow;
mod distributed_map;
mod map;
mod parallel;
mod retry;
mod runner;
pub(crate) mod scope;
mod task;
mod wait;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Clock;
use crate::history::{EventSink, HistoryEvent};
use crate::map_run::MapRunExecutor;
use crate::model::{StateMachine, StateMachineType};
use crate::payload::Payload;
use crate::task::TaskInvoker;

pub use choice::{compare, wildcard_match};
pub use context_object::{ExecutionContext, RedriveCount};
pub use scope::Scope;

/// Who and what an execution is: names, ARNs and input.
#[derive(Clone, Debug)]
pub struct ExecutionSpec {
    pub execution_arn: String,
    pub execution_name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub machine_type: StateMachineType,
    pub region: String,
    pub account: String,
    /// The input; text (a Distributed Map child's batch, rendered from its source) reaches a
    /// first Task state that passes it on untouched without ever being parsed.
    pub input: Payload,
    /// `$$.Execution.RedriveCount`: how often the execution was redriven.
    pub redrive_count: RedriveCount,
}

impl ExecutionSpec {
    /// A spec with AWS-format ARNs built from names, account and region.
    pub fn new(
        state_machine_name: &str,
        execution_name: &str,
        machine_type: StateMachineType,
        account: &str,
        region: &str,
        input: impl Into<Payload>,
    ) -> ExecutionSpec {
        // An Express execution ARN carries a third part, the execution's own id, because
        // Express names need not be unique: `...:express:<machine>:<name>:<uuid>`.
        let execution_arn = match machine_type {
            StateMachineType::Standard => {
                format!("arn:aws:states:{region}:{account}:execution:{state_machine_name}:{execution_name}")
            }
            StateMachineType::Express => format!(
                "arn:aws:states:{region}:{account}:express:{state_machine_name}:{execution_name}:{}",
                uuid::Uuid::new_v4()
            ),
        };
        ExecutionSpec {
            execution_arn,
            execution_name: execution_name.to_string(),
            state_machine_arn: format!("arn:aws:states:{region}:{account}:stateMachine:{state_machine_name}"),
            state_machine_name: state_machine_name.to_string(),
            role_arn: format!("arn:aws:iam::{account}:role/stepmap-execution"),
            machine_type,
            region: region.to_string(),
            account: account.to_string(),
            input: input.into(),
            redrive_count: RedriveCount::fixed(0),
        }
    }
}

/// Source of randomness (`States.UUID`, `States.MathRandom`, retry jitter).
pub type RandomSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the execution may use from the outside world.
#[derive(Clone)]
pub struct Environment {
    pub clock: Arc<dyn Clock>,
    pub invoker: Arc<dyn TaskInvoker>,
    pub random: RandomSource,
    /// Runs Distributed Map states; without one, such a state fails with `States.Runtime`.
    pub map_runs: Option<Arc<dyn MapRunExecutor>>,
    /// Receives every history event of this execution as it is recorded, and gates progress
    /// on it (see [`EventSink`]): the coordinator commits each event through Raft before the
    /// execution proceeds. `None` (the default) keeps the history in memory only. Child
    /// executions of a Distributed Map never inherit it.
    pub events: Option<Arc<dyn EventSink>>,
    /// Whether history events carry the states' inputs and outputs (AWS's shape). Map run
    /// children whose history nobody reads turn it off: serializing every payload several
    /// times per state is most of their cost. Event types, ids and errors are kept.
    pub history_payloads: bool,
}

impl Environment {
    /// An environment with thread-local OS-seeded randomness.
    pub fn new(clock: Arc<dyn Clock>, invoker: Arc<dyn TaskInvoker>) -> Environment {
        Environment {
            clock,
            invoker,
            random: Arc::new(rand::random::<u64>),
            map_runs: None,
            events: None,
            history_payloads: true,
        }
    }

    /// The same environment, handing history events to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Environment {
        self.events = Some(sink);
        self
    }

    /// The same environment, recording history events without input and output payloads.
    pub fn without_history_payloads(mut self) -> Environment {
        self.history_payloads = false;
        self
    }

    /// The same environment, running Distributed Maps with `executor`.
    pub fn with_map_runs(mut self, executor: Arc<dyn MapRunExecutor>) -> Environment {
        self.map_runs = Some(executor);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }
}

/// How an execution ended.
#[derive(Clone, Debug)]
pub struct ExecutionOutcome {
    pub status: ExecutionStatus,
    /// The output; text when the last state passed a Task's result through untouched (a
    /// value is built only by who needs one: [`Payload::into_value`]).
    pub output: Option<Payload>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The state in which the execution failed, when it failed in one.
    pub failed_state: Option<String>,
    pub start_time: DateTime<Utc>,
    pub stop_time: DateTime<Utc>,
    pub history: Vec<HistoryEvent>,
}

/// Runs an execution to its end.
pub async fn run_execution(machine: Arc<StateMachine>, spec: ExecutionSpec, env: Environment) -> ExecutionOutcome {
    runner::Runner::new(machine, spec, env).run().await
}

#[cfg(test)]
mod event_sink_tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::clock::VirtualClock;
    use crate::failure::Failure;
    use crate::history::EventSink;
    use crate::task::TaskRequest;

    /// Records which events were handed over and which of their futures completed.
    #[derive(Default)]
    struct Ledger {
        recorded: Mutex<Vec<(u64, String)>>,
        committed: Mutex<Vec<u64>>,
    }

    struct Sink(Arc<Ledger>);

    impl EventSink for Sink {
        fn record(&self, event: &HistoryEvent) -> BoxFuture<'static, ()> {
            self.0.recorded.lock().unwrap().push((event.id, event.event_type.clone()));
            let ledger = self.0.clone();
            let id = event.id;
            Box::pin(async move { ledger.committed.lock().unwrap().push(id) })
        }
    }

    /// Checks, when the task runs, that every event recorded so far has been committed.
    struct CheckingInvoker(Arc<Ledger>);

    impl TaskInvoker for CheckingInvoker {
        fn invoke(&self, _request: TaskRequest) -> BoxFuture<'static, Result<crate::payload::Payload, Failure>> {
            let recorded = self.0.recorded.lock().unwrap().len() as u64;
            let committed = self.0.committed.lock().unwrap().clone();
            assert_eq!(committed, (1..=recorded).collect::<Vec<_>>(), "a task ran before its events were committed");
            Box::pin(async { Ok(json!({"done": true}).into()) })
        }
    }

    #[test]
    fn every_event_reaches_the_sink_and_is_committed_before_the_execution_proceeds() {
        let definition = json!({
            "StartAt": "P",
            "States": {
                "P": {"Type": "Pass", "Next": "W"},
                "W": {"Type": "Wait", "Seconds": 5, "Next": "T"},
                "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true}
            }
        });
        let machine = Arc::new(StateMachine::from_value(definition).unwrap());
        let ledger = Arc::new(Ledger::default());
        let clock = VirtualClock::new(chrono::Utc::now());
        let env = Environment::new(Arc::new(clock.clone()), Arc::new(CheckingInvoker(ledger.clone())))
            .with_events(Arc::new(Sink(ledger.clone())));
        let spec = ExecutionSpec::new("m", "e", StateMachineType::Standard, "123456789012", "us-east-1", json!({}));
        let outcome = clock.block_on(run_execution(machine, spec, env));
        assert_eq!(outcome.status, ExecutionStatus::Succeeded);
        let recorded = ledger.recorded.lock().unwrap().clone();
        let ids: Vec<u64> = recorded.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=outcome.history.len() as u64).collect::<Vec<_>>());
        assert_eq!(recorded.last().unwrap().1, "ExecutionSucceeded");
        assert_eq!(*ledger.committed.lock().unwrap(), ids, "every event committed once, in order");
    }
}
