//! A worker of a cluster's fleet: pulls Distributed Map work units from the coordinators
//! (`stepmap.v1.Workers`, DESIGN.md §3 "Pull-based dispatch with leases") and runs them with
//! a [`UnitRunner`].
//!
//! The loop:
//!
//! 1. RegisterWorker with the first coordinator of the list that answers (through a
//!    [`LeaderChannel`], which follows leader hints); the answer gives the worker id, the
//!    lease duration and how long a poll waits at most.
//! 2. PollWork with the free slots (`slots - running - queued`), the prefetch (below) — both
//!    0 while draining — and every lease the worker holds. The poll waits until there is work
//!    or the wait ends; the worker polls again at once when it returns. A unit that finishes
//!    while a heartbeat (a poll asking for nothing) is outstanding frees a slot: the heartbeat
//!    is dropped and a poll sent at once, so a slot never sits idle for a whole poll wait. A
//!    poll that asked for units is never dropped (the coordinator may have leased units to
//!    it): it returns as soon as there is work, so while it waits there is none for the slots
//!    freed meanwhile either.
//! 3. Each granted [`Work`] runs on its own task, or waits in the worker's queue while every
//!    slot is busy (a prefetch, below); when it ends, another task reports its
//!    outcome (ReportResult), retried across the coordinators. A report that cannot be sent
//!    is dropped: the lease lapses and the unit runs again elsewhere. Leases the coordinator
//!    lists as `revoked` (the map run ended, or the lease lapsed and went to another worker)
//!    have their tasks aborted: their results would be refused anyway.
//!
//! Prefetch: while the worker's units are short (under [`PREFETCH_BELOW`] on average), its
//! polls also ask for up to two units per slot to queue, so that a slot that frees starts its
//! next unit at once instead of waiting out a poll and the grant's commit — a few
//! milliseconds, much of a short unit. Two, because a poll's answer can itself take about a
//! short unit (the coordinator shares the cores with the units). The leader grants a prefetch
//! only from map runs without a MaxConcurrency (a queued unit's lease must not take the place
//! of a child another worker could run) and only while no other worker's poll waits with free
//! slots. A poll for a prefetch only is answered at once (the worker could not take work for
//! a slot that frees while it waits); when it brings nothing the worker sends heartbeats until
//! one of its units ends. A queued unit waits for a slot of this worker, usually a short unit
//! or two; behind a unit that turns out long it waits that long.
//!
//! The lease contract: a poll is the worker's heartbeat, and it renews every lease listed in
//! its `held`. A lease lapses `lease_millis` after the poll that renewed it last, so a worker
//! that cannot reach any coordinator for that long loses its units (they run again on
//! another worker, under a new epoch; the coordinator counts only the current epoch's
//! report). Held leases include the ones whose outcome is being reported, so a report that
//! waits out an election does not lose its lease meanwhile.
//!
//! Errors of a poll (every coordinator down, an election) are retried with a short backoff,
//! moving along the coordinator list, without touching the running units; a NOT_FOUND answer
//! (the coordinator does not know this worker, e.g. it lost its state) registers again.
//!
//! Draining ([`FleetWorker::run`]'s `shutdown`): the worker takes no more work but keeps
//! polling as its heartbeat, waits for the running and queued units to end and be reported,
//! and returns;
//! after the drain timeout it aborts what still runs (those leases lapse on the coordinator).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use stepmap_asl::failure::Failure;
use stepmap_proto::leader::LeaderChannel;
use stepmap_proto::v1::workers_client::WorkersClient;
use stepmap_proto::v1::{Lease, PollWorkRequest, PollWorkResponse, RegisterWorkerRequest, ReportResultRequest, Work};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::map_run::{UnitOutcome, UnitRunner, WorkUnit};

