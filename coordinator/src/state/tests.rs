//! Table and property tests of `apply` (DESIGN.md §5, layer 1).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;
use stepmap_asl::history::HistoryEvent;
use stepmap_asl::model::StateMachineType;

use super::*;
use crate::StateMachine as _;

const DEFINITION: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(seconds)
}

fn machine() -> StateMachineArn {
    ArnScope::default().state_machine("m")
}

fn create(name: &str, definition: &str) -> Command {
    Command::CreateStateMachine {
        arn: ArnScope::default().state_machine(name),
        name: name.into(),
        definition: definition.into(),
        machine_type: StateMachineType::Standard,
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        date: t(0),
        revision_id: "r1".into(),
    }
}

fn start(name: &str, input: &str) -> Command {
    Command::StartExecution { arn: machine().execution(name), input: input.into(), date: t(1), seed: 7 }
}

fn event(id: u64, event_type: &str, details: Option<serde_json::Value>) -> HistoryEvent {
    HistoryEvent { id, previous_event_id: id - 1, timestamp: t(id as i64), event_type: event_type.into(), details }
}

fn record(name: &str, events: Vec<HistoryEvent>) -> Command {
    Command::RecordEvents { arn: machine().execution(name), events }
}

fn with_machine() -> ReplicatedState {
    let mut state = ReplicatedState::default();
    state.execute(create("m", DEFINITION)).unwrap();
    state
}

