//! `stepmap run`: one execution on this machine, start to end.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use stepmap_asl::clock::{SystemClock, VirtualClock};
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{self, Environment, ExecutionOutcome, ExecutionSpec, ExecutionStatus};
use stepmap_asl::model::{State, StateMachine, StateMachineType};
use stepmap_asl::resource::Resource;
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use stepmap_worker::LocalMapRunExecutor;

use crate::{definition, input, progress, EXIT_USAGE};

#[derive(Args)]
pub struct RunArgs {
    /// The definition file (JSON).
    definition: PathBuf,
    /// Execution input: a JSON text, or @FILE to read it from a file. Default `{}`.
    #[arg(long)]
    input: Option<String>,
    /// `text` for people, `json` for one JSON object with status, output and history.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Execution name (default: a random UUID).
    #[arg(long)]
    name: Option<String>,
    /// State machine name used in ARNs (default: the definition file's stem).
    #[arg(long = "state-machine-name")]
    state_machine_name: Option<String>,
    #[arg(long = "type", default_value = "STANDARD")]
    machine_type: StateMachineType,
    /// Account id used in ARNs.
    #[arg(long, default_value = "123456789012", env = "STEPMAP_ACCOUNT")]
    account: String,
    /// Region used in ARNs.
    #[arg(long, default_value = "us-east-1", env = "STEPMAP_REGION")]
    region: String,
    /// Local object storage: S3 bucket B, key K is the file DIR/B/K.
    #[arg(long = "data-dir", env = "STEPMAP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Function registry (JSON or TOML): which command or endpoint runs each Lambda.
    #[arg(long, env = "STEPMAP_FUNCTIONS")]
    functions: Option<PathBuf>,
    /// Let Wait states, retry intervals and timeouts elapse in virtual time whenever the
    /// execution is otherwise idle.
    #[arg(long = "time-skipping")]
    time_skipping: bool,
    /// Distributed Map children run at once at most (within MaxConcurrency). Default: one per
    /// core.
    #[arg(long, env = "STEPMAP_SLOTS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    slots: Option<u32>,
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let text = definition::read(&args.definition)?;
    let report = definition::validate_text(&text, args.machine_type);
    if !report.is_ok() {
        for diagnostic in report.errors() {
            eprintln!("{}", definition::describe(diagnostic));
        }
        eprintln!("{}: the definition is not valid; nothing was run", args.definition.display());
        return Ok(EXIT_USAGE);
    }
    let machine = StateMachine::from_json(&text)
        .with_context(|| format!("cannot load the definition '{}'", args.definition.display()))?;
    refuse_unrunnable(&machine)?;
    let input = input::read_input(args.input.as_deref())?;
    if let Some(dir) = &args.data_dir {
        anyhow::ensure!(dir.is_dir(), "--data-dir '{}' is not a directory", dir.display());
    }
    let registry = match &args.functions {
        Some(path) => FunctionRegistry::load(path)?,
        None => FunctionRegistry::new(),
    };