/// How long a worker waits for its units when it drains, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// First pause after a failed poll or registration; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long past the coordinator's poll wait a poll may take before the worker gives up on
/// it (a coordinator that stopped answering without closing the connection).
const POLL_GRACE: Duration = Duration::from_secs(10);
/// Redirects or election pauses (100 ms each) a call takes before trying the next coordinator.
const CALL_ATTEMPTS: usize = 10;
/// Bound of one RegisterWorker or ReportResult call, elections included (LeaderChannel waits
/// out an election on its own, a few seconds at most).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a report (each over LeaderChannel, which retries on its own), moving along
/// the coordinator list: at least this many, at least two rounds of the list.
const MIN_REPORT_ATTEMPTS: usize = 3;
/// A worker prefetches units while its units take less than this on average (see the
/// module doc).
pub const PREFETCH_BELOW: Duration = Duration::from_secs(1);
/// Units queued per slot at most (see the module doc).
const PREFETCH_PER_SLOT: usize = 2;

/// The worker's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetWorkerConfig {
    /// The coordinators' addresses (`http://host:port` or `host:port`); any of them will do,
    /// calls follow the leader.
    pub coordinators: Vec<String>,
    /// Units this worker runs at once at most.
    pub slots: usize,
    /// For logs and operators (e.g. the host name); need not be unique.
    pub name: String,
    /// How long a drain waits for running units before aborting them.
    pub drain_timeout: Duration,
}

impl FleetWorkerConfig {
    /// One slot per core: with prefetch, a slot that frees starts its next unit at once.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// A configuration with the default drain timeout.
    pub fn new(coordinators: Vec<String>, slots: usize, name: impl Into<String>) -> Self {
        FleetWorkerConfig { coordinators, slots, name: name.into(), drain_timeout: DEFAULT_DRAIN_TIMEOUT }
    }
}

/// What RegisterWorker answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub worker_id: String,
    /// The coordinator that answered (the leader, hints followed).
    pub endpoint: String,
    /// A lease lapses this long after the poll that renewed it last.
    pub lease: Duration,
    /// How long a poll waits for work at most.
    pub poll_wait: Duration,
}

/// How [`FleetWorker::run`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drained {
    /// The id of the worker's last registration (`None`: it never registered).
    pub worker_id: Option<String>,
    /// Units (running, queued or being reported) aborted or dropped when the drain timeout
    /// passed.
    pub aborted_units: usize,
}

type RegisteredCallback = Arc<dyn Fn(&Registration) + Send + Sync>;

/// A worker of the fleet (see the module doc).
pub struct FleetWorker {
    config: FleetWorkerConfig,
    runner: Arc<UnitRunner>,
    /// One channel per coordinator of the list, each following that coordinator's hints.
    channels: Vec<LeaderChannel>,
    on_registered: Option<RegisteredCallback>,
}

impl FleetWorker {
    /// A worker running units with `runner`. Fails if the list of coordinators is empty or
    /// an address is invalid. Call it within a tokio runtime (the channels are created here,
    /// connected on first use).
    pub fn new(config: FleetWorkerConfig, runner: Arc<UnitRunner>) -> Result<Self, tonic::Status> {
        if config.coordinators.is_empty() {
            return Err(tonic::Status::invalid_argument("no coordinators"));
        }
        // A few attempts per call: with an unreachable coordinator the worker moves along its
        // list rather than waiting there.
        let channels = config
            .coordinators
            .iter()
            .map(|e| LeaderChannel::new(e).map(|c| c.with_max_attempts(CALL_ATTEMPTS)))
            .collect::<Result<_, _>>()?;
        Ok(FleetWorker { config, runner, channels, on_registered: None })
    }

    /// Calls `callback` after each registration (the first one, and any after a coordinator
    /// forgot this worker).
    pub fn on_registered(mut self, callback: impl Fn(&Registration) + Send + Sync + 'static) -> Self {
        self.on_registered = Some(Arc::new(callback));
        self
    }

