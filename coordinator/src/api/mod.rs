//! The `stepmap.v1.States` gRPC service (AWS Step Functions operations) and a client that
//! follows leader hints.

mod map_runs;
mod pagination;
mod redrive;
mod states_client;
mod states_service;
mod task_tokens;

pub use states_client::StatesClient;
pub use states_service::StatesService;
