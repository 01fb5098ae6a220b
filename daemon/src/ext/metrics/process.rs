//! The standard `process_*` families (what Prometheus client libraries export, and what
//! dashboards expect next to an exporter's own metrics), read from the kernel at scrape time.
//!
//! Rules: Linux only (`/proc/self`); a figure that cannot be read is left out, never guessed.

use std::time::SystemTime;

/// One reading of the process's resources.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

pub fn read(started: SystemTime) -> ProcessStats {
    ProcessStats {
        cpu_seconds: cpu_seconds(),
        resident_bytes: resident_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: max_fds(),
        start_time_seconds: started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64()),
    }
}

fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

fn resident_bytes() -> Option<u64> {
    // statm: size resident shared text lib data dt, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

fn max_fds() -> Option<u64> {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::zeroed();
    // SAFETY: getrlimit writes a whole rlimit into the pointer it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) };
    // SAFETY: initialised by the successful call above.
    (status == 0).then(|| unsafe { limit.assume_init() }.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = read(SystemTime::now());
        assert!(stats
            .resident_bytes
            .is_some_and(|bytes| bytes > 1024 * 1024));
        assert!(stats.open_fds.is_some_and(|fds| fds >= 3));
        assert!(stats
            .max_fds
            .is_some_and(|max| max >= stats.open_fds.unwrap_or(0)));
        assert!(stats.cpu_seconds.is_some());
        assert!(stats.start_time_seconds > 1.7e9);
    }
}
