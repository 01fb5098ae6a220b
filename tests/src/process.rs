//! [`GroupChild`]: a server the harness starts as the leader of its own process group, killed
//! with its group and every process it forked, and [`MemoryUse`], what they hold in memory.
//!
//! Rules: a process is signalled only while it cannot have been reaped: the group while its
//! leader is not reaped (or right after, as a group id is not reused while a member lives),
//! the leader's descendants while the leader is stopped (SIGSTOP: it forks and reaps no more).
//! Descendants are looked up by parent pid because a group is not enough: PostgreSQL's
//! children each call setsid(). Drop kills them all and reaps the leader, so no test leaves a
//! process behind, even when it panics.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How often a wait for an exit polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub(crate) struct GroupChild {
    child: Option<Child>,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group.
    pub(crate) fn spawn(command: &mut Command) -> io::Result<GroupChild> {
        use std::os::unix::process::CommandExt as _;
        let child = command.process_group(0).spawn()?;
        Ok(GroupChild { child: Some(child) })
    }

    /// The leader's pid (also the group id), while it has not been reaped.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Some(status) once the leader has exited (reaped, and what is left of its group killed).
    pub(crate) fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().expect("wait on a harness child")?;
        let group = group_id(child);
        self.child = None;
        // SAFETY: kill(2) of the group just reaped: its id is not reused while a member lives,
        // and when none does the call finds no group.
        unsafe { libc::kill(group, libc::SIGKILL) };
        Some(status)
    }

    /// Whether the leader is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Sends `signal` to the leader only.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) of our child, not reaped yet, so its pid cannot be reused.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// SIGKILLs the leader, its group and its descendants, and reaps the leader. No-op when not
    /// running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let leader = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) of our child, not reaped yet: it stops forking and reaping, so
            // the pids of its children found next stay theirs until they are killed.
            unsafe { libc::kill(leader, libc::SIGSTOP) };
            let family = descendants(child.id());
            // SAFETY: kill(2) of the group led by our child, not reaped yet.
            unsafe { libc::kill(-leader, libc::SIGKILL) };
            for pid in family {
                let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
                // SAFETY: a descendant of the stopped leader, see above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the leader and waits up to `timeout` for it to exit; then SIGKILLs the
    /// group. Returns whether it exited in time.
    pub(crate) fn stop(&mut self, signal: libc::c_int, timeout: Duration) -> bool {
        self.signal(signal);
        let exited = wait_all(&mut [self], timeout);
        self.kill();
        exited
    }

    /// What the leader, its group and its descendants hold in memory.
    pub(crate) fn memory(&self) -> MemoryUse {
        self.id().map(MemoryUse::of_family).unwrap_or_default()
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill();
    }
}

fn group_id(child: &Child) -> libc::pid_t {
    -libc::pid_t::try_from(child.id()).expect("pid fits pid_t")
}

/// Waits up to `timeout` for every leader in `children` to exit; true when they all did.
pub(crate) fn wait_all(children: &mut [&mut GroupChild], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut running = false;
        for child in children.iter_mut() {
            running |= child.running();
        }
        if !running {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Resident memory of a set of processes, from `/proc/PID/smaps_rollup`. RSS counts pages
/// shared between processes (the same binary's text) once per process; PSS divides them among
/// the processes sharing them, so PSS adds up to what the group really costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl MemoryUse {
    /// `leader`, the members of its process group and its descendants.
    fn of_family(leader: u32) -> MemoryUse {
        family(leader).into_iter().map(MemoryUse::of_process).sum()
    }

    fn of_process(pid: u32) -> MemoryUse {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        MemoryUse {
            processes: 1,
            rss_kib: field("Rss:"),
            pss_kib: field("Pss:"),
        }
    }
}

impl std::ops::Add for MemoryUse {
    type Output = MemoryUse;

    fn add(self, other: MemoryUse) -> MemoryUse {
        MemoryUse {
            processes: self.processes + other.processes,
            rss_kib: self.rss_kib + other.rss_kib,
            pss_kib: self.pss_kib + other.pss_kib,
        }
    }
}

impl std::iter::Sum for MemoryUse {
    fn sum<I: Iterator<Item = MemoryUse>>(iter: I) -> MemoryUse {
        iter.fold(MemoryUse::default(), |total, one| total + one)
    }
}

impl std::fmt::Display for MemoryUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} processes, RSS {} MiB, PSS {} MiB",
            self.processes,
            self.rss_kib / 1024,
            self.pss_kib / 1024
        )
    }
}

/// (pid, parent pid, process group) of every live process, from `/proc/PID/stat` (fields 4
/// and 5; the second, the command name in parentheses, may itself hold spaces and parentheses).
fn processes() -> Vec<(u32, u32, u32)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace().skip(1);
        let parent = fields.next().and_then(|field| field.parse().ok());
        let group = fields.next().and_then(|field| field.parse().ok());
        if let (Some(parent), Some(group)) = (parent, group) {
            all.push((pid, parent, group));
        }
    }
    all
}

/// Every live descendant of `leader`.
fn descendants(leader: u32) -> Vec<u32> {
    let all = processes();
    let mut found = vec![leader];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        next += 1;
    }
    found.remove(0);
    found
}

/// `leader`, the members of its process group and its descendants, each once.
fn family(leader: u32) -> Vec<u32> {
    let mut pids = descendants(leader);
    pids.extend(processes().iter().filter(|p| p.2 == leader).map(|p| p.0));
    pids.push(leader);
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The TCP addresses that `leader` and its family (see [`family`]) listen on, from
/// `/proc/net/tcp` and `/proc/net/tcp6` matched against the sockets in each process's
/// `/proc/PID/fd`.
pub(crate) fn listening_addresses(leader: u32) -> Vec<std::net::SocketAddr> {
    let mut inodes = std::collections::HashSet::new();
    for pid in family(leader) {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut addresses = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, rem_address, st (0A = LISTEN), ..., inode (the tenth field).
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                addresses.push(parse_proc_address(fields[1]));
            }
        }
    }
    addresses.sort();
    addresses
}

/// `0100007F:1F90` (IPv4) or 32 hex digits of IPv6, each 32-bit word in host order (little
/// endian here), then the port in hex.
fn parse_proc_address(text: &str) -> std::net::SocketAddr {
    let (ip, port) = text.split_once(':').expect("address:port");
    let port = u16::from_str_radix(port, 16).expect("hex port");
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[8 * i..8 * i + 8], 16).expect("hex word"))
        .collect();
    let ip: std::net::IpAddr = match words.as_slice() {
        [word] => std::net::Ipv4Addr::from(word.to_le_bytes()).into(),
        words => {
            let mut bytes = [0u8; 16];
            for (i, word) in words.iter().enumerate() {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
            }
            std::net::Ipv6Addr::from(bytes).into()
        }
    };
    std::net::SocketAddr::new(ip, port)
}
