//! Digest throughput per algorithm and implementation, on one core. Compare each figure with
//! the machine's single-core limit for that algorithm (on the 2-core development machine:
//! sha256 with SHA-NI about 1.2 GB/s, sha512 about 0.45 GB/s, blake3 about 5 GB/s single
//! threaded). berth hashes every upload while it is received with the winner here, through
//! `berth_storage::oci::Hasher`, which is benched too so that its dispatch costs nothing.

use berth_storage::oci::Algorithm;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::Digest as _;

const SIZES: [usize; 2] = [64 * 1024, 8 * 1024 * 1024];

fn digests(c: &mut Criterion) {
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut group = c.benchmark_group(format!("digest/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("sha256/sha2", |b| b.iter(|| sha2::Sha256::digest(&data)));
        group.bench_function("sha256/ring", |b| {
            b.iter(|| ring::digest::digest(&ring::digest::SHA256, &data))
        });
        group.bench_function("sha256/berth-hasher", |b| {
            b.iter(|| {
                let mut hasher = Algorithm::Sha256.hasher();
                hasher.update(&data);
                hasher.finalize()
            })
        });
        group.bench_function("sha512/sha2", |b| b.iter(|| sha2::Sha512::digest(&data)));
        group.bench_function("sha512/ring", |b| {
            b.iter(|| ring::digest::digest(&ring::digest::SHA512, &data))
        });
        group.bench_function("blake3/blake3", |b| b.iter(|| blake3::hash(&data)));
        group.finish();
    }
}

criterion_group!(benches, digests);
criterion_main!(benches);
