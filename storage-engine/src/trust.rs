//! The trust extension's durable state, in the `trust` family: the uploaded cosign keys and
//! notation certificates (the trust store), its generation, and the verdict on every signature
//! manifest. The engine stores and lists; judging signatures is the daemon's (ext/trust).
//!
//! Keys and values:
//! - `m\0<kind>\0<id>` -> `version u8 = 1, uploaded_unix u64 (big-endian), material (rest)`:
//!   one trust-store entry. `kind` is `cosign`, `ca`, `signingAuthority` or `tsa`; `id` is
//!   `sha256:<hex>` of the material (the key's DER SPKI, the certificate's DER), so the same
//!   key uploaded twice is one entry. The material is a PEM key or a DER certificate.
//! - `g` -> `u64` (big-endian): the trust store's generation, raised in the same batch as
//!   every change of the store, so a verdict made against an older store is known stale.
//! - `v\0<repo>\0<signature manifest digest>` -> JSON [`SignatureRecord`]: the verdict on
//!   each signature layer of that manifest, the generation it was made against and what it
//!   signs. A verdict is derived data: a missing or stale one is made again by the daemon's
//!   trust pass, and reads as "not judged yet" (untrusted) until then.
//!
//! Writes are synced (durable when they return) and refused by a read-only engine; reads are
//! point lookups or scans of this family.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf};
use crate::oci::{Digest, RepoName};
use crate::search::signed_by_tag;

/// The artifact types of signature manifests pushed as referrers, and the tool of each.
pub const SIGNATURE_ARTIFACT_TYPES: &[(&str, &str)] = &[
    ("application/vnd.dev.cosign.artifact.sig.v1+json", "cosign"),
    ("application/vnd.dev.sigstore.bundle.v0.3+json", "cosign"),
    ("application/vnd.cncf.notary.signature", "notation"),
];

/// The tool of a signature referrer's artifact type, `None` when it is not a signature.
pub fn signature_tool(artifact_type: &str) -> Option<&'static str> {
    SIGNATURE_ARTIFACT_TYPES
        .iter()
        .find(|(kind, _)| *kind == artifact_type)
        .map(|(_, tool)| *tool)
}

const MATERIAL_VERSION: u8 = 1;
const GENERATION_KEY: &[u8] = b"g";
const VERDICT_VERSION: u8 = 1;

/// What a trust-store entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustKind {
    /// A cosign public key (PEM).
    Cosign,
    /// notation trust store `ca` (a DER certificate).
    Ca,
    /// notation trust store `signingAuthority`.
    SigningAuthority,
    /// notation trust store `tsa` (timestamp authorities).
    Tsa,
}

impl TrustKind {
    pub const ALL: [TrustKind; 4] = [
        TrustKind::Cosign,
        TrustKind::Ca,
        TrustKind::SigningAuthority,
        TrustKind::Tsa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrustKind::Cosign => "cosign",
            TrustKind::Ca => "ca",
            TrustKind::SigningAuthority => "signingAuthority",
            TrustKind::Tsa => "tsa",
        }
    }

    fn parse(text: &str) -> Option<TrustKind> {
        TrustKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One trust-store entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustMaterial {
    pub kind: TrustKind,
    /// `sha256:<hex>` of the material's canonical bytes (chosen by the caller).
    pub id: String,
    pub uploaded_unix: u64,
    /// A cosign key's PEM, a certificate's DER.
    pub bytes: Vec<u8>,
}

impl TrustMaterial {
    fn key(kind: TrustKind, id: &str) -> Vec<u8> {
        index::key(&["m", kind.as_str(), id])
    }

    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(9 + self.bytes.len());
        value.push(MATERIAL_VERSION);
        value.extend_from_slice(&self.uploaded_unix.to_be_bytes());
        value.extend_from_slice(&self.bytes);
        value
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<TrustMaterial, StorageError> {
        let corrupt = || StorageError::Corrupt("bad trust store record".into());
        let parts = index::split_key(key)?;
        let [_, kind, id] = parts.as_slice() else {
            return Err(corrupt());
        };
        let kind = TrustKind::parse(kind).ok_or_else(corrupt)?;
        if value.len() < 9 || value[0] != MATERIAL_VERSION {
            return Err(corrupt());
        }
        Ok(TrustMaterial {
            kind,
            id: (*id).to_owned(),
            uploaded_unix: u64::from_be_bytes(value[1..9].try_into().expect("slice of 8")),
            bytes: value[9..].to_vec(),
        })
    }
}

/// A change of the trust store.
#[derive(Clone, Debug)]
pub enum TrustChange {
    Add(TrustMaterial),
    Remove(TrustKind, String),
}

/// The verdict on one signature layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVerdict {
    /// `cosign` or `notation`.
    pub tool: String,
    pub trusted: bool,
    /// Who signed, when trusted: the cosign key's PEM, the notation signer's subject.
    pub author: String,
    /// Why it is not trusted ("" when it is).
    pub reason: String,
    /// When a trusted verdict lapses by itself (Unix seconds).
    pub expires_unix: Option<i64>,
}

