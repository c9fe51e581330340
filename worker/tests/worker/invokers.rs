//! Integration tests of the task invokers: the function registry, the command protocol, both
//! Lambda resource forms, Lambda-compatible endpoints and the HTTP Task, the last two against
//! hand-rolled HTTP servers on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use stepmap_asl::failure::Failure;
use stepmap_asl::payload::Payload;
use stepmap_asl::resource::Resource;
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_worker::{FunctionRef, FunctionRegistry, FunctionSpec, LocalInvoker, WorkerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111111111111";
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
const HTTP_INVOKE: &str = "arn:aws:states:::http:invoke";

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

fn invoker(functions: &[(&str, FunctionSpec)]) -> Result<LocalInvoker> {
    let mut registry = FunctionRegistry::new();
    for (name, spec) in functions {
        registry.insert(name, spec.clone());
    }
    Ok(LocalInvoker::new(registry)?)
}

fn python(code: &str) -> FunctionSpec {
    FunctionSpec::command(["python3", "-c", code])
}

fn shell(code: &str) -> FunctionSpec {
    FunctionSpec::command(["sh", "-c", code])
}

/// Returns the event it receives.
const ECHO: &str = "import sys; sys.stdout.write(sys.stdin.read())";

async fn outcome(invoker: &LocalInvoker, request: TaskRequest) -> Result<Value, Failure> {
    // Through the trait object path the interpreter uses.
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

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("stepmap-worker-test-{}-{name}", std::process::id()))
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid_like(text)
}

fn uuid_like(text: &str) -> bool {
    text.chars().enumerate().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

// ------------------------------------------------------------------------------- registry

#[test]
fn registry_parses_json_and_toml_and_looks_up_every_name_form() -> Result<()> {
    let registry = FunctionRegistry::from_json_str(
        r#"{"functions": {
            "echo": {"command": ["python3", "-c", "pass"], "env": {"MODE": "x"}, "timeout_seconds": 2.5},
            "arn:aws:lambda:us-east-1:111111111111:function:remote": {"endpoint": "http://127.0.0.1:9000"}
        }}"#,
        "inline.json",
    )?;
    assert_eq!(registry.names().collect::<Vec<_>>(), ["echo", "remote"]);
    for name in [
        "echo",
        "echo:7",
        "echo:$LATEST",
        "111111111111:function:echo",
        "arn:aws:lambda:us-east-1:111111111111:function:echo",
        "arn:aws:lambda:eu-west-1:222222222222:function:echo:prod",
    ] {
        let (found, spec) = registry.lookup(name).ok_or_else(|| anyhow!("{name} not found"))?;
        assert_eq!(found, "echo", "{name}");
        assert_eq!(spec.timeout, Some(Duration::from_millis(2500)));
    }
    assert!(registry.lookup("remote").is_some());
    assert!(registry.lookup("missing").is_none());
    assert!(registry.lookup("").is_none());

    let toml_path = temp_path("functions.toml");
    std::fs::write(
        &toml_path,
        "[functions.echo]\ncommand = [\"cat\"]\n\n[functions.web]\nendpoint = \"https://example.invalid/\"\n",
    )?;
    let from_toml = FunctionRegistry::load(&toml_path)?;
    assert_eq!(from_toml.names().collect::<Vec<_>>(), ["echo", "web"]);

    // No telling extension: JSON is tried, then TOML.
    let plain_path = temp_path("functions-plain");
    std::fs::write(&plain_path, "[functions.echo]\ncommand = [\"cat\"]\n")?;
    assert_eq!(FunctionRegistry::load(&plain_path)?.len(), 1);

    std::fs::remove_file(&toml_path)?;
    std::fs::remove_file(&plain_path)?;

    assert_eq!(
        FunctionRef::parse("arn:aws:lambda:eu-west-1:222222222222:function:f:3"),
        Some(FunctionRef {
            name: "f".into(),
            region: Some("eu-west-1".into()),
            account: Some("222222222222".into()),
            qualifier: Some("3".into()),
        })
    );
    assert_eq!(FunctionRef::parse("a:b:c:d"), None);
    Ok(())
}

