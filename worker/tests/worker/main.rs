//! The worker crate's integration tests (one test binary): task invokers, and map runs in
//! this process over real files.

mod invokers;
mod map_runs;
mod warm_handlers;
