//! `berth-bench generate`: fills a fresh berth store with a catalogue the size of a busy
//! organisation's (10,000 repositories, 100,000 tagged images by default) for the search
//! benchmark (search.rs), through the storage engine directly: no HTTP, so it takes minutes.
//!
//! What it stores (all of it deterministic in the repository and tag numbers):
//! - `--bases` base images `base/os-NN:latest`, each one small layer;
//! - repositories `team-TT/app-NNNN` with tags `v1..vK` (K = images / repos, the remainder
//!   spread over the first repositories). Each image is one of the base layers (mounted from
//!   its base repository) plus one small unique top layer, a real image config (`created`
//!   spread over a year and growing with K, `os: linux`, amd64/arm64/ppc64le, labels,
//!   history with one empty layer) and manifest annotations (vendor, description, licenses);
//! - in every 5th repository (numbers divisible by 5), the last tag is `latest`: an OCI index
//!   over `--platforms` child manifests, one per architecture. It counts as one image.
//!
//! Rules: the store must be new (an existing directory is refused). Work is spread over
//! threads, each with its own current-thread runtime and the Threads I/O backend; each thread
//! takes whole repositories, so no two threads write the same repository. The layout
//! (counts and base-layer digests) is written next to the store, for `berth-bench search` to
//! draw its queries from, with a berth config that serves the store with search on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use berth_storage::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_storage::{Engine, EngineOptions, IoBackendKind};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// 2025-01-01T00:00:00Z: image `created` times fall in the year after it.
const EPOCH_SECONDS: i64 = 1_735_689_600;
const DAY_SECONDS: i64 = 86_400;
/// Architectures in the order they are handed out (single images use the first three).
pub const ARCHITECTURES: [&str; 6] = ["amd64", "arm64", "ppc64le", "s390x", "riscv64", "386"];
const LICENSES: [&str; 3] = ["Apache-2.0", "MIT", "BSD-3-Clause"];

/// The counts that determine every name and blob of a generated store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    pub repos: usize,
    pub images: usize,
    pub platforms: usize,
    pub bases: usize,
    /// Digest of each base image's one layer, by base number.
    #[serde(default)]
    pub base_layers: Vec<String>,
}

impl Layout {
    pub fn repo(&self, number: usize) -> String {
        format!("team-{:02}/app-{number:04}", number / 100 % 100)
    }

    pub fn base_repo(base: usize) -> String {
        format!("base/os-{base:02}")
    }

    /// Tags of repository `number` (1 or more).
    pub fn tag_count(&self, number: usize) -> usize {
        let extra = usize::from(number < self.images % self.repos);
        (self.images / self.repos + extra).max(1)
    }

    /// Is the last tag of repository `number` a multi-platform index?
    pub fn is_multi_platform(&self, number: usize) -> bool {
        number.is_multiple_of(5) && self.platforms > 0
    }

    /// The `k`th tag (1-based) of repository `number`.
    pub fn tag(&self, number: usize, k: usize) -> String {
        match self.is_multi_platform(number) && k == self.tag_count(number) {
            true => "latest".to_owned(),
            false => format!("v{k}"),
        }
    }

    /// Which base layer image `k` of repository `number` is built on.
    pub fn base_of(&self, number: usize, k: usize) -> usize {
        (mix((number as u64) << 16 | k as u64) % self.bases as u64) as usize
    }

    /// The layout file and the berth config written next to the store `data_dir`.
    pub fn files_for(data_dir: &Path) -> (PathBuf, PathBuf) {
        let name = data_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".to_owned());
        let parent = data_dir.parent().unwrap_or(Path::new("."));
        (
            parent.join(format!("{name}.layout.json")),
            parent.join(format!("{name}.berth.json")),
        )
    }

    pub fn load(data_dir: &Path) -> Result<Layout> {
        let (path, _) = Layout::files_for(data_dir);
        let text = std::fs::read(&path)
            .with_context(|| format!("{} (written by berth-bench generate)", path.display()))?;
        Ok(serde_json::from_slice(&text)?)
    }
}

/// The berth config for a generated store: 127.0.0.1, port 0 (berth prints the port it
/// bound), errors-only log, search on or off, durable commits (berth's default).
pub fn berth_config(data_dir: &Path, search: bool) -> serde_json::Value {
    serde_json::json!({
        "storage": {"rootDirectory": data_dir},
        "http": {"address": "127.0.0.1", "port": "0"},
        "log": {"level": "error"},
        "extensions": {"search": {"enable": search}},
    })
}