#[test]
fn registry_errors_name_the_file_and_the_function() -> Result<()> {
    let path = temp_path("bad-functions.json");
    std::fs::write(&path, r#"{"functions": {"good": {"command": ["cat"]}, "bad": {"comand": ["cat"]}}}"#)?;
    let error = FunctionRegistry::load(&path).err().ok_or_else(|| anyhow!("bad registry accepted"))?;
    let message = error.to_string();
    assert!(matches!(error, WorkerError::RegistryFunction { .. }), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("\"bad\"") && message.contains("comand"), "{message}");
    std::fs::remove_file(&path)?;

    for (text, expected) in [
        (r#"{"functions": {"f": {"command": ["cat"], "endpoint": "http://x"}}}"#, "not both"),
        (r#"{"functions": {"f": {}}}"#, "give a command"),
        (r#"{"functions": {"f": {"command": []}}}"#, "must name a program"),
        (r#"{"functions": {"f": {"endpoint": "ftp://x"}}}"#, "http://"),
        (r#"{"functions": {"f": {"command": ["cat"], "timeout_seconds": 0}}}"#, "timeout_seconds"),
        (
            r#"{"functions": {"f": {"command": ["cat"]}, "arn:aws:lambda:us-east-1:1:function:f": {"command": ["cat"]}}}"#,
            "twice",
        ),
    ] {
        let message = FunctionRegistry::from_json_str(text, "test.json")
            .err()
            .ok_or_else(|| anyhow!("accepted {text}"))?
            .to_string();
        assert!(message.contains("test.json") && message.contains(expected), "{message}");
    }
    let message = FunctionRegistry::from_json_str(r#"{"function": {}}"#, "top.json")
        .err()
        .ok_or_else(|| anyhow!("accepted a misspelt top level"))?
        .to_string();
    assert!(message.contains("top.json") && message.contains("function"), "{message}");

    let missing = FunctionRegistry::load(&temp_path("does-not-exist.json"))
        .err()
        .ok_or_else(|| anyhow!("loaded a missing file"))?;
    assert!(matches!(missing, WorkerError::RegistryRead { .. }));
    Ok(())
}

// ------------------------------------------------------------------------ command protocol

#[tokio::test]
async fn function_arn_form_returns_the_payload_itself() -> Result<()> {
    let code = "import json, os, sys\n\
                event = json.load(sys.stdin)\n\
                print(json.dumps({'got': event, 'name': os.environ['AWS_LAMBDA_FUNCTION_NAME'], 'mode': os.environ['MODE']}))";
    let mut spec = python(code);
    if let stepmap_worker::FunctionTarget::Command { env, .. } = &mut spec.target {
        env.insert("MODE".into(), "test".into());
    }
    let invoker = invoker(&[("echo", spec)])?;
    let result = run(&invoker, request(&function_arn("echo"), json!({"a": [1, 2.5, "x"]}))).await?;
    assert_eq!(result, json!({"got": {"a": [1, 2.5, "x"]}, "name": "echo", "mode": "test"}));
    Ok(())
}

/// The `stepmap` binary turns transparent huge pages off for itself (`PR_SET_THP_DISABLE`,
/// which `exec` keeps): the functions it starts get the system's setting back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn functions_do_not_inherit_the_engines_huge_page_setting() -> Result<()> {
    // nextest runs each test in a process of its own: the flag stays with this test.
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only.
    ensure!(unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0, "cannot disable huge pages here");
    let status = "cat > /dev/null; awk '/^THP_enabled:/ { print $2 }' /proc/self/status";
    let invoker = invoker(&[("thp", shell(status))])?;
    assert_eq!(run(&invoker, request(&function_arn("thp"), json!({}))).await?, json!(1));
    Ok(())
}

#[tokio::test]
async fn success_payloads_empty_raw_and_json() -> Result<()> {
    let invoker = invoker(&[
        ("empty", shell("cat > /dev/null")),
        ("raw", shell("printf 'HelloWorld!'")),
        ("quoted", shell("printf '\"HelloWorld!\"\\n'")),
        ("number", shell("echo 0.0")),
    ])?;
    assert_eq!(run(&invoker, request(&function_arn("empty"), json!({}))).await?, Value::Null);
    assert_eq!(run(&invoker, request(&function_arn("raw"), json!({}))).await?, json!("HelloWorld!"));
    assert_eq!(run(&invoker, request(&function_arn("quoted"), json!({}))).await?, json!("HelloWorld!"));
    let number = run(&invoker, request(&function_arn("number"), json!({}))).await?;
    assert!(number.is_f64() && number.as_f64() == Some(0.0), "{number}");
    Ok(())
}

#[tokio::test]
async fn function_errors_carry_aws_shaped_causes() -> Result<()> {
    let code = "import json, sys\n\
                sys.stdin.read()\n\
                print(json.dumps({'errorType': 'CustomError', 'errorMessage': 'boom', 'stackTrace': ['  File \"h.py\", line 2\\n']}))\n\
                sys.exit(1)";
    let invoker = invoker(&[("fails", python(code))])?;

    // Function ARN form: Python separators.
    let (error, cause) = expect_failure(&invoker, request(&function_arn("fails"), json!({}))).await?;
    assert_eq!(error, "CustomError");
    let prefix = r#"{"errorMessage": "boom", "errorType": "CustomError", "requestId": ""#;
    let suffix = r#"", "stackTrace": ["  File \"h.py\", line 2\n"]}"#;
    ensure!(cause.starts_with(prefix) && cause.ends_with(suffix), "cause {cause}");
    assert!(is_uuid(&cause[prefix.len()..cause.len() - suffix.len()]), "{cause}");

    // lambda:invoke: compact.
    let (error, cause) =
        expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "fails", "Payload": {}}))).await?;
    assert_eq!(error, "CustomError");
    let prefix = r#"{"errorMessage":"boom","errorType":"CustomError","requestId":""#;
    let suffix = r#"","stackTrace":["  File \"h.py\", line 2\n"]}"#;
    ensure!(cause.starts_with(prefix) && cause.ends_with(suffix), "cause {cause}");
    assert!(is_uuid(&cause[prefix.len()..cause.len() - suffix.len()]), "{cause}");
    Ok(())
}

#[tokio::test]
async fn abnormal_exits_become_lambda_runtime_errors() -> Result<()> {
    let invoker = invoker(&[
        ("crash", shell("exit 3")),
        ("killed", shell("kill -9 $$")),
        ("untyped", shell("echo 'not an error object'; exit 1")),
        ("missing", FunctionSpec::command(["/nonexistent/stepmap-test-program"])),
    ])?;
    let (error, cause) = expect_failure(&invoker, request(&function_arn("crash"), json!({}))).await?;
    assert_eq!(error, "Runtime.ExitError");
    let cause: Value = serde_json::from_str(&cause)?;
    let message = cause["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("RequestId: ") && message.ends_with("Error: Runtime exited with error: exit status 3"),
        "{message}"
    );
    assert!(cause["requestId"].as_str().is_some_and(is_uuid), "{cause}");

    let (error, cause) = expect_failure(&invoker, request(&function_arn("killed"), json!({}))).await?;
    assert_eq!(error, "Runtime.ExitError");
    assert!(cause.contains("Runtime exited with error: signal: killed"), "{cause}");

    let (error, cause) = expect_failure(&invoker, request(&function_arn("untyped"), json!({}))).await?;
    assert_eq!(error, "Lambda.Unknown");
    assert!(cause.ends_with("Returned payload: not an error object"), "{cause}");

    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "missing"}))).await?;
    assert_eq!(error, "Runtime.InvalidEntrypoint");
    assert!(cause.contains("cannot start"), "{cause}");
    Ok(())
}

