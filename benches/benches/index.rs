//! RocksDB index operations through the public `Engine` API (manifests.rs): a manifest PUT
//! with a new tag of an already-stored manifest (mostly the tag write), a manifest lookup by
//! tag (two point reads: tag, then manifest) and by digest (one point read), the tags list
//! of a repository with 10k tags (one page of 1000 and the whole list), and the referrers
//! of a subject with 10k referrers (a prefix scan that parses 10k JSON descriptors).
//!
//! Compare with: a RocksDB point read ~1-3 µs (lookups should be a few of those); a synced
//! WAL write ~0.25 ms (4 KiB write + fsync ~4,000/s on the development machine), which
//! bounds `tag_put/durable`; `tag_put/no-commit` is the same PUT without the fsync (parse,
//! validation reads, one unsynced WriteBatch).
//!
//! The reads are async functions; each is polled once (`ready`), which is all the embedded
//! index needs, so the figures are the reads' own cost with no runtime around them.
//!
//! Setup (10k tags, 10k referrers) runs once, untimed, on an engine with `commit: false`;
//! the durable PUT runs on its own engine with `commit: true`. Data lives in TempDirs under
//! /root/.cache/berth (ext4, like production data).

use std::hint::black_box;
use std::time::{Duration, Instant};

use berth_storage::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use serde_json::json;
use tokio::runtime::Runtime;

const ENTRIES: usize = 10_000;
const PAGE: usize = 1000;
const DATA_PARENT: &str = "/root/.cache/berth";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
const LAYER: &[u8] = b"berth index bench layer";

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

fn tag(name: &str) -> Tag {
    name.parse().expect("valid tag")
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": sha256(bytes).to_string(), "size": bytes.len()})
}

/// An image manifest over CONFIG and LAYER; with a subject it is a referrer, made distinct
/// by annotation `n`.
fn image_manifest(subject: Option<(&Digest, usize)>, n: usize) -> Bytes {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", LAYER)],
    });
    if let Some((digest, size)) = subject {
        manifest["subject"] = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.to_string(),
            "size": size,
        });
        manifest["artifactType"] = "application/vnd.example.sbom".into();
        manifest["annotations"] = json!({"org.example.n": n.to_string()});
    }
    Bytes::from(serde_json::to_vec(&manifest).expect("json"))
}

struct Store {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn open_store(commit: bool) -> Store {
    std::fs::create_dir_all(DATA_PARENT).expect("data parent");
    let dir = tempfile::TempDir::new_in(DATA_PARENT).expect("temp dir");
    let engine = Engine::open(EngineOptions {
        root: dir.path().to_path_buf(),
        commit,
        io: IoBackendKind::Threads,
        postgres: None,
        s3: None,
    })
    .expect("engine opens");
    Store { _dir: dir, engine }
}

async fn push_blob(engine: &Engine, repo: &RepoName, bytes: &'static [u8]) {
    let mut writer = engine.begin_monolithic(repo).await.expect("begin");
    writer
        .write(Bytes::from_static(bytes))
        .await
        .expect("write");
    writer.finish(&sha256(bytes)).await.expect("finish");
}

/// Pushes CONFIG, LAYER and the plain image manifest (tagged `base`) into `repo`; returns
/// the manifest's bytes and digest.
async fn seed_repo(engine: &Engine, repo: &RepoName, extra_tags: &[Tag]) -> (Bytes, Digest) {
    push_blob(engine, repo, CONFIG).await;
    push_blob(engine, repo, LAYER).await;
    let manifest = image_manifest(None, 0);
    let outcome = engine
        .put_manifest(
            repo,
            &Reference::Tag(tag("base")),
            None,
            manifest.clone(),
            extra_tags,
        )
        .await
        .expect("put base manifest");
    (manifest, outcome.digest)
}

/// Benches a manifest PUT of `manifest` under a new tag per iteration, in `repo`.
fn bench_put(
    c: &mut Criterion,
    runtime: &Runtime,
    name: &str,
    engine: &Engine,
    repo: &RepoName,
    manifest: &Bytes,
) {
    let mut counter = 0u64;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let tags: Vec<Reference> = (0..iters)
                .map(|i| Reference::Tag(tag(&format!("p{}", counter + i))))
                .collect();
            counter += iters;
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for reference in &tags {
                    let start = Instant::now();
                    engine
                        .put_manifest(repo, reference, None, manifest.clone(), &[])
                        .await
                        .expect("put manifest");
                    total += start.elapsed();
                }
                total
            })
        })
    });
}

