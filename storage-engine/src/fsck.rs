//! fsck: checks that the index and the files agree and that stored content is what its
//! name says. Read-only; blocking (it hashes every blob): run it from the CLI or the
//! blocking pool, never on a shard. Blobs in S3 are checked the same way, each object read
//! once through a streamed GET and hashed (as deep as for files: a bucket is not trusted
//! more than a disk), the bucket's blobs/ listed page by page in place of the directory.
//!
//! Problems (fsck fails): a link without a blob record; a blob record without its file, with
//! the wrong size, or whose content hashes to another digest; a file under blobs/ whose
//! content does not match its name or whose name is not a digest; a tag without its
//! manifest; a manifest whose bytes do not hash to its key, that no longer parses, whose
//! config/layers are not linked in its repository or whose index children are absent; a
//! referrer entry or reference record whose manifest is gone; search records that disagree
//! with the manifests and tags (search/fsck.rs); a login session record that does not decode;
//! an API key record that does not decode or disagrees with its user's list.
//! Info (reported, not failures): complete blob files without a record (orphans of an
//! interrupted commit or an unlink; GC reclaims them), idle upload sessions, expired
//! login sessions not yet pruned, expired API keys and last uses of revoked keys.
use std::collections::HashSet;
use std::fmt;

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, BlobRecord, Cf, ManifestRecord, TagRecord};
use crate::io::hash_file_blocking;
use crate::manifests::{is_foreign_layer, references};
use crate::oci::{parse_manifest, Digest};

/// One finding, printed as one human-readable line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsckProblem(pub String);

impl fmt::Display for FsckProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Failures: the store is inconsistent or content is damaged.
    pub problems: Vec<FsckProblem>,
    /// Informational findings (orphan blob files, idle upload sessions).
    pub info: Vec<FsckProblem>,
    pub blobs_checked: u64,
    pub manifests_checked: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, line: String) {
        self.problems.push(FsckProblem(line));
    }

    pub(crate) fn note(&mut self, line: String) {
        self.info.push(FsckProblem(line));
    }
}

impl Engine {
    /// Checks the whole store. See the module comment for what counts as a problem.
    pub async fn fsck(&self) -> Result<FsckReport, StorageError> {
        let mut report = FsckReport::default();
        let recorded = self.fsck_blob_records(&mut report).await?;
        match self.inner.s3() {
            None => self.fsck_blob_files(&recorded, &mut report)?,
            Some(_) => self.fsck_blob_objects(&recorded, &mut report).await?,
        }
        self.fsck_links(&mut report).await?;
        self.fsck_reverse_links(&mut report).await?;
        self.fsck_manifests(&mut report).await?;
        self.fsck_tags_and_refs(&mut report).await?;
        self.fsck_search(&mut report).await?;
        self.fsck_login_sessions(&mut report).await?;
        self.fsck_api_keys(&mut report).await?;
        self.fsck_user_groups(&mut report).await?;
        self.fsck_trust(&mut report).await;
        let index = &self.inner.index;
        let mut sessions = HashSet::new();
        index
            .visit(Cf::Uploads, b"", None, |key, _| {
                report.info.push(FsckProblem(format!(
                    "upload session {} is open",
                    String::from_utf8_lossy(key)
                )));
                sessions.insert(key.to_vec());
                Ok(true)
            })
            .await?;
        // Sessions in the bucket: each state decodes and belongs to a session.
        index
            .visit(Cf::UploadState, b"", None, |key, value| {
                let id = String::from_utf8_lossy(key);
                if let Err(error) = crate::upload_state::SharedState::decode(value) {
                    report.problem(format!("upload session {id}: {error}"));
                } else if !sessions.contains(key) {
                    report.problem(format!("upload state {id} without its session record"));
                }
                Ok(true)
            })
            .await?;
        Ok(report)
    }