    let state_machine_name = args.state_machine_name.clone().unwrap_or_else(|| {
        let stem = args.definition.file_stem().and_then(|s| s.to_str()).unwrap_or("state-machine");
        stem.trim_end_matches(".asl").to_string()
    });
    let execution_name = args.name.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let spec =
        ExecutionSpec::new(&state_machine_name, &execution_name, args.machine_type, &args.account, &args.region, input);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let invoker: Arc<dyn TaskInvoker> =
        Arc::new(OnRuntime { inner: Arc::new(LocalInvoker::new(registry)?), runtime: runtime.handle().clone() });
    let machine = Arc::new(machine);
    // Bucket B, key K is the file <data-dir>/B/K; without --data-dir, the working directory.
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: data_dir.clone() }));
    let slots = args.slots.map_or_else(LocalMapRunExecutor::default_slots, |n| n as usize);
    let progress = progress::observer(&data_dir);
    let executor = |parallel: bool| {
        let executor = LocalMapRunExecutor::new(stores.clone(), slots, parallel);
        Arc::new(match progress.clone() {
            Some(observer) => executor.with_progress(observer),
            None => executor,
        })
    };
    let outcome = if args.time_skipping {
        let clock = VirtualClock::new(chrono::Utc::now());
        // Under virtual time, children stay on the polling thread so the clock sees idleness.
        let map_runs = executor(false);
        let env = Environment::new(Arc::new(clock.clone()), invoker).with_map_runs(map_runs);
        let _context = runtime.enter();
        clock.block_on(interpreter::run_execution(machine, spec.clone(), env))
    } else {
        let map_runs = executor(true);
        let env = Environment::new(Arc::new(SystemClock), invoker).with_map_runs(map_runs);
        runtime.block_on(interpreter::run_execution(machine, spec.clone(), env))
    };
    if args.output == "json" {
        print_json(&spec, &outcome);
    } else {
        print_text(&spec, &outcome);
    }
    Ok(if outcome.status == ExecutionStatus::Succeeded { 0 } else { 1 })
}

/// Refuses, before anything starts, what this build cannot run: JSONata and Task resources
/// of AWS services stepmap does not have.
fn refuse_unrunnable(machine: &StateMachine) -> anyhow::Result<()> {
    anyhow::ensure!(
        !machine.uses_jsonata(),
        "this definition uses QueryLanguage JSONata, which this version of stepmap does not run yet"
    );
    let mut problems = Vec::new();
    machine.block.walk(&mut |name, state| match state {
        State::Task(task) if !Resource::parse(&task.resource).is_supported() => problems.push(format!(
            "state '{name}': resource '{}' is not supported by stepmap (it runs Lambda functions, lambda:invoke and http:invoke)",
            task.resource
        )),
        _ => {}
    });
    problems.sort();
    anyhow::ensure!(problems.is_empty(), "the definition cannot run here:\n  {}", problems.join("\n  "));
    Ok(())
}

/// Runs invocations on the tokio runtime, whatever executor polls the execution (the
/// time-skipping executor is not a tokio one).
struct OnRuntime {
    inner: Arc<LocalInvoker>,
    runtime: tokio::runtime::Handle,
}

impl TaskInvoker for OnRuntime {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Value, Failure>> {
        let task = self.runtime.spawn({
            let inner = self.inner.clone();
            async move { inner.run(request).await }
        });
        Box::pin(async move {
            task.await.unwrap_or_else(|error| {
                Err(Failure::new("States.TaskFailed", format!("the task invocation crashed: {error}")))
            })
        })
    }
}

fn print_json(spec: &ExecutionSpec, outcome: &ExecutionOutcome) {
    let document = json!({
        "executionArn": spec.execution_arn,
        "stateMachineArn": spec.state_machine_arn,
        "name": spec.execution_name,
        "status": outcome.status.as_str(),
        "startDate": stepmap_asl::timestamp::format(outcome.start_time),
        "stopDate": stepmap_asl::timestamp::format(outcome.stop_time),
        "output": outcome.output,
        "error": outcome.error,
        "cause": outcome.cause,
        "history": outcome.history,
    });
    println!("{document}");
}

fn print_text(spec: &ExecutionSpec, outcome: &ExecutionOutcome) {
    let elapsed = (outcome.stop_time - outcome.start_time).num_milliseconds();
    println!("{} {} in {elapsed} ms ({} events)", spec.execution_arn, outcome.status.as_str(), outcome.history.len());
    match outcome.status {
        ExecutionStatus::Succeeded => {
            let output = outcome.output.as_ref().unwrap_or(&Value::Null);
            println!("{}", serde_json::to_string_pretty(output).unwrap_or_default());
        }
        _ => {
            if let Some(state) = &outcome.failed_state {
                println!("state: {state}");
            }
            println!("error: {}", outcome.error.as_deref().unwrap_or("(none)"));
            println!("cause: {}", outcome.cause.as_deref().unwrap_or("(none)"));
        }
    }
}
