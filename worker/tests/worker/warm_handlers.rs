//! Warm handlers: `runtime` functions served through the Lambda Runtime API by a pool of
//! long-lived processes. The handlers are a tiny Runtime API client in plain Python (urllib
//! only) and, in `heavy_awslambdaric_handler`, the official `awslambdaric` from PyPI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use stepmap_asl::clock::SystemClock;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{run_execution, Environment, ExecutionSpec, ExecutionStatus};
use stepmap_asl::model::{StateMachine, StateMachineType};
use stepmap_asl::payload::Payload;
use stepmap_asl::resource::Resource;
use stepmap_asl::task::{TaskInvoker, TaskProgress, TaskRequest};
use stepmap_worker::{FunctionRegistry, FunctionSpec, FunctionTarget, LocalInvoker};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111111111111";
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// A minimal Lambda runtime: polls `next`, answers per the event's `action`.
const RUNTIME_CLIENT: &str = r#"
import json, os, sys, time, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"

def post(path, body, error_type=None):
    headers = {"Content-Type": "application/json"}
    if error_type:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    request = urllib.request.Request(API + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request) as response:
        response.read()

if os.environ.get("MODE") == "init-error":
    post("/init/error", {"errorMessage": "cannot import things", "errorType": "Runtime.ImportModuleError", "stackTrace": []},
         "Runtime.ImportModuleError")
    sys.exit(1)
if os.environ.get("MODE") == "slow-init":
    time.sleep(1)

while True:
    with urllib.request.urlopen(API + "/invocation/next") as response:
        headers = response.headers
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        raw = response.read().decode()
        event = json.loads(raw)
    action = event.get("action") if isinstance(event, dict) else None
    if action == "crash":
        os._exit(3)
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "fail":
        post(f"/invocation/{request_id}/error",
             {"errorMessage": "boom", "errorType": "CustomError", "stackTrace": ["  File \"h.py\", line 2\n"]},
             "CustomError")
        continue
    if action == "big":
        try:
            post(f"/invocation/{request_id}/response", {"big": "x" * 7_000_000})
        except Exception as error:  # refused with 413, possibly before the whole body was sent
            print("big response refused:", error, file=sys.stderr)
        continue
    if action == "log":
        print("log line", file=sys.stderr, flush=True)
    post(f"/invocation/{request_id}/response", {
        "event": event,
        "raw": raw,
        "pid": os.getpid(),
        "request_id": request_id,
        "deadline_ms": int(headers["Lambda-Runtime-Deadline-Ms"]),
        "arn": headers["Lambda-Runtime-Invoked-Function-Arn"],
        "trace": headers["Lambda-Runtime-Trace-Id"],
        "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "region": os.environ["AWS_REGION"],
        "mode": os.environ.get("MODE"),
    })
"#;

fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

fn request(resource: &str, parameters: Value) -> TaskRequest {
    TaskRequest {
        resource_arn: resource.to_string(),
        resource: Resource::parse(resource),
        state_name: "Task".to_string(),
        parameters: parameters.into(),
        timeout: None,
        region: REGION.to_string(),
        account: ACCOUNT.to_string(),
        task_token: None,
        heartbeat: None,
        started_at: None,
        progress: None,
    }
}

/// A temp directory holding the runtime client script.
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn new() -> Result<Script> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("runtime.py"), RUNTIME_CLIENT)?;
        Ok(Script { dir })
    }

    fn spec(&self, concurrency: usize) -> FunctionSpec {
        let script = self.dir.path().join("runtime.py").display().to_string();
        FunctionSpec::runtime(["python3", "-u", script.as_str()], concurrency)
    }
}

fn with_env(mut spec: FunctionSpec, key: &str, value: &str) -> FunctionSpec {
    if let FunctionTarget::Runtime { env, .. } = &mut spec.target {
        env.insert(key.to_string(), value.to_string());
    }
    spec
}

fn invoker(functions: Vec<(&str, FunctionSpec)>) -> Result<LocalInvoker> {
    let mut registry = FunctionRegistry::new();
    for (name, spec) in functions {
        registry.insert(name, spec);
    }
    Ok(LocalInvoker::new(registry)?)
}