impl LayerVerdict {
    /// Whether it is trusted at `now_unix` (a trusted verdict past its expiry is not).
    pub fn trusted_at(&self, now_unix: i64) -> bool {
        self.trusted && self.expires_unix.is_none_or(|expires| now_unix < expires)
    }
}

/// The verdicts on one signature manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    #[serde(rename = "v")]
    pub version: u8,
    /// The trust store's generation it was judged against.
    pub generation: u64,
    pub judged_unix: u64,
    /// The digest of the manifest it signs.
    pub subject: String,
    /// One per signature layer, in the manifest's order.
    pub layers: Vec<LayerVerdict>,
}

impl SignatureRecord {
    pub fn new(generation: u64, subject: &Digest, layers: Vec<LayerVerdict>) -> SignatureRecord {
        SignatureRecord {
            version: VERDICT_VERSION,
            generation,
            judged_unix: index::now_ms() / 1000,
            subject: subject.to_string(),
            layers,
        }
    }

    fn decode(value: &[u8]) -> Result<SignatureRecord, StorageError> {
        serde_json::from_slice::<SignatureRecord>(value)
            .ok()
            .filter(|record| record.version == VERDICT_VERSION)
            .ok_or_else(|| StorageError::Corrupt("bad signature verdict record".into()))
    }

    /// The earliest time one of its trusted verdicts lapses.
    pub fn next_expiry(&self) -> Option<i64> {
        self.layers
            .iter()
            .filter(|layer| layer.trusted)
            .filter_map(|layer| layer.expires_unix)
            .min()
    }
}

/// A stored signature manifest: where it is and what it signs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SignatureManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub subject: Digest,
}