    /// Runs until `shutdown` resolves and the drain ends (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Drained {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut state = LoopState {
            channels: self.channels.clone(),
            index: 0,
            registration: None,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
            held: HeldLeases::default(),
            tasks: JoinSet::new(),
            unit_time: None,
            prefetch_refused: false,
        };
        let mut pending: Option<(Pending, BoxFuture<'static, Step>)> = None;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            // Not while a poll that offered slots is out: units it was granted must run.
            let offering = matches!(pending, Some((Pending::Poll, _)));
            if drain_deadline.is_some() && state.held.is_empty() && !offering {
                let worker_id = state.registration.map(|r| r.worker_id);
                tracing::info!(worker = worker_id.as_deref().unwrap_or(""), "worker drained");
                return Drained { worker_id, aborted_units: 0 };
            }
            if pending.is_none() {
                pending = Some(self.next_step(&state, drain_deadline.is_some()));
            }
            let heartbeat = matches!(pending, Some((Pending::Heartbeat, _)));
            tokio::select! {
                () = &mut shutdown, if drain_deadline.is_none() => {
                    tracing::info!(
                        running = state.held.len(),
                        timeout_seconds = self.config.drain_timeout.as_secs_f64(),
                        "worker draining: no more work taken"
                    );
                    drain_deadline = Some(Instant::now() + self.config.drain_timeout);
                    // An outstanding poll that offered slots is left to return (units it was
                    // granted are run and reported); the next one is a heartbeat.
                }
                () = tokio::time::sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if drain_deadline.is_some() => {
                    let aborted_units = state.held.len();
                    state.tasks.abort_all();
                    let worker_id = state.registration.map(|r| r.worker_id);
                    tracing::info!(
                        worker = worker_id.as_deref().unwrap_or(""),
                        aborted_units,
                        "worker drain timed out: units aborted, their leases will lapse"
                    );
                    return Drained { worker_id, aborted_units };
                }
                Some(joined) = state.tasks.join_next_with_id(), if !state.tasks.is_empty() => {
                    self.task_ended(&mut state, joined);
                    // A slot freed, or a queued unit took it: ask for work now rather than at
                    // the end of the poll wait.
                    if heartbeat && drain_deadline.is_none() && state.wanted(self.config.slots, false) != (0, 0) {
                        pending = None;
                    }
                }
                step = async { pending.as_mut().expect("a step is pending").1.as_mut().await } => {
                    pending = None;
                    self.step_ended(&mut state, step);
                }
            }
        }
    }

    /// The next call: a registration if the worker has none, else a poll.
    fn next_step(&self, state: &LoopState, draining: bool) -> (Pending, BoxFuture<'static, Step>) {
        if let Some(delay) = state.backoff.pending() {
            return (Pending::Sleep, tokio::time::sleep(delay).map(|()| Step::Slept).boxed());
        }
        let Some(registration) = &state.registration else {
            let request = RegisterWorkerRequest {
                name: self.config.name.clone(),
                slots: u32::try_from(self.config.slots).unwrap_or(u32::MAX),
            };
            return (Pending::Register, register(state.channels.clone(), state.index, request).boxed());
        };
        let (free_slots, prefetch) = state.wanted(self.config.slots, draining);
        let request = PollWorkRequest {
            worker_id: registration.worker_id.clone(),
            free_slots,
            prefetch,
            held: state.held.leases(),
        };
        let kind = if (free_slots, prefetch) == (0, 0) { Pending::Heartbeat } else { Pending::Poll };
        let timeout = registration.poll_wait + POLL_GRACE;
        (kind, poll(state.channels[state.index].clone(), state.index, request, timeout).boxed())
    }

    fn step_ended(&self, state: &mut LoopState, step: Step) {
        match step {
            Step::Slept => state.backoff.slept(),
            Step::Registered { index, channel, result } => {
                state.index = index;
                state.channels[index] = channel;
                match result {
                    Ok(registration) => {
                        state.backoff.reset();
                        tracing::info!(
                            worker = %registration.worker_id,
                            endpoint = %registration.endpoint,
                            slots = self.config.slots,
                            lease_millis = registration.lease.as_millis() as u64,
                            "worker registered"
                        );
                        if let Some(callback) = &self.on_registered {
                            callback(&registration);
                        }
                        state.registration = Some(registration);
                    }
                    Err(status) => {
                        let delay = state.backoff.fail();
                        tracing::warn!(code = ?status.code(), message = status.message(), retry_in = ?delay,
                            "no coordinator registered this worker");
                    }
                }
            }
            Step::Polled { index, channel, prefetch_only, result } => {
                state.channels[index] = channel;
                match result {
                    Ok(response) => {
                        state.backoff.reset();
                        // Nothing to queue now (the runs are capped, all leased, or another
                        // worker waits): heartbeats until a unit ends, not a prefetch per poll.
                        state.prefetch_refused = prefetch_only && response.work.is_empty();
                        self.take(state, response);
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        // The coordinator does not know this worker (it lost its state, or
                        // forgot a worker silent for too long): register again, keep the units.
                        tracing::info!(
                            message = status.message(),
                            "coordinator does not know this worker: registering again"
                        );
                        state.registration = None;
                    }
                    Err(status) => {
                        // Try the next coordinator of the list after a pause; the units keep
                        // running (their leases hold until `lease_millis` after the last poll).
                        state.index = (index + 1) % state.channels.len();
                        let delay = state.backoff.fail();
                        tracing::warn!(code = ?status.code(), message = status.message(), retry_in = ?delay,
                            next = state.channels[state.index].endpoint(), "poll failed");
                    }
                }
            }
        }
    }

    /// Aborts the revoked leases' tasks (or drops them from the queue) and starts or queues
    /// the granted work.
    fn take(&self, state: &mut LoopState, response: PollWorkResponse) {
        for lease in &response.revoked {
            for (phase, abort) in state.held.revoke(lease) {
                // A unit whose outcome is being reported has ended: the coordinator took the
                // outcome, or will refuse it.
                let what = match phase {
                    Phase::Running => "lease revoked: unit aborted",
                    Phase::Reporting => "lease revoked while its outcome was being reported",
                };
                tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch, "{what}");
                abort.abort();
            }
        }
        // Slots the revoked units held go to queued ones first, in grant order.
        self.fill_slots(state);
        for work in response.work {
            self.start(state, work);
        }
    }

    /// Starts queued units while slots are free.
    fn fill_slots(&self, state: &mut LoopState) {
        while let Some((lease, work)) = state.held.next_startable(self.config.slots) {
            self.spawn(state, lease, work);
        }
    }

    fn start(&self, state: &mut LoopState, mut work: Work) {
        let Some(lease) = work.lease.take() else {
            tracing::warn!("the coordinator granted work without a lease: ignored");
            return;
        };
        if state.held.contains(&lease) {
            tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, "lease granted twice: already held");
            return;
        }
        // Behind any queued units: granted work starts in grant order.
        state.held.queue(lease, work);
        self.fill_slots(state);
    }

    fn spawn(&self, state: &mut LoopState, lease: Lease, work: Work) {
        tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch, "unit started");
        let runner = self.runner.clone();
        let epoch = lease.epoch;
        let abort = state.tasks.spawn(async move {
            let started = Instant::now();
            let outcome = match serde_json::from_str::<WorkUnit>(&work.unit) {
                Ok(unit) => runner.run(&work.job, &unit, epoch, work.parallelism).await,
                // Reported as the unit's failure: run anywhere else it would fail the same way.
                Err(error) => UnitOutcome {
                    failure: Some(Failure::runtime(format!("the work unit is unreadable: {error}"))),
                    ..UnitOutcome::default()
                },
            };
            TaskEnd::Ran(outcome, started.elapsed())
        });
        state.held.start(abort.id(), lease, Phase::Running, abort);
    }

    /// Handles the end of a unit's or report's task; a slot it frees goes to the next
    /// queued unit.
    fn task_ended(&self, state: &mut LoopState, joined: Result<(tokio::task::Id, TaskEnd), tokio::task::JoinError>) {
        let (id, end) = match joined {
            Ok((id, end)) => (id, Ok(end)),
            Err(error) => (error.id(), Err(error)),
        };
        let removed = state.held.remove(id);
        self.fill_slots(state);
        // Not held: revoked (and aborted) meanwhile; nothing more to do.
        let Some((lease, phase)) = removed else { return };
        match end {
            Ok(TaskEnd::Ran(outcome, took)) => {
                state.observe(took);
                state.prefetch_refused = false;
                tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch,
                    failed = outcome.failure.is_some(), "unit ran");
                let outcome = serde_json::to_string(&outcome).unwrap_or_else(|error| {
                    let failure = Failure::runtime(format!("the unit's outcome cannot be serialized: {error}"));
                    serde_json::json!({ "Failure": failure }).to_string()
                });
                match &state.registration {
                    Some(registration) => {
                        let request = ReportResultRequest {
                            worker_id: registration.worker_id.clone(),
                            lease: Some(lease.clone()),
                            outcome,
                        };
                        let abort = state.tasks.spawn(report(state.channels.clone(), state.index, request));
                        state.held.start(abort.id(), lease, Phase::Reporting, abort);
                    }
                    // Registering again: the coordinator forgot this worker and its leases.
                    None => tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit,
                        "unit ran while unregistered: outcome dropped"),
                }
            }
            Ok(TaskEnd::Reported) => {}
            Err(error) if error.is_cancelled() => {}
            Err(error) => tracing::error!(map_run = %lease.map_run_arn, unit = lease.unit, phase = ?phase, %error,
                "a unit's task panicked; its lease will lapse"),
        }
    }
}