async fn outcome(invoker: &LocalInvoker, request: TaskRequest) -> Result<Value, Failure> {
    let invoker: &dyn TaskInvoker = invoker;
    invoker.invoke(request).await.map(Payload::into_value)
}

async fn run(invoker: &LocalInvoker, request: TaskRequest) -> Result<Value> {
    outcome(invoker, request).await.map_err(|failure| anyhow!("task failed: {failure}"))
}

async fn expect_failure(invoker: &LocalInvoker, request: TaskRequest) -> Result<(String, String)> {
    match outcome(invoker, request).await {
        Ok(value) => bail!("expected a failure, got {value}"),
        Err(failure) => Ok((failure.error.unwrap_or_default(), failure.cause.unwrap_or_default())),
    }
}

fn pid_of(result: &Value) -> Result<u64> {
    result["pid"].as_u64().ok_or_else(|| anyhow!("no pid in {result}"))
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn process_is_dead(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_until_dead(pid: u64) -> bool {
    for _ in 0..200 {
        if process_is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ------------------------------------------------------------------------------- registry

#[test]
fn registry_accepts_runtime_pools() -> Result<()> {
    let registry = FunctionRegistry::from_json_str(
        r#"{"functions": {
            "transform": {"runtime": ["python3", "-m", "awslambdaric", "handler.transform"], "concurrency": 3,
                          "env": {"MODE": "x"}, "timeout_seconds": 5},
            "default": {"runtime": ["./bootstrap"]}
        }}"#,
        "inline.json",
    )?;
    let (_, spec) = registry.lookup("transform").ok_or_else(|| anyhow!("transform missing"))?;
    assert_eq!(
        spec.target,
        FunctionTarget::Runtime {
            argv: vec!["python3".into(), "-m".into(), "awslambdaric".into(), "handler.transform".into()],
            env: BTreeMap::from([("MODE".to_string(), "x".to_string())]),
            concurrency: 3,
        }
    );
    assert_eq!(spec.timeout, Some(Duration::from_secs(5)));
    let (_, spec) = registry.lookup("default").ok_or_else(|| anyhow!("default missing"))?;
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    assert!(matches!(&spec.target, FunctionTarget::Runtime { concurrency, .. } if *concurrency == cpus), "{spec:?}");

    let toml =
        FunctionRegistry::from_toml_str("[functions.t]\nruntime = [\"./bootstrap\"]\nconcurrency = 2\n", "t.toml")?;
    assert_eq!(toml.len(), 1);

    for (text, expected) in [
        (r#"{"functions": {"f": {"runtime": ["x"], "command": ["x"]}}}"#, "either command or runtime, not both"),
        (r#"{"functions": {"f": {"runtime": ["x"], "endpoint": "http://x"}}}"#, "not both"),
        (r#"{"functions": {"f": {"runtime": []}}}"#, "runtime must name a program"),
        (r#"{"functions": {"f": {"runtime": ["x"], "concurrency": 0}}}"#, "concurrency must be between 1"),
        (r#"{"functions": {"f": {"command": ["x"], "concurrency": 2}}}"#, "concurrency applies to runtime"),
        (r#"{"functions": {"f": {"runtime": ["x"], "concurency": 2}}}"#, "concurency"),
    ] {
        let message = FunctionRegistry::from_json_str(text, "test.json")
            .err()
            .ok_or_else(|| anyhow!("accepted {text}"))?
            .to_string();
        assert!(message.contains("test.json") && message.contains(expected), "{message}");
    }
    Ok(())
}

// ------------------------------------------------------------------ a plain Python runtime

#[tokio::test]
async fn warm_handler_results_have_both_resource_shapes() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("warm", with_env(script.spec(1), "MODE", "plain"))])?;

    // Function-ARN form: the payload itself.
    let before = now_ms();
    let result = run(&invoker, request(&function_arn("warm"), json!({"a": [1, 2.5, "x"]}))).await?;
    assert_eq!(result["event"], json!({"a": [1, 2.5, "x"]}));
    // A runtime parses the event itself: it gets the compact text (commands get Python's
    // spacing, for functions that echo their input).
    assert_eq!(result["raw"], r#"{"a":[1,2.5,"x"]}"#);
    assert_eq!(result["function"], "warm");
    assert_eq!(result["region"], REGION);
    assert_eq!(result["mode"], "plain");
    assert_eq!(result["arn"], function_arn("warm"));
    assert!(result["trace"].as_str().is_some_and(|t| t.starts_with("Root=1-")), "{result}");
    assert!(result["request_id"].as_str().is_some_and(is_uuid), "{result}");
    // No timeout anywhere: the runtime is told Lambda's maximum, 900 s.
    let deadline = result["deadline_ms"].as_u64().unwrap_or_default();
    assert!(deadline >= before + 899_000 && deadline <= now_ms() + 900_000, "{result}");
    let pid = pid_of(&result)?;

    // lambda:invoke: the Invoke response shape, the qualifier in the ARN and the version.
    let result = run(
        &invoker,
        request(LAMBDA_INVOKE, json!({"FunctionName": "warm", "Qualifier": "7", "Payload": {"foo": "foo-1"}})),
    )
    .await?;
    let object = result.as_object().ok_or_else(|| anyhow!("not an object: {result}"))?;
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["ExecutedVersion", "Payload", "SdkHttpMetadata", "SdkResponseMetadata", "StatusCode"]
    );
    assert_eq!(result["ExecutedVersion"], "7");
    assert_eq!(result["StatusCode"], 200);
    let payload = &result["Payload"];
    assert_eq!(payload["event"], json!({"foo": "foo-1"}));
    assert_eq!(payload["arn"], format!("{}:7", function_arn("warm")));
    assert_eq!(payload["request_id"], result["SdkResponseMetadata"]["RequestId"]);
    // The same warm process served both.
    assert_eq!(pid_of(payload)?, pid);

    // A state's TimeoutSeconds is the deadline the runtime sees when it is the earliest.
    let mut timed = request(&function_arn("warm"), json!({}));
    timed.timeout = Some(Duration::from_secs(30));
    let before = now_ms();
    let result = run(&invoker, timed).await?;
    let deadline = result["deadline_ms"].as_u64().unwrap_or_default();
    assert!(deadline >= before + 29_000 && deadline <= now_ms() + 30_000, "{result}");

    // LogType Tail: the lines the handler wrote while it ran.
    let result = run(
        &invoker,
        request(LAMBDA_INVOKE, json!({"FunctionName": "warm", "LogType": "Tail", "Payload": {"action": "log"}})),
    )
    .await?;
    let log = result["LogResult"].as_str().ok_or_else(|| anyhow!("no LogResult in {result}"))?;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(log)?, b"log line\n");
    Ok(())
}

#[tokio::test]
async fn warm_handler_errors_carry_aws_shaped_causes() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("warm", script.spec(1))])?;

    let (error, cause) = expect_failure(&invoker, request(&function_arn("warm"), json!({"action": "fail"}))).await?;
    assert_eq!(error, "CustomError");
    let prefix = r#"{"errorMessage": "boom", "errorType": "CustomError", "requestId": ""#;
    let suffix = r#"", "stackTrace": ["  File \"h.py\", line 2\n"]}"#;
    ensure!(cause.starts_with(prefix) && cause.ends_with(suffix), "cause {cause}");
    assert!(is_uuid(&cause[prefix.len()..cause.len() - suffix.len()]), "{cause}");

    let (error, cause) = expect_failure(
        &invoker,
        request(LAMBDA_INVOKE, json!({"FunctionName": "warm", "Payload": {"action": "fail"}})),
    )
    .await?;
    assert_eq!(error, "CustomError");
    let prefix = r#"{"errorMessage":"boom","errorType":"CustomError","requestId":""#;
    let suffix = r#"","stackTrace":["  File \"h.py\", line 2\n"]}"#;
    ensure!(cause.starts_with(prefix) && cause.ends_with(suffix), "cause {cause}");

    // Over Lambda's 6 MB response limit.
    let (error, cause) = expect_failure(&invoker, request(&function_arn("warm"), json!({"action": "big"}))).await?;
    assert_eq!(error, "Function.ResponseSizeTooLarge");
    assert!(cause.contains("Response payload size exceeded maximum allowed payload size (6291556 bytes)."), "{cause}");

    // A function error does not cost the process.
    let first = pid_of(&run(&invoker, request(&function_arn("warm"), json!({}))).await?)?;
    expect_failure(&invoker, request(&function_arn("warm"), json!({"action": "fail"}))).await?;
    assert_eq!(pid_of(&run(&invoker, request(&function_arn("warm"), json!({}))).await?)?, first);
    Ok(())
}

#[tokio::test]
async fn warm_handler_crash_fails_its_invocation_and_the_process_is_replaced() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("warm", script.spec(1))])?;
    let first = pid_of(&run(&invoker, request(&function_arn("warm"), json!({}))).await?)?;

    let (error, cause) = expect_failure(&invoker, request(&function_arn("warm"), json!({"action": "crash"}))).await?;
    assert_eq!(error, "Runtime.ExitError");
    let cause: Value = serde_json::from_str(&cause)?;
    let message = cause["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("RequestId: ") && message.ends_with("Error: Runtime exited with error: exit status 3"),
        "{message}"
    );
    assert!(cause["requestId"].as_str().is_some_and(is_uuid), "{cause}");
    assert!(wait_until_dead(first).await, "crashed runtime {first} still alive");

    // The replacement serves the next invocations, warm again.
    let second = pid_of(&run(&invoker, request(&function_arn("warm"), json!({}))).await?)?;
    assert_ne!(second, first);
    assert_eq!(pid_of(&run(&invoker, request(&function_arn("warm"), json!({}))).await?)?, second);
    Ok(())
}

