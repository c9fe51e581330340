//! Coordinators as child processes of the real `stepmap` binary: configuration files and data
//! directories in a temporary directory, ports reserved on 127.0.0.1, output captured to one
//! log file per node. Every child is killed when its handle drops, so a failing test leaves
//! no process behind.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1::raft_admin_client::RaftAdminClient;
use stepmap_proto::v1::{RaftRole, StatusRequest, StatusResponse};
use tempfile::TempDir;

/// How often `eventually` checks its condition.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it yields a value or `timeout` passes; the error names `what` and the
/// last error `check` returned.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => error.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts the `stepmap` binary with `args`, its output appended to `log`. Its arguments and
/// files alone decide: no `STEPMAP_*` override leaks in from the test's environment.
fn spawn_stepmap(args: &[&str], log: &std::path::Path) -> anyhow::Result<Child> {
    let file = OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_stepmap"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("STEPMAP_") {
            command.env_remove(name);
        }
    }
    command
        .env("STEPMAP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start the stepmap binary")
}

/// One coordinator: its configuration, its log, and the child process while it runs.
pub struct Coordinator {
    pub id: u64,
    pub address: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Coordinator {
    /// Starts (or restarts, on the same data directory and port) the `stepmap coordinator`
    /// process.
    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "coordinator {} is already running", self.id);
        let config = self.config.to_str().context("config path is not UTF-8")?;
        self.child = Some(spawn_stepmap(&["coordinator", "--config", config], &self.log)?);
        Ok(())
    }

    /// `kill -9` (`Child::kill` sends SIGKILL on Unix), then reaps the process.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().with_context(|| format!("coordinator {} is not running", self.id))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Fails if the process has exited on its own (a crash, or a port it could not bind).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            if let Some(exit) = child.try_wait()? {
                self.child = None;
                anyhow::bail!("coordinator {} exited with {exit}", self.id);
            }
        }
        Ok(())
    }

    /// RaftAdmin Status of this node.
    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        let mut client = RaftAdminClient::connect(format!("http://{}", self.address)).await?;
        Ok(client.status(StatusRequest {}).await?.into_inner())
    }

    /// A `stepmap.v1.States` client that starts at this node and follows leader hints.
    pub fn client(&self) -> anyhow::Result<StatesClient> {
        Ok(StatesClient::new(&format!("http://{}", self.address))?)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// 1, 3 or 5 coordinators of one cluster, each with its own data directory.
pub struct Cluster {
    pub nodes: BTreeMap<u64, Coordinator>,
    // Dropped after the nodes (fields drop in declaration order).
    dir: TempDir,
}

impl Cluster {
    /// Writes the configurations and starts every node.
    pub fn start(size: u64) -> anyhow::Result<Self> {
        Self::start_with(size, "")
    }

    /// [`Cluster::start`] with `extra` TOML settings in every node's configuration.
    pub fn start_with(size: u64, extra: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // Reserve a port per node: bind them all at once (so they differ), then release them
        // for the coordinators to bind. A restarted node binds its port again.
        let listeners: Vec<_> =
            (0..size).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
        let addresses: Vec<String> =
            listeners.iter().map(|l| l.local_addr().map(|a| a.to_string())).collect::<std::io::Result<_>>()?;
        drop(listeners);
        let peers: String = addresses.iter().enumerate().map(|(i, a)| format!("{} = \"{a}\"\n", i + 1)).collect();
        let mut nodes = BTreeMap::new();
        for (i, address) in addresses.iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = dir.path().join(format!("node-{id}"));
            let config = dir.path().join(format!("node-{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "node_id = {id}\nlisten = \"{address}\"\ndata_dir = {:?}\n{extra}\n[peers]\n{peers}",
                    data_dir.to_str().context("temp dir path is not UTF-8")?
                ),
            )?;
            let log = dir.path().join(format!("node-{id}.log"));
            nodes.insert(id, Coordinator { id, address: address.clone(), config, log, child: None });
        }
        let mut cluster = Self { nodes, dir };
        for node in cluster.nodes.values_mut() {
            node.start()?;
        }
        Ok(cluster)
    }

    /// The addresses of every node, as `stepmap worker --coordinators` takes them.
    pub fn addresses(&self) -> String {
        self.nodes.values().map(|n| format!("http://{}", n.address)).collect::<Vec<_>>().join(",")
    }

    /// Where test files of this cluster can go (removed with it).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn node(&mut self, id: u64) -> &mut Coordinator {
        self.nodes.get_mut(&id).expect("a node of this cluster")
    }

    /// The running nodes other than `except`.
    pub fn others(&self, except: u64) -> Vec<u64> {
        self.nodes.values().filter(|n| n.is_running() && n.id != except).map(|n| n.id).collect()
    }

    /// Waits until a running node reports itself leader and every other running node that
    /// knows a leader names the same one; returns its id.
    pub async fn leader(&mut self) -> anyhow::Result<u64> {
        eventually("a leader", Duration::from_secs(30), async || {
            for node in self.nodes.values_mut() {
                node.check_alive()?;
            }
            let mut leader = None;
            let mut hints = Vec::new();
            for node in self.nodes.values().filter(|n| n.is_running()) {
                let Ok(status) = node.status().await else { return Ok(None) };
                if status.role() == RaftRole::Leader {
                    leader = Some((status.node_id, status.term));
                }
                hints.push((status.leader.map_or(0, |l| l.leader_id), status.term));
            }
            Ok(leader.filter(|(id, term)| hints.iter().all(|(hint, t)| *hint == *id || *hint == 0 || *t < *term)))
        })
        .await
        .map(|(id, _)| id)
    }

    /// The last lines of every node's log, to read beside a failure.
    fn logs(&self) -> String {
        let mut out = String::new();
        for node in self.nodes.values() {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- coordinator {} ({}) log, last lines:\n", node.id, node.address));
            for line in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Captured by the test harness: shown only when the test fails.
        eprintln!("{}", self.logs());
        let _ = &self.dir;
    }
}

/// A `stepmap worker` process; killed when dropped (its log's last lines are printed then,
/// for the test harness to show beside a failure).
pub struct WorkerProcess {
    log: PathBuf,
    child: Option<Child>,
}

impl WorkerProcess {
    /// Starts `stepmap worker` with `args`, its output appended to `log`.
    pub fn start(args: &[&str], log: PathBuf) -> anyhow::Result<Self> {
        let child = spawn_stepmap(&[&["worker"], args].concat(), &log)?;
        Ok(Self { log, child: Some(child) })
    }

    /// `kill -9`, then reaps the process.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the worker is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM (the worker drains, then exits); see [`WorkerProcess::wait_exit`].
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the worker is not running")?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed: {status}", child.id());
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own and reaps it; its exit status.
    /// On timeout the process is left running (and killed when the handle drops).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("the worker is not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < deadline, "the worker did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- {} (last lines):", self.log.display());
        for line in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("{line}");
        }
    }
}
