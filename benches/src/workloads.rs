//! The workloads (zot's `zb` tests plus the per-request-overhead ones) and the runner.
//!
//! A test is `n` operations run by `c` workers, each on its own keep-alive connection. An
//! operation is a whole image push (config, layer, manifest), a whole image pull (manifest
//! HEAD and GET, config, layer, each body verified against its digest), or one small GET.
//! Everything a test needs is prepared before its clock starts: the blobs it pushes are cut
//! and hashed up front (data.rs), the images it pulls are pushed in an untimed setup, and the
//! size of each operation of a mixed test is drawn in advance.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::client::{Conn, Tls, OCI_MANIFEST};
use crate::data::{config_blob, image_manifest, size_label, Blob, TestData, KIB, MIB};
use crate::stats::{process_cpu_time, Recorder, TestResult};

/// How a push sends its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// POST a session, PUT the whole body with `?digest=`.
    Monolith,
    /// POST, one PATCH with a chunked (streamed) body, PUT `?digest=`.
    Streamed,
}

/// What one operation of a test does.
#[derive(Clone, Debug)]
pub enum Op {
    Catalog,
    /// Push an image whose layer size is drawn from the weighted sizes.
    Push(PushMode, Vec<(u64, u32)>),
    /// Pull an image whose layer size is drawn from the weighted sizes.
    Pull(Vec<(u64, u32)>),
    /// Pull (weight 75) or monolithic push (weight 25) of one size.
    PullPush(u64),
    ManifestHead,
    ManifestGet,
    TagsList,
    SmallBlobGet,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub op: Op,
}

impl Workload {
    /// Does it write? (Pushes are also run with `storage.commit: false` by the comparison.)
    pub fn pushes(&self) -> bool {
        matches!(self.op, Op::Push(..) | Op::PullPush(_))
    }

    /// Blob sizes this workload needs test data for (the seed images' 4 KiB layer always).
    pub fn sizes(&self) -> Vec<u64> {
        let mut sizes = vec![SMALL_BLOB];
        match &self.op {
            Op::Push(_, mix) | Op::Pull(mix) => sizes.extend(mix.iter().map(|(size, _)| *size)),
            Op::PullPush(size) => sizes.push(*size),
            _ => {}
        }
        sizes
    }

    fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        slug.trim_end_matches('-').to_owned()
    }
}

/// Size of the blob behind the per-request-overhead tests.
pub const SMALL_BLOB: u64 = 4 * KIB;
const SEED_REPOS: usize = 50;
const SEED_TAGS: usize = 100;

/// Every workload, in zb's order, then berth's additions.
pub fn all() -> Vec<Workload> {
    let sizes = [MIB, 10 * MIB, 100 * MIB];
    let w = |name: String, op: Op| Workload { name, op };
    let mut list = vec![w("Get Catalog".into(), Op::Catalog)];
    for size in sizes {
        let name = format!("Push Monolith {}", size_label(size));
        list.push(w(name, Op::Push(PushMode::Monolith, vec![(size, 1)])));
    }
    for size in sizes {
        let name = format!("Push Chunk Streamed {}", size_label(size));
        list.push(w(name, Op::Push(PushMode::Streamed, vec![(size, 1)])));
    }
    for size in sizes {
        list.push(w(
            format!("Pull {}", size_label(size)),
            Op::Pull(vec![(size, 1)]),
        ));
    }
    let mixed = vec![(MIB, 20), (10 * MIB, 70), (100 * MIB, 10)];
    list.push(w(
        "Pull Mixed 20% 1MB, 70% 10MB, 10% 100MB".into(),
        Op::Pull(mixed.clone()),
    ));
    list.push(w(
        "Push Monolith Mixed 20% 1MB, 70% 10MB, 10% 100MB".into(),
        Op::Push(PushMode::Monolith, mixed),
    ));
    list.push(w(
        "Push Chunk Mixed 33% 1MB, 33% 10MB, 33% 100MB".into(),
        Op::Push(PushMode::Streamed, sizes.iter().map(|&s| (s, 1)).collect()),
    ));
    for size in sizes {
        let name = format!("Pull 75% and Push 25% Mixed {}", size_label(size));
        list.push(w(name, Op::PullPush(size)));
    }
    list.push(w("Manifest HEAD by tag".into(), Op::ManifestHead));
    list.push(w("Manifest GET by tag".into(), Op::ManifestGet));
    list.push(w("Tags List".into(), Op::TagsList));
    list.push(w("Blob GET 4KiB".into(), Op::SmallBlobGet));
    list
}

