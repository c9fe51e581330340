//! The work ledger (DESIGN.md §3): the work units of map runs that run on the worker fleet,
//! each with its lease epoch and what became of it. Item payloads never enter it: a unit is
//! a batch descriptor, so any leader can hand it out again and a worker re-reads it exactly.
//!
//! A unit is PENDING, LEASED to a worker under an epoch, or DONE with the outcome reported
//! under that epoch. Granting a lease raises the epoch; a report is accepted only for the
//! current epoch of a leased unit, so a unit whose lease lapsed and which ran again counts
//! once, whichever run reports first. Lease deadlines are not replicated: they are the
//! leader's to watch (a new leader gives every outstanding lease a fresh deadline), and a
//! lapse is committed as `ReleaseLease`, which returns the unit to PENDING.
//!
//! A succeeded map run's work is dropped with its end (`EndMapRun`): results are in the result
//! files or the map run's record by then. An unsuccessful run's units stay, stopped, for a
//! redrive of its parent (`RedriveMapRunUnits`), until the parent succeeds or AWS's 14-day
//! redrivable period after its end has passed (`PruneRedriveWork`, proposed hourly by the
//! leader's dispatcher).
//!
//! A parent execution's Task invocation is work too (`ScheduleTaskWork`): one unit under a
//! key of its own, leased, lapsed and reported like a map run's, dropped when the driver took
//! its result (`EndTaskWork`) or the parent closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stepmap_worker::map_run::{UnitOutcome, WorkUnit};

use super::api_error::ApiError;
use super::arn::{ExecutionArn, MapRunArn};
use super::command::{Outcome, Response};
use super::execution_record::ExecutionStatus;
use super::ReplicatedState;

/// The units of every map run on the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkLedger {
    pub runs: BTreeMap<MapRunArn, MapRunWork>,
}

/// One map run's units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapRunWork {
    /// The map run as asl's `MapRunJob` JSON, as workers receive it.
    pub job: String,
    pub units: Vec<UnitRecord>,
    /// Every unit is recorded (planning is committed in parts).
    pub planned: bool,
    /// No more leases or results: the run is being finalised, or has ended.
    pub stopped: bool,
    /// The redrive the units run for now (0: the map run's first attempt).
    #[serde(default)]
    pub round: u32,
    /// Task work: the execution whose Task state it is (none for a map run), and the term
    /// of the leader that scheduled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionArn>,
    #[serde(default)]
    pub term: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub unit: WorkUnit,
    /// The epoch of the last lease granted (0: never leased).
    pub epoch: u64,
    pub status: UnitStatus,
    /// The redrive the unit last ran (or runs) for.
    #[serde(default)]
    pub round: u32,
    /// A unit redriven for some of its children: how it ended before, which the redrive's
    /// outcome is merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier: Option<Box<UnitOutcome>>,
    /// The accepted attempts of earlier rounds, `(round, epoch)`, oldest first: their
    /// succeeded children stay this unit's, and a finaliser writes them if no earlier one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_attempts: Vec<(u32, u64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum UnitStatus {
    Pending,
    Leased { worker: String },
    Done { outcome: Box<UnitOutcome> },
}

/// One lease: unit `unit` of map run `arn` under `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub arn: MapRunArn,
    pub unit: u64,
    pub epoch: u64,
}

/// The key of a Task's work: the execution's ARN and `#task-<id>`.
pub fn task_work_key(execution: &ExecutionArn, id: &str) -> MapRunArn {
    MapRunArn::new(format!("{execution}#task-{id}"))
}

/// A lease's key from the request field `field`: a map run ARN, or a Task's work key.
pub fn parse_work_key(field: &str, text: &str) -> Result<MapRunArn, ApiError> {
    match text.split_once("#task-") {
        Some((execution, id)) if execution.starts_with("arn:") && !id.is_empty() => Ok(MapRunArn::new(text.to_owned())),
        _ => super::map_run_ledger::parse_map_run_arn(field, text),
    }
}

