//! [`Postgres`]: a throwaway PostgreSQL server (Debian's `postgresql` package) as the index of the
//! shared backend's tests (issue 20): a cluster made by `initdb` in a temporary directory,
//! the postmaster run directly as the harness's child on a free loopback port, a role
//! [`USER`] with a password and a database [`DATABASE`] it owns, named by [`Postgres::url`].
//!
//! Rules:
//! - PostgreSQL refuses to run as root: when the tests run as root, `initdb` and the server run
//!   as the `postgres` user (uid and gid set at spawn; supplementary groups dropped), which
//!   then owns the directory. Root still reads the log and removes the directory.
//! - Durable as in production: `fsync`, `synchronous_commit` and `full_page_writes` on, so a
//!   commit acknowledged to a client survives [`Postgres::kill`]. `initdb` itself runs with
//!   `--no-sync`: its files only need to survive a killed process, not a lost machine. The
//!   start after a kill first syncs the data directory: `recovery_init_sync_method=syncfs`
//!   makes that one syncfs(2) instead of an fsync of each of initdb's ~1000 unsynced files
//!   (0.9 s instead of 4.8 s here).
//! - Small: `shared_buffers` [`SHARED_BUFFERS`]. Listens on 127.0.0.1 only (TCP with
//!   SCRAM-SHA-256 passwords) and on a unix socket in the cluster's directory (trust, for the
//!   superuser `postgres` of [`Postgres::psql`]).
//! - Readiness: `pg_isready` over TCP answers 0 within [`START_TIMEOUT`] (crash recovery after
//!   a kill included); otherwise a panic with the server's log. A first start that loses its
//!   port race is retried on another port; later starts keep the port, so the URL holds.
//! - [`Postgres::kill`] SIGKILLs the postmaster and every process it forked (backends,
//!   checkpointer, WAL writer: each in a session of its own, so found by parent pid), as a
//!   crash would; a backend left running would hold the shared memory and stop the next
//!   start. [`Postgres::stop`] is a fast shutdown (SIGINT) with a SIGKILL after
//!   [`STOP_TIMEOUT`]. Drop kills them all and removes the directory (2.5-3.4 s here: deleting
//!   synced files is slow on this disk).
//! - Callers check [`postgres_available`] first (skip, or fail under `BERTH_REQUIRE_TOOLS=1`).

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{listening_addresses, GroupChild, MemoryUse};

/// The role berth connects as (not a superuser; owns [`DATABASE`]).
pub const USER: &str = "berth";
pub const PASSWORD: &str = "berth-test-pg-password";
pub const DATABASE: &str = "berth";
/// The superuser, reached through the unix socket only.
const SUPERUSER: &str = "postgres";
/// The OS user the server runs as when the tests run as root.
const OS_USER: &str = "postgres";
const SHARED_BUFFERS: &str = "16MB";
const START_ATTEMPTS: usize = 3;
/// How long a start (with crash recovery) may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const BINARIES: [&str; 4] = ["initdb", "postgres", "pg_isready", "psql"];

/// The directory of the server's binaries: `$BERTH_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian keeps them off PATH).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BERTH_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// Whether the server's binaries (and, under root, the `postgres` user) are there
/// (scripts/test installs them); prints SKIPPED, or panics under `BERTH_REQUIRE_TOOLS=1`,
/// naming what is missing.
pub fn postgres_available() -> bool {
    let mut missing = Vec::new();
    match postgres_bin_dir() {
        Some(dir) => {
            for binary in BINARIES {
                if !dir.join(binary).is_file() {
                    missing.push(dir.join(binary).display().to_string());
                }
            }
        }
        None => missing.push("/usr/lib/postgresql/<major>/bin (package postgresql)".into()),
    }
    if is_root() && os_user(OS_USER).is_none() {
        missing.push(format!("the {OS_USER} user"));
    }
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("PostgreSQL is missing: {missing} (BERTH_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIPPED: PostgreSQL is missing: {missing}");
    false
}

fn is_root() -> bool {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() == 0 }
}

/// (uid, gid) of `name`.
fn os_user(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam(3) with a valid C string; the entry is read before any other call that
    // could overwrite its static buffer (the tests never change users concurrently).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: non-null result of getpwnam, read right away.
    let entry = unsafe { &*entry };
    Some((entry.pw_uid, entry.pw_gid))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// (uid, gid) the server runs as, when not the harness's own.
    run_as: Option<(u32, u32)>,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    postmaster: Option<GroupChild>,
    // Last field: removed after the server is killed.
    dir: TempDir,
}

