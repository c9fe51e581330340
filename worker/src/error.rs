//! Rust errors of the worker crate: things that stop stepmap from starting (a bad
//! `--functions` file, an HTTP client that cannot be built). Failures of a running task are
//! not Rust errors: they are ASL [`Failure`](stepmap_asl::failure::Failure)s that go
//! through Retry and Catch.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry file could not be read at all.
    #[error("cannot read the function registry {}: {source}", path.display())]
    RegistryRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The registry file is not valid JSON/TOML or does not have the registry's shape.
    #[error("invalid function registry {origin}: {message}")]
    RegistryParse { origin: String, message: String },

    /// One function entry of the registry is wrong.
    #[error("invalid function registry {origin}: function {function:?}: {message}")]
    RegistryFunction { origin: String, function: String, message: String },

    /// The shared HTTP client (Lambda endpoints, HTTP tasks) could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}
