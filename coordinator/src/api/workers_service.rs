//! The `stepmap.v1.Workers` gRPC service: the worker fleet's registration, polls and reports,
//! served by the leader's [`Dispatcher`]. Errors map to gRPC status through the crate's one
//! mapping (a follower refuses with the leader's address).

use stepmap_proto::v1::workers_server::{Workers, WorkersServer};
use stepmap_proto::v1::{
    Lease, PollWorkRequest, PollWorkResponse, RegisterWorkerRequest, RegisterWorkerResponse, ReportResultRequest,
    ReportResultResponse, Work,
};
use stepmap_worker::map_run::UnitOutcome;
use tonic::{Request, Response, Status};

use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::state::{parse_work_key, LeaseGrant};

#[derive(Clone)]
pub struct WorkersService {
    dispatcher: Dispatcher,
}

impl WorkersService {
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }

    pub fn into_server(self) -> WorkersServer<Self> {
        WorkersServer::new(self)
            .max_decoding_message_size(stepmap_proto::WORKERS_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(stepmap_proto::WORKERS_MAX_MESSAGE_BYTES)
    }
}

fn lease_grant(lease: Option<Lease>) -> Result<LeaseGrant, Status> {
    let lease = lease.ok_or_else(|| Status::invalid_argument("lease: required"))?;
    let arn = parse_work_key("lease.mapRunArn", &lease.map_run_arn).map_err(|e| Status::from(Error::from(e)))?;
    Ok(LeaseGrant { arn, unit: lease.unit, epoch: lease.epoch })
}

fn lease(grant: &LeaseGrant) -> Lease {
    Lease { map_run_arn: grant.arn.to_string(), unit: grant.unit, epoch: grant.epoch }
}

#[tonic::async_trait]
impl Workers for WorkersService {
    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        let config = self.dispatcher.config();
        let worker_id = self.dispatcher.register_worker(&request.name, request.slots);
        Ok(Response::new(RegisterWorkerResponse {
            worker_id,
            lease_millis: config.lease.as_millis() as u64,
            poll_wait_millis: config.poll_wait.as_millis() as u64,
        }))
    }

    async fn poll_work(&self, request: Request<PollWorkRequest>) -> Result<Response<PollWorkResponse>, Status> {
        let request = request.into_inner();
        if request.worker_id.is_empty() {
            return Err(Status::invalid_argument("workerId: required (RegisterWorker gives one)"));
        }
        let held = request.held.into_iter().map(|l| lease_grant(Some(l))).collect::<Result<Vec<_>, _>>()?;
        let (assigned, revoked) =
            self.dispatcher.poll(&request.worker_id, request.free_slots, request.prefetch, held).await?;
        let work = assigned
            .into_iter()
            .map(|a| {
                let unit = serde_json::to_string(&a.unit).map_err(|e| Status::internal(format!("unit: {e}")))?;
                Ok(Work { lease: Some(lease(&a.lease)), job: a.job, unit, parallelism: a.parallelism })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(PollWorkResponse { work, revoked: revoked.iter().map(lease).collect() }))
    }

    async fn report_result(
        &self,
        request: Request<ReportResultRequest>,
    ) -> Result<Response<ReportResultResponse>, Status> {
        let request = request.into_inner();
        let lease = lease_grant(request.lease)?;
        let outcome: UnitOutcome = serde_json::from_str(&request.outcome)
            .map_err(|e| Status::invalid_argument(format!("outcome: not a unit outcome: {e}")))?;
        let accepted = self.dispatcher.report(lease, outcome).await?;
        Ok(Response::new(ReportResultResponse { accepted }))
    }
}
