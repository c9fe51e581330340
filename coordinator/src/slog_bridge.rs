//! raft-rs logs through `slog`; the rest of stepmap logs through `tracing`. This drain forwards
//! raft-rs records to `tracing` events (target `raft`), key-value pairs included, so one
//! subscriber sees everything (DESIGN.md §6).

use std::fmt::{self, Write as _};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// A `slog` drain that emits `tracing` events.
pub struct TracingDrain;

/// The logger handed to raft-rs, tagged with the node id.
pub fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("raft_id" => node_id))
}

struct KeyValues(String);

impl Serializer for KeyValues {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments<'_>) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = record.level();
        // Skip the formatting work when nobody listens at that level.
        let enabled = match level {
            slog::Level::Critical | slog::Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            slog::Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            slog::Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            slog::Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut kv = KeyValues(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let message = record.msg();
        let fields = kv.0;
        match level {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{message}{fields}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}{fields}"),
            slog::Level::Info => tracing::info!(target: "raft", "{message}{fields}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{message}{fields}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{message}{fields}"),
        }
        Ok(())
    }
}