    /// Every blob record: file present, right size, content hashes to its name.
    async fn fsck_blob_records(
        &self,
        report: &mut FsckReport,
    ) -> Result<HashSet<Digest>, StorageError> {
        let mut records = Vec::new();
        self.inner
            .index
            .visit(Cf::Blobs, b"", None, |key, value| {
                records.push((key.to_vec(), BlobRecord::decode(value)));
                Ok(true)
            })
            .await?;
        let mut recorded = HashSet::new();
        for (key, record) in records {
            let name = String::from_utf8_lossy(&key).into_owned();
            let (Ok(digest), Ok(record)) = (name.parse::<Digest>(), record) else {
                report.problem(format!("blob record {name:?} is malformed"));
                continue;
            };
            report.blobs_checked += 1;
            if let Err(damage) = self.inner.check_stored_blob(&digest, record.size).await {
                match self.inner.blob_file(&digest) {
                    Some(path) => report.problem(format!("blob {digest}: {damage} ({path:?})")),
                    None => report.problem(format!("blob {digest}: {damage} (S3 object)")),
                }
            }
            recorded.insert(digest);
        }
        Ok(recorded)
    }

    /// Every file under blobs/: named like a digest in its fan-out directory; files without
    /// a record must still hash to their name (then they are orphans, reported as info).
    fn fsck_blob_files(
        &self,
        recorded: &HashSet<Digest>,
        report: &mut FsckReport,
    ) -> Result<(), StorageError> {
        let blobs = self.inner.store.blobs_dir();
        for algorithm_dir in std::fs::read_dir(&blobs)? {
            let algorithm_dir = algorithm_dir?.path();
            for fanout in std::fs::read_dir(&algorithm_dir)? {
                let fanout = fanout?.path();
                if !fanout.is_dir() {
                    report.problem(format!("stray file {fanout:?} in blobs/"));
                    continue;
                }
                for file in std::fs::read_dir(&fanout)? {
                    let path = file?.path();
                    let algorithm = algorithm_dir.file_name().and_then(|name| name.to_str());
                    let hex = path.file_name().and_then(|name| name.to_str());
                    let digest = match (algorithm, hex) {
                        (Some(algorithm), Some(hex)) => {
                            format!("{algorithm}:{hex}").parse::<Digest>().ok()
                        }
                        _ => None,
                    };
                    let Some(digest) = digest.filter(|digest| self.blob_path(digest) == path)
                    else {
                        report.problem(format!("stray file {path:?} is not named by a digest"));
                        continue;
                    };
                    if recorded.contains(&digest) {
                        continue;
                    }
                    let length = std::fs::metadata(&path)?.len();
                    let actual = hash_file_blocking(&path, length, digest.algorithm())
                        .map(|hasher| hasher.finalize());
                    match actual {
                        Ok(actual) if actual == digest => report.info.push(FsckProblem(format!(
                            "orphan blob file {digest} ({length} bytes)"
                        ))),
                        Ok(_) => report.problem(format!(
                            "file {path:?} has content that does not match its name"
                        )),
                        Err(error) => report.problem(format!("file {path:?}: {error}")),
                    }
                }
            }
        }
        Ok(())
    }

    /// Every object under the bucket's blobs/ (listed page by page): named like a digest;
    /// objects without a record must still hash to their name (orphans, reported as info),
    /// as `fsck_blob_files` does for files.
    async fn fsck_blob_objects(
        &self,
        recorded: &HashSet<Digest>,
        report: &mut FsckReport,
    ) -> Result<(), StorageError> {
        let blobs = self.inner.s3().expect("called for blobs in S3");
        for listed in crate::blob_backend::list_all(blobs).await? {
            let Some(digest) = listed.digest else {
                report.problem(format!(
                    "stray object blobs/{} is not named by a digest",
                    listed.name
                ));
                continue;
            };
            if recorded.contains(&digest) {
                continue;
            }
            match self.inner.check_stored_blob(&digest, listed.size).await {
                Ok(()) => report.note(format!(
                    "orphan blob object {digest} ({} bytes)",
                    listed.size
                )),
                // Deleted since the listing (GC): nothing to report.
                Err(crate::scrub::Damage::Missing) => {}
                Err(crate::scrub::Damage::Content { .. }) => report.problem(format!(
                    "object blobs/{} has content that does not match its name",
                    listed.name
                )),
                Err(damage) => report.problem(format!("object blobs/{}: {damage}", listed.name)),
            }
        }
        Ok(())
    }

