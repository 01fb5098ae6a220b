//! Manifests, tags and referrers: PUT, GET, delete, tag listing, the referrers query.
//!
//! Rules: manifest bytes are stored byte-exact in the `manifests` family (they are small:
//! the daemon caps a PUT body). A PUT and a delete run under the repository's stripe lock
//! and commit as one WriteBatch, so a tag points at the old or the new manifest, never at a
//! missing one, and a blob delete cannot slip between a PUT's checks and its commit.
//! `blob_refs` records, for every manifest, the blobs (config, layers) and child manifests
//! (index entries) it references; deletes consult it. The subject of a referrer is not a
//! reference: it may be absent and may be deleted.
use bytes::Bytes;

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Cf, ManifestRecord, RefKind, TagRecord};
use crate::oci::{parse_manifest, Algorithm, Descriptor, Digest, ParsedManifest};
use crate::oci::{Reference, RepoName, Tag};
use crate::search::meta::ImageMeta;
use crate::search::refresh::{refresh, Mode};

/// A manifest as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    /// Exactly the bytes that were pushed.
    pub bytes: Bytes,
    pub subject: Option<Digest>,
}

/// What a manifest PUT stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifestOutcome {
    pub digest: Digest,
    /// Set when the manifest has a subject (the daemon answers with `OCI-Subject`).
    pub subject: Option<Digest>,
}

/// Layers that live outside the registry (Docker foreign, OCI non-distributable): their
/// blobs need not be pushed, so PUT and fsck do not require them to be linked.
pub(crate) fn is_foreign_layer(descriptor: &Descriptor) -> bool {
    let media_type = descriptor.media_type.as_str();
    media_type.contains(".nondistributable.") || media_type.contains(".rootfs.foreign.")
}

/// Every (referenced digest, kind) of a manifest, as recorded in `blob_refs`.
pub(crate) fn references(parsed: &ParsedManifest) -> Vec<(&Digest, RefKind)> {
    parsed
        .blob_references()
        .map(|descriptor| (&descriptor.digest, RefKind::Blob))
        .chain(
            parsed
                .manifests
                .iter()
                .map(|descriptor| (&descriptor.digest, RefKind::Manifest)),
        )
        .collect()
}

/// What kind of manifest store this is.
struct PutRequest<'a> {
    extra_tags: &'a [Tag],
    immutable: &'a [Tag],
    mirrored: bool,
    pushed_by: Option<&'a str>,
}

