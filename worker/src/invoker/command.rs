//! Functions as local commands.
//!
//! Protocol (the one `--functions` commands speak, see the conformance README): the event
//! JSON arrives on stdin; success = exit 0 with the result JSON on stdout (empty stdout is
//! `null`, non-JSON stdout becomes a JSON string); failure = exit 1 with
//! `{"errorType", "errorMessage", "stackTrace"?}` on stdout. Stderr is the function's log:
//! every line is forwarded to `tracing` (target `stepmap_worker::function`).
//!
//! What Lambda itself would report is emulated for the rest, as a function error with
//! Lambda's own error types:
//! * any other exit code or a signal → `Runtime.ExitError`
//!   (`RequestId: <id> Error: Runtime exited with error: exit status 3`);
//! * the program cannot be started → `Runtime.InvalidEntrypoint`;
//! * the registry's `timeout_seconds` passes → the process group is killed,
//!   `Sandbox.Timedout` (`RequestId: <id> Error: Task timed out after 3.00 seconds`);
//! * exit 1 without an `errorType` object → `Lambda.Unknown` (see `lambda.rs`).
//!
//! The state's `TimeoutSeconds` ([`TaskRequest::timeout`](stepmap_asl::task::TaskRequest))
//! kills the process group too and fails with `States.Timeout`. The command runs in its own
//! process group so that children it started die with it, including when the interpreter
//! drops the invocation.

use std::collections::{BTreeMap, VecDeque};
use std::process::{ExitStatus, Stdio};

use base64::Engine as _;
use serde_json::json;
use stepmap_asl::failure::Failure;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::lambda::{Invocation, RawInvocation};
use super::{compact_json, task_timeout, Deadline};

/// Lambda's `LogResult` holds the last 4 KB of the log.
pub(crate) const LOG_TAIL_BYTES: usize = 4096;

/// Runs one invocation of a command function.
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    invocation: Invocation<'_>,
) -> Result<RawInvocation, Failure> {
    let Some((program, args)) = argv.split_first() else {
        // The registry refuses empty commands; this only guards programmatic misuse.
        return Ok(runtime_error(&invocation, "Runtime.InvalidEntrypoint", "empty command"));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        // The variables a Lambda runtime sets that a handler most often reads.
        .env("AWS_LAMBDA_FUNCTION_NAME", invocation.function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", &invocation.executed_version)
        .env("AWS_REGION", invocation.region)
        .env("STEPMAP_REQUEST_ID", &invocation.request_id)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match spawn_in_own_group(&mut command) {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(function = invocation.function, ?argv, %error, "cannot start function command");
            let message = format!("cannot start {program:?}: {error}");
            return Ok(runtime_error(&invocation, "Runtime.InvalidEntrypoint", &message));
        }
    };
    let mut group = ProcessGroup::new(child.id());

    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let event = invocation.event.clone();
    let function = invocation.function.to_string();
    let want_log = invocation.want_log;

    // Feed stdin, drain stdout and stderr and wait, all at once: a command that writes a lot
    // before reading its input must not deadlock against us.
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command may exit without reading its event; a broken pipe is not an error.
            if let Err(error) = stdin.write_all(&event).await {
                tracing::debug!(%error, "function did not read its whole event");
            }
            drop(stdin);
        }
    };
    let collect = async move {
        let mut out = Vec::new();
        if let Some(mut stdout) = stdout {
            if let Err(error) = stdout.read_to_end(&mut out).await {
                tracing::warn!(%error, "reading function stdout");
            }
        }
        out
    };
    let logs = forward_stderr(stderr, function, want_log);
    let run = async {
        let ((), out, log_tail, status) = tokio::join!(feed, collect, logs, child.wait());
        (out, log_tail, status)
    };

    let finished = match invocation.deadline {
        Some(deadline) => tokio::time::timeout(deadline.duration(), run).await.ok(),
        None => Some(run.await),
    };
    let Some((stdout, log_tail, status)) = finished else {
        // `run` was dropped with the timeout: kill everything the command started, then reap.
        group.kill();
        if let Err(error) = child.start_kill() {
            tracing::debug!(%error, "function already gone");
        }
        if let Err(error) = child.wait().await {
            tracing::debug!(%error, "reaping killed function");
        }
        tracing::warn!(function = invocation.function, deadline = ?invocation.deadline, "function timed out; killed");
        return match invocation.deadline {
            Some(Deadline::Function(limit)) => Ok(runtime_error(
                &invocation,
                "Sandbox.Timedout",
                &format!("Task timed out after {:.2} seconds", limit.as_secs_f64()),
            )),
            _ => Err(task_timeout()),
        };
    };
    // The command has exited and its output is drained: nothing is left to kill.
    group.disarm();

    let log_result = want_log.then(|| base64::engine::general_purpose::STANDARD.encode(&log_tail));
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            let message = format!("cannot wait for the function: {error}");
            return Ok(runtime_error(&invocation, "Runtime.ExitError", &message));
        }
    };
    match status.code() {
        Some(0) => Ok(raw(&invocation, stdout, false, log_result)),
        Some(1) => Ok(raw(&invocation, stdout, true, log_result)),
        _ => {
            tracing::warn!(function = invocation.function, %status, "function exited abnormally");
            let message = format!("Runtime exited with error: {}", describe_exit(status));
            let mut error = runtime_error(&invocation, "Runtime.ExitError", &message);
            error.log_result = log_result;
            Ok(error)
        }
    }
}

