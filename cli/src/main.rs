//! The `stepmap` command. Thin: argument parsing and exit codes; the work is in the
//! subcommand modules and the library crates.

mod api_client;
mod coordinator;
mod definition;
mod execution_verbs;
mod input;
mod progress;
mod run;
mod state_machine_verbs;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a map run allocates and frees many small JSON
/// values from several threads, where glibc's malloc spent a fifth of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

/// Exit codes of the CLI contract: 0 succeeded, 1 the execution ended otherwise (or the
/// definition is invalid, for `validate`), 2 usage or definition errors.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
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
        Command::CreateStateMachine(args) => state_machine_verbs::create_state_machine(args),
        Command::ListStateMachines(args) => state_machine_verbs::list_state_machines(args),
        Command::StartExecution(args) => execution_verbs::start_execution(args),
        Command::DescribeExecution(args) => execution_verbs::describe_execution(args),
        Command::GetExecutionHistory(args) => execution_verbs::get_execution_history(args),
        Command::ListExecutions(args) => execution_verbs::list_executions(args),
        Command::StopExecution(args) => execution_verbs::stop_execution(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
