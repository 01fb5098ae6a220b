//! Tags (`<reference>` in `/v2/<name>/manifests/<reference>` when it is not a digest).
//!
//! Rules (distribution-spec): `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`, so at most
//! [`MAX_TAG_LEN`] ASCII bytes, never starting with `.` or `-`, never containing `/` or `:`.
//! Hand-written validator; tests and `fuzz/` compare it with the regex.

use std::fmt;
use std::str::FromStr;

/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 128;

/// Why a tag was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag is {length} bytes long; the limit is 128")]
    TooLong { length: usize },
    #[error("invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Grammar,
}

/// A validated tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(input: &str) -> Result<Tag, TagError> {
        let bytes = input.as_bytes();
        let Some((&first, rest)) = bytes.split_first() else {
            return Err(TagError::Empty);
        };
        if bytes.len() > MAX_TAG_LEN {
            return Err(TagError::TooLong {
                length: bytes.len(),
            });
        }
        let first_ok = first.is_ascii_alphanumeric() || first == b'_';
        let rest_ok = rest
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !first_ok || !rest_ok {
            return Err(TagError::Grammar);
        }
        Ok(Tag(input.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::serde_via_str!(Tag, "a tag");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const SPEC_PATTERN: &str = "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

    fn spec_accepts(input: &str) -> bool {
        regex::Regex::new(SPEC_PATTERN).unwrap().is_match(input)
    }

    #[test]
    fn accepts_valid_tags() {
        let longest = "x".repeat(128);
        let hex64 = "a".repeat(64);
        for input in ["latest", "v1.0.0", "_", "A-b_c.D", "0", &longest, &hex64] {
            assert_eq!(input.parse::<Tag>().unwrap().as_str(), input);
            assert!(spec_accepts(input));
        }
    }

    #[test]
    fn rejects_invalid_tags() {
        let too_long = "x".repeat(129);
        for (input, error) in [
            ("", TagError::Empty),
            (too_long.as_str(), TagError::TooLong { length: 129 }),
            (".x", TagError::Grammar),
            ("-x", TagError::Grammar),
            ("a/b", TagError::Grammar),
            ("a:b", TagError::Grammar),
            ("tag\n", TagError::Grammar),
            ("\u{fb01}", TagError::Grammar),
            ("%00", TagError::Grammar),
            ("a\0", TagError::Grammar),
            (" a", TagError::Grammar),
        ] {
            assert_eq!(input.parse::<Tag>(), Err(error), "{input:?}");
            assert!(!spec_accepts(input), "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_spec_regex(input in "[a-zA-Z0-9._:/ -]{0,10}|[a-z_]{120,135}|\\PC{0,4}") {
            prop_assert_eq!(input.parse::<Tag>().is_ok(), spec_accepts(&input));
        }

        #[test]
        fn round_trips(input in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}") {
            let tag: Tag = input.parse().unwrap();
            prop_assert_eq!(tag.to_string(), input);
            let json = serde_json::to_string(&tag).unwrap();
            prop_assert_eq!(serde_json::from_str::<Tag>(&json).unwrap(), tag);
        }
    }
}
