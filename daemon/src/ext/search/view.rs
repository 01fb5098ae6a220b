//! What one search request sees: the engine's search records filtered by what the caller may
//! read, with the per-request caches a query that touches a repository many times needs.
//!
//! Rules: a repository the caller may not read is never named, counted or ranked: every list
//! goes through [`View::readable`]. Storage errors are logged here and answered as an opaque
//! "internal error" (a resolver error).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_storage::oci::{Digest, RepoName};
use berth_storage::search::{is_signature_tag, ImageMeta, TagEntry};
use berth_storage::{Engine, StorageError};

use crate::config::Action;

/// Who asks, and what they may do to a repository.
pub type Permits = Box<dyn Fn(Action, &str) -> bool + Send + Sync>;

pub struct View {
    pub engine: Arc<Engine>,
    /// The authenticated user (`None`: anonymous).
    pub user: Option<String>,
    permits: Permits,
    tags: Mutex<HashMap<String, Arc<Vec<TagEntry>>>>,
    /// The `Query` fields whose resolvers failed (transport.rs gives their errors a path).
    pub failed: Mutex<Vec<String>>,
}

/// One tagged image as the lists see it: the tag, what it names, and the manifests it holds
/// (itself for an image; an index's children that are stored, in index order, or only the
/// ones a filter matched).
#[derive(Clone, Debug)]
pub struct Listed {
    pub repo: RepoName,
    pub tag: String,
    pub digest: Digest,
    pub tagged_ms: u64,
    pub meta: ImageMeta,
    pub manifests: Vec<(Digest, ImageMeta)>,
}

pub fn internal(error: StorageError) -> String {
    tracing::error!(component = "search", %error, "search failed on the index");
    "internal error".to_owned()
}

impl View {
    pub fn new(engine: Arc<Engine>, user: Option<String>, permits: Permits) -> View {
        View {
            engine,
            user,
            permits,
            tags: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    pub fn can_read(&self, repo: &str) -> bool {
        (self.permits)(Action::Read, repo)
    }

    pub fn can_delete(&self, repo: &str) -> bool {
        (self.permits)(Action::Delete, repo)
    }

    /// Every tag of `repo`, signature tags included (read once per request).
    /// Two resolvers asking at once may both read; the first list stored is the one both use.
    pub async fn tags(&self, repo: &RepoName) -> Result<Arc<Vec<TagEntry>>, String> {
        let cached = {
            let cache = self.tags.lock().expect("tag cache lock is never poisoned");
            cache.get(repo.as_str()).cloned()
        };
        if let Some(tags) = cached {
            return Ok(tags);
        }
        let tags = Arc::new(self.engine.tag_entries(repo).await.map_err(internal)?);
        let mut cache = self.tags.lock().expect("tag cache lock is never poisoned");
        Ok(cache.entry(repo.to_string()).or_insert(tags).clone())
    }

    pub async fn image(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageMeta>, String> {
        self.engine.image_meta(repo, digest).await.map_err(internal)
    }

    /// The image a tag names, with its manifests; `None` for a signature tag or a manifest
    /// search has no record of.
    pub async fn listed(
        &self,
        repo: &RepoName,
        entry: &TagEntry,
    ) -> Result<Option<Listed>, String> {
        if is_signature_tag(&entry.tag) {
            return Ok(None);
        }
        let Some(meta) = self.image(repo, &entry.digest).await? else {
            return Ok(None);
        };
        let mut manifests = Vec::new();
        match meta.index {
            false => manifests.push((entry.digest.clone(), meta.clone())),
            true => {
                for child in &meta.children {
                    let Ok(digest) = child.digest.parse::<Digest>() else {
                        continue;
                    };
                    if let Some(child_meta) = self.image(repo, &digest).await? {
                        if !child_meta.index {
                            manifests.push((digest, child_meta));
                        }
                    }
                }
            }
        }
        Ok(Some(Listed {
            repo: repo.clone(),
            tag: entry.tag.clone(),
            digest: entry.digest.clone(),
            tagged_ms: entry.tagged_ms,
            meta,
            manifests,
        }))
    }

    /// The repositories the caller may read that have an image tag, in name order (the
    /// engine's shared listing, narrowed: no entry is copied).
    pub async fn readable(&self) -> Result<berth_storage::search::RepoListing, String> {
        Ok(self
            .engine
            .repo_listing()
            .await
            .map_err(internal)?
            .retain(|name| self.can_read(name.as_str())))
    }

    /// Every tagged image of `repo`.
    pub async fn images_of(&self, repo: &RepoName) -> Result<Vec<Listed>, String> {
        let mut images = Vec::new();
        for entry in self.tags(repo).await?.iter() {
            if let Some(listed) = self.listed(repo, entry).await? {
                images.push(listed);
            }
        }
        Ok(images)
    }

    /// Every tagged image of every readable repository whose name `wanted` admits.
    pub async fn all_images(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<Listed>, String> {
        let mut images = Vec::new();
        for (repo, _) in self.readable().await? {
            if wanted(repo.as_str()) {
                images.extend(self.images_of(&repo).await?);
            }
        }
        Ok(images)
    }
}
