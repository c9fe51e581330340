//! Warm handlers: a function served by a pool of long-lived Lambda runtime processes that
//! poll the Lambda Runtime API (see [`runtime_api`](super::runtime_api)), so that handlers
//! written for AWS Lambda (e.g. Python through the official `awslambdaric`) run unchanged and
//! pay their start-up once, not once per call.
//!
//! Contract, per pool of `concurrency` slots:
//! * Every slot runs one process at a time with its own Runtime API endpoint
//!   (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>`, a fresh port per process), so a request is
//!   always attributed to the process that made it: a crash fails exactly the invocation that
//!   process held. Processes start with the pool (the function's first invocation) and stay
//!   warm across invocations.
//! * Invocations wait in one queue shared by the slots; a slot takes the next one as soon as
//!   its process is free (or starting) and hands it over on the process's `next` poll.
//! * What Lambda would report is emulated as function errors, worded as for commands:
//!   a process that exits while it holds an invocation (or before its first `next`, failing
//!   the invocation that waited for it) → `Runtime.ExitError`, or the error it posted to
//!   `init/error` (e.g. `Runtime.ImportModuleError`); the function's `timeout_seconds`
//!   (counted from the hand-over of the event, as Lambda counts it; a cold start may take
//!   Lambda's 10 s init limit on top) → the process group is killed, `Sandbox.Timedout`; a
//!   response or error body over 6 MB →
//!   `Function.ResponseSizeTooLarge`.
//! * The state's `TimeoutSeconds` (`States.Timeout`) and an abandoned call (the interpreter
//!   dropped it) kill the process that runs the invocation, like for commands, so that nothing
//!   outlives its task; an invocation still waiting in the queue is simply dropped.
//! * A process that dies after it became ready is replaced at once (after a short back-off if
//!   it keeps dying while idle). One that dies before it ever polled `next` is replaced only
//!   when an invocation needs it, so a broken handler fails each invocation once (as a Lambda
//!   cold start would) instead of spinning.
//! * Dropping the [`WarmPool`] (with the last clone of the `LocalInvoker`) kills every
//!   process group of the pool.
//!
//! stdout and stderr of the processes are the function's log: every line goes to `tracing`
//! (target `stepmap_worker::function`); with `LogType: Tail` the lines read between the
//! hand-over of an event and its response form the `LogResult`.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use stepmap_asl::failure::Failure;
use stepmap_asl::task::{TaskProgress, TaskProgressSender};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::command::{describe_exit, runtime_error_payload, spawn_in_own_group, ProcessGroup, LOG_TAIL_BYTES};
use super::lambda::{service_failure, trace_id, Invocation, RawInvocation};
use super::runtime_api::{NextInvocation, RuntimeApiServer, RuntimeCall, Verdict, MAX_RESPONSE_BYTES};
use super::{compact_json, task_timeout};

/// The deadline a runtime is told about when neither the function nor the state sets a
/// timeout: Lambda's maximum function timeout (not enforced, only reported).
const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);

/// Lambda's limit on a function's init phase. Here it only extends the function timeout of an
/// invocation that waits for a cold process (see [`Assigned::deadline`]).
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// Runtime API calls buffered between one process's HTTP connections and its slot.
const CALL_BUFFER: usize = 16;

/// A process that became ready and died within this time counts as crash-looping: the next
/// restart of an idle slot waits a back-off, doubling from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`].
const SHORT_LIFE: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pool of warm processes serving one `runtime` function.
pub struct WarmPool {
    function: String,
    jobs: mpsc::UnboundedSender<Job>,
    slots: Vec<JoinHandle<()>>,
}

/// What every process of the pool is started from.
struct PoolConfig {
    function: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    region: String,
}

/// One queued invocation.
struct Job {
    request_id: String,
    executed_version: String,
    event: Bytes,
    invoked_function_arn: String,
    want_log: bool,
    function_timeout: Option<Duration>,
    /// The state's TimeoutSeconds, counted from the hand-over (the caller enforces it; the
    /// runtime is told).
    task_limit: Option<Duration>,
    /// Told when the event is handed over: the task's timeout counts from then.
    delivered: Option<oneshot::Sender<()>>,
    progress: Option<TaskProgressSender>,
    reply: oneshot::Sender<RawInvocation>,
}

