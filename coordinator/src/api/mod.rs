//! The `stepmap.v1.States` gRPC service (AWS Step Functions operations) and a client that
//! follows leader hints.

mod pagination;
mod states_client;
mod states_service;

pub use states_client::StatesClient;
pub use states_service::StatesService;
