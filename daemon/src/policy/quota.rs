//! Per-namespace storage quotas (`storage.quotas`, a berth key): for each repository glob, the
//! bytes its repositories may use together and how many repositories may match it. A push
//! that would pass a limit gets 403 DENIED with the namespace, the limit and the usage in the
//! message, and nothing is stored.
//!
//! Rules:
//! - Usage is the engine's (linked blob bytes plus manifest bytes per repository), refreshed
//!   for the repositories changed since it was last read (on a shared index, by any node:
//!   storage-engine usage.rs); the check runs on the blocking pool.
//! - Checked before each commit that adds bytes to a repository (a blob upload's finish, a
//!   mount, a manifest PUT) and before a new repository's first upload session. A blob the
//!   repository already links adds nothing.
//! - Concurrent pushes into one namespace are checked against the same usage, so together
//!   they can pass a byte limit by at most what they upload at once; no commit is refused
//!   after it was acknowledged.
use std::sync::Arc;

use berth_storage::oci::RepoName;
use berth_storage::Engine;
use globset::GlobMatcher;

use crate::api::error::ApiError;
use crate::config::QuotaConfig;
use crate::policy::tag_policy::compile_glob;

/// One namespace's limits: the repositories matching a glob, together.
#[derive(Clone, Debug)]
pub struct Rule {
    pattern: String,
    glob: GlobMatcher,
    max_bytes: Option<u64>,
    max_repositories: Option<u64>,
}

impl Rule {
    /// The repository glob, as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    pub fn max_repositories(&self) -> Option<u64> {
        self.max_repositories
    }

    /// Whether `repo` belongs to this namespace.
    pub fn matches(&self, repo: &RepoName) -> bool {
        self.glob.is_match(repo.as_str())
    }
}

/// The configured quotas.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    rules: Vec<Rule>,
}

impl Quotas {
    /// Compiles a repository glob; the config checks every pattern with this at load.
    pub fn glob(pattern: &str) -> Result<GlobMatcher, String> {
        compile_glob(pattern).map_err(|error| format!("bad repository glob: {error}"))
    }

    pub fn new(config: &[QuotaConfig]) -> Result<Quotas, String> {
        let mut rules = Vec::with_capacity(config.len());
        for quota in config {
            rules.push(Rule {
                pattern: quota.pattern.clone(),
                glob: Quotas::glob(&quota.pattern)?,
                max_bytes: quota.max_bytes,
                max_repositories: quota.max_repositories,
            });
        }
        Ok(Quotas { rules })
    }

    /// Every configured quota.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn applying<'a>(&'a self, repo: &'a RepoName) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |rule| rule.matches(repo))
    }

    /// Refuses `added` more bytes in `repo` when a namespace it belongs to would pass its
    /// byte limit.
    pub async fn check_bytes(
        &self,
        engine: &Arc<Engine>,
        repo: &RepoName,
        added: u64,
    ) -> Result<(), ApiError> {
        for rule in self.applying(repo) {
            let Some(max) = rule.max_bytes else {
                continue;
            };
            let (used, _) = namespace_usage(engine, &rule.glob).await?;
            if used.saturating_add(added) > max {
                return Err(ApiError::Forbidden(format!(
                    "quota: repositories matching {:?} may use {max} bytes; they use {used} \
                     and this push adds {added}",
                    rule.pattern
                )));
            }
        }
        Ok(())
    }

    /// Refuses a new repository when a namespace it would belong to is full.
    pub async fn check_new_repository(
        &self,
        engine: &Arc<Engine>,
        repo: &RepoName,
    ) -> Result<(), ApiError> {
        if self
            .applying(repo)
            .all(|rule| rule.max_repositories.is_none())
        {
            return Ok(());
        }
        if engine.repo_exists(repo).await? {
            return Ok(());
        }
        for rule in self.applying(repo) {
            let Some(max) = rule.max_repositories else {
                continue;
            };
            let (_, count) = namespace_usage(engine, &rule.glob).await?;
            if count as u64 >= max {
                return Err(ApiError::Forbidden(format!(
                    "quota: at most {max} repositories may match {:?}; {count} do",
                    rule.pattern
                )));
            }
        }
        Ok(())
    }

    /// Whether any quota limits bytes in `repo` (callers skip size lookups otherwise).
    pub fn limits_bytes(&self, repo: &RepoName) -> bool {
        self.applying(repo).any(|rule| rule.max_bytes.is_some())
    }
}

async fn namespace_usage(
    engine: &Arc<Engine>,
    glob: &GlobMatcher,
) -> Result<(u64, usize), ApiError> {
    let (engine, glob) = (engine.clone(), glob.clone());
    tokio::task::spawn_blocking(move || {
        crate::runtime::blocking::block_on(
            engine.namespace_usage(&|name: &RepoName| glob.is_match(name.as_str())),
        )
    })
    .await
    .map_err(|error| ApiError::Internal(format!("quota check: {error}")))?
    .map_err(ApiError::from)
}
