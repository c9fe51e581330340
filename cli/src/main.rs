//! The `stepmap` command. Thin: argument parsing and exit codes; the work is in the
//! subcommand modules and the library crates.

mod definition;
mod input;
mod progress;
mod run;
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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