/// The worker loop's state (kept apart from `FleetWorker` so that steps borrow it mutably).
struct LoopState {
    channels: Vec<LeaderChannel>,
    /// The coordinator of the list polled now.
    index: usize,
    registration: Option<Registration>,
    backoff: Backoff,
    held: HeldLeases<tokio::task::Id, AbortHandle, Work>,
    tasks: JoinSet<TaskEnd>,
    /// A moving average of how long units run here (`None` before the first).
    unit_time: Option<Duration>,
    /// The last poll asked for a prefetch only and got nothing: no prefetch until a unit ends.
    prefetch_refused: bool,
}

impl LoopState {
    /// A unit ran for `took`.
    fn observe(&mut self, took: Duration) {
        self.unit_time = Some(self.unit_time.map_or(took, |average| (average * 3 + took) / 4));
    }

    /// The next poll's `(free_slots, prefetch)`.
    fn wanted(&self, slots: usize, draining: bool) -> (u32, u32) {
        let short = self.unit_time.is_some_and(|average| average < PREFETCH_BELOW);
        self.held.wanted(slots, draining, short && !self.prefetch_refused)
    }
}

/// What the outstanding call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Register,
    /// A poll asking for units (free slots or a prefetch).
    Poll,
    /// A poll asking for nothing: it only renews the held leases.
    Heartbeat,
    Sleep,
}

