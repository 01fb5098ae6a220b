//! GC pass time over 10,000 images with 1% garbage (issue 5). The store: 100 repositories of
//! 100 tagged images each (a unique config and layer per image, one base layer per
//! repository): 10,000 manifests, 20,100 blobs.
//!
//! * `incremental_1pct`: in each repository one tag moved to a new image since the last pass,
//!   leaving 100 untagged images (a manifest and two unique blobs each); the pass visits the
//!   repositories that changed and the blobs that lost a link. Each iteration first makes
//!   that garbage, untimed.
//! * `nothing_changed`: a pass when nothing changed since the last one.
//! * `full_1pct`: the same garbage, collected by a full pass (what the first pass after a
//!   restart and `berth gc` do): every repository, every blob record, every blob file.
//!
//! Setup commits with `commit: false` under /root/.cache/berth (ext4); the passes themselves
//! run with that engine, so their index writes are unsynced too (a synced pass adds one WAL
//! fsync per repository with garbage and per 256 swept blobs).

use std::time::{Duration, Instant};

mod common;

use berth_storage::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_storage::{Engine, GcKind, GcOptions};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

const REPOS: usize = 100;
const TAGS: usize = 100;

async fn push(engine: &Engine, repo: &RepoName, data: &[u8]) -> (Digest, usize) {
    let digest = Digest::of(Algorithm::Sha256, data);
    let mut writer = engine.begin_monolithic(repo).await.expect("begin");
    writer
        .write(Bytes::copy_from_slice(data))
        .await
        .expect("write");
    writer.finish(&digest).await.expect("finish");
    (digest, data.len())
}

/// Pushes image `index` of `repo` as tag `t{tag}`; returns its manifest digest.
async fn image(
    engine: &Engine,
    repo: &RepoName,
    base: &(Digest, usize),
    index: usize,
    tag: usize,
) -> Digest {
    let config = push(engine, repo, format!("config {repo} {index}").as_bytes()).await;
    let layer = push(
        engine,
        repo,
        format!("layer {repo} {index} {}", "x".repeat(1000)).as_bytes(),
    )
    .await;
    let descriptor = |media_type: &str, (digest, size): &(Digest, usize)| serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [
            descriptor("application/vnd.oci.image.layer.v1.tar", base),
            descriptor("application/vnd.oci.image.layer.v1.tar", &layer),
        ],
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    let tag: Tag = format!("t{tag}").parse().expect("tag");
    engine
        .put_manifest(
            repo,
            &Reference::Tag(tag),
            Some("application/vnd.oci.image.manifest.v1+json"),
            bytes,
            &[],
        )
        .await
        .expect("put manifest")
        .digest
}

fn gc_passes(c: &mut Criterion) {
    let runtime = common::runtime();
    let dir = common::scratch_dir();
    let engine = common::open_unsynced(dir.path());
    let repos: Vec<RepoName> = (0..REPOS)
        .map(|index| format!("bench/gc{index:03}").parse().expect("name"))
        .collect();
    let started = Instant::now();
    let bases: Vec<(Digest, usize)> = runtime.block_on(async {
        let mut bases = Vec::new();
        for repo in &repos {
            let base = push(&engine, repo, format!("base {repo}").as_bytes()).await;
            for index in 0..TAGS {
                image(&engine, repo, &base, index, index).await;
            }
            bases.push(base);
        }
        bases
    });
    eprintln!(
        "setup: {} images in {:.1?}",
        REPOS * TAGS,
        started.elapsed()
    );
    let options = GcOptions::new(Duration::ZERO);
    let first = runtime.block_on(engine.gc(&options)).expect("first pass");
    assert!(first.actions.is_empty(), "a clean store has no garbage");
    // 1% garbage: in every repository tag t0 moves to a new image, so the image it named
    // is untagged garbage (a manifest and two unique blobs).
    let make_garbage = |round: usize| {
        runtime.block_on(async {
            for (repo, base) in repos.iter().zip(&bases) {
                image(&engine, repo, base, TAGS + round, 0).await;
            }
        })
    };
    let mut group = c.benchmark_group("gc_10k_images");
    group.sample_size(10);
    let mut round = 0;
    // Times `iterations` passes with `options`, each after fresh garbage (untimed), and
    // checks each pass collected exactly that garbage.
    let mut timed_passes = |options: &GcOptions, iterations: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            make_garbage(round);
            round += 1;
            let started = Instant::now();
            let report = runtime.block_on(engine.gc(options)).expect("pass");
            total += started.elapsed();
            assert_eq!(report.performed(GcKind::Manifest), REPOS as u64);
            assert_eq!(report.performed(GcKind::Blob), 2 * REPOS as u64);
            // Every repository changed (incremental) or is visited anyway (full).
            assert_eq!(report.repos_visited, REPOS as u64);
        }
        total
    };
    group.bench_function("incremental_1pct", |b| {
        b.iter_custom(|iterations| timed_passes(&options, iterations))
    });
    let mut full = options.clone();
    full.full = true;
    group.bench_function("full_1pct", |b| {
        b.iter_custom(|iterations| timed_passes(&full, iterations))
    });
    group.bench_function("nothing_changed", |b| {
        b.iter(|| {
            let report = runtime.block_on(engine.gc(&options)).expect("pass");
            assert_eq!(report.repos_visited, 0);
        })
    });
    group.finish();
}

criterion_group!(benches, gc_passes);
criterion_main!(benches);