impl MapRunWork {
    /// Units in number order that are PENDING.
    pub fn pending(&self) -> impl Iterator<Item = &UnitRecord> {
        self.units.iter().filter(|u| matches!(u.status, UnitStatus::Pending))
    }

    /// The accepted attempts of the current round, `(unit, epoch)` of the DONE units in
    /// number order: the staged results and archived children its finaliser reads.
    pub fn accepted(&self) -> Vec<(u64, u64)> {
        self.units
            .iter()
            .filter(|u| u.round == self.round && matches!(u.status, UnitStatus::Done { .. }))
            .map(|u| (u.unit.unit, u.epoch))
            .collect()
    }

    /// The accepted attempts of the current round from the unit at `index` on, up to the first
    /// of its units not done (or `most` of them), and the index after them: a finaliser that
    /// copies staged results while the run still runs takes each once, in order (a done unit
    /// stays done in its round).
    pub fn accepted_from(&self, index: usize, most: usize) -> (Vec<(u64, u64)>, usize) {
        let mut accepted = Vec::new();
        let mut next = index;
        for record in self.units.iter().skip(index) {
            if record.round == self.round {
                if accepted.len() == most || !matches!(record.status, UnitStatus::Done { .. }) {
                    break;
                }
                accepted.push((record.unit.unit, record.epoch));
            }
            next += 1;
        }
        (accepted, next)
    }

    /// The accepted attempts of earlier rounds, `(round, unit, epoch)` in unit order, oldest
    /// first: a redrive's finaliser writes their successes (and archives their children) if
    /// the round that ran them ended without doing so.
    pub fn carried(&self) -> Vec<(u32, u64, u64)> {
        let mut carried = Vec::new();
        for record in &self.units {
            let unit = record.unit.unit;
            carried.extend(record.earlier_attempts.iter().map(|&(round, epoch)| (round, unit, epoch)));
            if record.round < self.round && matches!(record.status, UnitStatus::Done { .. }) {
                carried.push((record.round, unit, record.epoch));
            }
        }
        carried
    }

    pub fn leased(&self) -> usize {
        self.units.iter().filter(|u| matches!(u.status, UnitStatus::Leased { .. })).count()
    }

    /// Whether `lease` is the current lease of its unit: the run still takes results and
    /// the unit is leased under that epoch. A lease that is not is revoked at its next poll.
    pub fn is_current(&self, unit: u64, epoch: u64) -> bool {
        !self.stopped
            && self
                .units
                .get(unit as usize)
                .is_some_and(|u| u.epoch == epoch && matches!(u.status, UnitStatus::Leased { .. }))
    }
}

impl ReplicatedState {
    /// Drops the work of `execution`'s map runs once it has closed (stopped, timed out,
    /// failed elsewhere): no `EndMapRun` comes for a map run its driver abandoned, and the
    /// units' leases must stop being current so that workers let go of them.
    /// A parent that did not succeed may be redriven: its map runs keep their units, stopped.
    pub(super) fn drop_work_of_closed(&mut self, execution: &ExecutionArn) {
        let Some(status) = self.executions.get(execution).map(|e| e.status) else { return };
        if status == ExecutionStatus::Running {
            return;
        }
        for arn in self.map_runs.by_execution.get(execution).into_iter().flatten() {
            if status == ExecutionStatus::Succeeded {
                self.work.runs.remove(arn);
            } else if let Some(work) = self.work.runs.get_mut(arn) {
                work.stopped = true;
            }
        }
        self.work.runs.retain(|_, work| work.execution.as_ref() != Some(execution));
    }

