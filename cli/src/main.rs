//! The `stepmap` command. Thin: argument parsing and exit codes; the work is in the
//! subcommand modules and the library crates.

#[macro_use]
mod output;

mod api_client;
mod coordinator;
mod definition;
mod embedded;
mod execution_verbs;
mod input;
mod map_run_verbs;
mod progress;
mod run;
mod state_machine_verbs;
mod task_verbs;
mod validate;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a map run allocates and frees many small JSON
/// values from several threads, where glibc's malloc spent a fifth of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same in mimalloc v2 and v3,
/// which libmimalloc-sys builds); the `mimalloc` crate does not export the options.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    /// mimalloc's own; linked in by the `mimalloc` crate.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Memory freed by a work unit goes back to the OS only after it has stayed unused for 1 s
/// (mimalloc's default: 10 ms). A map run frees and reallocates the same few megabytes per
/// unit, every few milliseconds; returned to the OS each time, they were faulted in and
/// zeroed again, a third of the process's CPU time in the kernel (orders, 1M rows: 1.5-2.2 s
/// of system time, 0.8-0.9 s with this). `MIMALLOC_PURGE_DELAY` still overrides it.
///
/// Transparent huge pages are turned off for this process (the functions it starts get the
/// system's setting: `stepmap_worker`'s process spawning). mimalloc asks for them on its
/// arena (`MADV_HUGEPAGE`), so every first touch of a 2 MiB region had the kernel zero all of
/// it: 5-9% of the engine's CPU in `clear_page_erms` on the orders job, and 10-40 MB more peak
/// RSS (1M rows, Python variant: 77-97 MB with them, 54-68 MB without). mimalloc's own
/// option (`allow_thp`, `MIMALLOC_ALLOW_THP=0`) cannot be set from here: the arena is
/// reserved, and advised, before `main` runs; and on hosts whose huge pages are `always`, the
/// kernel would use them even unadvised.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option of the allocator this binary links; any value is valid.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only. A kernel that refuses it
    // (before 3.15) leaves huge pages on, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// stepmap — a self-hosted engine for the Amazon States Language.
#[derive(Parser)]
#[command(name = "stepmap", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one execution of a state machine on this machine and wait for its end.
    Run(run::RunArgs),
    /// Check a definition the way AWS's ValidateStateMachineDefinition does.
    Validate(validate::ValidateArgs),
    /// Run one coordinator of a cluster (Raft, execution driver, API).
    Coordinator(coordinator::CoordinatorArgs),
    /// Run a worker of a cluster: pulls map run work from the coordinators.
    Worker(worker::WorkerArgs),
    /// AWS CreateStateMachine.
    CreateStateMachine(state_machine_verbs::CreateStateMachineArgs),
    /// AWS ListStateMachines.
    ListStateMachines(state_machine_verbs::ListStateMachinesArgs),
    /// AWS StartExecution (`--watch` follows it to its end).
    StartExecution(execution_verbs::StartExecutionArgs),
    /// AWS DescribeExecution.
    DescribeExecution(execution_verbs::ExecutionArnArgs),
    /// AWS GetExecutionHistory.
    GetExecutionHistory(execution_verbs::GetExecutionHistoryArgs),
    /// AWS ListExecutions.
    ListExecutions(execution_verbs::ListExecutionsArgs),
    /// AWS StopExecution.
    StopExecution(execution_verbs::StopExecutionArgs),
    /// AWS RedriveExecution (STANDARD executions that FAILED, TIMED_OUT or were ABORTED).
    RedriveExecution(execution_verbs::RedriveExecutionArgs),
    /// AWS SendTaskSuccess (completes an activity or `.waitForTaskToken` task).
    SendTaskSuccess(task_verbs::SendTaskSuccessArgs),
    /// AWS SendTaskFailure.
    SendTaskFailure(task_verbs::SendTaskFailureArgs),
    /// AWS SendTaskHeartbeat.
    SendTaskHeartbeat(task_verbs::TaskTokenArgs),
    /// AWS CreateActivity.
    CreateActivity(task_verbs::CreateActivityArgs),
    /// AWS DescribeActivity.
    DescribeActivity(task_verbs::ActivityArnArgs),
    /// AWS ListActivities.
    ListActivities(task_verbs::ListActivitiesArgs),
    /// AWS DeleteActivity.
    DeleteActivity(task_verbs::ActivityArnArgs),
    /// AWS GetActivityTask (long poll, up to 60 s).
    GetActivityTask(task_verbs::GetActivityTaskArgs),
    /// AWS DescribeMapRun.
    DescribeMapRun(map_run_verbs::DescribeMapRunArgs),
    /// AWS ListMapRuns.
    ListMapRuns(map_run_verbs::ListMapRunsArgs),
    /// AWS UpdateMapRun.
    UpdateMapRun(map_run_verbs::UpdateMapRunArgs),
}

/// Exit codes of the CLI contract: 0 succeeded, 1 the execution ended otherwise (or the
/// definition is invalid, for `validate`), 2 usage or definition errors.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEPMAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(args),
        Command::Coordinator(args) => coordinator::coordinator(args),
        Command::Worker(args) => worker::worker(args),
        Command::CreateStateMachine(args) => state_machine_verbs::create_state_machine(args),
        Command::ListStateMachines(args) => state_machine_verbs::list_state_machines(args),
        Command::StartExecution(args) => execution_verbs::start_execution(args),
        Command::DescribeExecution(args) => execution_verbs::describe_execution(args),
        Command::GetExecutionHistory(args) => execution_verbs::get_execution_history(args),
        Command::ListExecutions(args) => execution_verbs::list_executions(args),
        Command::StopExecution(args) => execution_verbs::stop_execution(args),
        Command::RedriveExecution(args) => execution_verbs::redrive_execution(args),
        Command::SendTaskSuccess(args) => task_verbs::send_task_success(args),
        Command::SendTaskFailure(args) => task_verbs::send_task_failure(args),
        Command::SendTaskHeartbeat(args) => task_verbs::send_task_heartbeat(args),
        Command::CreateActivity(args) => task_verbs::create_activity(args),
        Command::DescribeActivity(args) => task_verbs::describe_activity(args),
        Command::ListActivities(args) => task_verbs::list_activities(args),
        Command::DeleteActivity(args) => task_verbs::delete_activity(args),
        Command::GetActivityTask(args) => task_verbs::get_activity_task(args),
        Command::DescribeMapRun(args) => map_run_verbs::describe_map_run(args),
        Command::ListMapRuns(args) => map_run_verbs::list_map_runs(args),
        Command::UpdateMapRun(args) => map_run_verbs::update_map_run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