/// An image stored in the registry under test.
#[derive(Clone, Debug)]
struct Image {
    repo: String,
    tag: String,
    config: Blob,
    layer: Blob,
    manifest: Bytes,
}

impl Image {
    fn new(repo: String, tag: String, config: Blob, layer: Blob) -> Image {
        let manifest = image_manifest(&config, &layer);
        Image {
            repo,
            tag,
            config,
            layer,
            manifest,
        }
    }

    fn manifest_digest(&self) -> berth_storage::oci::Digest {
        berth_storage::oci::Digest::of(berth_storage::oci::Algorithm::Sha256, &self.manifest)
    }
}

/// One prepared operation.
#[derive(Clone, Debug)]
enum Step {
    Get {
        target: String,
        digest: Option<berth_storage::oci::Digest>,
        method: Method,
    },
    Push(PushMode, Arc<Image>),
    Pull(Arc<Image>),
}

/// A registry under test and what has been stored in it for the tests so far.
pub struct Session {
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub requests: usize,
    pub repo: String,
    pub progress: bool,
    /// Caps the bytes a test moves: fewer operations for the big sizes (never fewer than
    /// the concurrency). `None`: every test runs `requests` operations, as zb does.
    pub max_bytes_per_test: Option<u64>,
    /// Operations of the per-request tests (catalog, manifest HEAD/GET, tags list, 4 KiB
    /// GET) when set: `requests` of them are over in milliseconds against a fast registry.
    pub small_requests: Option<usize>,
    /// HTTPS to the registry (`None`: plain HTTP).
    pub tls: Option<Arc<Tls>>,
    /// Several nodes of one registry: worker `i` of a test connects to `spread[i % len]`
    /// instead of `addr` (round robin per connection, as DNS or an L4 balancer spreads
    /// clients). Seeding still goes to `addr`.
    pub spread: Vec<SocketAddr>,
    data: Arc<TestData>,
    salt: u64,
    seed: Option<Arc<Image>>,
    pull_images: BTreeMap<u64, Arc<Image>>,
}

impl Session {
    pub fn new(
        addr: SocketAddr,
        data: Arc<TestData>,
        concurrency: usize,
        requests: usize,
        repo: &str,
    ) -> Session {
        Session {
            addr,
            concurrency: concurrency.max(1),
            requests,
            repo: repo.to_owned(),
            progress: false,
            max_bytes_per_test: None,
            small_requests: None,
            tls: None,
            spread: Vec::new(),
            data,
            salt: rand::rng().random::<u32>() as u64 * 1_000_000,
            seed: None,
            pull_images: BTreeMap::new(),
        }
    }

    fn fresh_salt(&mut self) -> u64 {
        self.salt += 1;
        self.salt
    }

    /// 50 small images (one per repository, tag `latest`) and one repository with 100 tags:
    /// what the catalog, tags list, manifest and 4 KiB blob tests read.
    async fn seed(&mut self) -> Result<Arc<Image>> {
        if let Some(seed) = &self.seed {
            return Ok(Arc::clone(seed));
        }
        let salt = self.fresh_salt();
        let layer = self.data.blob(SMALL_BLOB, salt, 0);
        let mut conn = Conn::with_tls(self.addr, self.tls.clone());
        for i in 0..SEED_REPOS {
            let image = Image::new(
                format!("{}/seed-{i}", self.repo),
                "latest".into(),
                config_blob(salt, 0),
                layer.clone(),
            );
            push_image(&mut conn, PushMode::Monolith, &image).await?;
        }
        let tags_repo = format!("{}/tags", self.repo);
        let image = Image::new(
            tags_repo.clone(),
            "t0".into(),
            config_blob(salt, 1),
            layer.clone(),
        );
        push_image(&mut conn, PushMode::Monolith, &image).await?;
        for i in 1..SEED_TAGS {
            conn.put_manifest(&tags_repo, &format!("t{i}"), image.manifest.clone())
                .await?;
        }
        let seed = Arc::new(Image::new(
            format!("{}/seed-0", self.repo),
            "latest".into(),
            config_blob(salt, 0),
            layer,
        ));
        self.seed = Some(Arc::clone(&seed));
        Ok(seed)
    }

