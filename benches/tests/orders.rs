//! CI smoke run of the orders bench (`benches/orders/run.py --test`): 2,000 rows through every
//! variant, every output verified, no timing assertions.
//!
//! The `stepmap` binary is the one of this test's own cargo profile and target directory
//! (`<target>/<profile>/stepmap`, beside the `deps/` directory holding this test), which
//! `cargo nextest run --workspace` has built for the cli's tests. When it is absent (e.g.
//! `cargo test -p stepmap-benches` alone) the test builds it with
//! `cargo build -p stepmap-cli --bin stepmap` in the same profile and target directory.
//! `STEPMAP_BIN` overrides both. It is never rebuilt when present, so that a concurrent
//! test of the cli does not see its binary replaced.
//!
//! Named `heavy_` because the first run installs DuckDB into a cached venv (tens of seconds);
//! without network access DuckDB is reported unavailable and the other variants still run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn stepmap_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STEPMAP_BIN") {
        return PathBuf::from(path);
    }
    let test_exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/orders-<hash>
    let profile_dir = test_exe.parent().and_then(Path::parent).expect("the test runs from <target>/<profile>/deps");
    let binary = profile_dir.join(format!("stepmap{}", std::env::consts::EXE_SUFFIX));
    if binary.exists() {
        return binary;
    }
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory in {}", test_exe.display()),
    };
    let target_dir = profile_dir.parent().expect("target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["build", "-p", "stepmap-cli", "--bin", "stepmap", "--profile", profile, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build -p stepmap-cli failed");
    assert!(binary.exists(), "cargo build did not produce {}", binary.display());
    binary
}

#[test]
fn heavy_orders_bench_runs_and_verifies_every_variant() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peers = manifest_dir.join("../../shared/peers/verify.py");
    assert!(
        peers.exists(),
        "the orders bench needs ../shared/peers beside the repository (looked for {})",
        peers.display()
    );
    let binary = stepmap_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let output = Command::new("python3")
        .arg(manifest_dir.join("orders/run.py"))
        .args(["--test", "--rows", "2000", "--stepmap"])
        .arg(&binary)
        .arg("--work-dir")
        .arg(work.path().join("orders"))
        .output()
        .expect("running python3 benches/orders/run.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the orders bench failed: {}", output.status);
    for variant in ["stepmap-pass", "stepmap-python", "python"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {variant} |")))
            .unwrap_or_else(|| panic!("no table row for {variant}"));
        assert!(row.contains("| yes |"), "{variant} not verified: {row}");
    }
    let duckdb = stdout.lines().find(|line| line.starts_with("| duckdb |")).expect("no table row for duckdb");
    assert!(
        duckdb.contains("| yes |") || duckdb.contains("unavailable"),
        "duckdb neither verified nor unavailable: {duckdb}"
    );
}