/// How an outstanding call ended. Calls own a clone of their channel and hand it back, so
/// that the leader it found is kept.
enum Step {
    Registered {
        index: usize,
        channel: LeaderChannel,
        result: Result<Registration, tonic::Status>,
    },
    Polled {
        index: usize,
        channel: LeaderChannel,
        /// The poll asked for a prefetch only (no free slots).
        prefetch_only: bool,
        result: Result<PollWorkResponse, tonic::Status>,
    },
    Slept,
}

enum TaskEnd {
    /// The unit's outcome and how long it ran.
    Ran(UnitOutcome, Duration),
    Reported,
}

/// A Workers client accepting the service's large messages (jobs, outcomes).
fn workers_client(channel: tonic::transport::Channel) -> WorkersClient<tonic::transport::Channel> {
    WorkersClient::new(channel)
        .max_decoding_message_size(stepmap_proto::WORKERS_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(stepmap_proto::WORKERS_MAX_MESSAGE_BYTES)
}

/// RegisterWorker with each coordinator in turn, from `start`, until one answers.
async fn register(mut channels: Vec<LeaderChannel>, start: usize, request: RegisterWorkerRequest) -> Step {
    let mut last = tonic::Status::unavailable("no coordinators");
    for offset in 0..channels.len() {
        let index = (start + offset) % channels.len();
        let channel = &mut channels[index];
        let call = channel.call(workers_client, |mut client| {
            let request = request.clone();
            async move { client.register_worker(request).await }
        });
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::deadline_exceeded("RegisterWorker timed out")),
        };
        match result {
            Ok(response) => {
                let registration = Registration {
                    worker_id: response.worker_id,
                    endpoint: channel.endpoint().to_owned(),
                    lease: Duration::from_millis(response.lease_millis),
                    poll_wait: Duration::from_millis(response.poll_wait_millis),
                };
                let channel = channels.swap_remove(index);
                return Step::Registered { index, channel, result: Ok(registration) };
            }
            Err(status) => {
                tracing::debug!(endpoint = channel.endpoint(), code = ?status.code(), message = status.message(),
                    "RegisterWorker failed");
                last = status;
            }
        }
    }
    let channel = channels.swap_remove(start);
    Step::Registered { index: start, channel, result: Err(last) }
}

