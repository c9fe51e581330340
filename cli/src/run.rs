//! `stepmap run`: one execution on this machine, start to end.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use stepmap_asl::model::{State, StateMachine, StateMachineType};
use stepmap_asl::resource::Resource;
use stepmap_coordinator::driver::DriverTime;
use stepmap_coordinator::state::{name_from, ArnScope, ExecutionRecord, ExecutionStatus};
use stepmap_proto::v1 as pb;
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::fleet_worker::FleetWorkerConfig;
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;

use crate::embedded::{EmbeddedCluster, EmbeddedConfig};
use crate::{definition, input, progress, EXIT_USAGE};

/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

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
    /// The in-process worker's slots: work units of a Distributed Map run at once (within
    /// MaxConcurrency). Default: one per core.
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

    // By default the definition file's name, made valid as a state machine name.
    let state_machine_name = args.state_machine_name.clone().unwrap_or_else(|| {
        let stem = args.definition.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        name_from(stem.trim_end_matches(".asl"), "state-machine")
    });
    let execution_name = args.name.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Bucket B, key K is the file <data-dir>/B/K; without --data-dir, the working directory.
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    // The embedded cluster's workers and coordinator share these stores (and this process).
    let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: data_dir.clone() }).keeping_staged_batches());
    let slots = args.slots.map_or_else(FleetWorkerConfig::default_slots, |n| n as usize);
    // The cluster lasts this run: its Raft log goes with it.
    let raft_dir =
        tempfile::Builder::new().prefix("stepmap-run-").tempdir().context("cannot make a temporary directory")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let raft_path = raft_dir.path().to_path_buf();
    let scope = ArnScope { region: args.region.clone(), account: args.account.clone() };
    let time = if args.time_skipping { DriverTime::Skipping } else { DriverTime::Wall };
    let machine_type = args.machine_type.to_string();
    // The run is a task of the runtime, not a future of this thread: what wakes it (the
    // state's every change) then wakes a worker thread, mostly awake anyway, rather than
    // this one (orders, 1M rows: ~540 wake-ups of the main thread before).
    let run = runtime.spawn(async move {
        let config = EmbeddedConfig {
            raft_dir: &raft_path,
            stores,
            invoker: Arc::new(LocalInvoker::new(registry)?),
            slots,
            scope,
            time,
            progress: progress::observer(&data_dir),
        };
        let cluster = EmbeddedCluster::start(config).await?;
        let machine = pb::CreateStateMachineRequest {
            name: state_machine_name,
            definition: text,
            role_arn: String::new(),
            r#type: machine_type,
        };
        let started = cluster.start_execution(machine, execution_name, &input).await;
        let interrupt = crate::worker::shutdown_signal().context("cannot listen for Ctrl-C")?;
        let record = match started {
            Ok(arn) => {
                tokio::select! {
                    record = cluster.wait_closed(&arn) => record.map(|record| (record, false)),
                    () = interrupt => {
                        // Ctrl-C or SIGTERM: the execution is stopped (ABORTED) as StopExecution
                        // would, so that what it started ends and the output says so.
                        eprintln!("interrupted: stopping {}", arn.as_str());
                        match cluster.stop_execution(&arn, "the stepmap run process was interrupted").await {
                            Ok(()) => cluster.wait_closed(&arn).await.map(|record| (record, true)),
                            Err(status) => Err(anyhow::anyhow!("interrupted: {}", status.message())),
                        }
                    }
                }
            }
            Err(status) => Err(anyhow::anyhow!("{}", status.message())),
        };
        cluster.shutdown().await;
        record
    });
    let record = runtime.block_on(run).context("the run's task ended abnormally")??;
    let (record, interrupted) = record;
    if args.output == "json" {
        print_json(&record);
    } else {
        print_text(&record);
    }
    Ok(match record.status {
        _ if interrupted => EXIT_INTERRUPTED,
        ExecutionStatus::Succeeded => 0,
        _ => 1,
    })
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

fn print_json(record: &ExecutionRecord) {
    let document = json!({
        "executionArn": record.arn.as_str(),
        "stateMachineArn": record.state_machine_arn.as_str(),
        "name": record.name,
        "status": record.status.as_str(),
        "startDate": stepmap_asl::timestamp::format(record.start_date),
        "stopDate": record.stop_date.map(stepmap_asl::timestamp::format),
        "output": record.output.as_deref().and_then(|text| serde_json::from_str::<Value>(text).ok()),
        "error": record.error,
        "cause": record.cause,
        "history": record.history,
    });
    outln!("{document}");
}

fn print_text(record: &ExecutionRecord) {
    let elapsed = record.stop_date.map_or(0, |stop| (stop - record.start_date).num_milliseconds());
    let cpu = engine_cpu().map(|cpu| format!(", engine CPU {} ms", cpu.as_millis())).unwrap_or_default();
    outln!("{} {} in {elapsed} ms ({} events{cpu})", record.arn.as_str(), record.status.as_str(), record.history.len());
    match record.status {
        ExecutionStatus::Succeeded => {
            let output = record.output.as_deref().and_then(|text| serde_json::from_str::<Value>(text).ok());
            outln!("{}", serde_json::to_string_pretty(&output.unwrap_or(Value::Null)).unwrap_or_default());
        }
        _ => {
            if let Some(state) = failed_state(record) {
                outln!("state: {state}");
            }
            outln!("error: {}", record.error.as_deref().unwrap_or("(none)"));
            outln!("cause: {}", record.cause.as_deref().unwrap_or("(none)"));
        }
    }
}

/// CPU time (user + system) this process has used so far (up to the summary, so not its
/// shutdown): the engine's own work (reading, dispatch, children, results), without that of
/// the functions it ran, which are other processes. Beside the wall time it tells how much of
/// a run the engine itself cost.
#[cfg(unix)]
fn engine_cpu() -> Option<std::time::Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, or fails and
    // writes nothing; the value is read only after success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(not(unix))]
fn engine_cpu() -> Option<std::time::Duration> {
    None
}

/// The state the execution was in when it failed: the last one entered.
fn failed_state(record: &ExecutionRecord) -> Option<&str> {
    record
        .history
        .iter()
        .rev()
        .find(|event| event.event_type.ends_with("StateEntered"))
        .and_then(|event| event.details.as_ref()?.get("name")?.as_str())
}
