//! Upload session ids: the `<id>` in `/v2/<name>/blobs/uploads/<id>`.
//!
//! Rule: berth only issues uuid v4 ids in simple form (32 lowercase hex digits), and the parser
//! accepts exactly that shape, so a session id is always safe as a file name and never `..`.

use std::fmt;
use std::str::FromStr;

/// Length of an upload id.
pub const UPLOAD_ID_LEN: usize = 32;

/// The id was not 32 lowercase hex digits.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid upload session id: expected 32 lowercase hex digits")]
pub struct UploadIdError;

/// A validated upload session id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random (uuid v4) id.
    pub fn random() -> UploadId {
        UploadId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UploadId {
    type Err = UploadIdError;

    fn from_str(input: &str) -> Result<UploadId, UploadIdError> {
        let lowercase_hex = input
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if input.len() != UPLOAD_ID_LEN || !lowercase_hex {
            return Err(UploadIdError);
        }
        Ok(UploadId(input.to_owned()))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::serde_via_str!(UploadId, "an upload session id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_and_differ() {
        let first = UploadId::random();
        let second = UploadId::random();
        assert_ne!(first, second);
        assert_eq!(first.as_str().parse::<UploadId>(), Ok(first.clone()));
        assert_eq!(first.to_string().len(), UPLOAD_ID_LEN);
    }

    #[test]
    fn rejects_everything_else() {
        let long = "a".repeat(1000);
        for input in [
            "",
            "..",
            ".",
            "%2e%2e",
            "a/b",
            &long,
            "0123456789ABCDEF0123456789abcdef",
            "01234567-89ab-cdef-0123-456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(input.parse::<UploadId>(), Err(UploadIdError), "{input:?}");
        }
        assert!("0123456789abcdef0123456789abcdef"
            .parse::<UploadId>()
            .is_ok());
    }
}
