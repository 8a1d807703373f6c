//! Qdrant server nodes run as local processes on loopback ports, for the tests and benches
//! of the Qdrant server backend (never a mock): a standalone node or the nodes of a cluster,
//! started from a Qdrant binary and its `start` script (`ENCLAVE_QDRANT_DIR`, by default the
//! `shared/qdrant` folder beside the repository), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Result, StorageError};

/// The folder holding the `qdrant` binary and its `start` script.
pub fn qdrant_dir() -> PathBuf {
    std::env::var_os("ENCLAVE_QDRANT_DIR").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/qdrant"
            ))
        },
        PathBuf::from,
    )
}

/// A free TCP port on loopback (free when asked; nodes are started right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One Qdrant node, its data under `dir`.
#[derive(Debug)]
pub struct QdrantProcess {
    dir: PathBuf,
    pub http_port: u16,
    pub grpc_port: u16,
    /// Cluster nodes only: the node's P2P port and the first node's (to join it).
    pub p2p_port: Option<u16>,
    peer_p2p: Option<u16>,
    pid: Option<u32>,
}

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

impl QdrantProcess {
    /// Starts a standalone node with its data in `dir`.
    pub fn standalone(dir: &Path) -> Result<Self> {
        Self::start(dir, None, None)
    }

    /// Starts the first node of a cluster.
    pub fn cluster_first(dir: &Path) -> Result<Self> {
        Self::start(dir, Some(free_port()), None)
    }

    /// Starts a node that joins the cluster of `first`.
    pub fn cluster_join(dir: &Path, first: &QdrantProcess) -> Result<Self> {
        Self::start(dir, Some(free_port()), first.p2p_port)
    }

    fn start(dir: &Path, p2p_port: Option<u16>, peer_p2p: Option<u16>) -> Result<Self> {
        let mut node = Self {
            dir: dir.to_path_buf(),
            http_port: free_port(),
            grpc_port: free_port(),
            p2p_port,
            peer_p2p,
            pid: None,
        };
        node.launch()?;
        Ok(node)
    }

    fn launch(&mut self) -> Result<()> {
        let script = qdrant_dir().join("start");
        let mut cmd = Command::new(&script);
        cmd.arg(&self.dir)
            .arg(self.http_port.to_string())
            .arg(self.grpc_port.to_string());
        if let Some(p2p) = self.p2p_port {
            cmd.arg(p2p.to_string());
            if let Some(peer) = self.peer_p2p {
                cmd.arg(peer.to_string());
            }
        }
        let out = cmd.output().map_err(|e| io(&script, e))?;
        if !out.status.success() {
            return Err(StorageError::Vector(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let pid_file = self.dir.join("pid");
        let pid = std::fs::read_to_string(&pid_file).map_err(|e| io(&pid_file, e))?;
        self.pid = pid.trim().parse().ok();
        Ok(())
    }

    /// The gRPC URL Enclave connects to.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The REST URL (for checks from outside Enclave).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn signal(&mut self, signal: &str) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            // Wait until the process is gone, so that its ports and locks are free.
            for _ in 0..200 {
                let alive = Command::new("kill")
                    .args(["-0", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !alive {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// Stops the node (SIGTERM).
    pub fn stop(&mut self) {
        self.signal("-TERM");
    }

    /// Starts the node again on the same ports with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the node's process is running.
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