    /// Request targets of a seed image's manifest and 4 KiB layer (for a `wrk` cross-check),
    /// once the seed images exist.
    pub fn seed_targets(&self) -> Option<(String, String)> {
        self.seed.as_ref().map(|seed| {
            (
                format!("/v2/{}/manifests/{}", seed.repo, seed.tag),
                format!("/v2/{}/blobs/{}", seed.repo, seed.layer.digest),
            )
        })
    }

    /// The image pulled by the pull tests of `size`, pushed on first use.
    async fn pull_image(&mut self, size: u64) -> Result<Arc<Image>> {
        if let Some(image) = self.pull_images.get(&size) {
            return Ok(Arc::clone(image));
        }
        let salt = self.fresh_salt();
        let image = Image::new(
            format!("{}/pull-{}", self.repo, size_label(size).to_lowercase()),
            "latest".into(),
            config_blob(salt, 0),
            self.data.blob(size, salt, 0),
        );
        push_image(
            &mut Conn::with_tls(self.addr, self.tls.clone()),
            PushMode::Monolith,
            &image,
        )
        .await?;
        let image = Arc::new(image);
        self.pull_images.insert(size, Arc::clone(&image));
        Ok(image)
    }

    /// Operations for a test: `requests`, reduced to fit `max_bytes_per_test`.
    fn operations(&self, workload: &Workload) -> usize {
        if let (
            Some(small),
            Op::Catalog | Op::ManifestHead | Op::ManifestGet | Op::TagsList | Op::SmallBlobGet,
        ) = (self.small_requests, &workload.op)
        {
            return small;
        }
        let Some(budget) = self.max_bytes_per_test else {
            return self.requests;
        };
        let mean_size = match &workload.op {
            Op::Push(_, mix) | Op::Pull(mix) => {
                let total: u64 = mix.iter().map(|(_, weight)| u64::from(*weight)).sum();
                mix.iter()
                    .map(|(size, weight)| size * u64::from(*weight))
                    .sum::<u64>()
                    / total.max(1)
            }
            Op::PullPush(size) => *size,
            _ => SMALL_BLOB,
        };
        let fitting = usize::try_from(budget / mean_size.max(1)).unwrap_or(usize::MAX);
        self.requests.min(fitting.max(self.concurrency))
    }