impl WarmPool {
    /// Starts `concurrency` slots on the current tokio runtime; each starts its process at once.
    /// `region` becomes the processes' `AWS_REGION`.
    pub(crate) fn start(
        function: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        concurrency: usize,
        region: &str,
    ) -> WarmPool {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        let config = Arc::new(PoolConfig {
            function: function.to_string(),
            argv: argv.to_vec(),
            env: env.clone(),
            region: region.to_string(),
        });
        let slots = (0..concurrency.max(1))
            .map(|index| {
                let slot = Slot { config: Arc::clone(&config), index, queue: Arc::clone(&queue), job: None };
                tokio::spawn(slot.run())
            })
            .collect();
        tracing::info!(function, concurrency, ?argv, "warm runtime pool started");
        WarmPool { function: function.to_string(), jobs, slots }
    }

    /// Runs one invocation on the pool. `task_limit` is the state's TimeoutSeconds
    /// (`States.Timeout`), `function_timeout` the function's own (`Sandbox.Timedout`), both
    /// counted from the hand-over of the event to a process: waiting for a free one is the
    /// pool's doing, not the function's (Lambda would scale out). `progress` (the interpreter's)
    /// hears [`TaskProgress::Queued`] now and [`TaskProgress::Dispatched`] then, when there is
    /// a `task_limit`: those milestones only stop and restart its clock, and without one,
    /// telling them would only wake the caller's task once more per invocation.
    pub(crate) async fn invoke(
        &self,
        invocation: Invocation<'_>,
        invoked_function_arn: String,
        task_limit: Option<Duration>,
        function_timeout: Option<Duration>,
        progress: Option<TaskProgressSender>,
    ) -> Result<RawInvocation, Failure> {
        let (reply, answer) = oneshot::channel();
        let (delivered, handed_over) = oneshot::channel();
        let request_id = invocation.request_id.clone();
        let progress = progress.filter(|_| task_limit.is_some());
        let job = Job {
            request_id: invocation.request_id,
            executed_version: invocation.executed_version,
            event: invocation.event,
            invoked_function_arn,
            want_log: invocation.want_log,
            function_timeout,
            task_limit,
            delivered: Some(delivered),
            progress,
            reply,
        };
        let gone = || {
            service_failure(
                "ServiceException",
                &format!("the warm runtime pool of function {} is shut down", self.function),
                500,
                &request_id,
            )
        };
        if let Some(progress) = &job.progress {
            let _ = progress.unbounded_send(TaskProgress::Queued);
        }
        self.jobs.send(job).map_err(|_| gone())?;
        // Dropping `answer` (on the task timeout, or when our caller drops this future) tells
        // the slot that nobody waits any more; it then kills the process running the event.
        let answer = match task_limit {
            Some(limit) => match timeout_after_hand_over(limit, handed_over, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(function = %self.function, %request_id, "task timed out on a warm runtime");
                    return Err(task_timeout());
                }
            },
            None => answer.await,
        };
        answer.map_err(|_| gone())
    }
}

/// `answer`, or an error once `limit` has passed since the hand-over (`handed_over`; a job
/// dropped before it counts as handed over now).
async fn timeout_after_hand_over<T>(
    limit: Duration,
    handed_over: oneshot::Receiver<()>,
    mut answer: oneshot::Receiver<T>,
) -> Result<Result<T, oneshot::error::RecvError>, tokio::time::error::Elapsed> {
    tokio::select! {
        biased;
        answer = &mut answer => return Ok(answer),
        _ = handed_over => {}
    }
    tokio::time::timeout(limit, answer).await
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        // An aborted slot task drops its process guard, which kills the process group (see
        // `Slot::serve_process`); the Runtime API servers go with it.
        for slot in &self.slots {
            slot.abort();
        }
    }
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool").field("function", &self.function).field("slots", &self.slots.len()).finish()
    }
}

/// An invocation a slot has taken from the queue.
struct Assigned {
    job: Job,
    assigned_at: Instant,
    /// When the process received the event (answered its `next` poll).
    delivered_at: Option<Instant>,
}

impl Assigned {
    fn new(job: Job) -> Assigned {
        Assigned { job, assigned_at: Instant::now(), delivered_at: None }
    }

    fn delivered(&self) -> bool {
        self.delivered_at.is_some()
    }

