//! The index's value codecs: one record type per column family value, each with its fixed
//! binary layout (DESIGN.md draws them).
//!
//! Rules: big-endian integers and u16 length-prefixed strings; decoding a bad value is
//! `StorageError::Corrupt`, never a panic.
use bytes::Bytes;

use crate::error::StorageError;
use crate::oci::{Digest, RepoName};

pub(super) fn corrupt(what: &str, bytes: &[u8]) -> StorageError {
    StorageError::Corrupt(format!("{what}: {}", String::from_utf8_lossy(bytes)))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .map(|slice| u64::from_be_bytes(slice.try_into().expect("slice of 8")))
}

fn read_str(bytes: &[u8], at: usize) -> Option<(&str, usize)> {
    let length = u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(bytes.get(at + 2..at + 2 + length)?).ok()?;
    Some((text, at + 2 + length))
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    // Media types and digests are far below 64 KiB (manifest parsing bounds them).
    let length = u16::try_from(text.len()).expect("short string in index value");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// blobs: digest -> size, created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlobRecord {
    pub(crate) size: u64,
    pub(crate) created_ms: u64,
}

impl BlobRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<BlobRecord, StorageError> {
        match (bytes.len(), read_u64(bytes, 0), read_u64(bytes, 8)) {
            (16, Some(size), Some(created_ms)) => Ok(BlobRecord { size, created_ms }),
            _ => Err(corrupt("bad blob record", bytes)),
        }
    }
}

/// A single timestamp value (repo_blobs link time, repos created time).
pub(crate) fn encode_time(ms: u64) -> Vec<u8> {
    ms.to_be_bytes().to_vec()
}

/// manifests: repo\0digest -> version (1, or 2 with a flags byte), pushed, media type,
/// subject, bytes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ManifestRecord {
    pub(crate) pushed_ms: u64,
    pub(crate) media_type: String,
    pub(crate) subject: Option<Digest>,
    /// Stored by sync from an upstream: its blobs and child manifests are fetched when
    /// first asked for, so they may be absent.
    pub(crate) mirrored: bool,
    pub(crate) bytes: Bytes,
}

/// Version 1 has no flags byte; version 2 has one after the version.
const MANIFEST_RECORD_V1: u8 = 1;
const MANIFEST_RECORD_V2: u8 = 2;
const FLAG_MIRRORED: u8 = 1;

impl ManifestRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let subject = self.subject.as_ref().map(Digest::to_string);
        let mut out = Vec::with_capacity(self.bytes.len() + self.media_type.len() + 96);
        if self.mirrored {
            out.push(MANIFEST_RECORD_V2);
            out.push(FLAG_MIRRORED);
        } else {
            out.push(MANIFEST_RECORD_V1);
        }
        out.extend_from_slice(&self.pushed_ms.to_be_bytes());
        push_str(&mut out, &self.media_type);
        push_str(&mut out, subject.as_deref().unwrap_or(""));
        out.extend_from_slice(&self.bytes);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<ManifestRecord, StorageError> {
        let header = ManifestHeader::decode(bytes)?;
        Ok(ManifestRecord {
            pushed_ms: header.pushed_ms,
            media_type: header.media_type.to_owned(),
            subject: header.subject,
            mirrored: header.mirrored,
            bytes: Bytes::copy_from_slice(&bytes[header.body_at..]),
        })
    }
}

/// A manifest record's fields without its bytes (GC reads only these).
pub(crate) struct ManifestHeader<'a> {
    pub(crate) pushed_ms: u64,
    pub(crate) media_type: &'a str,
    pub(crate) subject: Option<Digest>,
    pub(crate) mirrored: bool,
    /// Where the manifest's bytes start in the value.
    pub(crate) body_at: usize,
}

impl ManifestHeader<'_> {
    pub(crate) fn decode(bytes: &[u8]) -> Result<ManifestHeader<'_>, StorageError> {
        let bad = || corrupt("bad manifest record", &bytes[..bytes.len().min(64)]);
        let (flags, at) = match bytes.first() {
            Some(&MANIFEST_RECORD_V1) => (0, 1),
            Some(&MANIFEST_RECORD_V2) => (*bytes.get(1).ok_or_else(bad)?, 2),
            _ => return Err(bad()),
        };
        let pushed_ms = read_u64(bytes, at).ok_or_else(bad)?;
        let (media_type, at) = read_str(bytes, at + 8).ok_or_else(bad)?;
        let (subject, body_at) = read_str(bytes, at).ok_or_else(bad)?;
        let subject = match subject {
            "" => None,
            text => Some(text.parse::<Digest>().map_err(|_| bad())?),
        };
        Ok(ManifestHeader {
            pushed_ms,
            media_type,
            subject,
            mirrored: flags & FLAG_MIRRORED != 0,
            body_at,
        })
    }
}

/// tags: repo\0tag -> pushed, digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagRecord {
    pub(crate) pushed_ms: u64,
    pub(crate) digest: Digest,
}

impl TagRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.pushed_ms.to_be_bytes().to_vec();
        out.extend_from_slice(self.digest.to_string().as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<TagRecord, StorageError> {
        let bad = || corrupt("bad tag record", bytes);
        let pushed_ms = read_u64(bytes, 0).ok_or_else(bad)?;
        let digest = std::str::from_utf8(&bytes[8..])
            .ok()
            .and_then(|text| text.parse::<Digest>().ok())
            .ok_or_else(bad)?;
        Ok(TagRecord { pushed_ms, digest })
    }
}

/// blob_refs value: what the referenced digest is to the referencing manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// A config or layer blob of an image manifest.
    Blob,
    /// A child manifest of an index.
    Manifest,
}

impl RefKind {
    pub(crate) fn encode(self) -> Vec<u8> {
        vec![match self {
            RefKind::Blob => b'b',
            RefKind::Manifest => b'm',
        }]
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<RefKind, StorageError> {
        match bytes {
            b"b" => Ok(RefKind::Blob),
            b"m" => Ok(RefKind::Manifest),
            _ => Err(corrupt("bad blob_refs value", bytes)),
        }
    }
}

/// uploads: id -> started, repo, optional owner. Encoded as the start time (8 bytes, big
/// endian), the repository name, then, when the session has an owner, a NUL byte and the
/// owner's user name. Repository names never hold a NUL, so records written before owners
/// existed decode as owner-less.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UploadRecord {
    pub(crate) started_ms: u64,
    pub(crate) repo: RepoName,
    /// The user who started the session (`None`: anyone with access may use it).
    pub(crate) owner: Option<String>,
}

impl UploadRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.started_ms.to_be_bytes().to_vec();
        out.extend_from_slice(self.repo.as_str().as_bytes());
        if let Some(owner) = &self.owner {
            out.push(0);
            out.extend_from_slice(owner.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<UploadRecord, StorageError> {
        let bad = || corrupt("bad upload record", bytes);
        let started_ms = read_u64(bytes, 0).ok_or_else(bad)?;
        let rest = &bytes[8..];
        let (repo, owner) = match rest.iter().position(|&byte| byte == 0) {
            Some(nul) => (&rest[..nul], Some(&rest[nul + 1..])),
            None => (rest, None),
        };
        let repo = std::str::from_utf8(repo)
            .ok()
            .and_then(|text| text.parse::<RepoName>().ok())
            .ok_or_else(bad)?;
        let owner = match owner {
            Some(owner) => Some(std::str::from_utf8(owner).map_err(|_| bad())?.to_owned()),
            None => None,
        };
        Ok(UploadRecord {
            started_ms,
            repo,
            owner,
        })
    }
}