/// Whether a process is gone (or a zombie nobody reaped yet, which is dead too).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_until_dead(pid: u32) -> bool {
    for _ in 0..200 {
        if process_is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn timeouts_kill_the_whole_process_group() -> Result<()> {
    let pid_file = temp_path("sleeper.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let invoker =
        invoker(&[("sleeper", shell(&script)), ("slow", shell("sleep 300").with_timeout(Duration::from_millis(300)))])?;

    // The state's TimeoutSeconds: States.Timeout, and the background child dies too.
    let mut timed = request(&function_arn("sleeper"), json!({}));
    timed.timeout = Some(Duration::from_secs(2));
    let (error, _) = expect_failure(&invoker, timed).await?;
    assert_eq!(error, "States.Timeout");
    let pid: u32 = std::fs::read_to_string(&pid_file).context("the sleeper wrote no pid")?.trim().parse()?;
    std::fs::remove_file(&pid_file)?;
    assert!(wait_until_dead(pid).await, "background process {pid} survived the timeout");

    // The function's own timeout: Lambda's Sandbox.Timedout.
    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "slow"}))).await?;
    assert_eq!(error, "Sandbox.Timedout");
    assert!(cause.contains("Error: Task timed out after 0.30 seconds"), "{cause}");
    Ok(())
}