    /// When the function's own timeout runs out, as Lambda counts it: from the hand-over of the
    /// event. An event waiting for a process that is still initialising also allows for
    /// Lambda's init phase ([`INIT_LIMIT`] from the process start), so a slow cold start is not
    /// a timeout; one waiting for a ready process counts from when the slot took it.
    fn deadline(&self, runtime: &RuntimeState) -> Option<Instant> {
        let limit = self.job.function_timeout?;
        Some(match self.delivered_at {
            Some(delivered_at) => delivered_at + limit,
            None if !runtime.ready => runtime.started.max(self.assigned_at) + INIT_LIMIT + limit,
            None => self.assigned_at + limit,
        })
    }

    /// Marks the event handed over now and builds what the runtime receives. The
    /// `Lambda-Runtime-Deadline-Ms` header is the earlier of the function's and the state's
    /// deadlines, else Lambda's maximum timeout.
    fn deliver(&mut self) -> NextInvocation {
        let now = Instant::now();
        self.delivered_at = Some(now);
        let remaining = [self.job.function_timeout, self.job.task_limit]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(MAX_FUNCTION_TIMEOUT);
        let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + remaining;
        NextInvocation {
            request_id: self.job.request_id.clone(),
            event: self.job.event.clone(),
            deadline_ms: u64::try_from(epoch_ms.as_millis()).unwrap_or(u64::MAX),
            invoked_function_arn: self.job.invoked_function_arn.clone(),
            trace_id: trace_id(),
        }
    }

    fn finish(self, payload: Vec<u8>, function_error: bool, log_result: Option<String>) {
        let raw = RawInvocation {
            request_id: self.job.request_id,
            executed_version: self.job.executed_version,
            payload,
            function_error,
            log_result,
        };
        // The caller may have given up meanwhile; then nobody needs the result.
        let _ = self.job.reply.send(raw);
    }

    /// Fails with an error of Lambda's own (`RequestId: <id> Error: <message>`).
    fn fail(self, error_type: &str, message: &str, log_result: Option<String>) {
        let payload = runtime_error_payload(&self.job.request_id, error_type, message);
        self.finish(payload, true, log_result);
    }
}

/// How a process's life ended.
enum End {
    /// The pool is gone: stop the slot.
    Shutdown,
    /// The process is gone; `was_ready` says whether it ever polled `next`.
    Ended { was_ready: bool },
}

/// When a slot starts its next process.
#[derive(Clone, Copy, Debug)]
enum Restart {
    Now,
    /// After this back-off, or as soon as an invocation arrives.
    After(Duration),
    /// Only when an invocation needs a process (the last one never became ready).
    OnJob,
}

/// One process place of a pool. Runs as its own task, owning its current process and the
/// invocation it took; everything that happens to them happens in [`Slot::serve_process`].
struct Slot {
    config: Arc<PoolConfig>,
    index: usize,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    job: Option<Assigned>,
}

/// The state of one process as seen through its Runtime API.
struct RuntimeState {
    started: Instant,
    /// It has polled `next` at least once: its initialisation is over.
    ready: bool,
    /// What it posted to `init/error`, as the error payload to report.
    init_error: Option<Vec<u8>>,
    /// Its pending `next` poll.
    waiting: Option<oneshot::Sender<NextInvocation>>,
}

