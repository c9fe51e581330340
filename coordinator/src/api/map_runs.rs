//! DescribeMapRun, ListMapRuns and UpdateMapRun (features.md §2.9) over the Map Run ledger.
//! Reads are linearizable. UpdateMapRun is committed first (that is where "only RUNNING map
//! runs" is judged, on every replica alike), then applied to the live run if this node drives
//! it; a leader that later (re)starts the run takes the committed settings from the ledger.

use stepmap_proto::v1 as pb;
use tonic::{Request, Response as GrpcResponse};

use super::pagination::{decode_token, page, page_size};
use super::states_service::{date, unexpected, Reply, StatesService};
use crate::error::{Error, Result};
use crate::proposer::propose;
use crate::state::{parse_map_run_arn, ApiError, Command, ExecutionArn, MapRunCounts, MapRunRecord, Response};

fn counts(c: MapRunCounts) -> pb::MapRunCounts {
    pb::MapRunCounts {
        pending: c.pending,
        running: c.running,
        succeeded: c.succeeded,
        failed: c.failed,
        timed_out: c.timed_out,
        aborted: c.aborted,
        total: c.total,
        results_written: c.results_written,
        failures_not_redrivable: c.failures_not_redrivable,
        pending_redrive: c.pending_redrive,
    }
}

fn describe(record: MapRunRecord) -> pb::DescribeMapRunResponse {
    pb::DescribeMapRunResponse {
        map_run_arn: record.arn.to_string(),
        execution_arn: record.execution_arn.to_string(),
        status: record.status.as_str().into(),
        start_date: date(record.start_date),
        stop_date: record.stop_date.map(date),
        max_concurrency: record.settings.max_concurrency,
        tolerated_failure_percentage: record.settings.tolerated_failure_percentage.unwrap_or(0.0),
        tolerated_failure_count: record.settings.tolerated_failure_count.unwrap_or(0),
        item_counts: Some(counts(record.item_counts)),
        execution_counts: Some(counts(record.execution_counts)),
        redrive_count: record.redrive_count.into(),
        redrive_date: record.redrive_date.map(date),
    }
}

/// A non-negative integer request field, or a ValidationException naming it.
fn non_negative(field: &str, value: Option<i64>) -> Result<Option<u64>, ApiError> {
    value
        .map(|n| {
            u64::try_from(n).map_err(|_| {
                ApiError::validation(
                    field,
                    format!("1 validation error detected: Value '{n}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to 0"),
                )
            })
        })
        .transpose()
}

impl StatesService {
    pub(super) async fn describe_map_run_op(
        &self,
        request: Request<pb::DescribeMapRunRequest>,
    ) -> Reply<pb::DescribeMapRunResponse> {
        let arn = parse_map_run_arn("mapRunArn", &request.into_inner().map_run_arn).map_err(Error::from)?;
        let key = arn.clone();
        let record = self
            .read(move |state| state.map_run(&key))
            .await?
            .ok_or_else(|| Error::from(ApiError::ResourceNotFound { arn: arn.to_string() }))?;
        Ok(GrpcResponse::new(describe(record)))
    }

    pub(super) async fn list_map_runs_op(
        &self,
        request: Request<pb::ListMapRunsRequest>,
    ) -> Reply<pb::ListMapRunsResponse> {
        let request = request.into_inner();
        let execution = ExecutionArn::parse("executionArn", &request.execution_arn).map_err(Error::from)?;
        let limit = page_size(request.max_results).map_err(Error::from)?;
        let skip = decode_token("r", &request.next_token).map_err(Error::from)?.unwrap_or(0) as usize;
        let key = execution.clone();
        let (exists, map_runs) =
            self.read(move |state| (state.executions.contains_key(&key), state.map_runs_of(&key))).await?;
        if !exists {
            return Err(Error::from(ApiError::ExecutionDoesNotExist { arn: execution.to_string() }).into());
        }
        let (map_runs, next_token) = page(map_runs, "r", skip, limit);
        let map_runs = map_runs
            .map(|run| pb::MapRunListItem {
                execution_arn: run.execution_arn.to_string(),
                map_run_arn: run.arn.to_string(),
                state_machine_arn: run.state_machine_arn(),
                start_date: date(run.start_date),
                stop_date: run.stop_date.map(date),
            })
            .collect();
        Ok(GrpcResponse::new(pb::ListMapRunsResponse { map_runs, next_token }))
    }

    pub(super) async fn update_map_run_op(
        &self,
        request: Request<pb::UpdateMapRunRequest>,
    ) -> Reply<pb::UpdateMapRunResponse> {
        let request = request.into_inner();
        let arn = parse_map_run_arn("mapRunArn", &request.map_run_arn).map_err(Error::from)?;
        let max_concurrency = non_negative("maxConcurrency", request.max_concurrency).map_err(Error::from)?;
        let tolerated_failure_count =
            non_negative("toleratedFailureCount", request.tolerated_failure_count).map_err(Error::from)?;
        if let Some(percentage) = request.tolerated_failure_percentage {
            if !(0.0..=100.0).contains(&percentage) {
                return Err(Error::from(ApiError::validation(
                    "toleratedFailurePercentage",
                    format!("1 validation error detected: Value '{percentage}' at 'toleratedFailurePercentage' failed to satisfy constraint: Member must have value between 0 and 100"),
                ))
                .into());
            }
        }
        let command = Command::UpdateMapRun {
            arn: arn.clone(),
            max_concurrency,
            tolerated_failure_percentage: request.tolerated_failure_percentage,
            tolerated_failure_count,
        };
        match propose(&self.node, &command).await? {
            Response::MapRunUpdated { settings } => {
                // Driven here (the leader drives every execution): effective at once.
                self.driver.live_map_runs().apply(&arn, &settings);
                Ok(GrpcResponse::new(pb::UpdateMapRunResponse {}))
            }
            other => Err(unexpected(other)),
        }
    }
}
