//! Generates the tonic/prost code for `stepmap/v1/*.proto`.
//!
//! The build obtains `protoc` itself (crate `protoc-bin-vendored`), so a fresh machine without
//! a system protoc builds the workspace (DESIGN.md §7).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC; build scripts are single-threaded, so setting it is sound.
    std::env::set_var("PROTOC", protoc);

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos: Vec<PathBuf> = std::fs::read_dir(root.join("stepmap/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-changed=stepmap/v1");

    tonic_prost_build::configure().build_server(true).build_client(true).compile_protos(&protos, &[root])?;
    Ok(())
}
