//! The `stepmap.v1.States` gRPC service (AWS Step Functions operations), a client that
//! follows leader hints, and the `stepmap.v1.Workers` service of the worker fleet.

mod child_executions;
mod map_runs;
mod pagination;
mod redrive;
mod states_client;
mod states_service;
mod task_tokens;
mod workers_service;

pub use child_executions::ChildArchive;
pub use states_client::StatesClient;
pub use states_service::StatesService;
pub use workers_service::WorkersService;
