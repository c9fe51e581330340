//! `stepmap.v1.States`: AWS's state machine and execution operations over the replicated
//! state. Writes are proposed (only the leader accepts them); reads are linearizable
//! (ReadIndex, leader only). A follower answers with the leader hint, through the crate's
//! one error mapping.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use stepmap_asl::diagnostic::Severity;
use stepmap_asl::model::StateMachineType;
use stepmap_asl::task::TaskInvoker;
use stepmap_proto::v1 as pb;
use stepmap_proto::v1::states_server::{States, StatesServer};
use tonic::{Request, Response as GrpcResponse, Status};

use super::pagination::{decode_token, encode_token, page, page_size};
use crate::driver::{run_in_memory, ExecutionDriver};
use crate::error::{Error, Result};
use crate::proposer::{propose, CoordinatorNode};
use crate::state::{
    validate_name, ApiError, ArnScope, Command, ExecutionArn, ExecutionRecord, ExecutionStatus, MapRunArn,
    ReplicatedState, Response, StateMachineArn,
};

/// AWS's payload limit for execution input: 256 KiB of UTF-8.
const MAX_INPUT_BYTES: usize = 256 * 1024;

pub(super) type Reply<T> = std::result::Result<GrpcResponse<T>, Status>;

pub(super) fn date(time: DateTime<Utc>) -> String {
    stepmap_asl::timestamp::format(time)
}

fn machine_type(field: &str, text: &str) -> Result<StateMachineType, ApiError> {
    match text {
        "" => Ok(StateMachineType::Standard),
        other => other.parse().map_err(|message: String| ApiError::validation(field, message)),
    }
}

/// Serves `stepmap.v1.States` for one coordinator.
#[derive(Clone)]
pub struct StatesService {
    pub(super) node: CoordinatorNode,
    pub(super) driver: ExecutionDriver,
    pub(super) scope: ArnScope,
    pub(super) invoker: Arc<dyn TaskInvoker>,
    /// How long GetActivityTask waits for a task (AWS: 60 s).
    pub(super) activity_poll: std::time::Duration,
    /// Where the fleet archives STANDARD children's executions, if it does.
    pub(super) archive: Option<super::ChildArchive>,
}

impl StatesService {
    pub fn new(node: CoordinatorNode, driver: ExecutionDriver, scope: ArnScope, invoker: Arc<dyn TaskInvoker>) -> Self {
        Self { node, driver, scope, invoker, activity_poll: super::task_tokens::ACTIVITY_POLL, archive: None }
    }

    /// Answers for the children of map runs from `archive` (see `child_executions.rs`).
    pub fn with_child_archive(mut self, archive: super::ChildArchive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Shortens (tests) or lengthens GetActivityTask's long poll.
    pub fn with_activity_poll(mut self, poll: std::time::Duration) -> Self {
        self.activity_poll = poll;
        self
    }

    pub fn into_server(self) -> StatesServer<Self> {
        StatesServer::new(self)
    }

    pub(super) async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&ReplicatedState) -> R + Send + 'static,
    ) -> Result<R> {
        Ok(self.node.read(read).await?.1)
    }

    pub(super) async fn execution(&self, field: &'static str, arn: &str) -> Result<ExecutionRecord> {
        self.execution_or_child(field, arn).await.map(|(record, _)| record)
    }

    /// An execution of the replicated state, or an archived child of a map run (with the
    /// map run's ARN).
    pub(super) async fn execution_or_child(
        &self,
        field: &'static str,
        arn: &str,
    ) -> Result<(ExecutionRecord, Option<MapRunArn>)> {
        let arn = ExecutionArn::parse(field, arn)?;
        let key = arn.clone();
        if let Some(record) = self.read(move |state| state.executions.get(&key).cloned()).await? {
            return Ok((record, None));
        }
        match self.archived_execution(&arn).await? {
            Some((record, run)) => Ok((record, Some(run))),
            None => Err(ApiError::ExecutionDoesNotExist { arn: arn.to_string() }.into()),
        }
    }

    pub(super) fn check_input(input: &str) -> Result<String> {
        let input = if input.is_empty() { "{}" } else { input };
        if input.len() > MAX_INPUT_BYTES {
            return Err(ApiError::InvalidExecutionInput {
                message: format!("input exceeds the limit of {MAX_INPUT_BYTES} bytes"),
            }
            .into());
        }
        serde_json::from_str::<Value>(input).map_err(|error| ApiError::InvalidExecutionInput {
            message: format!("Invalid State Machine Execution Input: '{error}'"),
        })?;
        Ok(input.to_owned())
    }

    /// Validates and names a new execution of `machine`: (execution ARN, machine type, input).
    async fn prepare_start(
        &self,
        request: &pb::StartExecutionRequest,
    ) -> Result<(ExecutionArn, StateMachineType, String)> {
        let machine = StateMachineArn::parse("stateMachineArn", &request.state_machine_arn)?;
        let name = if request.name.is_empty() { uuid::Uuid::new_v4().to_string() } else { request.name.clone() };
        validate_name("name", &name)?;
        let input = Self::check_input(&request.input)?;
        let key = machine.clone();
        let machine_type = self
            .read(move |state| state.machine_type(&key))
            .await?
            .ok_or_else(|| ApiError::StateMachineDoesNotExist { arn: machine.to_string() })?;
        let arn = match machine_type {
            StateMachineType::Standard => machine.execution(&name),
            StateMachineType::Express => machine.express_execution(&name, &uuid::Uuid::new_v4().to_string()),
        };
        Ok((arn, machine_type, input))
    }
}