impl Engine {
    /// Validates and stores a manifest, moving `reference` (if a tag) and `extra_tags` to it.
    /// Cancel: the batch is applied or not as a whole; the lock is released either way.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PutManifestOutcome, StorageError> {
        self.put_manifest_guarded(repo, reference, content_type, bytes, extra_tags, &[], None)
            .await
    }

    /// [`Engine::put_manifest`], refusing with `TagImmutable` (and storing nothing) when a tag
    /// of `immutable` already names another manifest. The check and the commit run under the
    /// repository lock, so two racing first pushes of an immutable tag cannot both win.
    /// `pushed_by` (the authenticated user) is what search reports as `PushedBy`.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest_guarded(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
        immutable: &[Tag],
        pushed_by: Option<&str>,
    ) -> Result<PutManifestOutcome, StorageError> {
        let request = PutRequest {
            extra_tags,
            immutable,
            mirrored: false,
            pushed_by,
        };
        self.store_manifest(repo, reference, content_type, bytes, request)
            .await
    }

    /// Stores a manifest sync fetched from an upstream registry: validated and hashed like a
    /// push, but its blobs and child manifests need not be here (they are fetched when first
    /// asked for), and the record says so (fsck reports them absent as info, not problems).
    pub async fn put_manifest_mirrored(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifestOutcome, StorageError> {
        let request = PutRequest {
            extra_tags: &[],
            immutable: &[],
            mirrored: true,
            pushed_by: None,
        };
        self.store_manifest(repo, reference, content_type, bytes, request)
            .await
    }

    async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        request: PutRequest<'_>,
    ) -> Result<PutManifestOutcome, StorageError> {
        let PutRequest {
            extra_tags,
            immutable,
            mirrored,
            pushed_by,
        } = request;
        let parsed = parse_manifest(&bytes, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != *expected {
                    return Err(StorageError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        let digest_text = digest.to_string();
        // Search reads the image config once, here, before the lock (a small file, on the
        // blocking pool). It is verified content: only its link is checked under the lock.
        let config = match &parsed.config {
            Some(config) => self.inner.read_config(&config.digest, config.size).await,
            None => None,
        };
        let inner = &self.inner;
        let guard = inner.lock_repo(repo).await?;
        for tag in immutable {
            let key = index::key(&[repo.as_str(), tag.as_str()]);
            if let Some(value) = inner.index.get(Cf::Tags, &key).await? {
                if TagRecord::decode(&value)?.digest != digest {
                    return Err(StorageError::TagImmutable(tag.clone()));
                }
            }
        }

        for descriptor in parsed.blob_references() {
            if is_foreign_layer(descriptor) || mirrored {
                continue;
            }
            let size = self
                .stat_blob(repo, &descriptor.digest)
                .await?
                .ok_or_else(|| StorageError::ManifestBlobUnknown(descriptor.digest.clone()))?;
            if size != descriptor.size {
                return Err(StorageError::ManifestInvalid(format!(
                    "descriptor of {} says {} bytes, the blob has {size}",
                    descriptor.digest, descriptor.size
                )));
            }
        }
        for child in parsed.manifests.iter().filter(|_| !mirrored) {
            let key = index::key(&[repo.as_str(), &child.digest.to_string()]);
            if !inner.index.contains(Cf::Manifests, &key).await? {
                return Err(StorageError::ManifestBlobUnknown(child.digest.clone()));
            }
        }

        let now = index::now_ms();
        let subject = parsed
            .subject
            .as_ref()
            .map(|subject| subject.digest.clone());
        let mut batch = index::Batch::default();
        let record = ManifestRecord {
            pushed_ms: now,
            media_type: parsed.media_type.clone(),
            subject: subject.clone(),
            mirrored,
            bytes: bytes.clone(),
        };
        batch.put(
            Cf::Manifests,
            index::key(&[repo.as_str(), &digest_text]),
            record.encode(),
        );
        let tag_record = TagRecord {
            pushed_ms: now,
            digest: digest.clone(),
        }
        .encode();
        for tag in reference.as_tag().into_iter().chain(extra_tags) {
            batch.put(
                Cf::Tags,
                index::key(&[repo.as_str(), tag.as_str()]),
                tag_record.clone(),
            );
        }
        if let Some(subject) = &subject {
            let mut descriptor = serde_json::json!({
                "mediaType": parsed.media_type,
                "digest": digest_text,
                "size": bytes.len() as u64,
            });
            if let Some(artifact_type) = parsed.referrer_artifact_type() {
                descriptor["artifactType"] = artifact_type.into();
            }
            if let Some(annotations) = &parsed.annotations {
                descriptor["annotations"] = serde_json::json!(annotations);
            }
            batch.put(
                Cf::Referrers,
                index::key(&[repo.as_str(), &subject.to_string(), &digest_text]),
                descriptor.to_string().into_bytes(),
            );
        }
        for (referenced, kind) in references(&parsed) {
            batch.put(
                Cf::BlobRefs,
                index::key(&[repo.as_str(), &referenced.to_string(), &digest_text]),
                kind.encode(),
            );
        }
        let meta = ImageMeta::new(
            &parsed,
            bytes.len() as u64,
            config.as_deref(),
            now,
            pushed_by,
        );
        batch.put(
            Cf::Images,
            index::key(&[repo.as_str(), &digest_text]),
            meta.encode(),
        );
        inner.repo_record(repo, &mut batch).await?;
        refresh(&inner.index, repo.as_str(), &mut batch, Mode::Incremental).await?;
        inner.write_held(batch, &guard).await?;
        inner.usage.touch(repo);
        Ok(PutManifestOutcome { digest, subject })
    }

    async fn manifest_record(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StorageError> {
        let key = index::key(&[repo.as_str(), &digest.to_string()]);
        match self.inner.index.get(Cf::Manifests, &key).await? {
            Some(value) => Ok(Some(ManifestRecord::decode(&value)?)),
            None => Ok(None),
        }
    }

    async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, StorageError> {
        let key = index::key(&[repo.as_str(), tag.as_str()]);
        match self.inner.index.get(Cf::Tags, &key).await? {
            Some(value) => Ok(Some(TagRecord::decode(&value)?.digest)),
            None => Ok(None),
        }
    }

    /// The manifest `reference` names in `repo`, if any.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StorageError> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => match self.resolve_tag(repo, tag).await? {
                Some(digest) => digest,
                None => return Ok(None),
            },
        };
        let Some(record) = self.manifest_record(repo, &digest).await? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest,
            media_type: record.media_type,
            bytes: record.bytes,
            subject: record.subject,
        }))
    }

    /// By tag: removes the tag. By digest: removes the manifest, every tag pointing at it,
    /// its referrer entry and its references (`ManifestReferenced` if an index in the
    /// repository lists it). Cancel: applied as a whole or not at all.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), StorageError> {
        let inner = &self.inner;
        let guard = inner.lock_repo(repo).await?;
        let mut batch = index::Batch::default();
        let digest = match reference {
            Reference::Tag(tag) => {
                if self.resolve_tag(repo, tag).await?.is_none() {
                    return Err(StorageError::ManifestUnknown);
                }
                batch.delete(Cf::Tags, index::key(&[repo.as_str(), tag.as_str()]));
                refresh(&inner.index, repo.as_str(), &mut batch, Mode::Incremental).await?;
                inner.write_held(batch, &guard).await?;
                inner.usage.touch(repo);
                return Ok(());
            }
            Reference::Digest(digest) => digest,
        };
        let digest_text = digest.to_string();
        let Some(record) = self.manifest_record(repo, digest).await? else {
            return Err(StorageError::ManifestUnknown);
        };
        let referenced = inner
            .index
            .any_with_prefix(
                Cf::BlobRefs,
                &index::prefix(&[repo.as_str(), &digest_text]),
                |_, value| Ok(RefKind::decode(value)? == RefKind::Manifest),
            )
            .await?;
        if referenced {
            return Err(StorageError::ManifestReferenced(digest.clone()));
        }
        batch.delete(Cf::Manifests, index::key(&[repo.as_str(), &digest_text]));
        batch.delete(Cf::Pulls, index::key(&[repo.as_str(), &digest_text]));
        inner
            .index
            .visit(
                Cf::Tags,
                &index::prefix(&[repo.as_str()]),
                None,
                |key, value| {
                    if TagRecord::decode(value)?.digest == *digest {
                        batch.delete(Cf::Tags, key.to_vec());
                    }
                    Ok(true)
                },
            )
            .await?;
        if let Some(subject) = &record.subject {
            batch.delete(
                Cf::Referrers,
                index::key(&[repo.as_str(), &subject.to_string(), &digest_text]),
            );
        }
        let parsed = parse_manifest(&record.bytes, Some(&record.media_type)).map_err(|error| {
            StorageError::Corrupt(format!(
                "stored manifest {digest} no longer parses: {error}"
            ))
        })?;
        for (referenced, _) in references(&parsed) {
            batch.delete(
                Cf::BlobRefs,
                index::key(&[repo.as_str(), &referenced.to_string(), &digest_text]),
            );
        }
        refresh(&inner.index, repo.as_str(), &mut batch, Mode::Incremental).await?;
        inner.write_held(batch, &guard).await?;
        inner.usage.touch(repo);
        Ok(())
    }

    /// Tags of `repo` sorted bytewise, all greater than `last`, at most `n`.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<Tag>, StorageError> {
        let mut tags = Vec::new();
        if n == 0 {
            return Ok(tags);
        }
        let prefix = index::prefix(&[repo.as_str()]);
        let after = last.map(|last| index::key(&[repo.as_str(), last]));
        self.inner
            .index
            .visit(Cf::Tags, &prefix, after.as_deref(), |key, _| {
                let tag = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|text| text.parse::<Tag>().ok())
                    .ok_or_else(|| StorageError::Corrupt("bad tag key".into()))?;
                tags.push(tag);
                Ok(tags.len() < n)
            })
            .await?;
        Ok(tags)
    }

    pub async fn tag_exists(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StorageError> {
        let key = index::key(&[repo.as_str(), tag.as_str()]);
        self.inner.index.contains(Cf::Tags, &key).await
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, optionally only
    /// those whose artifact type is one of `artifact_types`. Ordered by referrer digest.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StorageError> {
        let mut found = Vec::new();
        let prefix = index::prefix(&[repo.as_str(), &subject.to_string()]);
        self.inner
            .index
            .visit(Cf::Referrers, &prefix, None, |_, value| {
                let descriptor: Descriptor = serde_json::from_slice(value).map_err(|error| {
                    StorageError::Corrupt(format!("bad referrer entry: {error}"))
                })?;
                let wanted = artifact_types.is_empty()
                    || descriptor
                        .artifact_type
                        .as_ref()
                        .is_some_and(|artifact_type| artifact_types.contains(artifact_type));
                if wanted {
                    found.push(descriptor);
                }
                Ok(true)
            })
            .await?;
        Ok(found)
    }
}
