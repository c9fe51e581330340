//! The boundary between the interpreter and whatever runs Task states.
//!
//! The interpreter never performs I/O itself: a Task's effective input is handed to a
//! [`TaskInvoker`], which returns the task's result or an ASL [`Failure`]. The result is
//! already in the shape AWS gives for the resource (e.g. `{"Payload": ..., "StatusCode":
//! 200, ...}` for `arn:aws:states:::lambda:invoke`, the bare payload for a Lambda function
//! ARN), so the interpreter applies ResultSelector/ResultPath to it unchanged.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::failure::Failure;
use crate::payload::Payload;
use crate::resource::Resource;

/// One invocation of a Task state's resource.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// The `Resource` string exactly as written in the definition.
    pub resource_arn: String,
    /// The classified resource.
    pub resource: Resource,
    /// Name of the Task state (for messages and logs).
    pub state_name: String,
    /// The effective input: the state input after InputPath and Parameters (text when the
    /// state input was text and neither looked inside it).
    pub parameters: Payload,
    /// TimeoutSeconds as resolved for this attempt; the interpreter enforces it too, this is
    /// a hint so an invoker can stop work that will be discarded anyway.
    pub timeout: Option<Duration>,
    /// Region and account of the execution, for ARNs an invoker builds.
    pub region: String,
    pub account: String,
    /// `$$.Task.Token` of this attempt: set for activities and `.waitForTaskToken`
    /// integrations, whose result arrives through SendTaskSuccess / SendTaskFailure.
    pub task_token: Option<String>,
    /// HeartbeatSeconds as resolved for this attempt (activities and callbacks).
    pub heartbeat: Option<Duration>,
    /// When TimeoutSeconds started counting (the `...Started` event), so that an invoker
    /// keeping its own deadlines (a callback's token) keeps the interpreter's; `None` for
    /// activities, whose clocks start when a worker takes the task.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the invoker reports milestones within the attempt; the interpreter records
    /// each as a history event (once per attempt, however often it is reported).
    pub progress: Option<TaskProgressSender>,
}

/// A milestone of a running Task attempt that has its own history event.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskProgress {
    /// An activity worker took the task (GetActivityTask): `ActivityStarted`. The task's
    /// TimeoutSeconds and HeartbeatSeconds count from here.
    ActivityStarted { worker_name: String },
    /// The service call of a `.waitForTaskToken` task returned `output`: `TaskSubmitted`.
    Submitted { output: Value },
    /// A local warm pool queued the invocation for a free process: waiting for one would not
    /// take the function's time on Lambda (which scales out), so the task's TimeoutSeconds
    /// stops counting until [`TaskProgress::Dispatched`]. No event is recorded.
    Queued,
    /// The queued invocation was handed to a process: TimeoutSeconds counts from here.
    Dispatched,
}

pub type TaskProgressSender = futures::channel::mpsc::UnboundedSender<TaskProgress>;

impl TaskRequest {
    /// Reports `progress` to the interpreter, if it listens.
    pub fn report(&self, progress: TaskProgress) {
        if let Some(sender) = &self.progress {
            let _ = sender.unbounded_send(progress);
        }
    }
}

/// Runs Task resources. Implementations live outside `asl` (the worker crate); tests use
/// in-memory ones.
pub trait TaskInvoker: Send + Sync {
    /// Runs the task. `Err` is an ASL failure (it goes through Retry/Catch), e.g.
    /// `States.TaskFailed`, a Lambda `errorType`, or `States.Timeout`. A result that arrived
    /// as JSON text may stay text ([`Payload::Text`]): the interpreter parses it only if a
    /// state looks inside it.
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>>;
}
