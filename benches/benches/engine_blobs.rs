//! Blob write and read through the storage engine, for both I/O backends (`uring` inside
//! `tokio_uring::start`, `threads` on tokio's blocking pool), at 1 MiB and 64 MiB.
//!
//! Write: the whole upload commit path, `begin_monolithic` → `write` in 1 MiB chunks →
//! `finish`, with distinct content per iteration (a counter in the first 8 bytes; payload
//! and digest are prepared outside the timed region). `durable` is `commit: true` (fsync of
//! the file and its directory, synced WAL); `no-commit` skips every fsync. The blob file is
//! deleted after each iteration, untimed, so the disk does not fill up; for `no-commit` this
//! also drops its dirty pages, so that figure is hash + copy into the page cache.
//! Compare with: sequential disk write ~1.3-1.6 GB/s and single-core sha256 ~1.8 GiB/s on
//! the development machine; a durable write is bounded by hash + write + fsync, so it
//! should land below both; `no-commit` should approach the sha256 figure.
//!
//! Read: a committed blob read back from the page cache with the daemon's pattern
//! (http/body.rs `file_body`: 256 KiB positional `read_at` through tokio-uring, one fresh
//! buffer per chunk). `threads/std-read` is a std::fs read loop; `threads/tokio-fs` is what
//! the daemon's threads backend does (tokio::fs, one blocking-pool hop per chunk).
//! Compare with: a page-cache read/copy of several GB/s. Blob files are written in 1 MiB
//! writes, so on this kernel (6.18, ext4 large folios) they sit in the page cache as large
//! folios and read back ~3x faster than a file written in 4 KiB writes (measured with
//! pread of 256 KiB: ~17 GiB/s against ~6 GiB/s).
//!
//! Data lives in a TempDir under /root/.cache/berth (ext4, like production data; /tmp may be
//! tmpfs).

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_storage::oci::{Algorithm, Digest, RepoName};
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

const MIB: usize = 1 << 20;
const SIZES: [usize; 2] = [MIB, 64 * MIB];
const WRITE_CHUNK: usize = MIB;
const READ_CHUNK: usize = 256 * 1024;
const DATA_PARENT: &str = "/root/.cache/berth";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `future` on the runtime `kind` needs: a fresh tokio-uring runtime (its setup is
/// outside every timed region: callers time inside the future) or the shared tokio one.
fn block_on<F: Future>(kind: IoBackendKind, runtime: &Runtime, future: F) -> F::Output {
    match kind {
        IoBackendKind::Uring => tokio_uring::start(future),
        IoBackendKind::Threads => runtime.block_on(future),
    }
}

fn backend_name(kind: IoBackendKind) -> &'static str {
    match kind {
        IoBackendKind::Uring => "uring",
        IoBackendKind::Threads => "threads",
    }
}

fn size_name(size: usize) -> String {
    format!("{}MiB", size / MIB)
}

