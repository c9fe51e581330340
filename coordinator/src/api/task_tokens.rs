//! SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat, the activity operations and
//! GetActivityTask (features.md §1.3 Task, §3). Whether a token may still be completed is
//! judged in `apply` (`state/task_tokens.rs`); this layer validates requests against AWS's
//! limits, proposes, and wakes the task attempts waiting on this leader
//! (`driver::TaskTokenSignal`).

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use stepmap_proto::v1 as pb;
use tonic::{Request, Response as GrpcResponse};

use super::pagination::{decode_token, encode_token, page_size};
use super::states_service::{date, unexpected, Reply, StatesService};
use crate::driver::TaskTokenSignal;
use crate::error::{Error, Result};
use crate::proposer::propose;
use crate::state::{validate_name, ActivityArn, ApiError, Command, Response, TaskTokenOutcome};

/// AWS GetActivityTask's long poll.
pub(super) const ACTIVITY_POLL: Duration = Duration::from_secs(60);
/// AWS limits on SendTask* fields.
const MAX_TOKEN: usize = 2048;
const MAX_OUTPUT_BYTES: usize = 256 * 1024;
const MAX_ERROR: usize = 256;
const MAX_CAUSE: usize = 32_768;
/// The longest a poller goes without looking for tasks committed through another leader.
const POLL_RECHECK: Duration = Duration::from_millis(500);

/// Checks a task token's length (AWS: 1..2048) and shape: tokens are the 43-character
/// base64url texts the interpreter mints; anything else cannot name a task.
fn task_token(token: &str) -> Result<String, ApiError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(ApiError::validation("taskToken", "Member must have length between 1 and 2048"));
    }
    if token.len() != 43 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::InvalidToken {
            field: "taskToken".into(),
            message: "Invalid Token: not a task token".into(),
        });
    }
    Ok(token.to_owned())
}

/// An optional text field with AWS's maximum length; empty means absent.
fn optional_text(field: &str, text: String, max: usize) -> Result<Option<String>, ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::validation(field, format!("Member must have length less than or equal to {max}")));
    }
    Ok((!text.is_empty()).then_some(text))
}

impl StatesService {
    fn signal(&self) -> TaskTokenSignal {
        self.driver.task_token_signal()
    }

    /// Proposes a token command and wakes this leader's waiting attempts.
    async fn token_command(&self, command: Command) -> Result<Response> {
        let response = propose(&self.node, &command).await?;
        self.signal().bump();
        Ok(response)
    }

    pub(super) async fn send_task_success_op(
        &self,
        request: Request<pb::SendTaskSuccessRequest>,
    ) -> Reply<pb::SendTaskSuccessResponse> {
        let request = request.into_inner();
        let token = task_token(&request.task_token).map_err(Error::from)?;
        if request.output.len() > MAX_OUTPUT_BYTES {
            let message = format!("output exceeds the limit of {MAX_OUTPUT_BYTES} bytes");
            return Err(Error::from(ApiError::InvalidOutput { message }).into());
        }
        serde_json::from_str::<Value>(&request.output)
            .map_err(|error| Error::from(ApiError::InvalidOutput { message: format!("Invalid Output: '{error}'") }))?;
        let outcome = TaskTokenOutcome::Succeeded { output: request.output };
        self.token_command(Command::CompleteTaskToken { token, outcome, date: Utc::now() }).await?;
        Ok(GrpcResponse::new(pb::SendTaskSuccessResponse {}))
    }

    pub(super) async fn send_task_failure_op(
        &self,
        request: Request<pb::SendTaskFailureRequest>,
    ) -> Reply<pb::SendTaskFailureResponse> {
        let request = request.into_inner();
        let token = task_token(&request.task_token).map_err(Error::from)?;
        let error = optional_text("error", request.error, MAX_ERROR).map_err(Error::from)?;
        let cause = optional_text("cause", request.cause, MAX_CAUSE).map_err(Error::from)?;
        let outcome = TaskTokenOutcome::Failed { error, cause };
        self.token_command(Command::CompleteTaskToken { token, outcome, date: Utc::now() }).await?;
        Ok(GrpcResponse::new(pb::SendTaskFailureResponse {}))
    }

    pub(super) async fn send_task_heartbeat_op(
        &self,
        request: Request<pb::SendTaskHeartbeatRequest>,
    ) -> Reply<pb::SendTaskHeartbeatResponse> {
        let token = task_token(&request.into_inner().task_token).map_err(Error::from)?;
        self.token_command(Command::HeartbeatTaskToken { token, date: Utc::now() }).await?;
        Ok(GrpcResponse::new(pb::SendTaskHeartbeatResponse {}))
    }

