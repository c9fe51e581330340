//! The leader's side of the worker fleet (DESIGN.md §3, "Pull-based dispatch with leases"):
//! map runs cut into work units, leased to polling workers, their outcomes counted once, and
//! their results finalised into AWS's result files.
//!
//! What must survive a change of leader is in the replicated work ledger
//! (`state/work_ledger.rs`): the plan, each unit's lease epoch and outcome. What is the
//! leader's alone lives here: the lease deadlines (a new leader gives every outstanding lease
//! a fresh deadline, so a worker that outlived the old leader keeps its lease by polling),
//! the workers it has heard from, and the wake-ups of waiting polls and runs.
//!
//! - [`assignment`]: which pending units a poll gets (pure).
//! - [`FleetMapRunExecutor`] (`fleet_executor.rs`): plans, watches and finalises map runs.
//! - [`FleetTaskInvoker`] (`fleet_task.rs`): parent executions' Lambda and HTTP Task states,
//!   each one unit of work.
//! - [`Dispatcher`]: polls, reports and lease deadlines, for the `Workers` gRPC service.

pub mod assignment;
mod fleet_executor;
mod fleet_task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use stepmap_worker::map_run::{MapRunControl, UnitOutcome, WorkUnit};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use fleet_executor::FleetMapRunExecutor;
pub use fleet_task::FleetTaskInvoker;

use self::assignment::{assign, RunDemand};
use crate::error::{Error, Result};
use crate::proposer::{propose, CoordinatorNode};
use crate::state::{Command, LeaseGrant, MapRunArn, Response};

/// How long leases last and polls wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchConfig {
    /// A lease lapses this long after the poll that renewed it last.
    pub lease: Duration,
    /// A poll without work waits this long at most (well within `lease`).
    pub poll_wait: Duration,
}

impl DispatchConfig {
    pub fn with_lease(lease: Duration) -> Self {
        Self { lease, poll_wait: (lease / 3).min(Duration::from_secs(5)) }
    }
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self::with_lease(Duration::from_secs(30))
    }
}

/// Bytes of map run jobs one poll's answer carries at most (well within
/// [`stepmap_proto::WORKERS_MAX_MESSAGE_BYTES`]).
const MAX_JOB_BYTES_PER_POLL: usize = 16 << 20;

/// A map run's watcher, or a Task waiting for its work, looks at the ledger at least this
/// often, even without a wake-up.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often lapsed leases are looked for.
const LEASE_CHECK: Duration = Duration::from_millis(250);
/// How often the units kept for redrives past AWS's redrivable period are looked for.
const PRUNE_CHECK: Duration = Duration::from_secs(3600);

/// The leader's dispatch state; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    node: CoordinatorNode,
    config: DispatchConfig,
    local: Mutex<Local>,
    /// Wakes polls waiting for work: units became pending, a run started or grew.
    work_available: Notify,
    /// One assignment at a time, so that concurrent polls do not pick the same units.
    granting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Local {
    /// Map runs this node drives now (only their units are handed out).
    runs: HashMap<MapRunArn, LiveRun>,
    /// Lease deadlines: (run, unit) → (epoch, deadline).
    deadlines: HashMap<(MapRunArn, u64), (u64, Instant)>,
    /// Workers heard from: id → (name, slots).
    workers: HashMap<String, (String, u32)>,
    /// Polls offering free slots that are waiting for work now: while there are any, other
    /// polls get no prefetch (a worker's queued unit must not keep an idle one waiting).
    waiting_with_free_slots: usize,
}

struct LiveRun {
    control: MapRunControl,
    /// Children one of its units runs at once (`UnitGrouping::parallelism`).
    parallelism: u64,
    /// Wakes the run's watcher when one of its units completes.
    changed: Arc<Notify>,
    token: Arc<()>,
}

/// Work handed to a worker: the lease, the map run's job and the unit.
#[derive(Clone, Debug)]
pub struct Assigned {
    pub lease: LeaseGrant,
    pub job: String,
    pub unit: WorkUnit,
    /// Children of the unit that may run at once ([`RunDemand::at_once`]).
    pub parallelism: u64,
}

/// Counts a poll with free slots among the waiting ones while it lives.
struct WaitingPoll<'a>(&'a Dispatcher);

impl<'a> WaitingPoll<'a> {
    fn enter(dispatcher: &'a Dispatcher) -> Self {
        dispatcher.local().waiting_with_free_slots += 1;
        WaitingPoll(dispatcher)
    }
}