struct Store {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn open_store(kind: IoBackendKind, commit: bool) -> Store {
    std::fs::create_dir_all(DATA_PARENT).expect("data parent");
    let dir = tempfile::TempDir::new_in(DATA_PARENT).expect("temp dir");
    let engine = Engine::open(EngineOptions {
        root: dir.path().to_path_buf(),
        commit,
        io: kind,
        postgres: None,
        s3: None,
    })
    .expect("engine opens");
    Store { _dir: dir, engine }
}

/// Payload number `counter`: a fixed pattern with the counter in its first 8 bytes, cut
/// into 1 MiB chunks (zero-copy slices), and its digest.
fn payload(base: &mut [u8], counter: u64) -> (Vec<Bytes>, Digest) {
    base[..8].copy_from_slice(&counter.to_le_bytes());
    let digest = Digest::of(Algorithm::Sha256, base);
    let bytes = Bytes::copy_from_slice(base);
    let chunks = (0..bytes.len())
        .step_by(WRITE_CHUNK)
        .map(|start| bytes.slice(start..(start + WRITE_CHUNK).min(bytes.len())))
        .collect();
    (chunks, digest)
}

/// One timed upload: begin, write every chunk, finish (commit).
async fn upload(engine: &Engine, repo: &RepoName, chunks: Vec<Bytes>, digest: &Digest) -> u64 {
    let mut writer = engine.begin_monolithic(repo).await.expect("begin");
    for chunk in chunks {
        writer.write(chunk).await.expect("write");
    }
    writer.finish(digest).await.expect("finish")
}

fn blob_writes(c: &mut Criterion) {
    let runtime = runtime();
    let repo: RepoName = "bench/blobs".parse().expect("repo name");
    let mut counter = 0u64;
    for size in SIZES {
        let mut base: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut group = c.benchmark_group(format!("blob_write/{}", size_name(size)));
        group.throughput(Throughput::Bytes(size as u64));
        group.sample_size(if size > MIB { 10 } else { 20 });
        if size > MIB {
            group.sampling_mode(SamplingMode::Flat);
        }
        for kind in [IoBackendKind::Uring, IoBackendKind::Threads] {
            for commit in [true, false] {
                let store = open_store(kind, commit);
                let mode = if commit { "durable" } else { "no-commit" };
                let name = format!("{}/{mode}", backend_name(kind));
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        block_on(kind, &runtime, async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                counter += 1;
                                let (chunks, digest) = payload(&mut base, counter);
                                let start = Instant::now();
                                let written = upload(&store.engine, &repo, chunks, &digest).await;
                                total += start.elapsed();
                                assert_eq!(written, size as u64);
                                std::fs::remove_file(store.engine.blob_path(&digest))
                                    .expect("remove committed blob");
                            }
                            total
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

/// The daemon's uring read loop: 256 KiB `read_at` into a fresh buffer per chunk.
async fn read_uring(path: &Path, size: u64) -> u64 {
    let file = tokio_uring::fs::File::open(path).await.expect("open");
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(READ_CHUNK as u64) as usize;
        let (res, mut buf) = file.read_at(Vec::with_capacity(want), offset).await;
        let n = res.expect("read_at");
        assert!(n > 0, "short read");
        buf.truncate(n);
        offset += std::hint::black_box(Bytes::from(buf)).len() as u64;
    }
    file.close().await.expect("close");
    offset
}

/// A std::fs positional read loop with the same chunking and buffers.
fn read_std(path: &Path, size: u64) -> u64 {
    let file = std::fs::File::open(path).expect("open");
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(READ_CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let n = file.read_at(&mut buf, offset).expect("read_at");
        assert!(n > 0, "short read");
        buf.truncate(n);
        offset += std::hint::black_box(Bytes::from(buf)).len() as u64;
    }
    offset
}

/// The daemon's threads read loop: tokio::fs, one blocking-pool hop per chunk.
async fn read_tokio_fs(path: &Path, size: u64) -> u64 {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.expect("open");
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(READ_CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await.expect("read");
        assert!(n > 0, "short read");
        buf.truncate(n);
        offset += std::hint::black_box(Bytes::from(buf)).len() as u64;
    }
    offset
}

/// Commits one blob of `size` and returns its path (in the page cache: just written).
fn committed_blob(runtime: &Runtime, store: &Store, size: usize) -> PathBuf {
    let repo: RepoName = "bench/read".parse().expect("repo name");
    let mut base: Vec<u8> = (0..size).map(|i| (i * 17 + 3) as u8).collect();
    let (chunks, digest) = payload(&mut base, size as u64);
    runtime.block_on(upload(&store.engine, &repo, chunks, &digest));
    let path = store.engine.blob_path(&digest);
    assert_eq!(std::fs::read(&path).expect("blob file"), base);
    path
}

fn blob_reads(c: &mut Criterion) {
    let runtime = runtime();
    let store = open_store(IoBackendKind::Threads, false);
    for size in SIZES {
        let path = committed_blob(&runtime, &store, size);
        let len = size as u64;
        let mut group = c.benchmark_group(format!("blob_read/{}", size_name(size)));
        group.throughput(Throughput::Bytes(len));
        if size > MIB {
            group.sample_size(10);
        }
        group.bench_function("uring/read_at", |b| {
            b.iter_custom(|iters| {
                tokio_uring::start(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(read_uring(&path, len).await, len);
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function("threads/std-read", |b| {
            b.iter(|| assert_eq!(read_std(&path, len), len))
        });
        group.bench_function("threads/tokio-fs", |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(read_tokio_fs(&path, len).await, len);
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, blob_writes, blob_reads);
criterion_main!(benches);
