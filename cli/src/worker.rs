//! `stepmap worker --coordinators <url,...>`: one worker of a cluster's fleet. It pulls
//! Distributed Map work units from the coordinators and runs their child executions here
//! (see `stepmap_worker::fleet_worker`). SIGTERM or Ctrl-C drains it: no more work is taken,
//! running units finish and are reported (up to `--drain-timeout-seconds`), then it exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use stepmap_worker::fleet_worker::{FleetWorker, FleetWorkerConfig};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use stepmap_worker::map_run::UnitRunner;

use crate::coordinator::CoordinatorConfig;

#[derive(Args)]
pub struct WorkerArgs {
    /// The coordinators' addresses, comma separated (`host:port` or `http://host:port`); any
    /// of them will do, the worker follows the leader.
    #[arg(long, env = "STEPMAP_COORDINATORS", required = true, value_delimiter = ',')]
    coordinators: Vec<String>,
    /// Work units this worker runs at once at most. Default: two per core.
    #[arg(long, env = "STEPMAP_SLOTS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    slots: Option<u32>,
    /// Function registry (JSON or TOML): which command or endpoint runs each Lambda, as for
    /// `stepmap coordinator` and `stepmap run`.
    #[arg(long, env = "STEPMAP_FUNCTIONS")]
    functions: Option<PathBuf>,
    /// This worker's name in the coordinators' logs. Default: $HOSTNAME, else "worker".
    #[arg(long, env = "STEPMAP_WORKER_NAME")]
    name: Option<String>,
    /// How long a drain (SIGTERM, Ctrl-C) waits for running units before aborting them.
    #[arg(long = "drain-timeout-seconds", env = "STEPMAP_DRAIN_TIMEOUT_SECONDS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(0..=86_400))]
    drain_timeout_seconds: u64,
    /// Where ItemReaders read and ResultWriters write: the coordinators' `object_store` (a
    /// directory, `file://`, `s3://` or an S3-compatible `http(s)://` endpoint; S3 credentials
    /// from the AWS_* environment). Default: `<data-dir>/objects`, as the coordinator's.
    #[arg(long = "object-store", env = "STEPMAP_OBJECT_STORE")]
    object_store: Option<String>,
    /// The coordinator's `data_dir`, for the default object store only.
    #[arg(long = "data-dir", env = "STEPMAP_DATA_DIR", default_value = "stepmap-data")]
    data_dir: PathBuf,
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    let coordinators: Vec<String> =
        args.coordinators.iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
    anyhow::ensure!(!coordinators.is_empty(), "--coordinators names no coordinator");
    // The same rule as the coordinator's, so that both see the same objects.
    let stores = CoordinatorConfig {
        object_store: args.object_store.clone(),
        data_dir: args.data_dir.clone(),
        ..CoordinatorConfig::default()
    }
    .stores()?;
    let registry = match &args.functions {
        Some(path) => FunctionRegistry::load(path)?,
        None => FunctionRegistry::new(),
    };
    let slots = args.slots.map_or_else(FleetWorkerConfig::default_slots, |n| n as usize);
    let name = args.name.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "worker".into());
    let mut config = FleetWorkerConfig::new(coordinators, slots, name);
    config.drain_timeout = Duration::from_secs(args.drain_timeout_seconds);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let stores = Arc::new(stores);
        let invoker = Arc::new(LocalInvoker::new(registry)?);
        let runner = Arc::new(UnitRunner::for_worker(stores, invoker, slots));
        let worker = FleetWorker::new(config, runner)
            .map_err(|status| anyhow::anyhow!("--coordinators: {}", status.message()))?
            .on_registered(move |registration| {
                eprintln!(
                    "stepmap worker {} registered with {}, {slots} slots",
                    registration.worker_id, registration.endpoint
                );
            });
        let shutdown = shutdown_signal().context("cannot listen for SIGTERM")?;
        let drained = worker.run(shutdown).await;
        let id = drained.worker_id.as_deref().unwrap_or("(unregistered)");
        match drained.aborted_units {
            0 => eprintln!("stepmap worker {id} drained"),
            n => eprintln!("stepmap worker {id} drained; {n} unfinished units aborted (their leases will lapse)"),
        }
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT).
pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
