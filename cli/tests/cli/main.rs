//! Integration tests of the `stepmap` binary: real processes, talking over loopback. One test
//! binary for the crate (modules below). Tests expected to take more than ~10 s are named
//! `heavy_` (the default nextest profile skips them; `--profile ci` runs them).

mod cluster;
mod fleet;
mod map_run_verbs;
mod processes;
mod run;