fn verdict_key(repo: &RepoName, digest: &Digest) -> Vec<u8> {
    index::key(&["v", repo.as_str(), &digest.to_string()])
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StorageError> {
    text.parse()
        .map_err(|_| StorageError::Corrupt(format!("bad {what} in the index: {text:?}")))
}

impl Engine {
    /// The trust store: its generation and every entry, ordered by kind and id.
    pub async fn trust_store(&self) -> Result<(u64, Vec<TrustMaterial>), StorageError> {
        let generation = self.trust_generation().await?;
        let mut materials = Vec::new();
        self.inner
            .index
            .visit(Cf::Trust, &index::prefix(&["m"]), None, |key, value| {
                materials.push(TrustMaterial::decode(key, value)?);
                Ok(true)
            })
            .await?;
        Ok((generation, materials))
    }

    async fn trust_generation(&self) -> Result<u64, StorageError> {
        match self.inner.index.get(Cf::Trust, GENERATION_KEY).await? {
            None => Ok(0),
            Some(value) => value
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("bad trust store generation".into())),
        }
    }

    /// Applies `change` to the trust store and raises its generation, with `verdicts` (made
    /// against the changed store, their generation set here) in the same synced batch.
    /// Returns the new generation, or `None` when the change changes nothing (the entry
    /// exists already / does not exist), in which case nothing is written. The caller
    /// serialises changes (two concurrent ones could both read the same generation).
    /// Cancel: the batch is applied whole or not at all.
    pub async fn change_trust(
        &self,
        change: &TrustChange,
        verdicts: Vec<(SignatureManifest, SignatureRecord)>,
    ) -> Result<Option<u64>, StorageError> {
        self.inner.writable()?;
        let mut batch = Batch::default();
        match change {
            TrustChange::Add(material) => {
                let key = TrustMaterial::key(material.kind, &material.id);
                if self.inner.index.contains(Cf::Trust, &key).await? {
                    return Ok(None);
                }
                batch.put(Cf::Trust, key, material.encode());
            }
            TrustChange::Remove(kind, id) => {
                let key = TrustMaterial::key(*kind, id);
                if !self.inner.index.contains(Cf::Trust, &key).await? {
                    return Ok(None);
                }
                batch.delete(Cf::Trust, key);
            }
        }
        let generation = self.trust_generation().await? + 1;
        batch.put(
            Cf::Trust,
            GENERATION_KEY.to_vec(),
            generation.to_be_bytes().to_vec(),
        );
        for (signature, mut record) in verdicts {
            record.generation = generation;
            put_verdict(&mut batch, &signature, &record);
        }
        self.inner.write_index(batch).await?;
        Ok(Some(generation))
    }

    /// Stores verdicts (replacing earlier ones) in one synced batch; `forget` deletes the
    /// verdicts of signature manifests that are gone. Cancel: all or nothing.
    pub async fn put_signature_verdicts(
        &self,
        verdicts: Vec<(SignatureManifest, SignatureRecord)>,
        forget: &[(RepoName, Digest)],
    ) -> Result<(), StorageError> {
        self.inner.writable()?;
        let mut batch = Batch::default();
        for (signature, record) in &verdicts {
            put_verdict(&mut batch, signature, record);
        }
        for (repo, digest) in forget {
            batch.delete(Cf::Trust, verdict_key(repo, digest));
        }
        if !batch.is_empty() {
            self.inner.write_index(batch).await?;
        }
        Ok(())
    }

    /// The verdict on signature manifest `digest` of `repo`, if judged. One point lookup.
    pub async fn signature_verdict(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<SignatureRecord>, StorageError> {
        self.inner
            .index
            .get(Cf::Trust, &verdict_key(repo, digest))
            .await?
            .map(|value| SignatureRecord::decode(&value))
            .transpose()
    }

    /// Every stored verdict, by repository and signature digest.
    pub async fn signature_verdicts(
        &self,
    ) -> Result<BTreeMap<(RepoName, Digest), SignatureRecord>, StorageError> {
        let mut found = BTreeMap::new();
        self.inner
            .index
            .visit(Cf::Trust, &index::prefix(&["v"]), None, |key, value| {
                let parts = index::split_key(key)?;
                let [_, repo, digest] = parts.as_slice() else {
                    return Err(StorageError::Corrupt("bad signature verdict key".into()));
                };
                let record = SignatureRecord::decode(value)?;
                found.insert(
                    (parse(repo, "repository")?, parse(digest, "digest")?),
                    record,
                );
                Ok(true)
            })
            .await?;
        Ok(found)
    }

    /// Every signature manifest stored: cosign signature tags (`sha256-<hex>.sig`, signing
    /// the digest their name gives) and referrers of a signature artifact type. Two scans
    /// (tags, referrers), no manifest read.
    pub async fn signature_manifests(&self) -> Result<Vec<SignatureManifest>, StorageError> {
        let mut found = Vec::new();
        self.inner
            .index
            .visit(Cf::Tags, b"", None, |key, value| {
                let parts = index::split_key(key)?;
                if let [repo, tag] = parts.as_slice() {
                    if let Some(subject) = signed_by_tag(tag) {
                        let record = index::TagRecord::decode(value)?;
                        found.push(SignatureManifest {
                            repo: parse(repo, "repository")?,
                            digest: record.digest,
                            subject: parse(&subject, "digest")?,
                        });
                    }
                }
                Ok(true)
            })
            .await?;
        self.inner
            .index
            .visit(Cf::Referrers, b"", None, |key, value| {
                let descriptor: crate::oci::Descriptor =
                    serde_json::from_slice(value).map_err(|error| {
                        StorageError::Corrupt(format!("bad referrer entry: {error}"))
                    })?;
                let is_signature = descriptor
                    .artifact_type
                    .as_deref()
                    .and_then(signature_tool)
                    .is_some();
                let parts = index::split_key(key)?;
                if let (true, [repo, subject, _]) = (is_signature, parts.as_slice()) {
                    found.push(SignatureManifest {
                        repo: parse(repo, "repository")?,
                        digest: descriptor.digest.clone(),
                        subject: parse(subject, "digest")?,
                    });
                }
                Ok(true)
            })
            .await?;
        found.sort();
        found.dedup();
        Ok(found)
    }
}

fn put_verdict(batch: &mut Batch, signature: &SignatureManifest, record: &SignatureRecord) {
    let value = serde_json::to_vec(record).expect("a verdict serializes");
    batch.put(
        Cf::Trust,
        verdict_key(&signature.repo, &signature.digest),
        value,
    );
}