fn index_ops(c: &mut Criterion) {
    let runtime = runtime();
    let reads = open_store(false);
    let durable = open_store(true);
    let repo: RepoName = "bench/app".parse().expect("repo name");
    let put_repo: RepoName = "bench/put".parse().expect("repo name");

    let tags: Vec<Tag> = (0..ENTRIES).map(|i| tag(&format!("t{i:05}"))).collect();
    let (manifest, digest) = runtime.block_on(async {
        let seeded = seed_repo(&reads.engine, &repo, &tags).await;
        for n in 0..ENTRIES {
            let referrer = image_manifest(Some((&seeded.1, seeded.0.len())), n);
            let reference = Reference::Digest(sha256(&referrer));
            reads
                .engine
                .put_manifest(&repo, &reference, None, referrer, &[])
                .await
                .expect("put referrer");
        }
        seed_repo(&reads.engine, &put_repo, &[]).await;
        seed_repo(&durable.engine, &put_repo, &[]).await;
        seeded
    });
    let engine = &reads.engine;
    assert_eq!(
        ready(engine.list_tags(&repo, None, usize::MAX))
            .unwrap()
            .len(),
        ENTRIES + 1
    );
    assert_eq!(
        ready(engine.referrers(&repo, &digest, &[])).unwrap().len(),
        ENTRIES
    );

    bench_put(
        c,
        &runtime,
        "tag_put/no-commit",
        engine,
        &put_repo,
        &manifest,
    );
    bench_put(
        c,
        &runtime,
        "tag_put/durable",
        &durable.engine,
        &put_repo,
        &manifest,
    );

    let by_tag = Reference::Tag(tags[ENTRIES / 2].clone());
    let by_digest = Reference::Digest(digest.clone());
    for (name, reference) in [
        ("manifest_get/by_tag", &by_tag),
        ("manifest_get/by_digest", &by_digest),
    ] {
        let found = ready(engine.get_manifest(&repo, reference)).unwrap();
        assert_eq!(found.map(|stored| stored.digest), Some(digest.clone()));
        c.bench_function(name, |b| {
            b.iter(|| ready(engine.get_manifest(black_box(&repo), black_box(reference))))
        });
    }

    // Whole-list scans take milliseconds: 10 samples keep the run short.
    let middle = tags[ENTRIES / 2].as_str();
    let mut lists = c.benchmark_group("tags_list");
    lists.sample_size(10);
    lists.bench_function("page_1000", |b| {
        b.iter(|| {
            ready(engine.list_tags(&repo, None, black_box(PAGE)))
                .unwrap()
                .len()
        })
    });
    lists.bench_function("page_1000_from_middle", |b| {
        b.iter(|| {
            let page = ready(engine.list_tags(&repo, black_box(Some(middle)), PAGE));
            page.unwrap().len()
        })
    });
    lists.bench_function("all_10k", |b| {
        b.iter(|| {
            ready(engine.list_tags(&repo, None, black_box(usize::MAX)))
                .unwrap()
                .len()
        })
    });
    lists.finish();
    let mut referrers = c.benchmark_group("referrers");
    referrers.sample_size(10);
    referrers.bench_function("all_10k", |b| {
        b.iter(|| {
            ready(engine.referrers(&repo, black_box(&digest), &[]))
                .unwrap()
                .len()
        })
    });
    referrers.finish();
}

/// An engine read, polled once: the embedded index answers at the first poll.
fn ready<F: std::future::Future>(read: F) -> F::Output {
    read.now_or_never()
        .expect("the embedded index answers at the first poll")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

criterion_group!(benches, index_ops);
criterion_main!(benches);