    pub(super) async fn create_activity_op(
        &self,
        request: Request<pb::CreateActivityRequest>,
    ) -> Reply<pb::CreateActivityResponse> {
        let name = request.into_inner().name;
        validate_name("name", &name).map_err(Error::from)?;
        let command = Command::CreateActivity { arn: self.scope.activity(&name), name, date: Utc::now() };
        match propose(&self.node, &command).await? {
            Response::ActivityCreated { arn, creation_date } => Ok(GrpcResponse::new(pb::CreateActivityResponse {
                activity_arn: arn.to_string(),
                creation_date: date(creation_date),
            })),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn describe_activity_op(
        &self,
        request: Request<pb::DescribeActivityRequest>,
    ) -> Reply<pb::DescribeActivityResponse> {
        let arn = ActivityArn::parse("activityArn", &request.into_inner().activity_arn).map_err(Error::from)?;
        let key = arn.clone();
        let activity = self
            .read(move |state| state.activities.get(&key).cloned())
            .await?
            .ok_or_else(|| Error::from(ApiError::ActivityDoesNotExist { arn: arn.to_string() }))?;
        Ok(GrpcResponse::new(pb::DescribeActivityResponse {
            activity_arn: activity.arn.to_string(),
            name: activity.name,
            creation_date: date(activity.creation_date),
        }))
    }

    pub(super) async fn list_activities_op(
        &self,
        request: Request<pb::ListActivitiesRequest>,
    ) -> Reply<pb::ListActivitiesResponse> {
        let request = request.into_inner();
        let limit = page_size(request.max_results).map_err(Error::from)?;
        let skip = decode_token("a", &request.next_token).map_err(Error::from)?.unwrap_or(0) as usize;
        let (activities, total) = self
            .read(move |state| {
                let page: Vec<_> = state.activities.values().skip(skip).take(limit).cloned().collect();
                (page, state.activities.len())
            })
            .await?;
        let next_token = if total > skip + limit { encode_token("a", (skip + limit) as u64) } else { String::new() };
        let activities = activities
            .into_iter()
            .map(|a| pb::ActivityListItem {
                activity_arn: a.arn.to_string(),
                name: a.name,
                creation_date: date(a.creation_date),
            })
            .collect();
        Ok(GrpcResponse::new(pb::ListActivitiesResponse { activities, next_token }))
    }

    pub(super) async fn delete_activity_op(
        &self,
        request: Request<pb::DeleteActivityRequest>,
    ) -> Reply<pb::DeleteActivityResponse> {
        let arn = ActivityArn::parse("activityArn", &request.into_inner().activity_arn).map_err(Error::from)?;
        propose(&self.node, &Command::DeleteActivity { arn }).await?;
        Ok(GrpcResponse::new(pb::DeleteActivityResponse {}))
    }

    /// Long poll: hands out the oldest scheduled task of the activity, or an empty token when
    /// none arrives within the poll.
    pub(super) async fn get_activity_task_op(
        &self,
        request: Request<pb::GetActivityTaskRequest>,
    ) -> Reply<pb::GetActivityTaskResponse> {
        let request = request.into_inner();
        let arn = ActivityArn::parse("activityArn", &request.activity_arn).map_err(Error::from)?;
        let worker_name =
            optional_text("workerName", request.worker_name, 80).map_err(Error::from)?.unwrap_or_default();
        let deadline = tokio::time::Instant::now() + self.activity_poll;
        let mut changes = self.signal().subscribe();
        loop {
            let key = arn.clone();
            let (exists, next) =
                self.read(move |state| (state.activities.contains_key(&key), state.next_activity_task(&key))).await?;
            if !exists {
                return Err(Error::from(ApiError::ActivityDoesNotExist { arn: arn.to_string() }).into());
            }
            if let Some(token) = next {
                let command = Command::StartActivityTask { token, worker_name: worker_name.clone(), date: Utc::now() };
                match self.token_command(command).await {
                    Ok(Response::ActivityTaskStarted { token, input }) => {
                        return Ok(GrpcResponse::new(pb::GetActivityTaskResponse { task_token: token, input }));
                    }
                    // Another poller took it first: look again at once.
                    Err(Error::Api(ApiError::TaskDoesNotExist)) => continue,
                    Ok(other) => return Err(unexpected(other)),
                    Err(error) => return Err(error.into()),
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(GrpcResponse::new(pb::GetActivityTaskResponse::default()));
            }
            TaskTokenSignal::changed_within(&mut changes, left.min(POLL_RECHECK)).await;
        }
    }
}