pub struct GenerateOptions {
    pub data_dir: PathBuf,
    pub layout: Layout,
    pub commit: bool,
    pub threads: usize,
}

/// SplitMix64: cheap, deterministic pseudo-random numbers for names and bytes.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn filler(seed: u64, length: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length + 8);
    let mut state = seed;
    while bytes.len() < length {
        state = mix(state);
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Base layer `base`: 4 KiB plus 64 bytes per base number.
fn base_layer(base: usize) -> Vec<u8> {
    filler(0xBA5E_0000 + base as u64, 4096 + 64 * base)
}

/// An image's own top layer: its name, then 512 to 2,047 filler bytes.
fn top_layer(name: &str, seed: u64) -> Vec<u8> {
    let mut bytes = format!("{name}\n").into_bytes();
    bytes.extend(filler(seed, 512 + (mix(seed) % 1536) as usize));
    bytes
}

/// RFC 3339 (UTC, seconds) of a Unix time.
pub fn rfc3339(seconds: i64) -> String {
    let (days, rest) = (
        seconds.div_euclid(DAY_SECONDS),
        seconds.rem_euclid(DAY_SECONDS),
    );
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// What an image says about itself, in its config labels and manifest annotations.
struct Describe<'a> {
    repo: &'a str,
    tag: &'a str,
    vendor: String,
    description: String,
    license: &'static str,
    created: i64,
}

impl Describe<'_> {
    fn annotations(&self) -> serde_json::Value {
        serde_json::json!({
            "org.opencontainers.image.vendor": self.vendor,
            "org.opencontainers.image.description": self.description,
            "org.opencontainers.image.licenses": self.license,
            "org.opencontainers.image.created": rfc3339(self.created),
            "org.opencontainers.image.version": self.tag,
        })
    }

    fn config(&self, architecture: &str, base: &Digest, top: &Digest) -> Vec<u8> {
        let app = self.repo.rsplit('/').next().unwrap_or(self.repo);
        let config = serde_json::json!({
            "created": rfc3339(self.created),
            "author": format!("{} CI", self.vendor),
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        format!("APP={app}")],
                "Entrypoint": [format!("/app/{app}")],
                "WorkingDir": "/app",
                "Labels": {
                    "org.opencontainers.image.vendor": self.vendor,
                    "org.opencontainers.image.description": self.description,
                    "org.opencontainers.image.licenses": self.license,
                },
            },
            "rootfs": {"type": "layers", "diff_ids": [base.to_string(), top.to_string()]},
            "history": [
                {"created": rfc3339(self.created - 30 * DAY_SECONDS),
                 "created_by": format!("/bin/sh -c #(nop) ADD file:{} in / ", base.hex())},
                {"created": rfc3339(self.created - 60),
                 "created_by": format!("/bin/sh -c #(nop)  ENV APP={app}"),
                 "empty_layer": true},
                {"created": rfc3339(self.created),
                 "created_by": format!("/bin/sh -c #(nop) COPY dir:{} in /app ", top.hex()),
                 "comment": format!("{}:{}", self.repo, self.tag)},
            ],
        });
        serde_json::to_vec(&config).expect("config serializes")
    }
}

/// One image's blobs (pushed) and its manifest bytes.
async fn push_image(
    engine: &Engine,
    repo: &RepoName,
    describe: &Describe<'_>,
    architecture: &str,
    base: &Digest,
    base_size: usize,
    seed: u64,
) -> Result<Vec<u8>> {
    let top = top_layer(
        &format!("{}:{}/{architecture}", describe.repo, describe.tag),
        seed,
    );
    let top_digest = push_blob(engine, repo, top.clone()).await?;
    let config = describe.config(architecture, base, &top_digest);
    let config_digest = push_blob(engine, repo, config.clone()).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config_digest, config.len()),
        "layers": [
            descriptor(OCI_LAYER, base, base_size),
            descriptor(OCI_LAYER, &top_digest, top.len()),
        ],
        "annotations": describe.annotations(),
    });
    Ok(serde_json::to_vec(&manifest)?)
}

async fn push_blob(engine: &Engine, repo: &RepoName, bytes: Vec<u8>) -> Result<Digest> {
    let digest = sha256(&bytes);
    let mut writer = engine.begin_monolithic(repo).await?;
    writer.write(Bytes::from(bytes)).await?;
    writer.finish(&digest).await?;
    Ok(digest)
}