#[tokio::test]
async fn dropping_an_invocation_kills_the_command() -> Result<()> {
    let pid_file = temp_path("dropped.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let invoker = invoker(&[("sleeper", shell(&script))])?;
    let call = outcome(&invoker, request(&function_arn("sleeper"), json!({})));
    // Give up on the call the way an interpreter enforcing TimeoutSeconds would.
    let abandoned = tokio::time::timeout(Duration::from_secs(2), call).await;
    assert!(abandoned.is_err(), "the sleeper finished?");
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    std::fs::remove_file(&pid_file)?;
    assert!(wait_until_dead(pid).await, "background process {pid} survived the dropped call");
    Ok(())
}

// ---------------------------------------------------------------------------- lambda:invoke

#[tokio::test]
async fn lambda_invoke_result_has_the_aws_shape() -> Result<()> {
    let invoker = invoker(&[("echo", python(ECHO))])?;
    let result =
        run(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "echo", "Payload": {"foo": "foo-1"}}))).await?;
    let object = result.as_object().ok_or_else(|| anyhow!("not an object: {result}"))?;
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["ExecutedVersion", "Payload", "SdkHttpMetadata", "SdkResponseMetadata", "StatusCode"]
    );
    assert_eq!(result["ExecutedVersion"], "$LATEST");
    assert_eq!(result["Payload"], json!({"foo": "foo-1"}));
    assert_eq!(result["StatusCode"], 200);
    let metadata = &result["SdkHttpMetadata"];
    assert_eq!(metadata["HttpStatusCode"], 200);
    let request_id = result["SdkResponseMetadata"]["RequestId"].as_str().unwrap_or_default();
    assert!(is_uuid(request_id), "{result}");
    let all = metadata["AllHttpHeaders"].as_object().ok_or_else(|| anyhow!("no AllHttpHeaders"))?;
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        [
            "X-Amz-Executed-Version",
            "x-amzn-Remapped-Content-Length",
            "Connection",
            "x-amzn-RequestId",
            "Content-Length",
            "Date",
            "X-Amzn-Trace-Id",
            "Content-Type"
        ]
    );
    // The event goes out with Python's separators, so an echo is 16 bytes as on AWS.
    assert_eq!(all["Content-Length"], json!(["16"]));
    assert_eq!(all["x-amzn-RequestId"], json!([request_id]));
    let headers = &metadata["HttpHeaders"];
    assert_eq!(headers["Content-Length"], "16");
    assert_eq!(headers["Content-Type"], "application/json");
    assert_eq!(headers["x-amzn-RequestId"], request_id);
    assert!(headers["Date"].as_str().is_some_and(|d| d.ends_with(" GMT")), "{headers}");
    Ok(())
}