    /// Prepares the steps of a test: draws sizes, hashes push blobs, pushes pull images.
    async fn plan(&mut self, workload: &Workload) -> Result<Vec<Step>> {
        let n = self.operations(workload);
        let mut rng = StdRng::seed_from_u64(0x0062_6572_7468);
        let draw = |rng: &mut StdRng, mix: &[(u64, u32)]| {
            let total: u32 = mix.iter().map(|(_, weight)| weight).sum();
            let mut point = rng.random_range(0..total);
            for (size, weight) in mix {
                if point < *weight {
                    return *size;
                }
                point -= weight;
            }
            unreachable!("point is below the total weight")
        };
        let seed = self.seed().await?;
        let repo = format!("{}/{}", self.repo, workload.slug());
        let get = |target: String, digest, method| Step::Get {
            target,
            digest,
            method,
        };
        let steps = match &workload.op {
            Op::Catalog => (0..n)
                .map(|_| get("/v2/_catalog".into(), None, Method::GET))
                .collect(),
            Op::TagsList => (0..n)
                .map(|_| {
                    get(
                        format!("/v2/{}/tags/tags/list", self.repo),
                        None,
                        Method::GET,
                    )
                })
                .collect(),
            Op::ManifestHead | Op::ManifestGet => (0..n)
                .map(|k| {
                    let target =
                        format!("/v2/{}/seed-{}/manifests/latest", self.repo, k % SEED_REPOS);
                    match workload.op {
                        Op::ManifestHead => get(target, None, Method::HEAD),
                        _ => get(target, Some(seed.manifest_digest()), Method::GET),
                    }
                })
                .collect(),
            Op::SmallBlobGet => (0..n)
                .map(|k| {
                    let target = format!(
                        "/v2/{}/seed-{}/blobs/{}",
                        self.repo,
                        k % SEED_REPOS,
                        seed.layer.digest
                    );
                    get(target, Some(seed.layer.digest.clone()), Method::GET)
                })
                .collect(),
            Op::Pull(mix) => {
                let sizes: Vec<u64> = (0..n).map(|_| draw(&mut rng, mix)).collect();
                let mut steps = Vec::with_capacity(n);
                for size in sizes {
                    steps.push(Step::Pull(self.pull_image(size).await?));
                }
                steps
            }
            Op::Push(mode, mix) => {
                let sizes: Vec<u64> = (0..n).map(|_| draw(&mut rng, mix)).collect();
                self.push_steps(&repo, *mode, &sizes, |_| true)
            }
            Op::PullPush(size) => {
                let image = self.pull_image(*size).await?;
                let pushes: Vec<bool> = (0..n).map(|_| rng.random_range(0..100) < 25).collect();
                let pushed =
                    self.push_steps(&repo, PushMode::Monolith, &vec![*size; n], |k| pushes[k]);
                let mut pushed = pushed.into_iter();
                pushes
                    .iter()
                    .map(|push| match push {
                        true => pushed.next().expect("one push step per push"),
                        false => Step::Pull(Arc::clone(&image)),
                    })
                    .collect()
            }
        };
        Ok(steps)
    }

    /// Push steps for the operations `k` where `wanted(k)`, with fresh blobs of `sizes[k]`.
    fn push_steps(
        &mut self,
        repo: &str,
        mode: PushMode,
        sizes: &[u64],
        wanted: impl Fn(usize) -> bool,
    ) -> Vec<Step> {
        let salt = self.fresh_salt();
        let mut by_size: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (k, size) in sizes.iter().enumerate().filter(|(k, _)| wanted(*k)) {
            by_size.entry(*size).or_default().push(k as u64);
        }
        let mut layers: BTreeMap<u64, Blob> = BTreeMap::new();
        for (size, ks) in by_size {
            for (k, blob) in ks.iter().zip(self.data.blobs(size, salt, &ks)) {
                layers.insert(*k, blob);
            }
        }
        layers
            .into_iter()
            .map(|(k, layer)| {
                let image = Image::new(
                    repo.to_owned(),
                    format!("t{k}"),
                    config_blob(salt, k),
                    layer,
                );
                Step::Push(mode, Arc::new(image))
            })
            .collect()
    }