async fn put_manifest(
    engine: &Engine,
    repo: &RepoName,
    reference: Reference,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<Digest> {
    let outcome = engine
        .put_manifest_guarded(
            repo,
            &reference,
            Some(media_type),
            Bytes::from(bytes),
            &[],
            &[],
            None,
        )
        .await
        .with_context(|| format!("manifest {repo}:{reference:?}"))?;
    Ok(outcome.digest)
}

/// The base images `base/os-NN:latest`; returns their layer digests.
async fn push_bases(engine: &Engine, layout: &Layout) -> Result<Vec<Digest>> {
    let mut digests = Vec::new();
    for base in 0..layout.bases {
        let name = Layout::base_repo(base);
        let repo: RepoName = name.parse().map_err(|e| anyhow!("{name}: {e:?}"))?;
        let layer = base_layer(base);
        let layer_size = layer.len();
        let layer_digest = push_blob(engine, &repo, layer).await?;
        let created = EPOCH_SECONDS - 30 * DAY_SECONDS;
        let config = serde_json::json!({
            "created": rfc3339(created),
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.vendor": "Base OS Project"}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
            "history": [{"created": rfc3339(created),
                         "created_by": format!("/bin/sh -c #(nop) ADD file:{} in / ", layer_digest.hex())}],
        });
        let config = serde_json::to_vec(&config)?;
        let config_size = config.len();
        let config_digest = push_blob(engine, &repo, config).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config_digest, config_size),
            "layers": [descriptor(OCI_LAYER, &layer_digest, layer_size)],
            "annotations": {
                "org.opencontainers.image.vendor": "Base OS Project",
                "org.opencontainers.image.description": format!("base image {base}"),
            },
        });
        let tag: Tag = "latest".parse().map_err(|e| anyhow!("{e:?}"))?;
        put_manifest(
            engine,
            &repo,
            Reference::Tag(tag),
            OCI_MANIFEST,
            serde_json::to_vec(&manifest)?,
        )
        .await?;
        digests.push(layer_digest);
    }
    Ok(digests)
}

/// Every image of repository `number`; returns how many tags it now has.
async fn push_repo(
    engine: &Engine,
    layout: &Layout,
    bases: &[Digest],
    number: usize,
) -> Result<usize> {
    let name = layout.repo(number);
    let repo: RepoName = name.parse().map_err(|e| anyhow!("{name}: {e:?}"))?;
    let team = number / 100 % 100;
    let count = layout.tag_count(number);
    // Newest tag last: v1 some day in the year's first 330 days, three days per tag.
    let first_day = (mix(number as u64) % 330) as i64;
    let mut mounted = std::collections::BTreeSet::new();
    for k in 1..=count {
        let tag_name = layout.tag(number, k);
        let base = layout.base_of(number, k);
        if mounted.insert(base) {
            let from: RepoName = Layout::base_repo(base).parse().expect("base name is valid");
            if !engine.mount_blob(Some(&from), &repo, &bases[base]).await? {
                bail!("base layer {base} is missing from {from}");
            }
        }
        let seed = mix(((number as u64) << 20) ^ k as u64);
        let describe = Describe {
            repo: &name,
            tag: &tag_name,
            vendor: format!("Team {team:02} Inc."),
            description: format!("app-{number:04} service of team {team:02}, build {tag_name}"),
            license: LICENSES[number % LICENSES.len()],
            created: EPOCH_SECONDS
                + (first_day + 3 * k as i64) * DAY_SECONDS
                + (seed % DAY_SECONDS as u64) as i64,
        };
        let base_size = base_layer(base).len();
        let tag: Tag = tag_name.parse().map_err(|e| anyhow!("{tag_name}: {e:?}"))?;
        if tag_name == "latest" {
            let mut children = Vec::new();
            for (p, architecture) in ARCHITECTURES
                .iter()
                .cycle()
                .take(layout.platforms)
                .enumerate()
            {
                let bytes = push_image(
                    engine,
                    &repo,
                    &describe,
                    architecture,
                    &bases[base],
                    base_size,
                    mix(seed ^ p as u64),
                )
                .await?;
                let size = bytes.len();
                let digest = put_manifest(
                    engine,
                    &repo,
                    Reference::Digest(sha256(&bytes)),
                    OCI_MANIFEST,
                    bytes,
                )
                .await?;
                let mut child = descriptor(OCI_MANIFEST, &digest, size);
                child["platform"] =
                    serde_json::json!({"architecture": architecture, "os": "linux"});
                children.push(child);
            }
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": children,
                "annotations": describe.annotations(),
            });
            put_manifest(
                engine,
                &repo,
                Reference::Tag(tag),
                OCI_INDEX,
                serde_json::to_vec(&index)?,
            )
            .await?;
        } else {
            let architecture = ARCHITECTURES[(seed % 3) as usize];
            let bytes = push_image(
                engine,
                &repo,
                &describe,
                architecture,
                &bases[base],
                base_size,
                seed,
            )
            .await?;
            put_manifest(engine, &repo, Reference::Tag(tag), OCI_MANIFEST, bytes).await?;
        }
    }
    Ok(count)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What `generate` did.