    /// Every login session record decodes; expired ones are counted as info.
    async fn fsck_login_sessions(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let (mut expired, mut expired_sso) = (0, 0);
        self.inner
            .index
            .visit(Cf::Sessions, b"", None, |key, value| {
                match crate::sessions::check_record(key, value) {
                    Ok(true) => expired += 1,
                    Ok(false) => {}
                    Err(error) => {
                        report.problem(format!("login session {}: {error}", hex::encode(key)))
                    }
                }
                Ok(true)
            })
            .await?;
        self.inner
            .index
            .visit(Cf::SsoLogins, b"", None, |key, value| {
                match crate::ssologins::check_record(key, value) {
                    Ok(true) => expired_sso += 1,
                    Ok(false) => {}
                    Err(error) => report.problem(format!(
                        "single sign-on login {}: {error}",
                        hex::encode(key)
                    )),
                }
                Ok(true)
            })
            .await?;
        if expired > 0 {
            report.note(format!(
                "{expired} expired login sessions are not pruned yet"
            ));
        }
        if expired_sso > 0 {
            report.note(format!(
                "{expired_sso} expired single sign-on logins are not pruned yet"
            ));
        }
        Ok(())
    }

    /// Every API key record decodes and agrees with its user's list; expired keys and
    /// last-use records of revoked keys are info.
    async fn fsck_api_keys(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let mut findings = Vec::new();
        let mut pages = crate::index::Pages::new(Cf::ApiKeys, b"");
        while let Some(page) = pages.next(&self.inner.index).await? {
            for (key, value) in &page {
                findings.push((
                    hex::encode(key),
                    crate::apikeys::check_record(self, key, value).await,
                ));
            }
        }
        for (key, finding) in findings {
            match finding {
                Ok(None) => {}
                Ok(Some(note)) => report.note(note),
                Err(error) => report.problem(format!("API key record {key}: {error}")),
            }
        }
        Ok(())
    }

    /// Every user groups record decodes.
    async fn fsck_user_groups(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let mut bad = Vec::new();
        self.inner
            .index
            .visit(Cf::UserGroups, b"", None, |key, value| {
                if let Err(error) = crate::groups::check_record(key, value) {
                    bad.push(format!("user groups record {}: {error}", hex::encode(key)));
                }
                Ok(true)
            })
            .await?;
        for problem in bad {
            report.problem(problem);
        }
        Ok(())
    }

    /// The trust store and every signature verdict decode.
    async fn fsck_trust(&self, report: &mut FsckReport) {
        if let Err(error) = self.trust_store().await {
            report.problem(format!("trust store: {error}"));
        }
        if let Err(error) = self.signature_verdicts().await {
            report.problem(format!("signature verdicts: {error}"));
        }
    }