async fn poll(mut channel: LeaderChannel, index: usize, request: PollWorkRequest, timeout: Duration) -> Step {
    let prefetch_only = request.free_slots == 0 && request.prefetch > 0;
    let call = channel.call(workers_client, |mut client| {
        let request = request.clone();
        async move { client.poll_work(request).await }
    });
    let result = match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded("PollWork did not return within its wait")),
    };
    Step::Polled { index, channel, prefetch_only, result }
}

/// Reports a unit's outcome, trying the coordinators in turn from `start`. Dropped when no
/// attempt succeeds: the lease lapses and the unit runs again elsewhere.
async fn report(mut channels: Vec<LeaderChannel>, start: usize, request: ReportResultRequest) -> TaskEnd {
    let lease = request.lease.clone().unwrap_or_default();
    let attempts = MIN_REPORT_ATTEMPTS.max(2 * channels.len());
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut last = None;
    for attempt in 0..attempts {
        if let Some(delay) = backoff.pending() {
            tokio::time::sleep(delay).await;
            backoff.slept();
        }
        let len = channels.len();
        let channel = &mut channels[(start + attempt) % len];
        let call = channel.call(workers_client, |mut client| {
            let request = request.clone();
            async move { client.report_result(request).await }
        });
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::deadline_exceeded("ReportResult timed out")),
        };
        match result {
            Ok(response) if response.accepted => {
                tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch, "unit reported");
                return TaskEnd::Reported;
            }
            Ok(_) => {
                tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch,
                    "report refused: the lease is not current (stale epoch or the map run ended)");
                return TaskEnd::Reported;
            }
            // The coordinator does not know this worker: its leases are gone with it.
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::debug!(map_run = %lease.map_run_arn, unit = lease.unit, message = status.message(),
                    "report refused: worker unknown");
                return TaskEnd::Reported;
            }
            Err(status) => {
                backoff.fail();
                last = Some(status);
            }
        }
    }
    let status = last.unwrap_or_else(|| tonic::Status::unavailable("no coordinators"));
    tracing::warn!(map_run = %lease.map_run_arn, unit = lease.unit, epoch = lease.epoch, code = ?status.code(),
        message = status.message(), "could not report a unit: dropped, its lease will lapse and it will run again");
    TaskEnd::Reported
}

/// Exponential backoff of failed calls: `min`, doubling to `max`, back to none on success.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Backoff {
    min: Duration,
    max: Duration,
    /// The pause the next failure asks for.
    next: Duration,
    /// A pause asked for and not yet slept.
    due: Option<Duration>,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, next: min, due: None }
    }

    /// A call failed: the pause before the next one (also kept as [`Backoff::pending`]).
    fn fail(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.due = Some(delay);
        delay
    }

    /// The pause to sleep before the next call, if the last one failed.
    fn pending(&self) -> Option<Duration> {
        self.due
    }

    /// The pending pause was slept.
    fn slept(&mut self) {
        self.due = None;
    }

    /// A call succeeded: the next failure pauses `min` again.
    fn reset(&mut self) {
        self.next = self.min;
        self.due = None;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The unit runs: it takes a slot.
    Running,
    /// Its outcome is being reported: no slot, but the lease is still renewed.
    Reporting,
}

