//! The machine's limits, measured in the same run as the registry figures so every ratio has
//! its ceiling beside it: loopback TCP copy, single-core sha256 and blake3, sequential write
//! (with fsync) and read of the data filesystem, small write+fsync rate, and the pull rate of
//! a verifying client from a plain in-process server that streams the same bytes from memory
//! (client and server share the cores, so the client's digest check is part of that limit).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_storage::oci::Algorithm;
use http::{Method, Response};
use hyper::service::service_fn;
use serde::Serialize;

use crate::client::{ChunkBody, Conn};
use crate::data::{TestData, MIB};
use crate::stats::Summary;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Limits {
    /// One TCP connection on loopback, 1 MiB writes and reads (GB/s).
    pub loopback_tcp_gbps: f64,
    /// Single core, 64 MiB buffer in memory (GB/s).
    pub sha256_gbps: f64,
    pub blake3_gbps: f64,
    /// 1 GiB written in 1 MiB writes, then fsync, on the data filesystem (GB/s).
    pub disk_write_gbps: f64,
    /// 1 GiB written with O_DIRECT in 1 MiB aligned writes, then fsync (GB/s): how berth
    /// writes durable uploads; 0 where the filesystem refuses O_DIRECT.
    pub disk_direct_write_gbps: f64,
    /// The same file read back (page cache) in 1 MiB reads (GB/s).
    pub disk_read_gbps: f64,
    /// 4 KiB pwrite + fsync of one file, per second.
    pub fsync_4k_per_second: f64,
    /// Verifying client pulling one blob of each size from an in-process server (MB/s).
    pub verified_pull_mbps: Vec<(u64, f64)>,
}

const GB: f64 = 1e9;

fn loopback_tcp(total: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = listener.accept()?;
        let buffer = vec![7u8; MIB as usize];
        let mut sent = 0;
        while sent < total {
            let n = buffer.len().min(total - sent);
            socket.write_all(&buffer[..n])?;
            sent += n;
        }
        Ok(())
    });
    let mut socket = TcpStream::connect(addr)?;
    let mut buffer = vec![0u8; MIB as usize];
    let started = Instant::now();
    let mut received = 0;
    while received < total {
        let n = socket.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        received += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    writer.join().expect("writer thread")?;
    Ok(received as f64 / seconds / GB)
}

fn hash_rate(algorithm: Algorithm) -> f64 {
    let buffer: Vec<u8> = (0..64 * MIB as usize)
        .map(|i| (i * 131 + 17) as u8)
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut hasher = algorithm.hasher();
        hasher.update(&buffer);
        std::hint::black_box(hasher.finalize());
        best = best.min(started.elapsed().as_secs_f64());
    }
    buffer.len() as f64 / best / GB
}

fn direct_write(dir: &Path, total: usize) -> Result<f64> {
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: usize = 4096;
    let path = dir.join("berth-bench-direct.tmp");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let mut file = match opened {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => return Ok(0.0),
        Err(error) => return Err(error.into()),
    };
    let backing: Vec<u8> = (0..MIB as usize + ALIGN)
        .map(|i| (i * 5 + 1) as u8)
        .collect();
    let skip = backing.as_ptr().align_offset(ALIGN);
    let buffer = &backing[skip..skip + MIB as usize];
    let started = Instant::now();
    let mut written = 0;
    while written < total {
        file.write_all(buffer)?;
        written += buffer.len();
    }
    file.sync_all()?;
    let rate = written as f64 / started.elapsed().as_secs_f64() / GB;
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn disk(dir: &Path, total: usize) -> Result<(f64, f64, f64)> {
    let path = dir.join("berth-bench-limits.tmp");
    let buffer: Vec<u8> = (0..MIB as usize).map(|i| (i * 7 + 3) as u8).collect();
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    let mut written = 0;
    while written < total {
        file.write_all(&buffer)?;
        written += buffer.len();
    }
    file.sync_all()?;
    let write = written as f64 / started.elapsed().as_secs_f64() / GB;
    drop(file);
    let mut file = std::fs::File::open(&path)?;
    let mut read_buffer = vec![0u8; MIB as usize];
    let started = Instant::now();
    let mut read = 0;
    loop {
        let n = file.read(&mut read_buffer)?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let read = read as f64 / started.elapsed().as_secs_f64() / GB;
    std::fs::remove_file(&path)?;

    let small = dir.join("berth-bench-fsync.tmp");
    let file = std::fs::File::create(&small)?;
    let page = [1u8; 4096];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        use std::os::unix::fs::FileExt;
        file.write_at(&page, (syncs % 256) * 4096)?;
        file.sync_data()?;
        syncs += 1;
    }
    let fsyncs = syncs as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&small)?;
    Ok((write, read, fsyncs))
}

/// An in-process HTTP/1.1 server answering every GET with blob `(0, 0)` of `size` bytes from
/// memory, and `concurrency` verifying clients pulling it `requests` times (MB/s).
async fn verified_pull(
    data: &TestData,
    size: u64,
    concurrency: usize,
    requests: usize,
) -> Result<(f64, Summary)> {
    let blob = Arc::new(data.blob(size, 0, 0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::clone(&blob);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let _ = stream.set_nodelay(true);
            let blob = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let chunks = blob.chunks.clone();
                    async move { Ok::<_, Infallible>(Response::new(ChunkBody::sized(chunks))) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (blob, next) = (Arc::clone(&blob), Arc::clone(&next));
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut latencies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let began = Instant::now();
                    conn.fetch(Method::GET, "/blob", None, Some(&blob.digest))
                        .await?;
                    latencies.push(began.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    Ok((
        latencies.len() as f64 * size as f64 / 1e6 / seconds,
        Summary::of(&mut latencies),
    ))
}

/// Measures every limit. `dir` must be on the data filesystem.
pub fn measure(
    dir: &Path,
    data: &TestData,
    concurrency: usize,
    requests: usize,
    runtime: &tokio::runtime::Runtime,
) -> Result<Limits> {
    let (disk_write_gbps, disk_read_gbps, fsync_4k_per_second) = disk(dir, 1 << 30)?;
    let mut verified_pull_mbps = Vec::new();
    for size in data.sizes().filter(|size| *size >= MIB) {
        let (rate, _) = runtime.block_on(verified_pull(data, size, concurrency, requests))?;
        verified_pull_mbps.push((size, rate));
    }
    Ok(Limits {
        loopback_tcp_gbps: loopback_tcp(4 << 30)?,
        sha256_gbps: hash_rate(Algorithm::Sha256),
        blake3_gbps: hash_rate(Algorithm::Blake3),
        disk_write_gbps,
        disk_direct_write_gbps: direct_write(dir, 1 << 30)?,
        disk_read_gbps,
        fsync_4k_per_second,
        verified_pull_mbps,
    })
}
