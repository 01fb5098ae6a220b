//! `berth migrate SRC_CONFIG DST_CONFIG`: copies one store into another, keeping its data
//! (issue 20: a single node's files and RocksDB into blobs in S3 and the index in
//! PostgreSQL, or any backend into any other).
//!
//! Rules:
//! - Both configs are loaded and validated, and [`place::clash`] must find them apart,
//!   before either store is opened: a refused run writes nothing (exit 2).
//! - The source is opened read-only. The destination is written only through the engine's
//!   commit paths (blob import, manifest PUT, tag move, preference toggle, API key and trust
//!   records), so it never holds what a push could not have produced.
//! - Per repository (copy.rs): blobs, then manifests (children before an index, subject
//!   before its referrers), then tags; each step skips what the destination holds, so a rerun
//!   after Ctrl-C or kill -9 finishes the rest. Then the repository is checked: every tag at
//!   the same digest, every manifest and linked blob present.
//! - Then the state beside the images (state.rs). Exit 0 when every repository checked out,
//!   1 when anything is missing or differs (each problem printed), 2 on a usage or config
//!   error.
//! - Output: a progress bar (bytes) on a terminal, else one line per repository; always a
//!   summary line of what was copied and what skipped.
mod copy;
mod place;
mod state;

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use berth_storage::oci::RepoName;
use berth_storage::{Engine, IoBackendKind};

use crate::serve::{engine_options, load};

/// Items copied and skipped of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) copied: u64,
    pub(crate) skipped: u64,
    /// Blobs only: stored in the destination already for another repository, linked here.
    pub(crate) linked: u64,
}

/// What the run did, for the summary.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) repos: u64,
    pub(crate) manifests: Counts,
    pub(crate) tags: Counts,
    pub(crate) blobs: Counts,
    pub(crate) bytes: Counts,
}

/// The progress bar on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "migrate {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Progress { bar }
    }

    /// Blob bytes copied or found in place.
    pub(crate) fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn repository(&self, repo: &RepoName) {
        if let Some(bar) = &self.bar {
            bar.set_message(repo.to_string());
        }
    }

    /// A line of the report, printed above the bar.
    pub(crate) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `berth migrate SRC_CONFIG DST_CONFIG`.
pub fn run(src_path: &Path, dst_path: &Path) -> anyhow::Result<ExitCode> {
    let src_config = load(Some(src_path)).context("source config")?;
    let dst_config = load(Some(dst_path)).context("destination config")?;
    if let Some(clash) = place::clash(&src_config, &dst_config) {
        anyhow::bail!("refusing to migrate a store onto itself: {clash}");
    }
    let src = Engine::open_read_only(engine_options(&src_config, IoBackendKind::Threads))
        .with_context(|| {
            format!(
                "opening the source storage at {}",
                src_config.storage.root_directory.display()
            )
        })?;
    let dst =
        Engine::open(engine_options(&dst_config, IoBackendKind::Threads)).with_context(|| {
            format!(
                "opening the destination storage at {} (is a daemon running on it? stop it first)",
                dst_config.storage.root_directory.display()
            )
        })?;
    crate::runtime::blocking::block_on(migrate(&src, &dst))
}

async fn migrate(src: &Engine, dst: &Engine) -> anyhow::Result<ExitCode> {
    let repos = all_repos(src).await?;
    let mut total_bytes = 0;
    for repo in &repos {
        total_bytes += linked_bytes(src, repo).await?;
    }
    let progress = Progress::new(total_bytes);
    let mut totals = Totals::default();
    let mut problems = 0usize;
    for repo in &repos {
        progress.repository(repo);
        let before = (totals.manifests, totals.tags, totals.blobs);
        let copied = copy::copy_repo(src, dst, repo, &mut totals, &progress).await;
        let checked = match copied {
            Ok(mut found) => copy::verify_repo(src, dst, repo).await.map(|(tags, more)| {
                found.extend(more);
                (tags, found)
            }),
            Err(error) => Err(error),
        };
        totals.repos += 1;
        match checked {
            Ok((tags, found)) if found.is_empty() => {
                let (manifests, tag_counts, blobs) = (
                    diff(totals.manifests, before.0),
                    diff(totals.tags, before.1),
                    diff(totals.blobs, before.2),
                );
                progress.line(&format!(
                    "ok {repo}: {tags} tags at the same digests; copied {} manifests, {} tags, \
                     {} blobs; skipped {} manifests, {} tags, {} blobs",
                    manifests.copied,
                    tag_counts.copied,
                    blobs.copied,
                    manifests.skipped,
                    tag_counts.skipped,
                    blobs.skipped + blobs.linked,
                ));
            }
            Ok((_, found)) => {
                problems += found.len();
                for problem in found {
                    progress.line(&problem);
                }
            }
            Err(error) => {
                problems += 1;
                progress.line(&format!("FAILED {repo}: {error}"));
            }
        }
    }
    progress.finish();
    let state = match state::copy_state(src, dst).await {
        Ok(state) => Some(state),
        Err(error) => {
            problems += 1;
            println!("FAILED copying stars, bookmarks, API keys and trust: {error}");
            None
        }
    };
    print_summary(&totals, state.as_ref(), problems);
    Ok(match problems {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

fn diff(after: Counts, before: Counts) -> Counts {
    Counts {
        copied: after.copied - before.copied,
        skipped: after.skipped - before.skipped,
        linked: after.linked - before.linked,
    }
}

async fn all_repos(engine: &Engine) -> Result<Vec<RepoName>, berth_storage::StorageError> {
    let mut repos = Vec::new();
    loop {
        let last = repos.last().map(RepoName::to_string);
        let page = engine.catalog(last.as_deref(), copy::PAGE).await?;
        if page.is_empty() {
            return Ok(repos);
        }
        repos.extend(page);
    }
}

/// Bytes of every blob linked in `repo` (what the progress bar counts).
async fn linked_bytes(engine: &Engine, repo: &RepoName) -> anyhow::Result<u64> {
    let mut bytes = 0;
    let mut after = None;
    loop {
        let page = engine.repo_blobs(repo, after.as_ref(), copy::PAGE).await?;
        let Some((last, _)) = page.last() else {
            return Ok(bytes);
        };
        after = Some(last.clone());
        bytes += page.iter().map(|(_, size)| size).sum::<u64>();
    }
}

fn print_summary(totals: &Totals, state: Option<&state::StateCounts>, problems: usize) {
    println!(
        "migrated {} repositories: manifests {} copied, {} skipped; tags {} copied, {} skipped; \
         blobs {} copied, {} linked, {} skipped; bytes {} copied, {} skipped",
        totals.repos,
        totals.manifests.copied,
        totals.manifests.skipped,
        totals.tags.copied,
        totals.tags.skipped,
        totals.blobs.copied,
        totals.blobs.linked,
        totals.blobs.skipped,
        totals.bytes.copied,
        totals.bytes.skipped,
    );
    if let Some(state) = state {
        println!(
            "user preferences {} copied, {} skipped; API keys {} copied, {} skipped; trust \
             entries {} copied, {} skipped; signature verdicts {} copied, {} skipped",
            state.prefs.copied,
            state.prefs.skipped,
            state.api_keys.copied,
            state.api_keys.skipped,
            state.trust.copied,
            state.trust.skipped,
            state.verdicts.copied,
            state.verdicts.skipped,
        );
    }
    match problems {
        0 => println!("verified: every tag of every repository names the same digest"),
        count => println!("{count} problems: see the lines above"),
    }
}