    /// The map runs whose units are kept only for a redrive of a parent that closed before
    /// `before` (see `PruneRedriveWork`).
    pub fn prunable_work(&self, before: chrono::DateTime<chrono::Utc>) -> Vec<MapRunArn> {
        self.work
            .runs
            .iter()
            .filter(|(arn, work)| {
                let parent = self.map_runs.map_runs.get(*arn).and_then(|r| self.executions.get(&r.execution_arn));
                work.execution.is_none()
                    && parent.is_some_and(|p| {
                        p.status != ExecutionStatus::Running && p.stop_date.is_some_and(|stop| stop < before)
                    })
            })
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// Records a Task invocation of `execution` as one PENDING unit under `key`. Idempotent.
    pub(super) fn schedule_task_work(
        &mut self,
        key: MapRunArn,
        execution: ExecutionArn,
        job: String,
        term: u64,
    ) -> Outcome {
        let running = self.executions.get(&execution).is_some_and(|e| e.status == ExecutionStatus::Running);
        if !running {
            return Err(ApiError::ExecutionNotRunning { arn: execution.to_string() });
        }
        self.work.runs.entry(key).or_insert_with(|| {
            let unit = WorkUnit { unit: 0, first_index: 0, items: 0, children: 0, descriptor: None, only: None };
            MapRunWork {
                job,
                units: vec![UnitRecord {
                    unit,
                    epoch: 0,
                    status: UnitStatus::Pending,
                    round: 0,
                    earlier: None,
                    earlier_attempts: Vec::new(),
                }],
                planned: true,
                stopped: false,
                round: 0,
                execution: Some(execution),
                term,
            }
        });
        Ok(Response::TaskWorkScheduled)
    }

    /// Opens redrive `round` of a map run's units: each unit that did not wholly succeed is
    /// PENDING again — a DONE one for the children it left unsuccessful (its outcome kept to
    /// merge the redrive's into), one that never completed or could not run for all its
    /// children. Idempotent per round.
    pub(super) fn redrive_map_run_units(&mut self, arn: &MapRunArn, round: u32, job: String) -> Outcome {
        let parent = self.map_runs.map_runs.get(arn).map(|record| &record.execution_arn);
        if !parent.and_then(|p| self.executions.get(p)).is_some_and(|e| e.status == ExecutionStatus::Running) {
            return Err(ApiError::validation("mapRunArn", format!("the parent of map run '{arn}' is not running")));
        }
        let work = self.work.runs.get_mut(arn).ok_or_else(|| ApiError::ResourceNotFound { arn: arn.to_string() })?;
        if work.round >= round {
            return Ok(Response::UnitsRedriven { reopened: 0 });
        }
        let mut reopened = 0;
        for record in &mut work.units {
            let earlier = match std::mem::replace(&mut record.status, UnitStatus::Pending) {
                UnitStatus::Done { outcome } if outcome.failure.is_none() && outcome.unsuccessful.is_empty() => {
                    record.status = UnitStatus::Done { outcome };
                    continue;
                }
                UnitStatus::Done { outcome } if outcome.failure.is_none() => {
                    record.earlier_attempts.push((record.round, record.epoch));
                    Some(outcome)
                }
                // Never completed (or could not run) in its round: the same children as then.
                _ => record.earlier.take(),
            };
            record.unit.only = earlier.as_ref().map(|outcome| outcome.unsuccessful.clone());
            record.earlier = earlier;
            record.round = round;
            reopened += 1;
        }
        work.job = job;
        work.round = round;
        work.stopped = false;
        Ok(Response::UnitsRedriven { reopened })
    }

    /// Records units `first..first + units.len()` of a map run; `job` comes with the first
    /// part. Idempotent: a part already recorded is accepted again unchanged.
    pub(super) fn plan_map_run_units(
        &mut self,
        arn: MapRunArn,
        job: Option<String>,
        round: u32,
        first: u64,
        units: Vec<stepmap_worker::map_run::WorkUnit>,
        last: bool,
    ) -> Outcome {
        if !self.map_runs.map_runs.contains_key(&arn) {
            return Err(ApiError::ResourceNotFound { arn: arn.to_string() });
        }
        if !self.work.runs.contains_key(&arn) {
            let Some(job) = job.filter(|_| first == 0) else {
                return Err(ApiError::validation("units", "the first part of a plan carries the job"));
            };
            let work =
                MapRunWork { job, units: Vec::new(), planned: false, stopped: false, round, execution: None, term: 0 };
            self.work.runs.insert(arn.clone(), work);
        }
        let Some(work) = self.work.runs.get_mut(&arn) else {
            return Err(ApiError::ResourceNotFound { arn: arn.to_string() });
        };
        let recorded = work.units.len() as u64;
        if first > recorded {
            return Err(ApiError::validation(
                "first",
                format!("units before {first} are not recorded ({recorded} are)"),
            ));
        }
        let new = units.into_iter().skip((recorded - first) as usize);
        let round = work.round;
        work.units.extend(new.map(|unit| UnitRecord {
            unit,
            epoch: 0,
            status: UnitStatus::Pending,
            round,
            earlier: None,
            earlier_attempts: Vec::new(),
        }));
        work.planned |= last;
        Ok(Response::UnitsPlanned { recorded: work.units.len() as u64 })
    }

    /// Leases the units of `grants` to `worker`, each only if it is PENDING and the grant's
    /// epoch is the next one. Answers the grants that took effect.
    pub(super) fn grant_leases(&mut self, worker: String, grants: Vec<LeaseGrant>) -> Outcome {
        let mut granted = Vec::with_capacity(grants.len());
        for grant in grants {
            let Some(work) = self.work.runs.get_mut(&grant.arn).filter(|w| !w.stopped) else { continue };
            let Some(unit) = work.units.get_mut(grant.unit as usize) else { continue };
            if matches!(unit.status, UnitStatus::Pending) && grant.epoch == unit.epoch + 1 {
                unit.epoch = grant.epoch;
                unit.status = UnitStatus::Leased { worker: worker.clone() };
                granted.push(grant);
            }
        }
        Ok(Response::LeasesGranted { granted })
    }

    /// The outcome of a unit under lease `epoch`: accepted only for the current lease of a
    /// map run that still takes results.
    pub(super) fn complete_unit(&mut self, lease: LeaseGrant, outcome: UnitOutcome) -> Outcome {
        let accepted = match self.work.runs.get_mut(&lease.arn) {
            Some(work) if work.is_current(lease.unit, lease.epoch) => {
                let record = &mut work.units[lease.unit as usize];
                let outcome = match &record.earlier {
                    Some(earlier) if outcome.failure.is_none() => outcome.after(earlier),
                    _ => outcome,
                };
                record.status = UnitStatus::Done { outcome: Box::new(outcome) };
                true
            }
            _ => false,
        };
        Ok(Response::UnitCompleted { accepted })
    }

    /// The lease lapsed (or its worker handed it back): the unit is PENDING again.
    pub(super) fn release_lease(&mut self, lease: LeaseGrant) -> Outcome {
        let released = match self.work.runs.get_mut(&lease.arn) {
            Some(work) if work.is_current(lease.unit, lease.epoch) => {
                work.units[lease.unit as usize].status = UnitStatus::Pending;
                true
            }
            _ => false,
        };
        Ok(Response::LeaseReleased { released })
    }

    /// No more leases or results for the map run: its finaliser reads what is DONE now.
    pub(super) fn stop_map_run_units(&mut self, arn: &MapRunArn) -> Outcome {
        if let Some(work) = self.work.runs.get_mut(arn) {
            work.stopped = true;
        }
        Ok(Response::MapRunUnitsStopped)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use stepmap_worker::map_run::StatusCounts;

    use super::*;
    use crate::state::{Command, MapRunRecord, MapRunSettings};

    const MAP_RUN: &str = "arn:aws:states:us-east-1:123456789012:mapRun:orders/Map:5e1c";

    fn unit(n: u64) -> WorkUnit {
        WorkUnit { unit: n, first_index: n * 10, items: 10, children: 1, descriptor: None, only: None }
    }

    fn outcome(succeeded: u64) -> UnitOutcome {
        UnitOutcome {
            items: StatusCounts { succeeded, ..Default::default() },
            executions: StatusCounts { succeeded: 1, ..Default::default() },
            ..Default::default()
        }
    }

    /// A RUNNING execution with a map run of `units` planned units.
    fn state_with_map_run(units: u64) -> (ReplicatedState, MapRunArn) {
        let (mut state, execution) = crate::state::map_run_ledger::tests::state_with_execution();
        let arn = MapRunArn::new(MAP_RUN.into());
        let record = MapRunRecord::start(arn.clone(), execution, MapRunSettings::default(), chrono::Utc::now());
        state.map_runs.map_runs.insert(arn.clone(), record);
        let plan = |first: u64, n: u64, last| Command::PlanMapRunUnits {
            arn: arn.clone(),
            job: Some("{}".into()),
            round: 0,
            first,
            units: (first..first + n).map(unit).collect(),
            last,
        };
        state.execute(plan(0, units / 2, false)).unwrap();
        // A part committed twice (the leader retried) is recorded once.
        state.execute(plan(0, units / 2, false)).unwrap();
        state.execute(plan(units / 2, units - units / 2, true)).unwrap();
        let work = &state.work.runs[&arn];
        assert_eq!((work.units.len() as u64, work.planned), (units, true));
        (state, arn)
    }

    fn grant(state: &mut ReplicatedState, arn: &MapRunArn, worker: &str, unit: u64, epoch: u64) -> bool {
        let lease = LeaseGrant { arn: arn.clone(), unit, epoch };
        match state.execute(Command::GrantLeases { worker: worker.into(), grants: vec![lease] }).unwrap() {
            Response::LeasesGranted { granted } => granted.len() == 1,
            other => panic!("{other:?}"),
        }
    }

    fn complete(state: &mut ReplicatedState, arn: &MapRunArn, unit: u64, epoch: u64) -> bool {
        let lease = LeaseGrant { arn: arn.clone(), unit, epoch };
        match state.execute(Command::CompleteUnit { lease, outcome: outcome(10) }).unwrap() {
            Response::UnitCompleted { accepted } => accepted,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_result_counts_only_for_the_current_epoch() {
        let (mut state, arn) = state_with_map_run(2);
        assert!(grant(&mut state, &arn, "w1", 0, 1));
        // Not pending any more, and epochs only go up by one.
        assert!(!grant(&mut state, &arn, "w2", 0, 2));
        assert!(!grant(&mut state, &arn, "w2", 1, 5));
        // w1's lease lapses; w2 gets the unit under epoch 2.
        let lapse = Command::ReleaseLease { lease: LeaseGrant { arn: arn.clone(), unit: 0, epoch: 1 } };
        assert_eq!(state.execute(lapse.clone()).unwrap(), Response::LeaseReleased { released: true });
        assert!(grant(&mut state, &arn, "w2", 0, 2));
        // The lapse again, or w1's late result: refused.
        assert_eq!(state.execute(lapse).unwrap(), Response::LeaseReleased { released: false });
        assert!(!complete(&mut state, &arn, 0, 1));
        assert!(complete(&mut state, &arn, 0, 2));
        // Done: a second report of the same epoch is refused too.
        assert!(!complete(&mut state, &arn, 0, 2));
        // Stopped: no more leases or results.
        assert!(grant(&mut state, &arn, "w1", 1, 1));
        state.execute(Command::StopMapRunUnits { arn: arn.clone() }).unwrap();
        assert!(!complete(&mut state, &arn, 1, 1));
        let work = &state.work.runs[&arn];
        assert!(matches!(work.units[0].status, UnitStatus::Done { .. }));
        assert!(matches!(work.units[1].status, UnitStatus::Leased { .. }));
    }

    #[test]
    fn a_closed_parent_stops_its_map_runs_work() {
        let (mut state, execution) = crate::state::map_run_ledger::tests::state_with_execution();
        let date = chrono::Utc::now();
        let arn = MapRunArn::new(MAP_RUN.into());
        let record = MapRunRecord::start(arn.clone(), execution.clone(), MapRunSettings::default(), date);
        state.execute(Command::StartMapRun { record: Box::new(record) }).unwrap();
        let plan = Command::PlanMapRunUnits {
            arn: arn.clone(),
            job: Some("{}".into()),
            round: 0,
            first: 0,
            units: vec![unit(0)],
            last: true,
        };
        state.execute(plan).unwrap();
        assert!(grant(&mut state, &arn, "w", 0, 1));
        let stop = Command::StopExecution { arn: execution.clone(), error: None, cause: None, date };
        state.execute(stop).unwrap();
        // No EndMapRun comes for it: the lease is no longer current, the units stay for a
        // redrive of the (ABORTED) parent.
        assert!(!complete(&mut state, &arn, 0, 1));
        assert!(state.work.runs[&arn].stopped);
        // Kept while the parent may be redriven, dropped once it closed before the cut-off.
        let prune = |before| Command::PruneRedriveWork { before };
        let stopped = state.executions[&execution].stop_date.expect("stopped");
        let earlier = stopped - chrono::TimeDelta::seconds(1);
        assert_eq!(state.execute(prune(earlier)).unwrap(), Response::WorkPruned { map_runs: 0 });
        let later = stopped + chrono::TimeDelta::seconds(1);
        assert_eq!(state.execute(prune(later)).unwrap(), Response::WorkPruned { map_runs: 1 });
        assert!(!state.work.runs.contains_key(&arn));
    }

    /// Outcome of `n` children, those at `unsuccessful` failed.
    fn outcome_of(n: u64, unsuccessful: &[u64]) -> UnitOutcome {
        let failed = unsuccessful.len() as u64;
        let counts = StatusCounts { succeeded: n - failed, failed, ..Default::default() };
        let outputs =
            (0..n).map(|i| serde_json::json!(if unsuccessful.contains(&i) { "failed" } else { "ok" })).collect();
        UnitOutcome {
            items: counts,
            executions: counts,
            outputs: Some(outputs),
            unsuccessful: unsuccessful.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_redrive_reruns_only_the_unsuccessful_children_and_merges_their_outcomes() {
        let (mut state, arn) = state_with_map_run(3);
        // Unit 0 succeeds whole, unit 1 fails at children 2 and 5, unit 2 never completes.
        for unit in 0..3 {
            assert!(grant(&mut state, &arn, "w", unit, 1));
        }
        let lease = |unit, epoch| LeaseGrant { arn: arn.clone(), unit, epoch };
        state.execute(Command::CompleteUnit { lease: lease(0, 1), outcome: outcome_of(10, &[]) }).unwrap();
        state.execute(Command::CompleteUnit { lease: lease(1, 1), outcome: outcome_of(10, &[2, 5]) }).unwrap();
        state.execute(Command::StopMapRunUnits { arn: arn.clone() }).unwrap();

        let redrive = Command::RedriveMapRunUnits { arn: arn.clone(), round: 1, job: "{\"redrive\":1}".into() };
        assert_eq!(state.execute(redrive.clone()).unwrap(), Response::UnitsRedriven { reopened: 2 });
        // Repeated (a retry, a new leader): nothing more.
        assert_eq!(state.execute(redrive).unwrap(), Response::UnitsRedriven { reopened: 0 });
        let work = &state.work.runs[&arn];
        assert!(!work.stopped && work.round == 1 && work.job.contains("redrive"));
        assert!(matches!(work.units[0].status, UnitStatus::Done { .. }) && work.units[0].round == 0);
        assert_eq!(work.units[1].unit.only, Some(vec![2, 5]));
        assert_eq!(work.units[2].unit.only, None, "a unit that never completed runs whole");
        assert_eq!(work.accepted(), Vec::<(u64, u64)>::new(), "the round's own attempts only");
        // Copied in order while the round runs: unit 0 is not the round's, unit 1 not done.
        assert_eq!(work.accepted_from(0, 10), (vec![], 1));

        // The redrive of unit 1 ran its two children: one succeeds now, one fails again.
        assert!(grant(&mut state, &arn, "w", 1, 2));
        let again = UnitOutcome {
            items: StatusCounts { succeeded: 1, failed: 1, ..Default::default() },
            executions: StatusCounts { succeeded: 1, failed: 1, ..Default::default() },
            outputs: Some(vec![serde_json::json!("ok now"), serde_json::json!("failed again")]),
            unsuccessful: vec![5],
            ..Default::default()
        };
        state.execute(Command::CompleteUnit { lease: lease(1, 2), outcome: again }).unwrap();
        let UnitStatus::Done { outcome } = &state.work.runs[&arn].units[1].status else { panic!("done") };
        assert_eq!((outcome.items.succeeded, outcome.items.failed), (9, 1));
        assert_eq!(outcome.unsuccessful, vec![5]);
        let outputs = outcome.outputs.as_ref().unwrap();
        assert_eq!(
            (outputs.len(), &outputs[2], &outputs[5]),
            (10, &serde_json::json!("ok now"), &serde_json::json!("failed again"))
        );
        assert_eq!(state.work.runs[&arn].accepted(), vec![(1, 2)]);
        assert_eq!(state.work.runs[&arn].accepted_from(0, 10), (vec![(1, 2)], 2), "up to unit 2, not done");
        assert_eq!(state.work.runs[&arn].accepted_from(0, 0), (vec![], 1), "none of the round's");
        assert_eq!(state.work.runs[&arn].accepted_from(2, 10), (vec![], 2));

        // A second redrive reruns the child that failed again.
        let redrive = Command::RedriveMapRunUnits { arn: arn.clone(), round: 2, job: "{}".into() };
        assert_eq!(state.execute(redrive).unwrap(), Response::UnitsRedriven { reopened: 2 });
        assert_eq!(state.work.runs[&arn].units[1].unit.only, Some(vec![5]));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Grant { unit: u64 },
        Complete { unit: u64, stale: bool },
        Release { unit: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..6u64).prop_map(|unit| Step::Grant { unit }),
            (0..6u64, any::<bool>()).prop_map(|(unit, stale)| Step::Complete { unit, stale }),
            (0..6u64).prop_map(|unit| Step::Release { unit }),
        ]
    }

    proptest! {
        /// Whatever order grants, lapses and (possibly stale) reports come in, every unit is
        /// counted at most once, only with the epoch it was last leased under, and epochs
        /// never go down.
        #[test]
        fn every_unit_is_done_at_most_once(steps in proptest::collection::vec(step(), 1..60)) {
            let (mut state, arn) = state_with_map_run(6);
            let mut accepted = [0u32; 6];
            for step in steps {
                let epochs: Vec<u64> = state.work.runs[&arn].units.iter().map(|u| u.epoch).collect();
                match step {
                    Step::Grant { unit } => { grant(&mut state, &arn, "w", unit, epochs[unit as usize] + 1); }
                    Step::Complete { unit, stale } => {
                        let epoch = epochs[unit as usize].saturating_sub(u64::from(stale));
                        let current = state.work.runs[&arn].is_current(unit, epoch);
                        let done = complete(&mut state, &arn, unit, epoch);
                        prop_assert_eq!(done, current);
                        if done { accepted[unit as usize] += 1; }
                    }
                    Step::Release { unit } => {
                        let lease = LeaseGrant { arn: arn.clone(), unit, epoch: epochs[unit as usize] };
                        state.execute(Command::ReleaseLease { lease }).unwrap();
                    }
                }
                let after: Vec<u64> = state.work.runs[&arn].units.iter().map(|u| u.epoch).collect();
                prop_assert!(after.iter().zip(&epochs).all(|(a, b)| a >= b));
            }
            prop_assert!(accepted.iter().all(|n| *n <= 1));
            for (unit, record) in state.work.runs[&arn].units.iter().enumerate() {
                prop_assert_eq!(matches!(record.status, UnitStatus::Done { .. }), accepted[unit] == 1);
            }
        }
    }
}