#[test]
fn create_state_machine_is_idempotent_for_the_same_definition_only() {
    let mut state = with_machine();
    assert!(matches!(state.execute(create("m", DEFINITION)), Ok(Response::StateMachineCreated { .. })));
    let error = state.execute(create("m", r#"{"StartAt":"X"}"#)).unwrap_err();
    assert_eq!(error.exception_name(), "StateMachineAlreadyExists");
}

#[test]
fn start_execution_idempotency_follows_aws() {
    let mut state = with_machine();
    assert!(matches!(state.execute(start("e", "{}")), Ok(Response::ExecutionStarted { created: true, .. })));
    // Same name, same input, still running: the existing execution.
    assert!(matches!(state.execute(start("e", "{}")), Ok(Response::ExecutionStarted { created: false, .. })));
    // Same name, different input.
    assert_eq!(state.execute(start("e", r#"{"a":1}"#)).unwrap_err().exception_name(), "ExecutionAlreadyExists");
    // Closed: even the same input is refused.
    state.execute(record("e", vec![event(1, "ExecutionStarted", None)])).unwrap();
    state.execute(record("e", vec![event(2, "ExecutionSucceeded", Some(json!({"output": "{}"})))])).unwrap();
    assert_eq!(state.execute(start("e", "{}")).unwrap_err().exception_name(), "ExecutionAlreadyExists");
    // Unknown machine.
    let other = ArnScope::default().state_machine("nope").execution("e");
    let error = state.execute(Command::StartExecution { arn: other, input: "{}".into(), date: t(0), seed: 0 });
    assert_eq!(error.unwrap_err().exception_name(), "StateMachineDoesNotExist");
}

#[test]
fn events_append_in_order_skip_repeats_and_close_the_execution() {
    let mut state = with_machine();
    state.execute(start("e", "{}")).unwrap();
    let started = event(1, "ExecutionStarted", None);
    let entered = event(2, "PassStateEntered", Some(json!({"name": "P"})));
    assert_eq!(
        state.execute(record("e", vec![started.clone(), entered.clone()])),
        Ok(Response::EventsRecorded { last_event_id: 2 })
    );
    // A replayed commit of events already held is accepted and changes nothing.
    assert_eq!(state.execute(record("e", vec![started, entered])), Ok(Response::EventsRecorded { last_event_id: 2 }));
    // A gap is refused.
    let gap = state.execute(record("e", vec![event(4, "PassStateExited", None)])).unwrap_err();
    assert_eq!(gap.exception_name(), "ValidationException");
    let execution = &state.executions[&machine().execution("e")];
    assert_eq!(execution.history.len(), 2);
    assert_eq!(execution.status, ExecutionStatus::Running);

    state
        .execute(record(
            "e",
            vec![
                event(3, "PassStateExited", None),
                event(4, "ExecutionFailed", Some(json!({"error": "E", "cause": "C"}))),
            ],
        ))
        .unwrap();
    let execution = &state.executions[&machine().execution("e")];
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!((execution.error.as_deref(), execution.cause.as_deref()), (Some("E"), Some("C")));
    assert_eq!(execution.stop_date, Some(t(4)));
    let late = state.execute(record("e", vec![event(5, "PassStateEntered", None)])).unwrap_err();
    assert_eq!(late.exception_name(), "ExecutionNotRunning");
}

#[test]
fn stop_execution_appends_execution_aborted() {
    let mut state = with_machine();
    state.execute(start("e", "{}")).unwrap();
    state.execute(record("e", vec![event(1, "ExecutionStarted", None)])).unwrap();
    let arn = machine().execution("e");
    let stop = Command::StopExecution { arn: arn.clone(), error: Some("Why".into()), cause: None, date: t(9) };
    assert_eq!(state.execute(stop.clone()), Ok(Response::ExecutionStopped { stop_date: t(9) }));
    let execution = &state.executions[&arn];
    assert_eq!(execution.status, ExecutionStatus::Aborted);
    assert_eq!(execution.history.last().unwrap().event_type, "ExecutionAborted");
    assert_eq!(execution.history.last().unwrap().id, 2);
    assert_eq!(execution.error.as_deref(), Some("Why"));
    assert_eq!(state.execute(stop).unwrap_err().exception_name(), "ExecutionNotRunning");
    let missing = Command::StopExecution { arn: machine().execution("x"), error: None, cause: None, date: t(9) };
    assert_eq!(state.execute(missing).unwrap_err().exception_name(), "ExecutionDoesNotExist");
}

#[test]
fn update_keeps_running_executions_on_their_definition() {
    let mut state = with_machine();
    state.execute(start("e", "{}")).unwrap();
    let update = Command::UpdateStateMachine {
        arn: machine(),
        definition: Some("{}".into()),
        role_arn: None,
        date: t(5),
        revision_id: "r2".into(),
    };
    assert!(matches!(state.execute(update), Ok(Response::StateMachineUpdated { .. })));
    assert_eq!(state.state_machines[&machine()].definition, "{}");
    assert_eq!(state.executions[&machine().execution("e")].definition, DEFINITION);
}

#[test]
fn task_tokens_complete_once_and_respect_deadlines() {
    let mut state = with_machine();
    state.execute(start("e", "{}")).unwrap();
    let activity = ArnScope::default().activity("a");
    state.execute(Command::CreateActivity { arn: activity.clone(), name: "a".into(), date: t(0) }).unwrap();
    let issue = |token: &str, date| {
        let record = TaskTokenRecord::issue(
            token.into(),
            machine().execution("e"),
            "T".into(),
            Some(activity.clone()),
            "{}".into(),
            Some(100),
            Some(10),
            date,
        );
        Command::IssueTaskToken { record: Box::new(record) }
    };
    state.execute(issue("tok", t(0))).unwrap();
    // An activity's clocks start when a worker takes it, oldest task first.
    assert_eq!(state.task_tokens["tok"].heartbeat_at, None);
    state.execute(issue("second", t(1))).unwrap();
    assert_eq!(state.next_activity_task(&activity).as_deref(), Some("tok"));
    let take = |token: &str, date| Command::StartActivityTask { token: token.into(), worker_name: "w".into(), date };
    assert!(matches!(state.execute(take("tok", t(2))), Ok(Response::ActivityTaskStarted { .. })));
    assert_eq!(state.execute(take("tok", t(3))).unwrap_err().exception_name(), "TaskDoesNotExist");
    assert_eq!(state.task_tokens["tok"].heartbeat_at, Some(t(12)));
    state.execute(Command::HeartbeatTaskToken { token: "tok".into(), date: t(8) }).unwrap();
    assert_eq!(state.task_tokens["tok"].heartbeat_at, Some(t(18)));
    let late = Command::CompleteTaskToken {
        token: "tok".into(),
        outcome: TaskTokenOutcome::Succeeded { output: "1".into() },
        date: t(19),
    };
    assert_eq!(state.execute(late).unwrap_err().exception_name(), "TaskTimedOut");
    let done = Command::CompleteTaskToken {
        token: "tok".into(),
        outcome: TaskTokenOutcome::Succeeded { output: "1".into() },
        date: t(17),
    };
    state.execute(done.clone()).unwrap();
    assert_eq!(state.execute(done).unwrap_err().exception_name(), "TaskTimedOut");
    let unknown = Command::HeartbeatTaskToken { token: "nope".into(), date: t(1) };
    assert_eq!(state.execute(unknown).unwrap_err().exception_name(), "TaskDoesNotExist");
    // A token times out only once its deadline has passed; afterwards it is closed.
    let early = Command::TimeOutTaskToken { token: "second".into(), date: t(1) };
    assert_eq!(state.execute(early).unwrap_err().exception_name(), "ValidationException");
    state.execute(take("second", t(20))).unwrap();
    state.execute(Command::TimeOutTaskToken { token: "second".into(), date: t(31) }).unwrap();
    assert!(!state.task_tokens["second"].is_open());
    // Tokens of a closed execution cannot be completed.
    state.execute(issue("third", t(35))).unwrap();
    state
        .execute(Command::StopExecution { arn: machine().execution("e"), error: None, cause: None, date: t(40) })
        .unwrap();
    let after_stop = Command::HeartbeatTaskToken { token: "third".into(), date: t(41) };
    assert_eq!(state.execute(after_stop).unwrap_err().exception_name(), "TaskTimedOut");
    assert_eq!(state.next_activity_task(&activity), None);
}

#[test]
fn undecodable_commands_are_refused_not_fatal() {
    let mut state = ReplicatedState::default();
    let outcome = decode_outcome(&state.apply(1, b"not json")).unwrap();
    assert_eq!(outcome.unwrap_err().exception_name(), "ValidationException");
    assert_eq!(state.applied_index, 1);
}

/// Commands over a small name space, so that collisions (repeats, conflicts) are common.
fn command_strategy() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(vec!["a", "b", "c"]);
    let input = prop::sample::select(vec!["{}", r#"{"x":1}"#]);
    prop_oneof![
        name.clone().prop_map(|n| start(n, "{}")),
        (name.clone(), input).prop_map(|(n, i)| start(n, i)),
        (
            name.clone(),
            1u64..6,
            prop::sample::select(vec!["PassStateEntered", "ExecutionSucceeded", "ExecutionFailed"])
        )
            .prop_map(|(n, id, kind)| record(n, vec![event(id, kind, Some(json!({"output": "{}", "error": "E"})))])),
        (name.clone(), 0i64..50).prop_map(|(n, s)| Command::StopExecution {
            arn: machine().execution(n),
            error: None,
            cause: None,
            date: t(s)
        }),
        Just(create("m", DEFINITION)),
        Just(Command::DeleteStateMachine { arn: machine() }),
    ]
}

proptest! {
    /// Replicas agree: applying the same log gives the same state and the same responses,
    /// also on a replica restored from a snapshot taken half way.
    #[test]
    fn replay_and_snapshots_agree(commands in prop::collection::vec(command_strategy(), 1..60), cut in 0usize..60) {
        let mut first = ReplicatedState::default();
        let mut second = ReplicatedState::default();
        let cut = cut.min(commands.len());
        let mut responses = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            responses.push(first.apply(i as u64 + 1, &command.encode()));
        }
        for (i, command) in commands[..cut].iter().enumerate() {
            second.apply(i as u64 + 1, &command.encode());
        }
        let mut restored = ReplicatedState::default();
        restored.restore(&second.snapshot()).unwrap();
        prop_assert_eq!(&restored, &second);
        for (i, command) in commands.iter().enumerate().skip(cut) {
            prop_assert_eq!(&restored.apply(i as u64 + 1, &command.encode()), &responses[i]);
        }
        prop_assert_eq!(&restored, &first);
    }

    /// Histories stay gap-free and closed executions stay closed, whatever arrives.
    #[test]
    fn histories_are_contiguous_and_terminal_events_are_last(commands in prop::collection::vec(command_strategy(), 1..80)) {
        let mut state = ReplicatedState::default();
        for command in commands {
            let _ = state.execute(command);
        }
        for execution in state.executions.values() {
            for (i, event) in execution.history.iter().enumerate() {
                prop_assert_eq!(event.id, i as u64 + 1);
            }
            let terminal = execution.history.iter().position(|e| e.event_type.starts_with("Execution") && e.event_type != "ExecutionStarted");
            match terminal {
                Some(position) => {
                    prop_assert_eq!(position + 1, execution.history.len());
                    prop_assert!(execution.status != ExecutionStatus::Running);
                }
                None => prop_assert_eq!(execution.status, ExecutionStatus::Running),
            }
        }
    }

    /// Paging through ListExecutions yields every execution of the machine once, newest first.
    #[test]
    fn list_executions_pages_cover_everything_once(count in 0usize..40, page in 1usize..7) {
        let mut state = with_machine();
        for i in 0..count {
            state.execute(start(&format!("e{i}"), "{}")).unwrap();
        }
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let (records, next) = state.list_executions(&machine(), None, token, page);
            prop_assert!(records.len() <= page);
            seen.extend(records.into_iter().map(|r| r.name));
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..count).rev().map(|i| format!("e{i}")).collect();
        prop_assert_eq!(seen, expected);
    }
}
