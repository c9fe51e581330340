//! The worker side of stepmap: what runs Task states and Distributed Map children on this
//! machine (see README.md).
//!
//! * [`FunctionRegistry`]: the `--functions` file, mapping Lambda function names to local
//!   commands, pools of warm Lambda runtimes (served through the Lambda Runtime API) or
//!   Lambda-compatible HTTP endpoints.
//! * [`LocalInvoker`]: a [`stepmap_asl::task::TaskInvoker`] running Lambda function ARNs,
//!   `arn:aws:states:::lambda:invoke` and `arn:aws:states:::http:invoke`.
//! * [`LocalMapRunExecutor`]: runs Distributed Map runs in this process (the embedded default).
//! * [`fleet_worker::FleetWorker`]: a worker of a cluster's fleet, pulling map run work units
//!   and the Task invocations of parent executions ([`task_job`]) from the coordinators
//!   (`stepmap worker`), and serving activities with the registry's functions
//!   ([`activity_worker`], `stepmap worker --activity`).

pub mod activity_worker;
pub mod error;
pub mod fleet_worker;
pub mod function_registry;
pub mod invoker;
pub mod map_run;
pub mod task_job;

pub use error::WorkerError;
pub use function_registry::{FunctionRef, FunctionRegistry, FunctionSpec, FunctionTarget};
pub use invoker::LocalInvoker;
pub use map_run::{LocalMapRunExecutor, MapRunProgress, ProgressObserver};
