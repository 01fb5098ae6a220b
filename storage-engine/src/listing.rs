//! Whole-repository listings for tools that copy a store (`berth migrate`): a repository's
//! manifests by digest (untagged ones included), its tags with the digest each names, and
//! the blobs linked in it (with or without a manifest).
//!
//! Rules: reads only, no lock (a copy runs against a store no daemon writes). Each call is
//! one page in key order, at most `n` entries after `after`, like `catalog` and `list_tags`,
//! so a repository of any size is listed in bounded memory.
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, BlobRecord, Cf, ManifestHeader, TagRecord};
use crate::oci::{Digest, RepoName, Tag};

/// A stored manifest without its bytes (`get_manifest` reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub subject: Option<Digest>,
    /// Stored by sync as a mirror: its blobs and children may be absent.
    pub mirrored: bool,
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("bad {what} key"))
}

/// The last part of a `repo\0<name>` key, parsed.
fn name_after<T: std::str::FromStr>(
    key: &[u8],
    prefix: &[u8],
    what: &str,
) -> Result<T, StorageError> {
    std::str::from_utf8(&key[prefix.len()..])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| corrupt(what))
}

impl Engine {
    /// The manifests stored in `repo`, by digest (bytewise order of the digest text), all
    /// after `after`, at most `n`.
    pub async fn repo_manifests(
        &self,
        repo: &RepoName,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<ListedManifest>, StorageError> {
        let mut found = Vec::new();
        if n == 0 {
            return Ok(found);
        }
        let prefix = index::prefix(&[repo.as_str()]);
        let after = after.map(|digest| index::key(&[repo.as_str(), &digest.to_string()]));
        self.inner
            .index
            .visit(Cf::Manifests, &prefix, after.as_deref(), |key, value| {
                let header = ManifestHeader::decode(value)?;
                found.push(ListedManifest {
                    digest: name_after(key, &prefix, "manifest")?,
                    media_type: header.media_type.to_owned(),
                    subject: header.subject,
                    mirrored: header.mirrored,
                });
                Ok(found.len() < n)
            })
            .await?;
        Ok(found)
    }

    /// The tags of `repo` with the digest each names, bytewise by tag, all after `after`, at
    /// most `n`.
    pub async fn repo_tags(
        &self,
        repo: &RepoName,
        after: Option<&Tag>,
        n: usize,
    ) -> Result<Vec<(Tag, Digest)>, StorageError> {
        let mut found = Vec::new();
        if n == 0 {
            return Ok(found);
        }
        let prefix = index::prefix(&[repo.as_str()]);
        let after = after.map(|tag| index::key(&[repo.as_str(), tag.as_str()]));
        self.inner
            .index
            .visit(Cf::Tags, &prefix, after.as_deref(), |key, value| {
                let tag = name_after(key, &prefix, "tag")?;
                found.push((tag, TagRecord::decode(value)?.digest));
                Ok(found.len() < n)
            })
            .await?;
        Ok(found)
    }

    /// The blobs linked in `repo` with their sizes, bytewise by digest, all after `after`, at
    /// most `n`: those its manifests use and those pushed without a manifest.
    pub async fn repo_blobs(
        &self,
        repo: &RepoName,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<(Digest, u64)>, StorageError> {
        let mut digests: Vec<Digest> = Vec::new();
        if n == 0 {
            return Ok(Vec::new());
        }
        let prefix = index::prefix(&[repo.as_str()]);
        let after = after.map(|digest| index::key(&[repo.as_str(), &digest.to_string()]));
        self.inner
            .index
            .visit(Cf::RepoBlobs, &prefix, after.as_deref(), |key, _| {
                digests.push(name_after(key, &prefix, "blob link")?);
                Ok(digests.len() < n)
            })
            .await?;
        let mut found = Vec::with_capacity(digests.len());
        for digest in digests {
            let record = self
                .inner
                .index
                .get(Cf::Blobs, digest.to_string().as_bytes())
                .await?
                .ok_or_else(|| {
                    StorageError::Corrupt(format!("{repo} links {digest} but it has no record"))
                })?;
            found.push((digest, BlobRecord::decode(&record)?.size));
        }
        Ok(found)
    }
}