impl Drop for WaitingPoll<'_> {
    fn drop(&mut self) {
        self.0.local().waiting_with_free_slots -= 1;
    }
}

impl Dispatcher {
    /// Starts watching lease deadlines (until the last clone is dropped).
    pub fn new(node: CoordinatorNode, config: DispatchConfig) -> Self {
        let inner = Arc::new(Inner {
            node,
            config,
            local: Mutex::new(Local::default()),
            work_available: Notify::new(),
            granting: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(watch_leases(Arc::downgrade(&inner)));
        Dispatcher { inner }
    }

    pub fn config(&self) -> DispatchConfig {
        self.inner.config
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.inner.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new worker: its id.
    pub fn register_worker(&self, name: &str, slots: u32) -> String {
        let id = format!("{}-{}", if name.is_empty() { "worker" } else { name }, uuid::Uuid::new_v4().simple());
        self.local().workers.insert(id.clone(), (name.to_owned(), slots));
        tracing::info!(worker = %id, slots, "worker registered");
        id
    }

    /// A worker's poll: renews the leases it holds (answering those no longer current as
    /// revoked) and, with free slots, waits up to the poll wait for units to lease to it: up
    /// to `free_slots`, plus up to `prefetch` (at most two per slot it registered, from runs
    /// without a MaxConcurrency) while no other poll with free slots is waiting. A poll for a
    /// prefetch only is answered at once. Only the leader answers (`NotLeader` otherwise).
    pub async fn poll(
        &self,
        worker: &str,
        free_slots: u32,
        prefetch: u32,
        held: Vec<LeaseGrant>,
    ) -> Result<(Vec<Assigned>, Vec<LeaseGrant>)> {
        let until = Instant::now() + self.inner.config.poll_wait;
        // A linearizable read: a follower refuses with the leader's address.
        let check = held.clone();
        let (_, current) = self
            .inner
            .node
            .read(move |state| {
                check
                    .into_iter()
                    .map(|lease| {
                        let current =
                            state.work.runs.get(&lease.arn).is_some_and(|w| w.is_current(lease.unit, lease.epoch));
                        (lease, current)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut revoked = Vec::new();
        {
            let mut local = self.local();
            local.workers.entry(worker.to_owned()).or_insert_with(|| (worker.to_owned(), 0));
            let deadline = Instant::now() + self.inner.config.lease;
            for (lease, current) in current {
                if current {
                    local.deadlines.insert((lease.arn.clone(), lease.unit), (lease.epoch, deadline));
                } else {
                    revoked.push(lease);
                }
            }
        }
        if free_slots == 0 && prefetch == 0 {
            // A heartbeat: answered at the end of the wait (the worker drops it and polls
            // with a free slot as soon as it has one), so that it does not spin.
            tokio::time::sleep_until(until).await;
            return Ok((Vec::new(), revoked));
        }
        let _waiting = (free_slots > 0).then(|| WaitingPoll::enter(self));
        loop {
            // Registered before looking, so that work arriving in between is not missed.
            let wake = self.inner.work_available.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let prefetch = {
                let local = self.local();
                let others_wait = local.waiting_with_free_slots > usize::from(free_slots > 0);
                // Two queued units per slot at most, as workers ask (fleet_worker.rs).
                let slots = local.workers.get(worker).map_or(1, |(_, slots)| (*slots).max(1));
                if others_wait {
                    0
                } else {
                    prefetch.min(slots.saturating_mul(2))
                }
            };
            if free_slots > 0 || prefetch > 0 {
                // On a task of its own: if the worker goes away mid-grant (its call is
                // dropped), the grant still completes with its deadlines, so its leases
                // lapse in time.
                let grant = tokio::spawn({
                    let (this, worker) = (self.clone(), worker.to_owned());
                    async move { this.grant(&worker, free_slots, prefetch).await }
                });
                let assigned = grant.await.map_err(|e| Error::ProposalOutcomeUnknown {
                    proposal: "GrantLeases".into(),
                    reason: format!("the grant task failed: {e}"),
                })??;
                if !assigned.is_empty() {
                    return Ok((assigned, revoked));
                }
            }
            if free_slots == 0 {
                // A poll for a prefetch only does not wait: the worker could not take the
                // work of a slot that frees meanwhile until it returns.
                return Ok((Vec::new(), revoked));
            }
            if tokio::time::timeout_at(until, wake).await.is_err() {
                return Ok((Vec::new(), revoked));
            }
        }
    }

    /// Leases pending units of the runs driven here to `worker`: up to `free_slots`, and up to
    /// `prefetch` more from runs without a MaxConcurrency (see [`assign`]).
    async fn grant(&self, worker: &str, free_slots: u32, prefetch: u32) -> Result<Vec<Assigned>> {
        let _granting = self.inner.granting.lock().await;
        let runs: Vec<(MapRunArn, u64, u64)> = self
            .local()
            .runs
            .iter()
            .map(|(arn, run)| (arn.clone(), run.control.max_concurrency(), run.parallelism))
            .collect();
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let limit = free_slots as usize + prefetch as usize;
        let (_, demand) = self
            .inner
            .node
            .local_read(move |state| {
                runs.into_iter()
                    .filter_map(|(arn, max_concurrency, parallelism)| {
                        let work = state.work.runs.get(&arn).filter(|w| !w.stopped)?;
                        let pending: Vec<(u64, u64)> =
                            work.pending().take(limit).map(|u| (u.unit.unit, u.epoch)).collect();
                        let demand = RunDemand {
                            max_concurrency,
                            parallelism,
                            leased: work.leased() as u64,
                            pending: pending.iter().map(|p| p.0).collect(),
                        };
                        Some((arn, demand, pending, work.job.len()))
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let demands: Vec<RunDemand> = demand.iter().map(|(_, d, _, _)| d.clone()).collect();
        let at_once: HashMap<MapRunArn, u64> = demand.iter().map(|(arn, d, _, _)| (arn.clone(), d.at_once())).collect();
        // Each unit carries its run's job: a response holds as many as fit its byte budget
        // (at least one).
        let mut budget = MAX_JOB_BYTES_PER_POLL;
        let grants: Vec<LeaseGrant> = assign(u64::from(free_slots), u64::from(prefetch), &demands)
            .into_iter()
            .enumerate()
            .take_while(|(n, (run, _))| {
                let job = demand[*run].3;
                let fits = *n == 0 || job <= budget;
                budget = budget.saturating_sub(job);
                fits
            })
            .map(|(_, (run, unit))| {
                let (arn, _, pending, _) = &demand[run];
                let epoch = pending.iter().find(|(u, _)| *u == unit).map_or(0, |(_, e)| *e) + 1;
                LeaseGrant { arn: arn.clone(), unit, epoch }
            })
            .collect();
        if grants.is_empty() {
            return Ok(Vec::new());
        }
        let granted =
            match propose(&self.inner.node, &Command::GrantLeases { worker: worker.to_owned(), grants }).await? {
                Response::LeasesGranted { granted } => granted,
                other => return Err(unexpected("GrantLeases", other)),
            };
        {
            let mut local = self.local();
            let deadline = Instant::now() + self.inner.config.lease;
            for lease in &granted {
                local.deadlines.insert((lease.arn.clone(), lease.unit), (lease.epoch, deadline));
            }
        }
        let lookup = granted.clone();
        let (_, assigned) = self
            .inner
            .node
            .local_read(move |state| {
                lookup
                    .into_iter()
                    .filter_map(|lease| {
                        let work = state.work.runs.get(&lease.arn)?;
                        let unit = work.units.get(lease.unit as usize)?.unit.clone();
                        let parallelism = at_once.get(&lease.arn).copied().unwrap_or(1);
                        Some(Assigned { job: work.job.clone(), unit, lease, parallelism })
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        tracing::debug!(worker, units = assigned.len(), "leases granted");
        Ok(assigned)
    }

    /// A worker's result for `lease`: counted if the lease is current. Returns whether it was.
    pub async fn report(&self, lease: LeaseGrant, outcome: UnitOutcome) -> Result<bool> {
        let command = Command::CompleteUnit { lease: lease.clone(), outcome };
        let accepted = match propose(&self.inner.node, &command).await? {
            Response::UnitCompleted { accepted } => accepted,
            other => return Err(unexpected("CompleteUnit", other)),
        };
        let mut local = self.local();
        if local.deadlines.get(&(lease.arn.clone(), lease.unit)).is_some_and(|(epoch, _)| *epoch == lease.epoch) {
            local.deadlines.remove(&(lease.arn.clone(), lease.unit));
        }
        if let Some(run) = local.runs.get(&lease.arn) {
            run.changed.notify_one();
        }
        drop(local);
        // A lease fewer: room under the run's MaxConcurrency for a waiting poll.
        self.inner.work_available.notify_waiters();
        Ok(accepted)
    }

    /// Hands out the units of `arn` from now on, each counted as `parallelism` children
    /// against the run's MaxConcurrency. The run is no longer handed out when the returned
    /// guard drops.
    fn adopt(&self, arn: &MapRunArn, control: MapRunControl, parallelism: u64) -> (RunGuard, Arc<Notify>) {
        let changed = Arc::new(Notify::new());
        let token = Arc::new(());
        let run = LiveRun { control, parallelism, changed: changed.clone(), token: token.clone() };
        self.local().runs.insert(arn.clone(), run);
        self.inner.work_available.notify_waiters();
        (RunGuard { dispatcher: self.clone(), arn: arn.clone(), token }, changed)
    }

    /// Gives each of these leases of `arn` a deadline if it has none (a grant whose outcome
    /// the leader did not learn, e.g. a proposal that timed out but committed).
    fn watch(&self, arn: &MapRunArn, leased: &[(u64, u64)]) {
        let mut local = self.local();
        let deadline = Instant::now() + self.inner.config.lease;
        for (unit, epoch) in leased {
            let entry = local.deadlines.entry((arn.clone(), *unit)).or_insert((*epoch, deadline));
            if entry.0 != *epoch {
                *entry = (*epoch, deadline);
            }
        }
    }

    /// Wakes waiting polls (units became pending, a run's MaxConcurrency grew).
    pub fn work_changed(&self) {
        self.inner.work_available.notify_waiters();
    }
}

/// Stops handing out a run's units when its driver goes (ended, aborted, leadership lost).
struct RunGuard {
    dispatcher: Dispatcher,
    arn: MapRunArn,
    token: Arc<()>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut local = self.dispatcher.local();
        if local.runs.get(&self.arn).is_some_and(|run| Arc::ptr_eq(&run.token, &self.token)) {
            local.runs.remove(&self.arn);
            local.deadlines.retain(|(arn, _), _| *arn != self.arn);
        }
    }
}

/// Commits the lapse of every lease whose deadline passed, returning its unit to PENDING.
async fn watch_leases(inner: Weak<Inner>) {
    let mut ticker = tokio::time::interval(LEASE_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_prune = Instant::now() + PRUNE_CHECK;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_CHECK;
            prune_redrive_work(&inner.node).await;
        }
        let now = Instant::now();
        let lapsed: Vec<LeaseGrant> = {
            let local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
            local
                .deadlines
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|((arn, unit), (epoch, _))| LeaseGrant { arn: arn.clone(), unit: *unit, epoch: *epoch })
                .collect()
        };
        for lease in lapsed {
            match propose(&inner.node, &Command::ReleaseLease { lease: lease.clone() }).await {
                Ok(released) => {
                    // Not released: the unit was reported meanwhile (a renewal raced the report).
                    if released == (Response::LeaseReleased { released: true }) {
                        tracing::info!(map_run = %lease.arn, unit = lease.unit, epoch = lease.epoch,
                            "lease lapsed; the unit will run again");
                    }
                    let mut local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
                    if local.deadlines.get(&(lease.arn.clone(), lease.unit)).is_some_and(|(e, _)| *e == lease.epoch) {
                        local.deadlines.remove(&(lease.arn.clone(), lease.unit));
                    }
                    inner.work_available.notify_waiters();
                }
                // Not the leader (any more): the next leader watches its own deadlines.
                Err(Error::NotLeader { .. }) => {
                    let mut local = inner.local.lock().unwrap_or_else(|e| e.into_inner());
                    local.deadlines.remove(&(lease.arn.clone(), lease.unit));
                }
                Err(error) => tracing::debug!(%error, "lease lapse not committed; trying again"),
            }
        }
    }
}

/// Drops the units kept for redrives that can no longer happen (AWS: 14 days after the
/// parent's end), when there are any; only the leader's proposal commits.
async fn prune_redrive_work(node: &CoordinatorNode) {
    let before = chrono::Utc::now() - crate::state::REDRIVABLE_PERIOD;
    let any = node.local_read(move |state| !state.prunable_work(before).is_empty()).await;
    if !matches!(any, Ok((_, true))) || !node.status().is_leader() {
        return;
    }
    match propose(node, &Command::PruneRedriveWork { before }).await {
        Ok(Response::WorkPruned { map_runs }) => tracing::info!(map_runs, "units past their redrive period dropped"),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "units past their redrive period not dropped; trying later"),
    }
}

/// An answer of the state that its command does not give (a bug, or a newer peer).
fn unexpected(command: &str, response: Response) -> Error {
    Error::ProposalOutcomeUnknown { proposal: command.to_owned(), reason: format!("unexpected answer {response:?}") }
}