#[tokio::test]
async fn lambda_invoke_payload_forms_and_parameters() -> Result<()> {
    let invoker = invoker(&[("echo", python(ECHO)), ("logger", shell("echo 'log line' >&2; echo '{}'"))])?;
    let payload_of = |params: Value| {
        let invoker = invoker.clone();
        async move { run(&invoker, request(LAMBDA_INVOKE, params)).await.map(|r| r["Payload"].clone()) }
    };
    // Absent or null Payload: the function receives {}.
    assert_eq!(payload_of(json!({"FunctionName": "echo"})).await?, json!({}));
    assert_eq!(payload_of(json!({"FunctionName": "echo", "Payload": null})).await?, json!({}));
    // A string holding JSON is sent as that JSON; any other string as a JSON string.
    let number = payload_of(json!({"FunctionName": "echo", "Payload": "0.0"})).await?;
    assert!(number.is_f64(), "{number}");
    assert_eq!(payload_of(json!({"FunctionName": "echo", "Payload": "\"HelloWorld\""})).await?, json!("HelloWorld"));
    assert_eq!(payload_of(json!({"FunctionName": "echo", "Payload": "[]"})).await?, json!([]));
    assert_eq!(payload_of(json!({"FunctionName": "echo", "Payload": "not json"})).await?, json!("not json"));
    // FunctionName as partial and full ARN; a numeric Qualifier is the executed version.
    assert_eq!(payload_of(json!({"FunctionName": "111111111111:function:echo", "Payload": [1]})).await?, json!([1]));
    let result = run(
        &invoker,
        request(LAMBDA_INVOKE, json!({"FunctionName": function_arn("echo"), "Qualifier": "7", "Payload": 1})),
    )
    .await?;
    assert_eq!(result["ExecutedVersion"], "7");
    assert_eq!(result["Payload"], 1);

    // LogType Tail: the function's stderr, base64, as LogResult.
    let result = run(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "logger", "LogType": "Tail"}))).await?;
    let log = result["LogResult"].as_str().ok_or_else(|| anyhow!("no LogResult in {result}"))?;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(log)?, b"log line\n");
    assert_eq!(result["SdkHttpMetadata"]["AllHttpHeaders"]["X-Amz-Log-Result"], json!([log]));

    // Parameters that cannot start the task.
    for params in [
        json!({"Payload": {}}),
        json!({"FunctionName": 3}),
        json!({"FunctionName": "echo", "Bogus": 1}),
        json!({"FunctionName": "echo", "InvocationType": "Event"}),
        json!("echo"),
    ] {
        let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, params.clone())).await?;
        assert_eq!(error, "States.Runtime", "{params}");
        assert!(cause.contains("could not be used to start the Task"), "{cause}");
    }
    Ok(())
}