impl Slot {
    async fn run(mut self) {
        let mut restart = Restart::Now;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match restart {
                Restart::Now => {}
                Restart::After(delay) if self.job.is_none() => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        job = take(&self.queue) => match job {
                            Some(job) => self.assign(job),
                            None => return,
                        },
                    }
                }
                Restart::After(_) => {}
                Restart::OnJob => {
                    while self.job.is_none() {
                        match take(&self.queue).await {
                            Some(job) => self.assign(job),
                            None => return,
                        }
                    }
                }
            }
            let started = Instant::now();
            restart = match self.serve_process().await {
                End::Shutdown => return,
                End::Ended { was_ready: false } => Restart::OnJob,
                End::Ended { was_ready: true } if started.elapsed() < SHORT_LIFE => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Restart::After(delay)
                }
                End::Ended { was_ready: true } => {
                    backoff = FIRST_BACKOFF;
                    Restart::Now
                }
            };
        }
    }

    /// Takes an invocation from the queue unless its caller has already given up on it.
    fn assign(&mut self, job: Job) {
        if !job.reply.is_closed() {
            self.job = Some(Assigned::new(job));
        }
    }

    /// Starts one process and serves it until it is gone.
    async fn serve_process(&mut self) -> End {
        let (calls_sender, mut calls) = mpsc::channel(CALL_BUFFER);
        let server = match RuntimeApiServer::bind().await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(function = %self.config.function, %error, "cannot serve the Lambda Runtime API");
                if let Some(assigned) = self.job.take() {
                    assigned.fail("Runtime.Unknown", &format!("cannot serve the Lambda Runtime API: {error}"), None);
                }
                return End::Ended { was_ready: false };
            }
        };
        let logs = Arc::new(StdMutex::new(LogTail::default()));
        let address = server.address();
        // Polled below with everything else of this process: the calls come from this task.
        let serving = server.serve(calls_sender);
        tokio::pin!(serving);
        let mut child = match self.spawn(address, &logs) {
            Ok(child) => child,
            Err(error) => {
                let program = self.config.argv.first().map(String::as_str).unwrap_or_default();
                tracing::warn!(function = %self.config.function, argv = ?self.config.argv, %error, "cannot start runtime");
                if let Some(assigned) = self.job.take() {
                    let message = format!("cannot start {program:?}: {error}");
                    assigned.fail("Runtime.InvalidEntrypoint", &message, None);
                }
                return End::Ended { was_ready: false };
            }
        };
        // Armed until the process is reaped: kills the whole group when this future is
        // dropped (pool shut down) or returns early.
        let mut group = ProcessGroup::new(child.id());
        tracing::debug!(function = %self.config.function, slot = self.index, pid = ?child.id(), "runtime started");
        let mut runtime = RuntimeState { started: Instant::now(), ready: false, init_error: None, waiting: None };

        loop {
            // Hand the taken event to the process as soon as it polls for one.
            if let Some(assigned) = self.job.as_mut().filter(|assigned| !assigned.delivered()) {
                if let Some(waiting) = runtime.waiting.take() {
                    lock(&logs).start(assigned.job.want_log);
                    // A failed send means the poll's connection went away: keep the event
                    // for the process's next poll.
                    if waiting.send(assigned.deliver()).is_err() {
                        assigned.delivered_at = None;
                    } else if let Some(delivered) = assigned.job.delivered.take() {
                        let _ = delivered.send(());
                        if let Some(progress) = &assigned.job.progress {
                            let _ = progress.unbounded_send(TaskProgress::Dispatched);
                        }
                    }
                }
            }
            let deadline = self.job.as_ref().and_then(|assigned| assigned.deadline(&runtime));
            tokio::select! {
                status = child.wait() => {
                    // Reaped: from here on the group id may be reused, so never signal it.
                    group.disarm();
                    let description = match status {
                        Ok(status) => describe_exit(status),
                        Err(error) => format!("cannot wait for the runtime: {error}"),
                    };
                    self.on_exit(&description, &mut runtime, &logs);
                    return End::Ended { was_ready: runtime.ready };
                }
                Some(call) = calls.recv() => self.on_call(call, &mut runtime, &logs).await,
                never = &mut serving => match never {},
                job = take(&self.queue), if self.job.is_none() => match job {
                    Some(job) => self.assign(job),
                    None => return End::Shutdown,
                },
                () = sleep_until(deadline) => {
                    kill(&mut group, &mut child).await;
                    if let Some(assigned) = self.job.take() {
                        let seconds = assigned.job.function_timeout.unwrap_or_default().as_secs_f64();
                        tracing::warn!(function = %self.config.function, request_id = %assigned.job.request_id, seconds, "function timed out; runtime killed");
                        let log = lock(&logs).take();
                        assigned.fail("Sandbox.Timedout", &format!("Task timed out after {seconds:.2} seconds"), log);
                    }
                    return End::Ended { was_ready: runtime.ready };
                }
                () = abandoned(&mut self.job) => {
                    let delivered = self.job.take().is_some_and(|assigned| assigned.delivered());
                    if delivered {
                        // The caller gave up on a running event (TimeoutSeconds, or the
                        // execution stopped): stop the work too, as for commands.
                        tracing::debug!(function = %self.config.function, "invocation abandoned; runtime killed");
                        kill(&mut group, &mut child).await;
                        return End::Ended { was_ready: runtime.ready };
                    }
                }
            }
        }
    }

    fn spawn(&self, api: SocketAddr, logs: &Arc<StdMutex<LogTail>>) -> io::Result<Child> {
        let config = &self.config;
        let Some((program, args)) = config.argv.split_first() else {
            // The registry refuses empty argv; this only guards programmatic misuse.
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty runtime command"));
        };
        let stream = format!("{}/[$LATEST]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
        let mut command = Command::new(program);
        command
            .args(args)
            // What a Lambda execution environment sets for its runtime and handler.
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &config.function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", config.function))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .env("AWS_REGION", &config.region)
            .env("AWS_DEFAULT_REGION", &config.region)
            .envs(&config.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = spawn_in_own_group(&mut command)?;
        if let Some(stdout) = child.stdout.take() {
            forward_log(stdout, config.function.clone(), Arc::clone(logs));
        }
        if let Some(stderr) = child.stderr.take() {
            forward_log(stderr, config.function.clone(), Arc::clone(logs));
        }
        Ok(child)
    }

    /// The process exited by itself. It fails the invocation it held, or the one that waited
    /// for it to initialise; an invocation taken while a warm process was between two events
    /// waits for the replacement instead.
    fn on_exit(&mut self, description: &str, runtime: &mut RuntimeState, logs: &Arc<StdMutex<LogTail>>) {
        tracing::warn!(function = %self.config.function, slot = self.index, exit = description, ready = runtime.ready, "runtime exited");
        let Some(assigned) = self.job.take_if(|assigned| assigned.delivered() || !runtime.ready) else {
            return;
        };
        let log = lock(logs).take();
        match runtime.init_error.take().filter(|_| !assigned.delivered()) {
            Some(payload) => assigned.finish(payload, true, log),
            None => assigned.fail("Runtime.ExitError", &format!("Runtime exited with error: {description}"), log),
        }
    }

    async fn on_call(&mut self, call: RuntimeCall, runtime: &mut RuntimeState, logs: &Arc<StdMutex<LogTail>>) {
        match call {
            RuntimeCall::Next { reply } => {
                if let Some(assigned) = self.job.take_if(|assigned| assigned.delivered()) {
                    // The runtime moved on without answering the event it had.
                    let log = lock(logs).take();
                    let message = "Runtime polled for the next invocation without answering this one";
                    assigned.fail("Runtime.Unknown", message, log);
                }
                runtime.ready = true;
                runtime.init_error = None;
                runtime.waiting = Some(reply);
            }
            RuntimeCall::Response { request_id, body, reply } => {
                let verdict = self
                    .complete(&request_id, logs, |assigned, log| assigned.finish(Vec::from(body), false, log))
                    .await;
                let _ = reply.send(verdict);
            }
            RuntimeCall::Error { request_id, error_type, body, reply } => {
                let payload = error_payload(&body, error_type.as_deref());
                let verdict =
                    self.complete(&request_id, logs, |assigned, log| assigned.finish(payload, true, log)).await;
                let _ = reply.send(verdict);
            }
            RuntimeCall::TooLarge { request_id, reply } => {
                let verdict = self.complete(&request_id, logs, |assigned, log| {
                    let payload = json!({
                        "errorMessage": format!(
                            "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                        ),
                        "errorType": "Function.ResponseSizeTooLarge",
                    });
                    assigned.finish(compact_json(&payload).into_bytes(), true, log)
                })
                .await;
                let _ = reply.send(verdict);
            }
            RuntimeCall::InitError { error_type, body, reply } => {
                let verdict = if runtime.ready {
                    Verdict::NotInitializing
                } else {
                    runtime.init_error = Some(error_payload(&body, error_type.as_deref()));
                    Verdict::Accepted
                };
                let _ = reply.send(verdict);
            }
        }
    }

    /// Completes the delivered invocation `request_id` with `finish`; any other id is refused.
    async fn complete(
        &mut self,
        request_id: &str,
        logs: &Arc<StdMutex<LogTail>>,
        finish: impl FnOnce(Assigned, Option<String>),
    ) -> Verdict {
        match self.job.take_if(|assigned| assigned.delivered() && assigned.job.request_id == request_id) {
            Some(assigned) => {
                if assigned.job.want_log {
                    settle(logs).await;
                }
                let log = lock(logs).take();
                finish(assigned, log);
                Verdict::Accepted
            }
            None => {
                tracing::warn!(function = %self.config.function, request_id, "runtime answered an invocation it does not hold");
                Verdict::UnknownRequest
            }
        }
    }
}

/// The error object a runtime posted, as the payload to report. The body is kept as sent when
/// it is an object with an `errorType`; the `Lambda-Runtime-Function-Error-Type` header fills
/// in a missing type (and wraps a body that is not an object as the `errorMessage`). Without
/// either, the payload goes on untyped and is reported as `Lambda.Unknown`.
fn error_payload(body: &[u8], header_type: Option<&str>) -> Vec<u8> {
    let Some(error_type) = header_type else {
        return body.to_vec();
    };
    match serde_json::from_slice::<Value>(body.trim_ascii()) {
        Ok(Value::Object(object)) if object.get("errorType").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) => {
            body.to_vec()
        }
        Ok(Value::Object(mut object)) => {
            object.insert("errorType".to_string(), Value::String(error_type.to_string()));
            compact_json(&Value::Object(object)).into_bytes()
        }
        _ => {
            let message = String::from_utf8_lossy(body.trim_ascii()).into_owned();
            compact_json(&json!({"errorMessage": message, "errorType": error_type})).into_bytes()
        }
    }
}

/// The next invocation from the pool's queue; `None` once the pool is dropped.
async fn take(queue: &Mutex<mpsc::UnboundedReceiver<Job>>) -> Option<Job> {
    queue.lock().await.recv().await
}

/// Completes when the caller of the taken invocation has given up on it; never without one.
async fn abandoned(job: &mut Option<Assigned>) {
    match job {
        Some(assigned) => assigned.job.reply.closed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Kills the process group of a process not reaped yet, then reaps it.
async fn kill(group: &mut ProcessGroup, child: &mut Child) {
    group.kill();
    if let Err(error) = child.start_kill() {
        tracing::debug!(%error, "runtime already gone");
    }
    if let Err(error) = child.wait().await {
        tracing::debug!(%error, "reaping killed runtime");
    }
}

/// The function's log lines, kept for `LogType: Tail` while an invocation that asked for it runs.
#[derive(Default)]
struct LogTail {
    capturing: bool,
    tail: VecDeque<u8>,
    /// Bytes forwarded so far, captured or not: tells [`settle`] whether output is still coming.
    seen: u64,
}

impl LogTail {
    fn start(&mut self, capture: bool) {
        self.capturing = capture;
        self.tail.clear();
    }

    fn push(&mut self, line: &[u8]) {
        self.seen += line.len() as u64;
        if self.capturing {
            self.tail.extend(line.iter().copied());
            let excess = self.tail.len().saturating_sub(LOG_TAIL_BYTES);
            self.tail.drain(..excess);
        }
    }

    /// Base64 of the captured tail, when the current invocation asked for it.
    fn take(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.capturing) {
            return None;
        }
        let tail: Vec<u8> = self.tail.drain(..).collect();
        Some(base64::engine::general_purpose::STANDARD.encode(tail))
    }
}

/// Lines a handler wrote just before it answered may still sit in the pipes when the answer
/// arrives (the log readers are other tasks). For a `LogType: Tail` invocation, wait until
/// the output has been quiet for [`SETTLE_QUIET`] (at most [`SETTLE_MAX`]) so that its
/// `LogResult` holds them, as Lambda's does.
async fn settle(logs: &StdMutex<LogTail>) {
    let started = Instant::now();
    let mut seen = lock(logs).seen;
    while started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(SETTLE_QUIET).await;
        let now = lock(logs).seen;
        if now == seen {
            break;
        }
        seen = now;
    }
}

const SETTLE_QUIET: Duration = Duration::from_millis(3);
const SETTLE_MAX: Duration = Duration::from_millis(100);

fn lock(logs: &StdMutex<LogTail>) -> std::sync::MutexGuard<'_, LogTail> {
    // The log tail is plain data: a panic elsewhere cannot leave it inconsistent.
    logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Forwards one output stream of a runtime, line by line, to `tracing` and the log tail.
/// Ends when every process of the group has closed the stream.
fn forward_log(stream: impl AsyncRead + Unpin + Send + 'static, function: String, logs: Arc<StdMutex<LogTail>>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    tracing::info!(target: "stepmap_worker::function", function = %function, "{}", text.trim_end());
                    lock(&logs).push(&line);
                }
                Err(error) => {
                    tracing::debug!(%error, "reading runtime output");
                    break;
                }
            }
        }
    });
}
