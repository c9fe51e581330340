//! stepmap's wire contract: the `stepmap.v1` protobuf package and its generated tonic code,
//! and how refusals are encoded ([`leader`]).
//!
//! The `.proto` files under `proto/stepmap/v1/` are the source of truth (see `build.rs`).

pub mod leader;

/// gRPC message size the `Workers` service and its clients accept: a job carries its map
/// run's state input and inline items (up to 256 KiB each, AWS's payload limit), an outcome
/// the outputs of its children; tonic's default of 4 MiB is too small for a poll that grants
/// several units.
pub const WORKERS_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Package `stepmap.v1`: Raft transport and administration (`raft.proto`), the execution
/// API with AWS Step Functions' operations (`states.proto`) and the worker fleet's dispatch
/// (`workers.proto`).
pub mod v1 {
    tonic::include_proto!("stepmap.v1");
}