/// The leases a worker holds: by the task working on them (`T`, with its abort handle `H`),
/// and queued for a slot (with their work `W`).
#[derive(Debug)]
struct HeldLeases<T, H, W> {
    by_task: HashMap<T, (Lease, Phase, H)>,
    queued: VecDeque<(Lease, W)>,
}

impl<T, H, W> Default for HeldLeases<T, H, W> {
    fn default() -> Self {
        HeldLeases { by_task: HashMap::new(), queued: VecDeque::new() }
    }
}

impl<T: Eq + Hash + Copy, H, W> HeldLeases<T, H, W> {
    fn start(&mut self, task: T, lease: Lease, phase: Phase, abort: H) {
        self.by_task.insert(task, (lease, phase, abort));
    }

    /// Holds `lease` until a slot frees for its work.
    fn queue(&mut self, lease: Lease, work: W) {
        self.queued.push_back((lease, work));
    }

    /// The queued unit to start next, in grant order, if fewer than `slots` units run.
    fn next_startable(&mut self, slots: usize) -> Option<(Lease, W)> {
        if self.running() < slots {
            self.queued.pop_front()
        } else {
            None
        }
    }

    /// The task ended: its lease and phase, if it was still held.
    fn remove(&mut self, task: T) -> Option<(Lease, Phase)> {
        self.by_task.remove(&task).map(|(lease, phase, _)| (lease, phase))
    }

    /// Stops holding `lease` (a queued unit is dropped): the phases and abort handles of its
    /// tasks.
    fn revoke(&mut self, lease: &Lease) -> Vec<(Phase, H)> {
        self.queued.retain(|(l, _)| l != lease);
        let tasks: Vec<T> = self.by_task.iter().filter(|(_, (l, _, _))| l == lease).map(|(t, _)| *t).collect();
        tasks.into_iter().filter_map(|t| self.by_task.remove(&t)).map(|(_, phase, abort)| (phase, abort)).collect()
    }

    fn contains(&self, lease: &Lease) -> bool {
        self.by_task.values().any(|(l, _, _)| l == lease) || self.queued.iter().any(|(l, _)| l == lease)
    }