    /// Every repo_blobs link has a blob record.
    async fn fsck_links(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let index = &self.inner.index;
        let mut pages = crate::index::Pages::new(Cf::RepoBlobs, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, _) in &page {
                let key = key.as_slice();
                let parts = index::split_key(key)?;
                match parts.as_slice() {
                    [repo, digest] => {
                        if !index.contains(Cf::Blobs, digest.as_bytes()).await? {
                            report.problem(format!("{repo}: links {digest}, which has no record"));
                        }
                        if !index
                            .contains(Cf::BlobLinks, &index::key(&[digest, repo]))
                            .await?
                        {
                            report
                                .problem(format!("{repo}: link to {digest} missing in blob_links"));
                        }
                    }
                    _ => report.problem(format!(
                        "malformed link key {:?}",
                        String::from_utf8_lossy(key)
                    )),
                }
            }
        }
        Ok(())
    }

    /// Every `blob_links` entry has its link in `repo_blobs` (GC trusts the reverse index).
    async fn fsck_reverse_links(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let index = &self.inner.index;
        let mut pages = crate::index::Pages::new(Cf::BlobLinks, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, _) in &page {
                let key = key.as_slice();
                match index::split_key(key)?.as_slice() {
                    [digest, repo] => {
                        if !index
                            .contains(Cf::RepoBlobs, &index::key(&[repo, digest]))
                            .await?
                        {
                            report.problem(format!(
                                "blob_links says {repo} links {digest}; it does not"
                            ));
                        }
                    }
                    _ => report.problem(format!(
                        "malformed blob_links key {:?}",
                        String::from_utf8_lossy(key)
                    )),
                }
            }
        }
        Ok(())
    }

    /// Every manifest: bytes hash to its key, parse, references present in its repository.
    async fn fsck_manifests(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let index = &self.inner.index;
        let mut pages = crate::index::Pages::new(Cf::Manifests, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, value) in &page {
                let key = key.as_slice();
                let value = value.as_slice();
                report.manifests_checked += 1;
                let parts = index::split_key(key)?;
                let [repo, digest_text] = parts.as_slice() else {
                    report.problem(format!(
                        "malformed manifest key {:?}",
                        String::from_utf8_lossy(key)
                    ));
                    continue;
                };
                let (Ok(digest), Ok(record)) =
                    (digest_text.parse::<Digest>(), ManifestRecord::decode(value))
                else {
                    report.problem(format!("{repo}: manifest {digest_text}: malformed record"));
                    continue;
                };
                let actual = Digest::of(digest.algorithm(), &record.bytes);
                if actual != digest {
                    report.problem(format!("{repo}: manifest {digest}: bytes hash to {actual}"));
                }
                let parsed = match parse_manifest(&record.bytes, Some(&record.media_type)) {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        report
                            .problem(format!("{repo}: manifest {digest} does not parse: {error}"));
                        continue;
                    }
                };
                // A mirrored manifest's blobs and children come when first asked for.
                let mut absent = |line: String| match record.mirrored {
                    true => report
                        .info
                        .push(FsckProblem(format!("{line} (mirrored: fetched on demand)"))),
                    false => report.problem(line),
                };
                for descriptor in parsed.blob_references().filter(|d| !is_foreign_layer(d)) {
                    let link = index::key(&[repo, &descriptor.digest.to_string()]);
                    if !index.contains(Cf::RepoBlobs, &link).await? {
                        absent(format!(
                        "{repo}: manifest {digest} references blob {} not linked in the repository",
                        descriptor.digest
                    ));
                    }
                }
                for child in &parsed.manifests {
                    let child_key = index::key(&[repo, &child.digest.to_string()]);
                    if !index.contains(Cf::Manifests, &child_key).await? {
                        absent(format!(
                            "{repo}: index {digest} lists manifest {} which is absent",
                            child.digest
                        ));
                    }
                }
                for (referenced, _) in references(&parsed) {
                    let reference_key = index::key(&[repo, &referenced.to_string(), digest_text]);
                    if !index.contains(Cf::BlobRefs, &reference_key).await? {
                        report.problem(format!(
                            "{repo}: manifest {digest}: reference record for {referenced} missing"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Tags, referrer entries and reference records point at manifests that exist.
    async fn fsck_tags_and_refs(&self, report: &mut FsckReport) -> Result<(), StorageError> {
        let index = &self.inner.index;
        let mut pages = crate::index::Pages::new(Cf::Tags, b"");
        while let Some(page) = pages.next(index).await? {
            for (key, value) in &page {
                let key = key.as_slice();
                let value = value.as_slice();
                let parts = index::split_key(key)?;
                match (parts.as_slice(), TagRecord::decode(value)) {
                    ([repo, tag], Ok(record)) => {
                        let manifest = index::key(&[repo, &record.digest.to_string()]);
                        if !index.contains(Cf::Manifests, &manifest).await? {
                            report.problem(format!(
                                "{repo}: tag {tag} points at missing manifest {}",
                                record.digest
                            ));
                        }
                    }
                    _ => {
                        report.problem(format!("malformed tag {:?}", String::from_utf8_lossy(key)))
                    }
                }
            }
        }
        for (cf, what) in [
            (Cf::Referrers, "referrer entry"),
            (Cf::BlobRefs, "reference record"),
        ] {
            let mut pages = crate::index::Pages::new(cf, b"");
            while let Some(page) = pages.next(index).await? {
                for (key, _) in &page {
                    let key = key.as_slice();
                    let parts = index::split_key(key)?;
                    match parts.as_slice() {
                        [repo, _, manifest] => {
                            if !index
                                .contains(Cf::Manifests, &index::key(&[repo, manifest]))
                                .await?
                            {
                                report.problem(format!(
                                    "{repo}: {what} of missing manifest {manifest}"
                                ));
                            }
                        }
                        _ => report.problem(format!(
                            "malformed {what} {:?}",
                            String::from_utf8_lossy(key)
                        )),
                    }
                }
            }
        }
        Ok(())
    }
}
