//! The STANDARD child executions of map runs on the worker fleet: DescribeExecution,
//! GetExecutionHistory and ListExecutions by `mapRunArn` answer them from the archive the
//! workers wrote (`stepmap_worker::map_run::child_archive`): a running map run's children as
//! their units are accepted, all of them once it has ended. Their histories never enter the
//! replicated state.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use stepmap_asl::model::StateMachineType;
use stepmap_proto::v1 as pb;
use stepmap_storage::Stores;
use stepmap_worker::map_run::child_archive::{self, ArchivedExecution};

use super::pagination::{decode_token, page, page_size};
use super::states_service::{list_item, status_filter, StatesService};
use crate::error::Result;
use crate::state::{
    parse_map_run_arn, ApiError, ExecutionArn, ExecutionRecord, ExecutionStatus, MapRunArn, MapRunWork, StateMachineArn,
};

/// Where the children's executions are archived: a bucket of the cluster's object store.
#[derive(Clone)]
pub struct ChildArchive {
    pub stores: Arc<Stores>,
    pub bucket: String,
}

impl StatesService {
    /// The archived child execution `arn`, with the map run it ran in. A child's ARN names
    /// the labelled machine (`execution:<machine>/<label>:<name>`), which narrows the search
    /// to the map runs of that label, newest first.
    pub(super) async fn archived_execution(&self, arn: &ExecutionArn) -> Result<Option<(ExecutionRecord, MapRunArn)>> {
        let Some(archive) = &self.archive else { return Ok(None) };
        let Some(prefix) =
            arn.as_str().rsplit_once(':').map(|(machine, _)| machine.replacen(":execution:", ":mapRun:", 1))
        else {
            return Ok(None);
        };
        if !prefix.contains('/') {
            return Ok(None); // not a child: its machine has no label
        }
        let prefix = format!("{prefix}:");
        let runs = self
            .read(move |state| {
                let mut runs: Vec<_> = state
                    .map_runs
                    .map_runs
                    .values()
                    .filter(|run| run.arn.as_str().starts_with(&prefix))
                    .map(|run| (run.start_date, run.arn.clone()))
                    .collect();
                runs.sort_by(|a, b| b.cmp(a));
                runs
            })
            .await?;
        for (_, run) in runs {
            let children = self.read_children(archive, &run).await?;
            if let Some(child) = children.into_iter().find(|child| child.execution_arn == arn.as_str()) {
                return Ok(record(child).map(|record| (record, run)));
            }
        }
        Ok(None)
    }

    /// ListExecutions with `mapRunArn`: the map run's children, in item order.
    pub(super) async fn list_children(
        &self,
        request: &pb::ListExecutionsRequest,
    ) -> Result<pb::ListExecutionsResponse> {
        let run = parse_map_run_arn("mapRunArn", &request.map_run_arn)?;
        if !request.state_machine_arn.is_empty() {
            return Err(
                ApiError::validation("mapRunArn", "Only one of stateMachineArn and mapRunArn may be given").into()
            );
        }
        let limit = page_size(request.max_results)?;
        let skip = decode_token("c", &request.next_token)?.unwrap_or(0) as usize;
        let status = status_filter(&request.status_filter)?;
        let key = run.clone();
        let exists = self.read(move |state| state.map_runs.map_runs.contains_key(&key)).await?;
        if !exists {
            return Err(ApiError::ResourceNotFound { arn: run.to_string() }.into());
        }
        let children = match &self.archive {
            Some(archive) => self.read_children(archive, &run).await?,
            None => Vec::new(),
        };
        let matching: Vec<ExecutionRecord> =
            children.into_iter().filter_map(record).filter(|r| status.is_none_or(|s| r.status == s)).collect();
        let (matching, next_token) = page(matching, "c", skip, limit);
        let executions = matching.map(list_item).collect();
        Ok(pb::ListExecutionsResponse { executions, next_token })
    }
}

impl StatesService {
    /// The archived children of `run`: all of them once it has ended, those of the units
    /// accepted so far while it runs (the work ledger says which attempts).
    async fn read_children(&self, archive: &ChildArchive, run: &MapRunArn) -> Result<Vec<ArchivedExecution>> {
        if let Some(children) = child_archive::read_run(&archive.stores, &archive.bucket, run.as_str()).await? {
            return Ok(children);
        }
        let key = run.clone();
        let accepted: Vec<(u64, u64)> =
            self.read(move |state| state.work.runs.get(&key).map_or_else(Vec::new, MapRunWork::accepted)).await?;
        let children = child_archive::read_units(&archive.stores, &archive.bucket, run.as_str(), &accepted).await?;
        if children.is_empty() && !accepted.is_empty() {
            // The run ended in between: its units were gathered into the run's object.
            if let Some(children) = child_archive::read_run(&archive.stores, &archive.bucket, run.as_str()).await? {
                return Ok(children);
            }
        }
        Ok(children)
    }
}

/// An archived child as an execution record (what the API describes).
fn record(child: ArchivedExecution) -> Option<ExecutionRecord> {
    let time = |text: &str| stepmap_asl::timestamp::parse(text).map(|t| t.with_timezone(&Utc));
    let start_date: DateTime<Utc> = time(&child.start_date)?;
    Some(ExecutionRecord {
        arn: ExecutionArn::parse("executionArn", &child.execution_arn).ok()?,
        state_machine_arn: StateMachineArn::parse("stateMachineArn", &child.state_machine_arn).ok()?,
        name: child.name,
        machine_type: StateMachineType::Standard,
        definition: String::new(),
        role_arn: String::new(),
        input: child.input,
        status: ExecutionStatus::parse(&child.status)?,
        start_date,
        stop_date: time(&child.stop_date),
        output: child.output,
        error: child.error,
        cause: child.cause,
        seed: 0,
        seq: 0,
        history: child.history,
        redrives: Vec::new(),
    })
}