#[tokio::test]
async fn warm_handler_timeouts_kill_and_replace_the_process() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![
        ("limited", script.spec(1).with_timeout(Duration::from_millis(1500))),
        ("unlimited", script.spec(1)),
        ("slow-start", with_env(script.spec(1).with_timeout(Duration::from_millis(500)), "MODE", "slow-init")),
    ])?;

    // A cold start is not part of the function timeout (Lambda's init phase is separate).
    run(&invoker, request(&function_arn("slow-start"), json!({}))).await?;

    // The function's own timeout: Sandbox.Timedout, the process is killed and replaced.
    let first = pid_of(&run(&invoker, request(&function_arn("limited"), json!({}))).await?)?;
    let (error, cause) =
        expect_failure(&invoker, request(&function_arn("limited"), json!({"action": "sleep", "seconds": 60}))).await?;
    assert_eq!(error, "Sandbox.Timedout");
    assert!(cause.contains("Error: Task timed out after 1.50 seconds"), "{cause}");
    assert!(wait_until_dead(first).await, "timed-out runtime {first} still alive");
    let second = pid_of(&run(&invoker, request(&function_arn("limited"), json!({}))).await?)?;
    assert_ne!(second, first);

    // The state's TimeoutSeconds: States.Timeout, and the process is killed too.
    let first = pid_of(&run(&invoker, request(&function_arn("unlimited"), json!({}))).await?)?;
    let mut timed = request(&function_arn("unlimited"), json!({"action": "sleep", "seconds": 60}));
    timed.timeout = Some(Duration::from_secs(1));
    let (error, _) = expect_failure(&invoker, timed).await?;
    assert_eq!(error, "States.Timeout");
    assert!(wait_until_dead(first).await, "runtime {first} outlived its task's timeout");
    let second = pid_of(&run(&invoker, request(&function_arn("unlimited"), json!({}))).await?)?;
    assert_ne!(second, first);
    Ok(())
}

