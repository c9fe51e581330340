//! stepmap's wire contract: the `stepmap.v1` protobuf package and its generated tonic code,
//! and how refusals are encoded ([`leader`]).
//!
//! The `.proto` files under `proto/stepmap/v1/` are the source of truth (see `build.rs`).

pub mod leader;

/// Package `stepmap.v1`: Raft transport and administration (`raft.proto`), the execution
/// API with AWS Step Functions' operations (`states.proto`) and the worker fleet's dispatch
/// (`workers.proto`).
pub mod v1 {
    tonic::include_proto!("stepmap.v1");
}
