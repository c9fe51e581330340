//! stepmap's wire contract: the `stepmap.v1` protobuf package and its generated tonic code.
//!
//! The `.proto` files under `proto/stepmap/v1/` are the source of truth; this crate only
//! compiles them (see `build.rs`). Nothing hand-written lives here besides this module tree.

/// Package `stepmap.v1`: Raft transport and administration (`raft.proto`) and the execution
/// API with AWS Step Functions' operations (`states.proto`).
pub mod v1 {
    tonic::include_proto!("stepmap.v1");
}
