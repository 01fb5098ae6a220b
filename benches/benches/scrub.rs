//! Scrub throughput on data in the page cache (issue 5's target: at least 80% of cores x the
//! single-core sha256 rate). `scrub_pass` is `Engine::scrub` over 48 blobs (1 to 48 MiB,
//! 1,176 MiB in all) with one worker per core and no pacing; `sha256_one_core` hashes one
//! 16 MiB buffer in memory on one thread: the limit is that rate times the number of cores.
//!
//! Setup runs once, untimed: the blobs are committed with `commit: false` under
//! /root/.cache/berth (ext4), then one untimed pass brings them into the page cache.

use std::hint::black_box;

mod common;

use berth_storage::oci::{Algorithm, Digest, RepoName};
use berth_storage::ScrubOptions;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MIB: usize = 1 << 20;
const BLOBS: usize = 48;

fn scrub_throughput(c: &mut Criterion) {
    let runtime = common::runtime();
    let dir = common::scratch_dir();
    let engine = common::open_unsynced(dir.path());
    let repo: RepoName = "bench/scrub".parse().expect("name");
    let mut total = 0u64;
    runtime.block_on(async {
        for i in 0..BLOBS {
            let mut data = vec![0u8; (i + 1) * MIB];
            for (n, chunk) in data.chunks_mut(8).enumerate() {
                chunk
                    .copy_from_slice(&((n as u64) ^ (i as u64) << 40).to_le_bytes()[..chunk.len()]);
            }
            total += data.len() as u64;
            let digest = Digest::of(Algorithm::Sha256, &data);
            let mut writer = engine.begin_monolithic(&repo).await.expect("begin");
            writer.write(Bytes::from(data)).await.expect("write");
            writer.finish(&digest).await.expect("finish");
        }
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = ScrubOptions::new(cores, None);
    let warm = runtime
        .block_on(engine.scrub(&options, &|_, _| {}))
        .expect("warm-up pass");
    assert!(warm.damaged.is_empty());

    let mut group = c.benchmark_group("scrub");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    group.bench_function(format!("scrub_pass/{cores}_workers"), |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(engine.scrub(&options, &|_, _| {}))
                    .expect("pass"),
            )
        })
    });
    let buffer = vec![7u8; 16 * MIB];
    group.throughput(Throughput::Bytes(buffer.len() as u64));
    group.bench_function("sha256_one_core", |b| {
        b.iter(|| black_box(Digest::of(Algorithm::Sha256, &buffer)))
    });
    group.finish();
}

criterion_group!(benches, scrub_throughput);
criterion_main!(benches);
