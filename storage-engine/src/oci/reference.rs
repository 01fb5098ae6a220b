//! Manifest references: the `<reference>` path segment, a tag or a digest.
//!
//! Rule: a reference containing `:` is a digest (parsed strictly), anything else is a tag.
//! A 64-hex string without `sha256:` is therefore a tag, never a digest.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};
use super::tag::{Tag, TagError};

/// A tag or a digest naming a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a reference was refused; says which form was attempted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Tag(#[from] TagError),
}

impl Reference {
    pub fn as_tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        }
    }

    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Tag(_) => None,
            Reference::Digest(digest) => Some(digest),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        if input.contains(':') {
            Ok(Reference::Digest(input.parse()?))
        } else {
            Ok(Reference::Tag(input.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => tag.fmt(f),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

impl From<Tag> for Reference {
    fn from(tag: Tag) -> Reference {
        Reference::Tag(tag)
    }
}

impl From<Digest> for Reference {
    fn from(digest: Digest) -> Reference {
        Reference::Digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_tag_or_digest_by_colon() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let as_tag: Reference = hex.parse().unwrap();
        assert_eq!(as_tag.as_tag().map(Tag::as_str), Some(hex));
        let with_algorithm = format!("sha256:{hex}");
        let as_digest: Reference = with_algorithm.parse().unwrap();
        assert_eq!(as_digest.as_digest().map(Digest::hex), Some(hex));
        assert_eq!(as_digest.to_string(), with_algorithm);
        assert_eq!(as_tag.to_string(), hex);
    }

    #[test]
    fn reports_the_attempted_form() {
        assert_eq!(
            "sha256:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(DigestError::Malformed))
        );
        assert_eq!(
            "md5:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(DigestError::UnsupportedAlgorithm(
                "md5".into()
            )))
        );
        assert_eq!(
            ".latest".parse::<Reference>(),
            Err(ReferenceError::Tag(TagError::Grammar))
        );
        assert_eq!(
            "".parse::<Reference>(),
            Err(ReferenceError::Tag(TagError::Empty))
        );
    }
}