impl Postgres {
    /// Makes a new cluster, starts it, and creates [`USER`] and [`DATABASE`].
    pub fn start() -> Postgres {
        let bin = postgres_bin_dir().expect("postgres_available() was checked");
        let run_as = if is_root() {
            Some(os_user(OS_USER).expect("postgres_available() was checked"))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("berth-postgres-")
            .tempdir()
            .expect("temp dir");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the cluster's directory to the postgres user");
        }
        let mut postgres = Postgres {
            port: 0,
            bin,
            run_as,
            data: dir.path().join("data"),
            socket_dir: dir.path().join("run"),
            log: dir.path().join("postgres.log"),
            postmaster: None,
            dir,
        };
        postgres.initdb();
        for _ in 0..START_ATTEMPTS {
            postgres.port = free_port();
            if postgres.run() {
                postgres.create_database();
                return postgres;
            }
        }
        panic!("PostgreSQL did not start:\n{}", postgres.log_text());
    }

    /// A command for one of the server's binaries, as the server's OS user.
    fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(self.bin.join(binary));
        command
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn initdb(&self) {
        let mut initdb = self.command("initdb");
        initdb.arg("--pgdata").arg(&self.data).args([
            &format!("--username={SUPERUSER}"),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        crate::run_ok(&mut initdb);
        std::fs::create_dir(&self.socket_dir).expect("create the socket directory");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&self.socket_dir, Some(uid), Some(gid))
                .expect("give the socket directory to the postgres user");
        }
    }

    /// Starts the postmaster on `self.port`; true once it accepts connections, false when it
    /// exited (a lost port race). Panics when it neither exits nor gets ready in time.
    fn run(&mut self) -> bool {
        assert!(self.postmaster.is_none(), "PostgreSQL is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the PostgreSQL log");
        let settings = [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.socket_dir.display()),
            "fsync=on".to_owned(),
            "synchronous_commit=on".to_owned(),
            "full_page_writes=on".to_owned(),
            "recovery_init_sync_method=syncfs".to_owned(),
            format!("shared_buffers={SHARED_BUFFERS}"),
            "max_connections=100".to_owned(),
        ];
        let mut command = self.command("postgres");
        command.arg("-D").arg(&self.data);
        for setting in &settings {
            command.args(["-c", setting]);
        }
        let postmaster = GroupChild::spawn(
            command
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log),
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.join("postgres").display()));
        self.postmaster = Some(postmaster);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(postmaster) = self.postmaster.as_mut() {
                if postmaster.try_exit_status().is_some() {
                    self.postmaster = None;
                    return false;
                }
            }
            if self.is_ready() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL not ready after {START_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `pg_isready` over TCP: the server accepts connections.
    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["--host=127.0.0.1", &format!("--port={}", self.port)])
            .args([&format!("--dbname={DATABASE}"), "--timeout=1", "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn create_database(&self) {
        self.psql(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        // Its own call: CREATE DATABASE cannot run in the transaction of a multi-statement -c.
        self.psql(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
    }

    /// Runs `sql` with `psql` as the superuser through the unix socket, in the `postgres`
    /// database; panics on any error. Returns the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.arg(format!("--host={}", self.socket_dir.display()))
            .args([
                &format!("--port={}", self.port),
                &format!("--username={SUPERUSER}"),
                "--dbname=postgres",
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
            ])
            .args(["--command", sql])
            .env_remove("PGOPTIONS");
        crate::run_ok(&mut psql)
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/DATABASE`
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the postmaster is running.
    pub fn running(&mut self) -> bool {
        self.postmaster.as_mut().is_some_and(GroupChild::running)
    }

    /// Fast shutdown (SIGINT: clients disconnected, a checkpoint written), SIGKILL of all its
    /// processes after [`STOP_TIMEOUT`]. Returns whether it shut down on its own. No-op when
    /// stopped.
    pub fn stop(&mut self) -> bool {
        match self.postmaster.take() {
            Some(mut postmaster) => postmaster.stop(libc::SIGINT, STOP_TIMEOUT),
            None => true,
        }
    }

    /// SIGKILL of the postmaster and every process it forked: no shutdown checkpoint, so the
    /// next start replays the WAL. No-op when stopped.
    pub fn kill(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            postmaster.kill();
        }
    }

    /// Starts the server again on the same data directory and port, after [`Postgres::stop`]
    /// or [`Postgres::kill`]; returns once it accepts connections (recovery done).
    pub fn start_again(&mut self) {
        assert!(
            self.run(),
            "PostgreSQL did not start again on port {}:\n{}",
            self.port,
            self.log_text()
        );
    }

    /// [`Postgres::stop`], then [`Postgres::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// What the server's processes hold in memory.
    pub fn memory(&self) -> MemoryUse {
        self.postmaster
            .as_ref()
            .map(GroupChild::memory)
            .unwrap_or_default()
    }

    /// Every TCP address the server's processes listen on.
    pub fn listening(&self) -> Vec<std::net::SocketAddr> {
        self.postmaster
            .as_ref()
            .and_then(GroupChild::id)
            .map(listening_addresses)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
