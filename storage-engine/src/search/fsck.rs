//! fsck of the search records: they must say exactly what the manifests and tags say.
//!
//! Problems: a manifest without its `images` record or a record without its manifest; a
//! `digests` entry that its image does not contain, or one missing; a `tagged` entry that its
//! tag and images do not give, or one missing; a repository summary or its counts
//! (`repo_refs`) that differ from what its tags and images give. A store whose backfill has not
//! finished is reported as info and not checked.
use std::collections::HashSet;

use super::counts;
use super::meta::ImageMeta;
use super::refresh::{digest_entries, summarize_with, Overlay, RepoMeta};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::fsck::FsckReport;
use crate::index::{self, Batch, Cf};

impl Engine {
    pub(crate) async fn fsck_search(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        if !self.search_ready().await? {
            report.note("search backfill has not finished: search records not checked".into());
            return Ok(());
        }
        let index = &self.inner.index;
        let mut expected_entries = HashSet::new();
        let mut pages = crate::index::Pages::new(Cf::Images, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, value) in &page {
                let key = key.as_slice();
                let value = value.as_slice();
                let parts = index::split_key(key)?;
                let ([repo, manifest], Ok(meta)) = (parts.as_slice(), ImageMeta::decode(value))
                else {
                    report.problem(format!(
                        "malformed image record {:?}",
                        String::from_utf8_lossy(key)
                    ));
                    continue;
                };
                if !index.contains(Cf::Manifests, key).await? {
                    report.problem(format!(
                        "{repo}: image record of missing manifest {manifest}"
                    ));
                }
                for (entry, _) in digest_entries(repo, manifest, &meta) {
                    expected_entries.insert(entry);
                }
            }
        }
        let mut pages = crate::index::Pages::new(Cf::Manifests, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, _) in &page {
                let key = key.as_slice();
                if !index.contains(Cf::Images, key).await? {
                    let parts = index::split_key(key)?;
                    report.problem(format!("manifest {} has no image record", parts.join(" ")));
                }
            }
        }
        index
            .visit(Cf::Digests, b"", None, |key, _| {
                if !expected_entries.remove(key) {
                    let parts = index::split_key(key)?;
                    report.problem(format!("digest entry {} matches no image", parts.join(" ")));
                }
                Ok(true)
            })
            .await?;
        for entry in expected_entries {
            let parts = index::split_key(&entry)?;
            report.problem(format!("digest entry {} is missing", parts.join(" ")));
        }
        let batch = Batch::default();
        let mut repos = Vec::new();
        index
            .visit(Cf::Repos, b"", None, |key, _| {
                repos.push(String::from_utf8_lossy(key).into_owned());
                Ok(true)
            })
            .await?;
        let mut tagged = std::collections::HashMap::new();
        for repo in &repos {
            tagged.extend(super::tagged::expected(index, repo).await?);
        }
        index
            .visit(Cf::Tagged, b"", None, |key, value| {
                let parts = || index::split_key(key).map(|parts| parts.join(" "));
                match tagged.remove(key) {
                    None => report.problem(format!("tagged entry {} matches no tag", parts()?)),
                    Some(expected) if expected != value => {
                        report.problem(format!("tagged entry {} differs from its image", parts()?))
                    }
                    Some(_) => {}
                }
                Ok(true)
            })
            .await?;
        for key in tagged.keys() {
            let parts = index::split_key(key)?;
            report.problem(format!("tagged entry {} is missing", parts.join(" ")));
        }
        for repo in &repos {
            let (expected, contributions) =
                summarize_with(&Overlay::new(index, &batch, repo)).await?;
            if counts::stored(index, repo).await? != counts::count_all(repo, &contributions) {
                report.problem(format!("{repo}: search counts differ from its images"));
            }
            let stored = match index.get(Cf::RepoMeta, repo.as_bytes()).await? {
                Some(value) => Some(RepoMeta::decode(&value)?),
                None => None,
            };
            if stored != expected {
                report.problem(format!("{repo}: search summary differs from its images"));
            }
        }
        let mut pages = crate::index::Pages::new(Cf::RepoMeta, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, _) in &page {
                let key = key.as_slice();
                if !index.contains(Cf::Repos, key).await? {
                    let repo = String::from_utf8_lossy(key);
                    report.problem(format!("{repo}: search summary of a missing repository"));
                }
            }
        }
        Ok(())
    }
}