/// A task's TimeoutSeconds counts from the hand-over of its event to a process, not from
/// when it joined the pool's queue: on a pool of one, three 0.6 s calls under a 1 s timeout all
/// succeed, the last after waiting 1.2 s — through the invoker alone (the pool's own timer)
/// and through the interpreter (whose timer restarts at `TaskProgress::Dispatched`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_timeout_counts_from_the_hand_over_not_the_queue() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("single", script.spec(1))])?;
    run(&invoker, request(&function_arn("single"), json!({}))).await?;
    let sleepy = || {
        let (progress, heard) = futures::channel::mpsc::unbounded();
        let mut request = request(&function_arn("single"), json!({"action": "sleep", "seconds": 0.6}));
        request.timeout = Some(Duration::from_secs(1));
        request.progress = Some(progress);
        (request, heard)
    };
    let (calls, heard): (Vec<_>, Vec<_>) = (0..3).map(|_| sleepy()).unzip();
    let results = futures::future::join_all(calls.into_iter().map(|call| outcome(&invoker, call))).await;
    for result in results {
        result.map_err(|f| anyhow!("{f:?}"))?;
    }
    for mut heard in heard {
        use futures::StreamExt;
        ensure!(matches!(heard.next().await, Some(TaskProgress::Queued)), "no Queued milestone");
        ensure!(matches!(heard.next().await, Some(TaskProgress::Dispatched)), "no Dispatched milestone");
    }
    // Without a timeout the milestones would move nothing: the caller is not told them.
    let (progress, mut heard) = futures::channel::mpsc::unbounded();
    let mut untimed = request(&function_arn("single"), json!({}));
    untimed.progress = Some(progress);
    outcome(&invoker, untimed).await.map_err(|f| anyhow!("{f:?}"))?;
    ensure!(futures::StreamExt::next(&mut heard).await.is_none(), "milestones without a timeout");

    let task = json!({"Type": "Task", "Resource": function_arn("single"), "TimeoutSeconds": 1,
        "Parameters": {"action": "sleep", "seconds": 0.6}, "End": true});
    let branch = json!({"StartAt": "T", "States": {"T": task}});
    let definition = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel",
        "Branches": [branch, branch, branch], "End": true}}});
    let machine = std::sync::Arc::new(StateMachine::from_value(definition)?);
    let env = Environment::new(std::sync::Arc::new(SystemClock), std::sync::Arc::new(invoker));
    let spec = ExecutionSpec::new("queued", "e", StateMachineType::Standard, ACCOUNT, REGION, json!({}));
    let outcome = run_execution(machine, spec, env).await;
    ensure!(outcome.status == ExecutionStatus::Succeeded, "{:?} {:?}", outcome.error, outcome.cause);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_of_two_serves_many_concurrent_invocations() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("warm", script.spec(2))])?;
    // Warm both processes first: two overlapping slow calls need both. Otherwise, on a busy
    // machine, one process can serve the whole burst before the other has started.
    let copy = invoker.clone();
    let (a, b) = tokio::join!(
        run(&invoker, request(&function_arn("warm"), json!({"action": "sleep", "seconds": 0.2}))),
        run(&copy, request(&function_arn("warm"), json!({"action": "sleep", "seconds": 0.2}))),
    );
    ensure!(pid_of(&a?)? != pid_of(&b?)?, "two overlapping calls ran on one process");
    let calls = (0..200).map(|i| {
        let invoker = invoker.clone();
        async move {
            let result = run(&invoker, request(&function_arn("warm"), json!({"i": i}))).await?;
            ensure!(result["event"] == json!({"i": i}), "invocation {i} got {result}");
            pid_of(&result)
        }
    });
    let pids = futures::future::try_join_all(calls).await?;
    let mut served: BTreeMap<u64, usize> = BTreeMap::new();
    for pid in &pids {
        *served.entry(*pid).or_default() += 1;
    }
    // Two processes, each reused for many invocations.
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(served.values().all(|count| *count >= 20), "{served:?}");

    // Later invocations still land on the same two processes.
    let known: BTreeSet<u64> = served.keys().copied().collect();
    for i in 0..20 {
        let pid = pid_of(&run(&invoker, request(&function_arn("warm"), json!({"i": i}))).await?)?;
        assert!(known.contains(&pid), "{pid} not in {known:?}");
    }
    Ok(())
}

