//! What a Prometheus scrape of a registry with 10,000 repositories costs: the storage usage
//! refresh (`Engine::usage`: every repository on the first call after start, then only the
//! repositories changed since the last scrape) and the exposition itself (`metrics::scrape`:
//! summing two shards' counters and writing ~10 series per repository).
//!
//! Compare with: zot recomputes a repository's size by walking its directory after every push
//! and delete; Prometheus's default scrape interval is 15 s and its default timeout 10 s.
//! The target (issue 4) is "a few milliseconds" for a scrape of 10,000 repositories.
//!
//! Setup runs once, untimed: 10,000 repositories, each linking the same two blobs and holding
//! one tagged manifest, on an engine with `commit: false` under /root/.cache/berth (ext4), and
//! request counters for every repository on both shards.

use std::hint::black_box;
use std::time::{Duration, Instant};

use berth::ext::metrics::{scrape, Finished, IndexReads, Metrics, RepoAction};
mod common;

use berth_storage::oci::{Algorithm, Digest, Reference, RepoName};
use berth_storage::Engine;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use hyper::Method;
use serde_json::json;
use tokio::runtime::Runtime;

const REPOS: usize = 10_000;
const DIRTY: usize = 100;
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
const LAYER: &[u8] = b"berth metrics bench layer";

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

fn manifest() -> Bytes {
    let descriptor = |media_type: &str, bytes: &[u8]| json!({"mediaType": media_type, "digest": sha256(bytes).to_string(), "size": bytes.len()});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", LAYER)],
    });
    Bytes::from(serde_json::to_vec(&manifest).expect("json"))
}

async fn seed(engine: &Engine, repo: &RepoName, manifest: &Bytes) {
    for blob in [CONFIG, LAYER] {
        let mut writer = engine.begin_monolithic(repo).await.expect("begin");
        writer.write(Bytes::from_static(blob)).await.expect("write");
        writer.finish(&sha256(blob)).await.expect("finish");
    }
    let tag = Reference::Tag("v1".parse().expect("tag"));
    engine
        .put_manifest(repo, &tag, None, manifest.clone(), &[])
        .await
        .expect("put manifest");
}

fn scrape_costs(c: &mut Criterion) {
    let runtime = common::runtime();
    let dir = common::scratch_dir();
    let repos: Vec<RepoName> = (0..REPOS)
        .map(|i| format!("team{}/app{i}", i % 100).parse().expect("name"))
        .collect();
    let manifest = manifest();
    let mut engine = Some(common::open_unsynced(dir.path()));
    runtime.block_on(async {
        let engine = engine.as_ref().expect("engine is open");
        for repo in &repos {
            seed(engine, repo, &manifest).await;
        }
    });
    let metrics = Metrics::new(2);
    for (i, repo) in repos.iter().enumerate() {
        for (method, status, action) in [
            (Method::GET, 200, RepoAction::ManifestPulled),
            (Method::PUT, 201, RepoAction::ManifestPushed),
            (Method::HEAD, 404, RepoAction::Other),
        ] {
            let shard = metrics.shard(i);
            shard.request_started();
            shard.request_finished(&Finished {
                method: &method,
                status,
                elapsed: Duration::from_micros(300),
                repo: Some(repo),
                action,
                received_bytes: 1000,
                sent_bytes: 2000,
            });
        }
    }

    let mut group = c.benchmark_group("scrape_10k_repos");
    group.sample_size(10);
    // The first scrape after a start: every repository's usage from the index.
    group.bench_function("usage_first_after_start", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Close first: RocksDB holds a lock on its directory.
                drop(engine.take());
                let reopened = engine.insert(common::open_unsynced(dir.path()));
                let start = Instant::now();
                black_box(runtime.block_on(reopened.usage()).expect("usage"));
                total += start.elapsed();
            }
            total
        })
    });
    let engine = engine.expect("engine is open");

    let reads = runtime
        .block_on(IndexReads::of(&engine))
        .expect("usage and index figures");
    assert_eq!(reads.usage.repos.len(), REPOS);
    group.bench_function("usage_100_changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for round in 0..iters {
                touch(&runtime, &engine, &repos, &manifest, round);
                let start = Instant::now();
                black_box(runtime.block_on(engine.usage()).expect("usage"));
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("usage_unchanged", |b| {
        b.iter(|| black_box(runtime.block_on(engine.usage()).expect("usage")))
    });
    group.bench_function("exposition", |b| {
        b.iter(|| black_box(scrape(&metrics, &engine, &reads, "zot", None, None, None)))
    });
    let text = scrape(&metrics, &engine, &reads, "zot", None, None, None);
    eprintln!(
        "exposition of {REPOS} repositories: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    group.finish();
}

/// Changes `DIRTY` repositories (a new tag each) so the next usage call recomputes them.
fn touch(runtime: &Runtime, engine: &Engine, repos: &[RepoName], manifest: &Bytes, round: u64) {
    runtime.block_on(async {
        for repo in repos
            .iter()
            .skip((round as usize * DIRTY) % REPOS)
            .take(DIRTY)
        {
            let tag = Reference::Tag(format!("r{round}").parse().expect("tag"));
            engine
                .put_manifest(repo, &tag, None, manifest.clone(), &[])
                .await
                .expect("put manifest");
        }
    });
}

criterion_group!(benches, scrape_costs);
criterion_main!(benches);