fn raw(
    invocation: &Invocation<'_>,
    payload: Vec<u8>,
    function_error: bool,
    log_result: Option<String>,
) -> RawInvocation {
    RawInvocation {
        request_id: invocation.request_id.clone(),
        executed_version: invocation.executed_version.clone(),
        payload,
        function_error,
        log_result,
    }
}

/// A function error Lambda itself would raise (the runtime died, timed out, ...).
fn runtime_error(invocation: &Invocation<'_>, error_type: &str, message: &str) -> RawInvocation {
    raw(invocation, runtime_error_payload(&invocation.request_id, error_type, message), true, None)
}

/// The error object Lambda returns for an error of its own (`Runtime.ExitError`,
/// `Sandbox.Timedout`, ...): `{"errorType", "errorMessage": "RequestId: <id> Error: <message>"}`.
pub(crate) fn runtime_error_payload(request_id: &str, error_type: &str, message: &str) -> Vec<u8> {
    let payload = json!({
        "errorType": error_type,
        "errorMessage": format!("RequestId: {request_id} Error: {message}"),
    });
    compact_json(&payload).into_bytes()
}

/// `exit status 3` / `signal: killed`, as Lambda words runtime exits.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc::SIGKILL => "killed".to_string(),
                libc::SIGTERM => "terminated".to_string(),
                libc::SIGSEGV => "segmentation fault".to_string(),
                libc::SIGABRT => "aborted".to_string(),
                other => other.to_string(),
            };
            return format!("signal: {name}");
        }
    }
    status.to_string()
}

/// Forwards stderr lines to tracing; keeps the last [`LOG_TAIL_BYTES`] when `keep_tail`.
async fn forward_stderr(stderr: Option<tokio::process::ChildStderr>, function: String, keep_tail: bool) -> Vec<u8> {
    let mut tail: VecDeque<u8> = VecDeque::new();
    let Some(stderr) = stderr else {
        return Vec::new();
    };
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "stepmap_worker::function", function = %function, "{}", text.trim_end());
                if keep_tail {
                    tail.extend(line.iter().copied());
                    let excess = tail.len().saturating_sub(LOG_TAIL_BYTES);
                    tail.drain(..excess);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "reading function stderr");
                break;
            }
        }
    }
    tail.into_iter().collect()
}

/// Starts a function's process in a process group of its own, so that a timeout can kill
/// whatever it started ([`ProcessGroup`]), and with the system's transparent huge page
/// setting: the `stepmap` binary turns them off for itself, a flag that `exec` passes on. The
/// flag is lifted for the moment of the spawn (spawns take turns) rather than reset in the
/// child by a `pre_exec` hook, which would make the standard library fork the whole process
/// instead of using posix_spawn.
pub(crate) fn spawn_in_own_group(command: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    #[cfg(unix)]
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = SPAWNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY (the three calls): PR_GET/SET_THP_DISABLE take integer arguments only. The
        // flag is the process's; other threads' page faults meanwhile may get huge pages,
        // which is only what they would get without it.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } > 0;
        if disabled {
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
        }
        // posix_spawn returns once the child has exec'd: it took the flag as lifted.
        let spawned = command.spawn();
        if disabled {
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        }
        spawned
    }
    #[cfg(not(target_os = "linux"))]
    command.spawn()
}

/// Kills the command's process group on timeout, or when the invocation is dropped before
/// the command finished (the interpreter gave up on it), so that nothing outlives its task.
pub(crate) struct ProcessGroup {
    pgid: Option<u32>,
}

impl ProcessGroup {
    /// `pid` must be the leader of a group created for it (`process_group(0)`).
    pub(crate) fn new(pid: Option<u32>) -> Self {
        ProcessGroup { pgid: pid }
    }

    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }

    pub(crate) fn kill(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        #[cfg(unix)]
        if let Ok(pgid) = libc::pid_t::try_from(pgid) {
            // SAFETY: kill(2) has no memory-safety preconditions. The group was created for
            // this command (process_group(0)). Its id stays taken while any member lives:
            // either the leader is not reaped yet, or a descendant still holds the output
            // open, so the signal cannot reach an unrelated group.
            let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
            if rc != 0 {
                tracing::debug!(pgid, error = %std::io::Error::last_os_error(), "killing function process group");
            }
        }
        #[cfg(not(unix))]
        let _ = pgid;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