#[tokio::test]
async fn warm_handler_init_errors_and_bad_entrypoints() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![
        ("broken", with_env(script.spec(1), "MODE", "init-error")),
        ("missing", FunctionSpec::runtime(["/nonexistent/stepmap-test-runtime"], 1)),
        ("quits", FunctionSpec::runtime(["sh", "-c", "exit 2"], 1)),
    ])?;
    // Every invocation of a runtime that cannot initialise fails with its init error.
    for _ in 0..2 {
        let (error, cause) = expect_failure(&invoker, request(&function_arn("broken"), json!({}))).await?;
        assert_eq!(error, "Runtime.ImportModuleError");
        let cause: Value = serde_json::from_str(&cause)?;
        assert_eq!(cause["errorMessage"], "cannot import things");
        assert!(cause["requestId"].as_str().is_some_and(is_uuid), "{cause}");
    }
    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "missing"}))).await?;
    assert_eq!(error, "Runtime.InvalidEntrypoint");
    assert!(cause.contains("cannot start"), "{cause}");
    let (error, cause) = expect_failure(&invoker, request(&function_arn("quits"), json!({}))).await?;
    assert_eq!(error, "Runtime.ExitError");
    assert!(cause.contains("Runtime exited with error: exit status 2"), "{cause}");
    Ok(())
}