#[tokio::test]
async fn unknown_functions_are_resource_not_found() -> Result<()> {
    let invoker = invoker(&[("echo", python(ECHO))])?;
    let check = |cause: &str, arn: &str| -> Result<()> {
        let prefix = format!(
            "Function not found: {arn} (Service: AWSLambda; Status Code: 404; Error Code: \
             ResourceNotFoundException; Request ID: "
        );
        ensure!(cause.starts_with(&prefix) && cause.ends_with("; Proxy: null)"), "cause {cause}");
        ensure!(is_uuid(&cause[prefix.len()..cause.len() - "; Proxy: null)".len()]), "cause {cause}");
        Ok(())
    };
    let (error, cause) =
        expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "no_such_fn", "Payload": null})))
            .await?;
    assert_eq!(error, "Lambda.ResourceNotFoundException");
    check(&cause, "arn:aws:lambda:us-east-1:111111111111:function:no_such_fn:$LATEST")?;

    let other = "arn:aws:lambda:eu-west-1:222222222222:function:gone:prod";
    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": other}))).await?;
    assert_eq!(error, "Lambda.ResourceNotFoundException");
    check(&cause, other)?;

    let (error, cause) = expect_failure(&invoker, request(&function_arn("gone"), json!({}))).await?;
    assert_eq!(error, "Lambda.ResourceNotFoundException");
    check(&cause, "arn:aws:lambda:us-east-1:111111111111:function:gone:$LATEST")?;
    Ok(())
}

#[tokio::test]
async fn oversized_results_exceed_the_data_limit() -> Result<()> {
    let invoker =
        invoker(&[("large", python("import json, sys; sys.stdin.read(); json.dump('a' * 263168, sys.stdout)"))])?;
    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "large"}))).await?;
    assert_eq!(error, "States.DataLimitExceeded");
    assert_eq!(
        cause,
        "The state/task 'lambda' returned a result with a size exceeding the maximum number of bytes service limit."
    );
    let arn = function_arn("large");
    let (error, cause) = expect_failure(&invoker, request(&arn, json!({}))).await?;
    assert_eq!(error, "States.DataLimitExceeded");
    assert_eq!(
        cause,
        format!(
            "The state/task '{arn}' returned a result with a size exceeding the maximum number of bytes service limit."
        )
    );
    Ok(())
}

#[tokio::test]
async fn unsupported_resources_fail_at_run_time() -> Result<()> {
    let invoker = invoker(&[])?;
    let (error, cause) = expect_failure(&invoker, request("arn:aws:states:::sns:publish", json!({}))).await?;
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("arn:aws:states:::sns:publish"), "{cause}");
    Ok(())
}

// ------------------------------------------------------------------- loopback HTTP servers

