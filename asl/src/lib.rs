//! The Amazon States Language, JSONPath mode: the model, validation with AWS-shaped
//! diagnostics, JSONPath (Jayway dialect), payload templates, intrinsic functions and the
//! interpreter. Pure: no network, no processes; time comes through [`clock::Clock`] and
//! task work through [`task::TaskInvoker`].

pub mod byte_block;
pub mod clock;
pub mod column_selection;
pub mod diagnostic;
pub mod expr;
pub mod failure;
pub mod history;
pub mod interpreter;
pub mod intrinsic;
pub mod json_size;
pub mod jsonpath;
pub mod map_run;
pub mod map_run_job;
pub mod model;
pub mod payload;
pub mod resource;
pub mod task;
pub mod timestamp;
pub mod validate;