#[tonic::async_trait]
impl States for StatesService {
    async fn create_state_machine(
        &self,
        request: Request<pb::CreateStateMachineRequest>,
    ) -> Reply<pb::CreateStateMachineResponse> {
        let request = request.into_inner();
        validate_name("name", &request.name).map_err(Error::from)?;
        let machine_type = machine_type("type", &request.r#type).map_err(Error::from)?;
        let report = stepmap_asl::validate::validate(&request.definition, machine_type);
        if !report.is_ok() {
            let messages: Vec<String> = report
                .errors()
                .map(|d| match &d.location {
                    Some(location) => format!("{} at {location}: {}", d.code, d.message),
                    None => format!("{}: {}", d.code, d.message),
                })
                .collect();
            let message = format!("Invalid State Machine Definition: '{}'", messages.join(", "));
            return Err(Error::from(ApiError::InvalidDefinition { message }).into());
        }
        let role_arn = if request.role_arn.is_empty() {
            format!("arn:aws:iam::{}:role/stepmap-execution", self.scope.account)
        } else {
            request.role_arn
        };
        let command = Command::CreateStateMachine {
            arn: self.scope.state_machine(&request.name),
            name: request.name,
            definition: request.definition,
            machine_type,
            role_arn,
            date: Utc::now(),
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        match propose(&self.node, &command).await? {
            Response::StateMachineCreated { arn, creation_date } => {
                Ok(GrpcResponse::new(pb::CreateStateMachineResponse {
                    state_machine_arn: arn.to_string(),
                    creation_date: date(creation_date),
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn describe_state_machine(
        &self,
        request: Request<pb::DescribeStateMachineRequest>,
    ) -> Reply<pb::DescribeStateMachineResponse> {
        let arn =
            StateMachineArn::parse("stateMachineArn", &request.into_inner().state_machine_arn).map_err(Error::from)?;
        let key = arn.clone();
        let machine = self
            .read(move |state| state.state_machines.get(&key).cloned())
            .await?
            .ok_or_else(|| Error::from(ApiError::StateMachineDoesNotExist { arn: arn.to_string() }))?;
        Ok(GrpcResponse::new(pb::DescribeStateMachineResponse {
            state_machine_arn: machine.arn.to_string(),
            name: machine.name,
            status: "ACTIVE".into(),
            definition: machine.definition,
            role_arn: machine.role_arn,
            r#type: machine.machine_type.to_string(),
            creation_date: date(machine.creation_date),
            revision_id: machine.revision_id,
        }))
    }

    async fn list_state_machines(
        &self,
        request: Request<pb::ListStateMachinesRequest>,
    ) -> Reply<pb::ListStateMachinesResponse> {
        let request = request.into_inner();
        let limit = page_size(request.max_results).map_err(Error::from)?;
        let skip = decode_token("m", &request.next_token).map_err(Error::from)?.unwrap_or(0) as usize;
        let machines: Vec<_> = self.read(|state| state.state_machines.values().cloned().collect::<Vec<_>>()).await?;
        let (machines, next_token) = page(machines, "m", skip, limit);
        let state_machines = machines
            .map(|m| pb::StateMachineListItem {
                state_machine_arn: m.arn.to_string(),
                name: m.name,
                r#type: m.machine_type.to_string(),
                creation_date: date(m.creation_date),
            })
            .collect();
        Ok(GrpcResponse::new(pb::ListStateMachinesResponse { state_machines, next_token }))
    }

    async fn delete_state_machine(
        &self,
        request: Request<pb::DeleteStateMachineRequest>,
    ) -> Reply<pb::DeleteStateMachineResponse> {
        let arn =
            StateMachineArn::parse("stateMachineArn", &request.into_inner().state_machine_arn).map_err(Error::from)?;
        propose(&self.node, &Command::DeleteStateMachine { arn }).await?;
        Ok(GrpcResponse::new(pb::DeleteStateMachineResponse {}))
    }

    async fn update_state_machine(
        &self,
        request: Request<pb::UpdateStateMachineRequest>,
    ) -> Reply<pb::UpdateStateMachineResponse> {
        let request = request.into_inner();
        let arn = StateMachineArn::parse("stateMachineArn", &request.state_machine_arn).map_err(Error::from)?;
        if request.definition.is_none() && request.role_arn.is_none() {
            return Err(Error::from(ApiError::validation(
                "definition",
                "MissingRequiredParameter: either definition or roleArn must be given",
            ))
            .into());
        }
        if let Some(definition) = &request.definition {
            let key = arn.clone();
            let machine_type = self
                .read(move |state| state.machine_type(&key))
                .await?
                .ok_or_else(|| Error::from(ApiError::StateMachineDoesNotExist { arn: arn.to_string() }))?;
            let report = stepmap_asl::validate::validate(definition, machine_type);
            if !report.is_ok() {
                let messages: Vec<String> = report.errors().map(|d| format!("{}: {}", d.code, d.message)).collect();
                let message = format!("Invalid State Machine Definition: '{}'", messages.join(", "));
                return Err(Error::from(ApiError::InvalidDefinition { message }).into());
            }
        }
        let command = Command::UpdateStateMachine {
            arn,
            definition: request.definition,
            role_arn: request.role_arn,
            date: Utc::now(),
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        match propose(&self.node, &command).await? {
            Response::StateMachineUpdated { update_date, revision_id } => {
                Ok(GrpcResponse::new(pb::UpdateStateMachineResponse { update_date: date(update_date), revision_id }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn validate_state_machine_definition(
        &self,
        request: Request<pb::ValidateStateMachineDefinitionRequest>,
    ) -> Reply<pb::ValidateStateMachineDefinitionResponse> {
        let request = request.into_inner();
        let machine_type = machine_type("type", &request.r#type).map_err(Error::from)?;
        let report = stepmap_asl::validate::validate(&request.definition, machine_type);
        let diagnostics = report
            .diagnostics
            .iter()
            .map(|d| pb::ValidationDiagnostic {
                severity: match d.severity {
                    Severity::Error => "ERROR".into(),
                    Severity::Warning => "WARNING".into(),
                },
                code: d.code.clone(),
                message: d.message.clone(),
                location: d.location.clone().unwrap_or_default(),
            })
            .collect();
        Ok(GrpcResponse::new(pb::ValidateStateMachineDefinitionResponse {
            result: report.result().into(),
            diagnostics,
        }))
    }

    async fn start_execution(&self, request: Request<pb::StartExecutionRequest>) -> Reply<pb::StartExecutionResponse> {
        let request = request.into_inner();
        let (arn, _, input) = self.prepare_start(&request).await?;
        let command = Command::StartExecution { arn, input, date: Utc::now(), seed: rand::random() };
        let Response::ExecutionStarted { arn, start_date, .. } = propose(&self.node, &command).await? else {
            return Err(Status::internal("unexpected response to StartExecution"));
        };
        // Applied on this node: drive it here at once (the driver ignores repeats).
        let key = arn.clone();
        if let Ok((_, Some(record))) = self.node.local_read(move |state| state.executions.get(&key).cloned()).await {
            if record.status == ExecutionStatus::Running {
                self.driver.launch(record);
            }
        }
        Ok(GrpcResponse::new(pb::StartExecutionResponse {
            execution_arn: arn.to_string(),
            start_date: date(start_date),
        }))
    }

    async fn start_sync_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Reply<pb::StartSyncExecutionResponse> {
        let request = request.into_inner();
        let (arn, machine_type, input) = self.prepare_start(&request).await?;
        if machine_type != StateMachineType::Express {
            return Err(Error::from(ApiError::StateMachineTypeNotSupported {
                message: "This operation is not supported by this type of state machine".into(),
            })
            .into());
        }
        let machine_arn = arn.state_machine();
        let key = machine_arn.clone();
        let machine = self
            .read(move |state| state.state_machines.get(&key).cloned())
            .await?
            .ok_or_else(|| Error::from(ApiError::StateMachineDoesNotExist { arn: machine_arn.to_string() }))?;
        let start_date = Utc::now();
        let mut record = ExecutionRecord {
            arn: arn.clone(),
            state_machine_arn: machine.arn.clone(),
            name: arn.name().to_owned(),
            machine_type,
            definition: machine.definition,
            role_arn: machine.role_arn,
            input,
            status: ExecutionStatus::Running,
            start_date,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
            seed: rand::random(),
            seq: 0,
            history: Vec::new(),
            redrives: Vec::new(),
        };
        let outcome = run_in_memory(&record, self.invoker.clone())
            .await
            .ok_or_else(|| Status::internal("the state machine's definition cannot be loaded"))?;
        record.append(&outcome.history).map_err(Error::from)?;
        let response = pb::StartSyncExecutionResponse {
            execution_arn: arn.to_string(),
            state_machine_arn: record.state_machine_arn.to_string(),
            name: record.name.clone(),
            start_date: date(start_date),
            stop_date: date(record.stop_date.unwrap_or(outcome.stop_time)),
            status: outcome.status.as_str().into(),
            input: record.input.clone(),
            output: record.output.clone(),
            error: record.error.clone(),
            cause: record.cause.clone(),
        };
        // Only the final record is committed (Express semantics: nothing to resume).
        propose(&self.node, &Command::RecordExpressExecution { record: Box::new(record) }).await?;
        Ok(GrpcResponse::new(response))
    }

    async fn describe_execution(
        &self,
        request: Request<pb::DescribeExecutionRequest>,
    ) -> Reply<pb::DescribeExecutionResponse> {
        let (record, map_run) = self.execution_or_child("executionArn", &request.into_inner().execution_arn).await?;
        let redrive = match map_run {
            Some(_) => pb::DescribeExecutionResponse::default(),
            None => self.redrive_fields(&record).await?,
        };
        Ok(GrpcResponse::new(pb::DescribeExecutionResponse {
            execution_arn: record.arn.to_string(),
            state_machine_arn: record.state_machine_arn.to_string(),
            name: record.name,
            status: record.status.as_str().into(),
            start_date: date(record.start_date),
            stop_date: record.stop_date.map(date),
            input: record.input,
            output: if record.status == ExecutionStatus::Succeeded { record.output } else { None },
            error: record.error,
            cause: record.cause,
            map_run_arn: map_run.map(|run| run.to_string()),
            ..redrive
        }))
    }

    async fn stop_execution(&self, request: Request<pb::StopExecutionRequest>) -> Reply<pb::StopExecutionResponse> {
        let request = request.into_inner();
        let arn = ExecutionArn::parse("executionArn", &request.execution_arn).map_err(Error::from)?;
        if request.error.as_ref().is_some_and(|e| e.chars().count() > 256) {
            return Err(Error::from(ApiError::validation(
                "error",
                "Member must have length less than or equal to 256",
            ))
            .into());
        }
        if request.cause.as_ref().is_some_and(|c| c.chars().count() > 32_768) {
            return Err(Error::from(ApiError::validation(
                "cause",
                "Member must have length less than or equal to 32768",
            ))
            .into());
        }
        let command =
            Command::StopExecution { arn: arn.clone(), error: request.error, cause: request.cause, date: Utc::now() };
        let stop_date = match propose(&self.node, &command).await {
            Ok(Response::ExecutionStopped { stop_date }) => stop_date,
            Ok(other) => return Err(unexpected(other)),
            // AWS answers StopExecution on a closed execution with its stop date.
            Err(Error::Api(ApiError::ExecutionNotRunning { .. })) => {
                let record = self.execution("executionArn", arn.as_str()).await?;
                record.stop_date.unwrap_or(record.start_date)
            }
            Err(error) => return Err(error.into()),
        };
        self.driver.cancel(&arn);
        Ok(GrpcResponse::new(pb::StopExecutionResponse { stop_date: date(stop_date) }))
    }

    async fn list_executions(&self, request: Request<pb::ListExecutionsRequest>) -> Reply<pb::ListExecutionsResponse> {
        let request = request.into_inner();
        if !request.map_run_arn.is_empty() {
            return Ok(GrpcResponse::new(self.list_children(&request).await?));
        }
        let machine = StateMachineArn::parse("stateMachineArn", &request.state_machine_arn).map_err(Error::from)?;
        let limit = page_size(request.max_results).map_err(Error::from)?;
        let before = decode_token("e", &request.next_token).map_err(Error::from)?;
        let status = status_filter(&request.status_filter)?;
        let key = machine.clone();
        let (exists, (page, next)) = self
            .read(move |state| {
                (state.state_machines.contains_key(&key), state.list_executions(&key, status, before, limit))
            })
            .await?;
        if !exists && page.is_empty() {
            return Err(Error::from(ApiError::StateMachineDoesNotExist { arn: machine.to_string() }).into());
        }
        let executions = page.into_iter().map(list_item).collect();
        let next_token = next.map(|seq| encode_token("e", seq)).unwrap_or_default();
        Ok(GrpcResponse::new(pb::ListExecutionsResponse { executions, next_token }))
    }

    async fn describe_map_run(&self, r: Request<pb::DescribeMapRunRequest>) -> Reply<pb::DescribeMapRunResponse> {
        self.describe_map_run_op(r).await
    }

    async fn list_map_runs(&self, r: Request<pb::ListMapRunsRequest>) -> Reply<pb::ListMapRunsResponse> {
        self.list_map_runs_op(r).await
    }

    async fn update_map_run(&self, r: Request<pb::UpdateMapRunRequest>) -> Reply<pb::UpdateMapRunResponse> {
        self.update_map_run_op(r).await
    }

    async fn redrive_execution(&self, r: Request<pb::RedriveExecutionRequest>) -> Reply<pb::RedriveExecutionResponse> {
        self.redrive_execution_op(r).await
    }

    async fn send_task_success(&self, r: Request<pb::SendTaskSuccessRequest>) -> Reply<pb::SendTaskSuccessResponse> {
        self.send_task_success_op(r).await
    }

    async fn send_task_failure(&self, r: Request<pb::SendTaskFailureRequest>) -> Reply<pb::SendTaskFailureResponse> {
        self.send_task_failure_op(r).await
    }

    async fn send_task_heartbeat(
        &self,
        r: Request<pb::SendTaskHeartbeatRequest>,
    ) -> Reply<pb::SendTaskHeartbeatResponse> {
        self.send_task_heartbeat_op(r).await
    }

    async fn create_activity(&self, r: Request<pb::CreateActivityRequest>) -> Reply<pb::CreateActivityResponse> {
        self.create_activity_op(r).await
    }

    async fn describe_activity(&self, r: Request<pb::DescribeActivityRequest>) -> Reply<pb::DescribeActivityResponse> {
        self.describe_activity_op(r).await
    }

    async fn list_activities(&self, r: Request<pb::ListActivitiesRequest>) -> Reply<pb::ListActivitiesResponse> {
        self.list_activities_op(r).await
    }

    async fn delete_activity(&self, r: Request<pb::DeleteActivityRequest>) -> Reply<pb::DeleteActivityResponse> {
        self.delete_activity_op(r).await
    }

    async fn get_activity_task(&self, r: Request<pb::GetActivityTaskRequest>) -> Reply<pb::GetActivityTaskResponse> {
        self.get_activity_task_op(r).await
    }

    async fn get_execution_history(
        &self,
        request: Request<pb::GetExecutionHistoryRequest>,
    ) -> Reply<pb::GetExecutionHistoryResponse> {
        let request = request.into_inner();
        let limit = page_size(request.max_results).map_err(Error::from)?;
        let skip = decode_token("h", &request.next_token).map_err(Error::from)?.unwrap_or(0) as usize;
        let record = self.execution("executionArn", &request.execution_arn).await?;
        let mut events = record.history;
        if request.reverse_order {
            events.reverse();
        }
        let (events, next_token) = page(events, "h", skip, limit);
        let events = events
            .map(|event| pb::HistoryEvent {
                id: event.id,
                previous_event_id: event.previous_event_id,
                timestamp: date(event.timestamp),
                r#type: event.event_type,
                details: event.details.map(|d| d.to_string()).unwrap_or_default(),
            })
            .collect();
        Ok(GrpcResponse::new(pb::GetExecutionHistoryResponse { events, next_token }))
    }
}

/// An execution as ListExecutions shows it.
pub(super) fn list_item(e: ExecutionRecord) -> pb::ExecutionListItem {
    pb::ExecutionListItem {
        execution_arn: e.arn.to_string(),
        state_machine_arn: e.state_machine_arn.to_string(),
        name: e.name,
        status: e.status.as_str().into(),
        start_date: date(e.start_date),
        stop_date: e.stop_date.map(date),
        redrive_count: Some(e.redrives.len() as u32),
        redrive_date: e.redrives.last().map(|redrive| date(redrive.date)),
    }
}

/// ListExecutions' `statusFilter`: empty for all.
pub(super) fn status_filter(text: &str) -> Result<Option<ExecutionStatus>> {
    if text.is_empty() {
        return Ok(None);
    }
    let status = ExecutionStatus::parse(text).ok_or_else(|| {
        ApiError::validation(
            "statusFilter",
            format!("Value '{text}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED]"),
        )
    })?;
    Ok(Some(status))
}

pub(super) fn unexpected(response: Response) -> Status {
    Status::internal(format!("unexpected response from the replicated state: {response:?}"))
}