    /// Runs one workload and returns its result.
    pub async fn run(&mut self, workload: &Workload) -> Result<TestResult> {
        let steps = Arc::new(self.plan(workload).await?);
        let progress = match self.progress {
            true => {
                let bar = ProgressBar::new(steps.len() as u64);
                bar.set_style(
                    ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} {elapsed}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_message(workload.name.clone());
                bar
            }
            false => ProgressBar::hidden(),
        };
        let next = Arc::new(AtomicUsize::new(0));
        let cpu_before = process_cpu_time();
        let started = Instant::now();
        let workers: Vec<_> = (0..self.concurrency)
            .map(|worker| {
                let addr = match self.spread.is_empty() {
                    true => self.addr,
                    false => self.spread[worker % self.spread.len()],
                };
                let (steps, next, progress, tls) = (
                    Arc::clone(&steps),
                    Arc::clone(&next),
                    progress.clone(),
                    self.tls.clone(),
                );
                tokio::spawn(async move {
                    let mut conn = Conn::with_tls(addr, tls.clone());
                    let mut recorder = Recorder::default();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(step) = steps.get(k) else { break };
                        let began = Instant::now();
                        let outcome = tokio::time::timeout(
                            REQUEST_TIMEOUT,
                            execute(&mut conn, step, &mut recorder),
                        )
                        .await;
                        match outcome {
                            Ok(Ok(())) => recorder.latencies.push(began.elapsed()),
                            Ok(Err(error)) => recorder.fail(&error),
                            Err(_) => {
                                recorder
                                    .fail(&anyhow::anyhow!("timed out after {REQUEST_TIMEOUT:?}"));
                                conn = Conn::with_tls(addr, tls.clone());
                            }
                        }
                        progress.inc(1);
                    }
                    recorder
                })
            })
            .collect();
        let recorded = Recorder::gather(workers).await?;
        let elapsed = started.elapsed();
        let client_cpu = process_cpu_time().saturating_sub(cpu_before);
        progress.finish_and_clear();
        Ok(TestResult::new(
            &workload.name,
            self.concurrency,
            recorded,
            elapsed,
            client_cpu,
        ))
    }
}

async fn push_image(conn: &mut Conn, mode: PushMode, image: &Image) -> Result<()> {
    conn.push_monolithic(&image.repo, &image.config).await?;
    match mode {
        PushMode::Monolith => conn.push_monolithic(&image.repo, &image.layer).await?,
        PushMode::Streamed => conn.push_streamed(&image.repo, &image.layer).await?,
    }
    conn.put_manifest(&image.repo, &image.tag, image.manifest.clone())
        .await
}

async fn execute(conn: &mut Conn, step: &Step, recorder: &mut Recorder) -> Result<()> {
    match step {
        Step::Get {
            target,
            digest,
            method,
        } => {
            let accept = (target.contains("/manifests/")).then_some(OCI_MANIFEST);
            let fetched = conn
                .fetch(method.clone(), target, accept, digest.as_ref())
                .await?;
            recorder.bytes += fetched.bytes;
            recorder
                .ttfb
                .entry("response")
                .or_default()
                .push(fetched.ttfb);
        }
        Step::Push(mode, image) => {
            push_image(conn, *mode, image).await?;
            recorder.bytes += image.layer.size + image.config.size + image.manifest.len() as u64;
            *recorder
                .mix
                .entry(format!("push {}", size_label(image.layer.size)))
                .or_default() += 1;
        }
        Step::Pull(image) => {
            let manifest = format!("/v2/{}/manifests/{}", image.repo, image.tag);
            let blob = |digest| format!("/v2/{}/blobs/{digest}", image.repo);
            let digest = image.manifest_digest();
            let parts: [(
                &'static str,
                Method,
                String,
                Option<&berth_storage::oci::Digest>,
            ); 4] = [
                ("manifest HEAD", Method::HEAD, manifest.clone(), None),
                ("manifest GET", Method::GET, manifest, Some(&digest)),
                (
                    "config",
                    Method::GET,
                    blob(&image.config.digest),
                    Some(&image.config.digest),
                ),
                (
                    "layer",
                    Method::GET,
                    blob(&image.layer.digest),
                    Some(&image.layer.digest),
                ),
            ];
            for (part, method, target, digest) in parts {
                let accept = part.starts_with("manifest").then_some(OCI_MANIFEST);
                let fetched = conn.fetch(method, &target, accept, digest).await?;
                recorder.bytes += fetched.bytes;
                recorder.ttfb.entry(part).or_default().push(fetched.ttfb);
            }
            *recorder
                .mix
                .entry(format!("pull {}", size_label(image.layer.size)))
                .or_default() += 1;
        }
    }
    Ok(())
}

/// How long one operation may take before it counts as failed (zb's client timeout is 30 s
/// per request; a 100 MB image push at c=10 on a slow disk can take longer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