#[tokio::test]
async fn dropping_the_invoker_kills_the_warm_processes() -> Result<()> {
    let script = Script::new()?;
    let invoker = invoker(vec![("warm", script.spec(2))])?;
    let copy = invoker.clone();
    let (a, b) = tokio::join!(
        run(&invoker, request(&function_arn("warm"), json!({"action": "sleep", "seconds": 0.3}))),
        run(&copy, request(&function_arn("warm"), json!({"action": "sleep", "seconds": 0.3}))),
    );
    let pids = [pid_of(&a?)?, pid_of(&b?)?];
    assert_ne!(pids[0], pids[1]);
    drop(copy);
    // One clone left: the pool lives on.
    assert!(!process_is_dead(pids[0]) && !process_is_dead(pids[1]));
    drop(invoker);
    for pid in pids {
        assert!(wait_until_dead(pid).await, "runtime {pid} survived the invoker");
    }
    Ok(())
}

// ------------------------------------------------------------------ the official awslambdaric

/// A handler module for awslambdaric.
const HANDLER: &str = r#"
import os, time

def transform(event, context):
    if event.get("fail"):
        raise ValueError("bad item " + str(event["fail"]))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "doubled": [x * 2 for x in event.get("items", [])],
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function": context.function_name,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"#;

/// A virtualenv with awslambdaric, made once per machine and reused:
/// `$STEPMAP_TEST_CACHE` or `~/.cache/stepmap`, then `awslambdaric-venv`. It is built in a
/// private directory and renamed into place, so concurrent test runs never see half of one.
fn awslambdaric_python() -> Result<PathBuf> {
    let cache = match std::env::var_os("STEPMAP_TEST_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("neither STEPMAP_TEST_CACHE nor HOME is set"))?;
            Path::new(&home).join(".cache").join("stepmap")
        }
    };
    let venv = cache.join("awslambdaric-venv");
    let python = venv.join("bin").join("python3");
    let usable = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", "import awslambdaric"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if usable(&python) {
        return Ok(python);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let building = tempfile::Builder::new().prefix("awslambdaric-venv-").tempdir_in(&cache)?;
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(building.path())
        .status()
        .context("running python3 -m venv")?;
    ensure!(status.success(), "python3 -m venv failed ({status}); the test needs Python 3 with the venv module");
    let pip = std::process::Command::new(building.path().join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "awslambdaric"])
        .output()
        .context("running pip")?;
    if !pip.status.success() {
        bail!(
            "cannot install awslambdaric from PyPI (pip {}); this test needs network access to PyPI \
             (or a pip configured for a mirror). pip said:\n{}",
            pip.status,
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    let built = building.keep();
    if std::fs::rename(&built, &venv).is_err() {
        // Another run won the race (or a broken venv is in the way): use theirs if it works.
        std::fs::remove_dir_all(&built)?;
        if !usable(&python) {
            std::fs::remove_dir_all(&venv).with_context(|| format!("removing the broken {}", venv.display()))?;
            bail!("{} was unusable and has been removed; run the test again", venv.display());
        }
    }
    ensure!(usable(&python), "awslambdaric is not importable from {}", python.display());
    Ok(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_awslambdaric_handler() -> Result<()> {
    let python = tokio::task::spawn_blocking(awslambdaric_python).await??;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("handler.py"), HANDLER)?;
    let ric = |handler: &str| {
        let spec = FunctionSpec::runtime(
            [python.display().to_string(), "-m".into(), "awslambdaric".into(), handler.into()],
            2,
        );
        with_env(spec, "PYTHONPATH", &dir.path().display().to_string())
    };
    let invoker = invoker(vec![
        ("transform", ric("handler.transform").with_timeout(Duration::from_secs(3))),
        ("nomodule", ric("no_such_module.transform")),
        ("nohandler", ric("handler.no_such_function")),
    ])?;

    // Both resource forms.
    let result = run(&invoker, request(&function_arn("transform"), json!({"items": [1, 2, 3]}))).await?;
    assert_eq!(result["doubled"], json!([2, 4, 6]));
    assert_eq!(result["function"], "transform");
    assert_eq!(result["arn"], function_arn("transform"));
    assert!(result["request_id"].as_str().is_some_and(is_uuid), "{result}");
    let remaining = result["remaining_ms"].as_i64().unwrap_or_default();
    assert!((1..=3000).contains(&remaining), "{result}");
    let result =
        run(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "transform", "Payload": {"items": [5]}}))).await?;
    assert_eq!(result["Payload"]["doubled"], json!([10]));
    assert_eq!(result["Payload"]["request_id"], result["SdkResponseMetadata"]["RequestId"]);

    // A handler exception, as AWS reports it.
    let (error, cause) = expect_failure(&invoker, request(&function_arn("transform"), json!({"fail": 3}))).await?;
    assert_eq!(error, "ValueError");
    ensure!(
        cause.starts_with(r#"{"errorMessage": "bad item 3", "errorType": "ValueError", "requestId": ""#),
        "{cause}"
    );
    let cause: Value = serde_json::from_str(&cause)?;
    assert!(cause["requestId"].as_str().is_some_and(is_uuid), "{cause}");
    assert!(cause["stackTrace"].as_array().is_some_and(|trace| !trace.is_empty()), "{cause}");

    // Many invocations over the pool of two: the same two processes serve them all (once both
    // are warm: two overlapping slow calls need both).
    let copy = invoker.clone();
    let (a, b) = tokio::join!(
        run(&invoker, request(&function_arn("transform"), json!({"sleep": 0.2}))),
        run(&copy, request(&function_arn("transform"), json!({"sleep": 0.2}))),
    );
    ensure!(pid_of(&a?)? != pid_of(&b?)?, "two overlapping calls ran on one process");
    let calls = (0..100).map(|i| {
        let invoker = invoker.clone();
        async move {
            let result = run(&invoker, request(&function_arn("transform"), json!({"items": [i]}))).await?;
            ensure!(result["doubled"] == json!([i * 2]), "invocation {i} got {result}");
            pid_of(&result)
        }
    });
    let pids: BTreeSet<u64> = futures::future::try_join_all(calls).await?.into_iter().collect();
    assert_eq!(pids.len(), 2, "{pids:?}");

    // The function timeout kills a slow handler; the pool recovers.
    let (error, cause) = expect_failure(&invoker, request(&function_arn("transform"), json!({"sleep": 60}))).await?;
    assert_eq!(error, "Sandbox.Timedout");
    assert!(cause.contains("Task timed out after 3.00 seconds"), "{cause}");
    let result = run(&invoker, request(&function_arn("transform"), json!({"items": [4]}))).await?;
    assert_eq!(result["doubled"], json!([8]));

    // Init errors the client reports itself.
    let (error, cause) = expect_failure(&invoker, request(&function_arn("nomodule"), json!({}))).await?;
    assert_eq!(error, "Runtime.ImportModuleError", "{cause}");
    assert!(cause.contains("no_such_module"), "{cause}");
    let (error, cause) = expect_failure(&invoker, request(&function_arn("nohandler"), json!({}))).await?;
    assert_eq!(error, "Runtime.HandlerNotFound", "{cause}");
    Ok(())
}
