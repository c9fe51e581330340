//! RedriveExecution and the redrive fields of DescribeExecution (features.md §2.12).
//!
//! Whether an execution may be redriven is judged in `apply` (`state/redrive.rs`), so that
//! every replica reaches the same verdict; this layer validates the request, proposes it and
//! has the leader drive the reopened execution at once.

use chrono::Utc;
use stepmap_asl::model::StateMachineType;
use stepmap_proto::v1 as pb;
use tonic::{Request, Response as GrpcResponse};

use super::states_service::{date, unexpected, Reply, StatesService};
use crate::error::{Error, Result};
use crate::proposer::propose;
use crate::state::{redrive_status, ApiError, Command, ExecutionArn, ExecutionRecord, ExecutionStatus, Response};

/// AWS ClientToken: 1 to 64 characters of printable ASCII without spaces (`[!-~]+`).
const MAX_CLIENT_TOKEN: usize = 64;

fn client_token(token: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    let constraint = if token.is_empty() {
        "Member must have length greater than or equal to 1"
    } else if token.len() > MAX_CLIENT_TOKEN {
        "Member must have length less than or equal to 64"
    } else if !token.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        "Member must satisfy regular expression pattern: [!-~]+"
    } else {
        return Ok(Some(token));
    };
    Err(ApiError::validation(
        "clientToken",
        format!("Value '{token}' at 'clientToken' failed to satisfy constraint: {constraint}"),
    ))
}

impl StatesService {
    pub(super) async fn redrive_execution_op(
        &self,
        request: Request<pb::RedriveExecutionRequest>,
    ) -> Reply<pb::RedriveExecutionResponse> {
        let request = request.into_inner();
        let arn = ExecutionArn::parse("executionArn", &request.execution_arn).map_err(Error::from)?;
        let client_token = client_token(request.client_token).map_err(Error::from)?;
        let command = Command::RedriveExecution { arn: arn.clone(), client_token, date: Utc::now() };
        let (redrive_date, redriven) = match propose(&self.node, &command).await? {
            Response::ExecutionRedriven { redrive_date, redriven } => (redrive_date, redriven),
            other => return Err(unexpected(other)),
        };
        if redriven {
            // Applied on this node (the leader): drive it here at once. The drive of the closed
            // attempt may still be winding down (its last commit answered, its task not yet
            // ended); `launch` alone would take it for a drive of the reopened execution and
            // do nothing, so it is dropped first (it has nothing left to record).
            let key = arn.clone();
            if let Ok((_, Some(record))) = self.node.local_read(move |state| state.executions.get(&key).cloned()).await
            {
                if record.status == ExecutionStatus::Running {
                    self.driver.cancel(&arn);
                    self.driver.launch(record);
                }
            }
        }
        Ok(GrpcResponse::new(pb::RedriveExecutionResponse { redrive_date: date(redrive_date) }))
    }

    /// DescribeExecution's redrive fields (the others left at their defaults); none for
    /// EXPRESS executions, which AWS never redrives.
    pub(super) async fn redrive_fields(&self, record: &ExecutionRecord) -> Result<pb::DescribeExecutionResponse> {
        if record.machine_type == StateMachineType::Express {
            return Ok(pb::DescribeExecutionResponse::default());
        }
        // Only a closed, unsuccessful execution depends on its machine still existing.
        let machine_exists = match record.status {
            ExecutionStatus::Running | ExecutionStatus::Succeeded => true,
            _ => {
                let machine = record.state_machine_arn.clone();
                self.read(move |state| state.state_machines.contains_key(&machine)).await?
            }
        };
        let status = redrive_status(record, machine_exists, Utc::now());
        Ok(pb::DescribeExecutionResponse {
            redrive_count: Some(record.redrive_count() as u32),
            redrive_date: record.redrive_date().map(date),
            redrive_status: Some(status.as_str().into()),
            redrive_status_reason: status.reason().map(str::to_owned),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_follow_aws_constraints() {
        assert_eq!(client_token(None), Ok(None));
        assert_eq!(client_token(Some("t-1".into())), Ok(Some("t-1".into())));
        for bad in ["", "has space", &"x".repeat(65)] {
            let error = client_token(Some(bad.into())).unwrap_err();
            assert_eq!(error.field(), Some("clientToken"), "{bad:?}");
        }
    }
}