    fn len(&self) -> usize {
        self.by_task.len() + self.queued.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn running(&self) -> usize {
        self.by_task.values().filter(|(_, phase, _)| *phase == Phase::Running).count()
    }

    /// The poll's `(free_slots, prefetch)`: nothing while draining; a prefetch of
    /// [`PREFETCH_PER_SLOT`] units per slot, less those queued, while units are `short`.
    fn wanted(&self, slots: usize, draining: bool, short: bool) -> (u32, u32) {
        if draining {
            return (0, 0);
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let free = slots.saturating_sub(self.running() + self.queued.len());
        let prefetch = if short { (PREFETCH_PER_SLOT * slots).saturating_sub(self.queued.len()) } else { 0 };
        (count(free), count(prefetch))
    }

    /// The poll's `held`, in a stable order (by map run, unit, epoch).
    fn leases(&self) -> Vec<Lease> {
        let running = self.by_task.values().map(|(lease, _, _)| lease);
        let mut leases: Vec<Lease> = running.chain(self.queued.iter().map(|(lease, _)| lease)).cloned().collect();
        leases.sort_by(|a, b| (&a.map_run_arn, a.unit, a.epoch).cmp(&(&b.map_run_arn, b.unit, b.epoch)));
        leases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(unit: u64, epoch: u64) -> Lease {
        Lease { map_run_arn: "arn:aws:states:us-east-1:123456789012:mapRun:m/r:x".into(), unit, epoch }
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        assert_eq!(backoff.pending(), None);
        let delays: Vec<u64> = (0..6).map(|_| backoff.fail().as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.pending(), Some(MAX_BACKOFF));
        backoff.slept();
        assert_eq!(backoff.pending(), None, "slept once per failure");
        backoff.reset();
        assert_eq!(backoff.fail(), MIN_BACKOFF);
    }

    #[test]
    fn held_leases_count_slots_and_renew_reports() {
        let mut held: HeldLeases<u32, &str, ()> = HeldLeases::default();
        held.start(1, lease(0, 1), Phase::Running, "a");
        held.start(2, lease(1, 1), Phase::Running, "b");
        assert_eq!(held.wanted(4, false, false), (2, 0));
        assert_eq!(held.wanted(4, true, true), (0, 0), "a draining worker takes nothing");
        assert_eq!(held.wanted(1, false, false), (0, 0), "never negative");

        // Unit 0 ran: its report holds the lease but frees the slot.
        assert_eq!(held.remove(1), Some((lease(0, 1), Phase::Running)));
        held.start(3, lease(0, 1), Phase::Reporting, "c");
        assert_eq!(held.wanted(4, false, false), (3, 0));
        assert_eq!(held.leases(), [lease(0, 1), lease(1, 1)]);
        assert!(held.contains(&lease(1, 1)) && !held.contains(&lease(1, 2)));

        // Revoking names the exact lease (epoch included); its task ends later, unheld.
        assert!(held.revoke(&lease(1, 2)).is_empty());
        assert_eq!(held.revoke(&lease(1, 1)), [(Phase::Running, "b")]);
        assert_eq!(held.remove(2), None);
        assert_eq!(held.remove(3), Some((lease(0, 1), Phase::Reporting)));
        assert!(held.is_empty());
    }

    #[test]
    fn revoked_running_units_leave_their_slots_to_queued_ones() {
        let mut held: HeldLeases<u32, &str, &str> = HeldLeases::default();
        held.start(1, lease(0, 1), Phase::Running, "a");
        held.queue(lease(1, 1), "w1");
        held.queue(lease(2, 1), "w2");
        assert_eq!(held.next_startable(1), None);
        assert_eq!(held.revoke(&lease(0, 1)), [(Phase::Running, "a")]);
        assert_eq!(held.next_startable(1), Some((lease(1, 1), "w1")));
        assert_eq!(held.wanted(1, false, false), (0, 0), "one running again, one queued");
    }

    #[test]
    fn queued_leases_are_held_and_prefetched_two_per_slot() {
        let mut held: HeldLeases<u32, &str, &str> = HeldLeases::default();
        held.start(1, lease(0, 1), Phase::Running, "a");
        held.start(2, lease(1, 1), Phase::Running, "b");
        assert_eq!(held.wanted(2, false, true), (0, 4), "short units: two queued per slot");
        assert_eq!(held.wanted(2, false, false), (0, 0), "long units: a heartbeat");
        held.queue(lease(2, 1), "w2");
        held.queue(lease(3, 1), "w3");
        assert_eq!(held.wanted(2, false, true), (0, 2));
        assert_eq!(held.len(), 4);
        assert!(held.contains(&lease(3, 1)));
        assert_eq!(held.leases(), [lease(0, 1), lease(1, 1), lease(2, 1), lease(3, 1)], "queued leases are renewed");

        // A revoked queued unit is dropped without a task to abort.
        assert!(held.revoke(&lease(2, 1)).is_empty());
        assert!(!held.contains(&lease(2, 1)));
        assert_eq!(held.wanted(2, false, true), (0, 3));

        // A slot frees: the queue's head takes it.
        assert_eq!(held.next_startable(2), None, "both slots busy");
        held.remove(1);
        assert_eq!(held.next_startable(2), Some((lease(3, 1), "w3")));
        held.start(4, lease(3, 1), Phase::Running, "d");
        assert_eq!(held.next_startable(2), None);
        assert_eq!(held.wanted(2, false, true), (0, 4));
        held.remove(2);
        assert_eq!(held.wanted(2, false, true), (1, 4), "a free slot, and a prefetch behind it");
    }
}
