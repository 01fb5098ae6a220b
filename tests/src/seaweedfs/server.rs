//! The servers of a [`super::SeaweedCluster`]: their ports, picked together, and each
//! server's command line, log and process group.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{weed_bin, LOG_TAIL_LINES, VOLUME_SERVERS};
use crate::process::GroupChild;

/// The ports of one start, all distinct and free when picked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ports {
    pub(super) master: (u16, u16),
    pub(super) volumes: [(u16, u16); VOLUME_SERVERS],
    pub(super) filer: (u16, u16),
    pub(super) s3: (u16, u16),
}

impl Ports {
    /// Binds every port at once (so no two are the same), then releases them all.
    pub(super) fn pick() -> Ports {
        let listeners: Vec<std::net::TcpListener> = (0..2 * (3 + VOLUME_SERVERS))
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let mut ports = listeners
            .iter()
            .map(|listener| listener.local_addr().expect("local addr").port());
        let mut pair = || {
            (
                ports.next().expect("enough ports"),
                ports.next().expect("enough ports"),
            )
        };
        Ports {
            master: pair(),
            volumes: std::array::from_fn(|_| pair()),
            filer: pair(),
            s3: pair(),
        }
    }
}

/// `127.0.0.1:PORT.GRPC_PORT`: how SeaweedFS servers are told another's gRPC port.
pub(super) fn server_address((http, grpc): (u16, u16)) -> String {
    format!("127.0.0.1:{http}.{grpc}")
}

/// One SeaweedFS server: its command line (kept for restarts), its log, its process.
pub(super) struct Server {
    pub(super) name: String,
    pub(super) args: Vec<String>,
    pub(super) log: PathBuf,
    pub(super) process: Option<GroupChild>,
}

impl Server {
    pub(super) fn new(name: String, args: Vec<String>, dir: &Path) -> Server {
        let log = dir.join(format!("{name}.log"));
        Server {
            name,
            args,
            log,
            process: None,
        }
    }

    pub(super) fn spawn(&mut self, cwd: &Path) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open a SeaweedFS log");
        let process = GroupChild::spawn(
            Command::new(weed_bin())
                .arg("-logtostderr")
                .args(&self.args)
                // security.toml and filer.toml are looked up in "." first: an empty directory.
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone a log handle"))
                .stderr(log),
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", weed_bin().display()));
        self.process = Some(process);
    }

    /// Whether it has exited since it was spawned.
    pub(super) fn exited(&mut self) -> bool {
        match &mut self.process {
            Some(process) => !process.running(),
            None => false,
        }
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- {} ({}) ---\n{tail}\n", self.name, self.log.display())
    }
}