#[derive(Clone, Debug)]
struct HttpRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct HttpResponse {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json_response(status: u16, reason: &'static str, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        reason,
        headers: vec![("Content-Type", "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// A minimal HTTP/1.1 server: one request per connection, `Connection: close`.
async fn serve(handler: fn(&HttpRequest) -> HttpResponse) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(request) = read_request(&mut stream).await else {
                    return;
                };
                let response = handler(&request);
                let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&response.body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(format!("http://{address}"))
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Result<HttpRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        ensure!(read > 0, "connection closed before the headers ended");
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse())
        .transpose()?
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await?;
        ensure!(read > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(HttpRequest { method, target, headers, body })
}

// ----------------------------------------------------------------------- Lambda endpoints

fn lambda_api(request: &HttpRequest) -> HttpResponse {
    let echo = |req: &HttpRequest| {
        json!({
            "method": req.method,
            "target": req.target,
            "invocationType": req.header("X-Amz-Invocation-Type"),
            "event": String::from_utf8_lossy(&req.body),
        })
    };
    match request.target.split('?').next().unwrap_or_default() {
        "/2015-03-31/functions/echo/invocations" => HttpResponse {
            status: 200,
            reason: "OK",
            headers: vec![
                ("X-Amz-Executed-Version", "$LATEST".into()),
                ("x-amzn-RequestId", "0f0f0f0f-1111-2222-3333-444444444444".into()),
            ],
            body: echo(request).to_string().into_bytes(),
        },
        "/2015-03-31/functions/fails/invocations" => HttpResponse {
            status: 200,
            reason: "OK",
            headers: vec![("X-Amz-Function-Error", "Unhandled".into())],
            body: br#"{"errorMessage": "bad value", "errorType": "ValueError", "stackTrace": []}"#.to_vec(),
        },
        _ => HttpResponse {
            status: 404,
            reason: "Not Found",
            headers: vec![("x-amzn-ErrorType", "ResourceNotFoundException:http://internal.amazon.com/".into())],
            body: br#"{"Type": "User", "message": "Function not found: arn:aws:lambda:us-east-1:111111111111:function:gone"}"#.to_vec(),
        },
    }
}

#[tokio::test]
async fn lambda_endpoints_speak_the_invoke_api() -> Result<()> {
    let base = serve(lambda_api).await?;
    let endpoint = FunctionSpec::endpoint(format!("{base}/"));
    let invoker = invoker(&[("echo", endpoint.clone()), ("fails", endpoint.clone()), ("gone", endpoint)])?;

    let result = run(&invoker, request(&function_arn("echo"), json!({"k": "v"}))).await?;
    assert_eq!(
        result,
        json!({
            "method": "POST",
            "target": "/2015-03-31/functions/echo/invocations",
            "invocationType": "RequestResponse",
            "event": "{\"k\": \"v\"}",
        })
    );

    let result = run(
        &invoker,
        request(LAMBDA_INVOKE, json!({"FunctionName": "echo", "Qualifier": "live", "Payload": {"n": 1}})),
    )
    .await?;
    assert_eq!(result["Payload"]["target"], "/2015-03-31/functions/echo/invocations?Qualifier=live");
    assert_eq!(result["SdkResponseMetadata"]["RequestId"], "0f0f0f0f-1111-2222-3333-444444444444");
    assert_eq!(result["StatusCode"], 200);

    let (error, cause) = expect_failure(&invoker, request(LAMBDA_INVOKE, json!({"FunctionName": "fails"}))).await?;
    assert_eq!(error, "ValueError");
    let cause: Value = serde_json::from_str(&cause)?;
    assert_eq!(cause["errorMessage"], "bad value");
    assert!(cause["requestId"].as_str().is_some_and(is_uuid), "{cause}");

    let (error, cause) = expect_failure(&invoker, request(&function_arn("gone"), json!({}))).await?;
    assert_eq!(error, "Lambda.ResourceNotFoundException");
    let expected = "Function not found: arn:aws:lambda:us-east-1:111111111111:function:gone (Service: AWSLambda; \
                    Status Code: 404; Error Code: ResourceNotFoundException;";
    assert!(cause.starts_with(expected), "{cause}");

    // Nothing listening: the SDK's client exception.
    let closed = TcpListener::bind("127.0.0.1:0").await?;
    let dead = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let invoker = self::invoker(&[("echo", FunctionSpec::endpoint(dead))])?;
    let (error, cause) = expect_failure(&invoker, request(&function_arn("echo"), json!({}))).await?;
    assert_eq!(error, "Lambda.SdkClientException");
    assert!(cause.starts_with("Unable to execute HTTP request"), "{cause}");
    Ok(())
}

// ------------------------------------------------------------------------------- HTTP task

fn http_api(request: &HttpRequest) -> HttpResponse {
    let path = request.target.split('?').next().unwrap_or_default();
    match path {
        "/missing" => HttpResponse {
            status: 404,
            reason: "Not Found",
            headers: vec![("Content-Type", "text/plain".into())],
            body: b"no such thing".to_vec(),
        },
        "/text" => HttpResponse {
            status: 200,
            reason: "OK",
            headers: vec![("Content-Type", "text/plain".into()), ("X-Multi", "a".into()), ("X-Multi", "b".into())],
            body: b"plain words".to_vec(),
        },
        _ => json_response(
            200,
            "OK",
            &json!({
                "method": request.method,
                "target": request.target,
                "custom": request.header("X-Custom"),
                "contentType": request.header("Content-Type"),
                "body": String::from_utf8_lossy(&request.body),
            }),
        ),
    }
}

#[tokio::test]
async fn http_task_returns_the_response_and_fails_on_errors() -> Result<()> {
    let base = serve(http_api).await?;
    let invoker = invoker(&[])?;

    let result = run(
        &invoker,
        request(
            HTTP_INVOKE,
            json!({
                "ApiEndpoint": format!("{base}/items"),
                "Method": "POST",
                "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:111111111111:connection/x/y"},
                "Headers": {"X-Custom": "yes"},
                "QueryParameters": {"a": "b c", "n": 1, "list": ["x", "y"]},
                "RequestBody": {"hello": "world"}
            }),
        ),
    )
    .await?;
    let object = result.as_object().ok_or_else(|| anyhow!("not an object: {result}"))?;
    assert_eq!(object.keys().collect::<Vec<_>>(), ["Headers", "ResponseBody", "StatusCode", "StatusText"]);
    assert_eq!(result["StatusCode"], 200);
    assert_eq!(result["StatusText"], "OK");
    assert_eq!(result["Headers"]["content-type"], json!(["application/json"]));
    assert_eq!(
        result["ResponseBody"],
        json!({
            "method": "POST",
            "target": "/items?a=b+c&n=1&list=x&list=y",
            "custom": "yes",
            "contentType": "application/json",
            "body": "{\"hello\":\"world\"}"
        })
    );

    // URL-encoded body; a text response stays text; repeated headers collect.
    let result = run(
        &invoker,
        request(
            HTTP_INVOKE,
            json!({
                "ApiEndpoint": format!("{base}/form"),
                "Method": "PUT",
                "RequestBody": {"tags": ["a b", "c"], "owner": {"name": "Zoë"}},
                "Transform": {"RequestBodyEncoding": "URL_ENCODED", "RequestEncodingOptions": {"ArrayFormat": "BRACKETS"}}
            }),
        ),
    )
    .await?;
    assert_eq!(result["ResponseBody"]["contentType"], "application/x-www-form-urlencoded");
    assert_eq!(result["ResponseBody"]["body"], "tags%5B%5D=a+b&tags%5B%5D=c&owner%5Bname%5D=Zo%C3%AB");
    let result =
        run(&invoker, request(HTTP_INVOKE, json!({"ApiEndpoint": format!("{base}/text"), "Method": "GET"}))).await?;
    assert_eq!(result["ResponseBody"], "plain words");
    assert_eq!(result["Headers"]["x-multi"], json!(["a", "b"]));

    // 4xx: States.Http.StatusCode.<code>, the response as cause.
    let (error, cause) = expect_failure(
        &invoker,
        request(HTTP_INVOKE, json!({"ApiEndpoint": format!("{base}/missing"), "Method": "GET"})),
    )
    .await?;
    assert_eq!(error, "States.Http.StatusCode.404");
    let cause: Value = serde_json::from_str(&cause)?;
    assert_eq!(cause["StatusCode"], 404);
    assert_eq!(cause["StatusText"], "Not Found");
    assert_eq!(cause["ResponseBody"], "no such thing");

    // Nothing listening: States.Http.Socket.
    let closed = TcpListener::bind("127.0.0.1:0").await?;
    let dead = format!("http://{}/", closed.local_addr()?);
    drop(closed);
    let (error, _) =
        expect_failure(&invoker, request(HTTP_INVOKE, json!({"ApiEndpoint": dead, "Method": "GET"}))).await?;
    assert_eq!(error, "States.Http.Socket");

    // Parameters that cannot start the task.
    for params in [
        json!({"Method": "GET"}),
        json!({"ApiEndpoint": format!("{base}/"), "Method": "BREW"}),
        json!({"ApiEndpoint": "not a url", "Method": "GET"}),
        json!({"ApiEndpoint": format!("{base}/"), "Method": "GET", "Unknown": 1}),
    ] {
        let (error, _) = expect_failure(&invoker, request(HTTP_INVOKE, params.clone())).await?;
        assert_eq!(error, "States.Runtime", "{params}");
    }
    Ok(())
}
