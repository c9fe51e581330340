//! `stepmap worker --coordinators <url,...>`: one worker of a cluster's fleet. It pulls
//! Distributed Map work units and parent executions' Lambda/HTTP Task invocations from the
//! coordinators and runs them here (see `stepmap_worker::fleet_worker`), and serves the
//! activities named by `--activity` with the registry's functions
//! (`stepmap_worker::activity_worker`). SIGTERM or Ctrl-C drains it: no more work is taken,
//! running units and activity tasks finish and are reported (up to `--drain-timeout-seconds`
//! for units), then it exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use stepmap_worker::activity_worker::{serve_activity, ActivityBinding};
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
    /// Work units this worker runs at once at most. Default: one per core (while units are
    /// short, up to two more per slot are leased ahead and queued).
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
    /// Serves an activity: `<activity name or ARN>=<function>` (repeatable). The worker polls
    /// for the activity's tasks and runs each with the registry's function (the task's input
    /// is its event; its result or Lambda-style error answers the task).
    #[arg(long = "activity", env = "STEPMAP_ACTIVITIES", value_delimiter = ',')]
    activities: Vec<String>,
    /// How often a running activity task is heartbeated (SendTaskHeartbeat).
    #[arg(long = "activity-heartbeat-seconds", default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3_600))]
    activity_heartbeat_seconds: u64,
    /// Region and account of activities given by name, as the coordinators' `region` and
    /// `account`.
    #[arg(long, env = "STEPMAP_REGION")]
    region: Option<String>,
    #[arg(long, env = "STEPMAP_ACCOUNT")]
    account: Option<String>,
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
    let defaults = CoordinatorConfig::default();
    let region = args.region.clone().unwrap_or(defaults.region);
    let account = args.account.clone().unwrap_or(defaults.account);
    let bindings = args
        .activities
        .iter()
        .map(|text| ActivityBinding::parse(text.trim(), &region, &account))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--activity: {e}"))?;
    for binding in &bindings {
        anyhow::ensure!(
            registry.lookup(&binding.function).is_some(),
            "--activity: the function '{}' of {} is not in the function registry (--functions)",
            binding.function,
            binding.activity_arn
        );
    }
    let slots = args.slots.map_or_else(FleetWorkerConfig::default_slots, |n| n as usize);
    let name = args.name.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "worker".into());
    let mut config = FleetWorkerConfig::new(coordinators.clone(), slots, name.clone());
    config.drain_timeout = Duration::from_secs(args.drain_timeout_seconds);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let stores = Arc::new(stores);
        let invoker = Arc::new(LocalInvoker::new(registry)?);
        // One signal for the fleet loop and the activity pollers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signal = shutdown_signal().context("cannot listen for SIGTERM")?;
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let heartbeat = Duration::from_secs(args.activity_heartbeat_seconds);
        let mut activities = tokio::task::JoinSet::new();
        for binding in bindings {
            eprintln!("stepmap worker serves activity {} with function {}", binding.activity_arn, binding.function);
            let invoker: Arc<dyn stepmap_asl::task::TaskInvoker> = invoker.clone();
            activities.spawn(serve_activity(
                coordinators.clone(),
                binding,
                name.clone(),
                heartbeat,
                invoker,
                shutdown(),
            ));
        }
        let runner = Arc::new(UnitRunner::for_worker(stores, invoker, slots));
        let worker = FleetWorker::new(config, runner)
            .map_err(|status| anyhow::anyhow!("--coordinators: {}", status.message()))?
            .on_registered(move |registration| {
                eprintln!(
                    "stepmap worker {} registered with {}, {slots} slots",
                    registration.worker_id, registration.endpoint
                );
            });
        let drained = worker.run(shutdown()).await;
        while activities.join_next().await.is_some() {}
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
