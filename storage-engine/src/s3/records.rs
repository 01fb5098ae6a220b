//! The multipart upload's state as plain data, stored in the upload session's index record
//! (SHARED.md D4) so that any node can carry the upload on.
//!
//! Layouts (big-endian integers, `str16` = u16 length + UTF-8, as index_records.rs):
//! - `S3Upload`: `version u8 = 1, upload id (32 ASCII bytes), multipart id str16`.
//! - `PartRecord`: `number u32, len u64, etag str16`; a list is `version u8 = 1, count u16`,
//!   then each record.
//!
//! Decoding bad bytes is `StorageError::Corrupt`, never a panic.
use crate::error::StorageError;
use crate::oci::UploadId;

const VERSION: u8 = 1;

/// A multipart upload begun for an upload session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Upload {
    pub(super) upload_id: UploadId,
    pub(super) multipart_id: String,
}

/// One uploaded part: S3's part number (1-based), its ETag, its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRecord {
    pub number: u32,
    pub etag: String,
    pub len: u64,
}

fn corrupt(what: &str, bytes: &[u8]) -> StorageError {
    StorageError::Corrupt(format!("{what} ({} bytes): {bytes:?}", bytes.len()))
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    // ETags and upload ids are short (S3 caps upload ids at 1 KiB); longer ones are refused
    // before they are recorded.
    let length = u16::try_from(text.len()).expect("checked at creation: under 64 KiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A `str16` at the front of `bytes`: the text and what follows it.
fn read_str(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (length, rest) = bytes.split_at_checked(2)?;
    let length = usize::from(u16::from_be_bytes(length.try_into().ok()?));
    let (text, rest) = rest.split_at_checked(length)?;
    Some((std::str::from_utf8(text).ok()?, rest))
}

/// Longest upload id or ETag a record takes (far above what S3 servers send).
pub(super) const MAX_ID_LEN: usize = 4096;

impl S3Upload {
    /// The upload session this multipart upload belongs to.
    pub fn upload_id(&self) -> &UploadId {
        &self.upload_id
    }

    /// S3's id of the multipart upload.
    pub fn multipart_id(&self) -> &str {
        &self.multipart_id
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 2 + self.multipart_id.len());
        out.push(VERSION);
        out.extend_from_slice(self.upload_id.as_str().as_bytes());
        push_str(&mut out, &self.multipart_id);
        out
    }

    /// A record naming a multipart upload that was never begun (record encoding tests).
    #[cfg(test)]
    pub(crate) fn for_tests(multipart_id: &str) -> S3Upload {
        S3Upload {
            upload_id: UploadId::random(),
            multipart_id: multipart_id.to_owned(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<S3Upload, StorageError> {
        let bad = || corrupt("bad S3 upload record", bytes);
        let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
        if version != VERSION {
            return Err(bad());
        }
        let (id, rest) = rest
            .split_at_checked(crate::oci::upload_id::UPLOAD_ID_LEN)
            .ok_or_else(bad)?;
        let upload_id = std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse().ok())
            .ok_or_else(bad)?;
        match read_str(rest) {
            Some((multipart_id, [])) if !multipart_id.is_empty() => Ok(S3Upload {
                upload_id,
                multipart_id: multipart_id.to_owned(),
            }),
            _ => Err(bad()),
        }
    }
}

impl PartRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.etag.len());
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        push_str(out, &self.etag);
    }

    pub fn decode(bytes: &[u8]) -> Result<PartRecord, StorageError> {
        match PartRecord::decode_from(bytes) {
            Some((record, [])) => Ok(record),
            _ => Err(corrupt("bad S3 part record", bytes)),
        }
    }

    fn decode_from(bytes: &[u8]) -> Option<(PartRecord, &[u8])> {
        let (number, rest) = bytes.split_at_checked(4)?;
        let (len, rest) = rest.split_at_checked(8)?;
        let (etag, rest) = read_str(rest)?;
        let number = u32::from_be_bytes(number.try_into().ok()?);
        if number == 0 || number > super::MAX_PARTS || etag.is_empty() {
            return None;
        }
        let record = PartRecord {
            number,
            etag: etag.to_owned(),
            len: u64::from_be_bytes(len.try_into().ok()?),
        };
        Some((record, rest))
    }

    /// A list of parts (at most [`super::MAX_PARTS`]) as one value.
    pub fn encode_list(parts: &[PartRecord]) -> Vec<u8> {
        let count = u16::try_from(parts.len()).expect("at most MAX_PARTS parts");
        let mut out = Vec::with_capacity(3 + parts.len() * 64);
        out.push(VERSION);
        out.extend_from_slice(&count.to_be_bytes());
        for part in parts {
            part.encode_into(&mut out);
        }
        out
    }

    pub fn decode_list(bytes: &[u8]) -> Result<Vec<PartRecord>, StorageError> {
        let bad = || corrupt("bad S3 part list", bytes);
        let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
        let (count, mut rest) = rest.split_at_checked(2).ok_or_else(bad)?;
        if version != VERSION {
            return Err(bad());
        }
        let count = u16::from_be_bytes(count.try_into().expect("2 bytes"));
        let mut parts = Vec::with_capacity(usize::from(count).min(1024));
        for _ in 0..count {
            let (part, after) = PartRecord::decode_from(rest).ok_or_else(bad)?;
            parts.push(part);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32) -> PartRecord {
        PartRecord {
            number,
            etag: format!("\"{number:032x}\""),
            len: 5 << 20,
        }
    }

    #[test]
    fn records_round_trip() {
        let upload = S3Upload {
            upload_id: UploadId::random(),
            multipart_id: "some-upload-id_with.chars".into(),
        };
        assert_eq!(S3Upload::decode(&upload.encode()).expect("decodes"), upload);
        let one = part(7);
        assert_eq!(PartRecord::decode(&one.encode()).expect("decodes"), one);
        let list: Vec<PartRecord> = (1..=3).map(part).collect();
        let encoded = PartRecord::encode_list(&list);
        assert_eq!(PartRecord::decode_list(&encoded).expect("decodes"), list);
        assert_eq!(
            PartRecord::decode_list(&PartRecord::encode_list(&[])).expect("decodes"),
            []
        );
    }

    #[test]
    fn bad_bytes_are_corrupt() {
        let upload = S3Upload {
            upload_id: UploadId::random(),
            multipart_id: "id".into(),
        }
        .encode();
        let list = PartRecord::encode_list(&[part(1), part(2)]);
        let one = part(1).encode();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty upload", Vec::new()),
            ("short upload", upload[..upload.len() - 1].to_vec()),
            ("long upload", [upload.as_slice(), b"x"].concat()),
            ("version", [&[9u8][..], &upload[1..]].concat()),
            ("upper-case id", upload.to_ascii_uppercase()),
        ];
        for (what, bytes) in cases.drain(..) {
            assert!(
                matches!(S3Upload::decode(&bytes), Err(StorageError::Corrupt(_))),
                "{what}"
            );
        }
        let mut zero_number = one.clone();
        zero_number[..4].copy_from_slice(&0u32.to_be_bytes());
        let mut huge_number = one.clone();
        huge_number[..4].copy_from_slice(&20_000u32.to_be_bytes());
        for (what, bytes) in [
            ("empty part", Vec::new()),
            ("short part", one[..one.len() - 1].to_vec()),
            ("zero part number", zero_number),
            ("part number above 10000", huge_number),
            ("trailing bytes", [one.as_slice(), b"x"].concat()),
        ] {
            assert!(
                matches!(PartRecord::decode(&bytes), Err(StorageError::Corrupt(_))),
                "{what}"
            );
        }
        let mut more = list.clone();
        more[2] = 3; // count 3, two records
        for (what, bytes) in [
            ("empty list", Vec::new()),
            ("short list", list[..list.len() - 2].to_vec()),
            ("count too high", more),
            ("list version", [&[0u8][..], &list[1..]].concat()),
            ("trailing list bytes", [list.as_slice(), &[0]].concat()),
        ] {
            assert!(
                matches!(
                    PartRecord::decode_list(&bytes),
                    Err(StorageError::Corrupt(_))
                ),
                "{what}"
            );
        }
    }
}