#[derive(Debug, Serialize)]
pub struct Generated {
    pub repos: usize,
    pub images: usize,
    pub manifests: u64,
    pub seconds: f64,
    pub disk_bytes: u64,
    pub config: PathBuf,
}

pub fn generate(options: &GenerateOptions) -> Result<Generated> {
    let mut layout = options.layout.clone();
    if layout.repos == 0 || layout.bases == 0 || layout.images < layout.repos {
        bail!("need at least one repository, one base and one image per repository");
    }
    if options.data_dir.exists() {
        bail!(
            "{} exists: generate fills a new store only",
            options.data_dir.display()
        );
    }
    let started = Instant::now();
    let engine = Engine::open(EngineOptions {
        root: options.data_dir.clone(),
        commit: options.commit,
        io: IoBackendKind::Threads,
        postgres: None,
        s3: None,
    })?;
    let bases = runtime()?.block_on(push_bases(&engine, &layout))?;
    layout.base_layers = bases.iter().map(ToString::to_string).collect();

    let next = AtomicUsize::new(0);
    let images = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let total_images: usize = (0..layout.repos).map(|n| layout.tag_count(n)).sum();
    std::thread::scope(|scope| -> Result<()> {
        let progress = scope.spawn(|| {
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= Duration::from_secs(5) {
                    last = Instant::now();
                    let count = images.load(Ordering::Relaxed);
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!(
                        "berth-bench generate: {count}/{total_images} images, {} repos, {seconds:.0} s ({:.0} images/s)",
                        next.load(Ordering::Relaxed).min(layout.repos),
                        count as f64 / seconds
                    );
                }
            }
        });
        let workers: Vec<_> = (0..options.threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let runtime = runtime()?;
                    loop {
                        let number = next.fetch_add(1, Ordering::Relaxed);
                        if number >= layout.repos {
                            return Ok(());
                        }
                        let count =
                            runtime.block_on(push_repo(&engine, &layout, &bases, number))?;
                        images.fetch_add(count as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut outcome = Ok(());
        for worker in workers {
            let result = worker
                .join()
                .map_err(|_| anyhow!("a generator thread panicked"))?;
            if let Err(error) = result {
                // Stop the others: they see the counter past the end.
                next.store(layout.repos, Ordering::Relaxed);
                outcome = outcome.and(Err(error));
            }
        }
        done.store(true, Ordering::Relaxed);
        let _ = progress.join();
        outcome
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let manifests = runtime()?.block_on(verify(&engine, &layout, &bases))?;
    drop(engine);

    let (layout_path, config_path) = Layout::files_for(&options.data_dir);
    std::fs::write(&layout_path, serde_json::to_vec_pretty(&layout)?)?;
    let data_dir = std::fs::canonicalize(&options.data_dir)?;
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&berth_config(&data_dir, true))?,
    )?;
    Ok(Generated {
        repos: layout.repos,
        images: images.load(Ordering::Relaxed) as usize,
        manifests,
        seconds,
        disk_bytes: disk_usage(&options.data_dir),
        config: config_path,
    })
}

#[path = "catalogue_verify.rs"]
mod verify;
use verify::{disk_usage, verify};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(EPOCH_SECONDS), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn layout_spreads_images_and_marks_every_fifth_repo() {
        let layout = Layout {
            repos: 10,
            images: 25,
            platforms: 3,
            bases: 4,
            base_layers: vec![],
        };
        let total: usize = (0..10).map(|n| layout.tag_count(n)).sum();
        assert_eq!(total, 25);
        assert_eq!(layout.tag(0, layout.tag_count(0)), "latest");
        assert_eq!(layout.tag(1, layout.tag_count(1)), "v3");
        assert_eq!(layout.repo(123), "team-01/app-0123");
        assert!((0..10).all(|n| layout.base_of(n, 1) < 4));
    }
}
