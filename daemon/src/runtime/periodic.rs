//! The maintenance threads' loop (scrub, GC): one pass per interval, the first one interval
//! after start (or after the work is switched on), until `stop` is set.
//!
//! Rules: `interval` is asked every tick, so settings reloaded by SIGHUP apply at once;
//! `None` means "off" and restarts the wait. A pass runs on this thread; the caller's pass
//! watches `stop` itself if it should end early.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the loop looks at its interval and the stop flag.
const TICK: Duration = Duration::from_millis(200);

pub fn spawn(
    name: &str,
    stop: Arc<AtomicBool>,
    mut interval: impl FnMut() -> Option<Duration> + Send + 'static,
    mut pass: impl FnMut() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut since = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                match interval() {
                    None => since = Instant::now(),
                    Some(interval) if since.elapsed() < interval => {}
                    Some(_) => {
                        pass();
                        since = Instant::now();
                    }
                }
            }
        })
}
