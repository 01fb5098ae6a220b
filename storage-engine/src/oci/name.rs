//! Repository names (`<name>` in `/v2/<name>/...`).
//!
//! Rules (distribution-spec): the name matches
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` and is at most
//! [`MAX_NAME_LEN`] bytes. Consequently a name has no empty component, no `.`/`..` component,
//! no leading/trailing `/`, no uppercase and nothing outside ASCII, so it is safe to use as a
//! relative path. The validator is hand-written; tests and `fuzz/` compare it with the regex.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted (distribution-spec and zot's limit).
pub const MAX_NAME_LEN: usize = 255;

/// Why a repository name was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("repository name is {length} bytes long; the limit is 255")]
    TooLong { length: usize },
    #[error(
        "invalid repository name: components of [a-z0-9] separated by '.', '_', '__' or runs \
         of '-', joined by single '/'"
    )]
    Grammar,
}

/// A validated repository name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components, each non-empty and free of `.`-only names.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(input: &str) -> Result<RepoName, NameError> {
        if input.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                length: input.len(),
            });
        }
        if !input.split('/').all(is_component) {
            return Err(NameError::Grammar);
        }
        Ok(RepoName(input.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_component(component: &str) -> bool {
    // Between two alphanumeric runs: exactly ".", "_", "__", or one or more "-".
    let bytes = component.as_bytes();
    let mut index = 0;
    loop {
        let run_start = index;
        while index < bytes.len() && matches!(bytes[index], b'a'..=b'z' | b'0'..=b'9') {
            index += 1;
        }
        if index == run_start {
            return false;
        }
        if index == bytes.len() {
            return true;
        }
        let separator_start = index;
        while index < bytes.len() && matches!(bytes[index], b'.' | b'_' | b'-') {
            index += 1;
        }
        match &bytes[separator_start..index] {
            b"." | b"_" | b"__" => {}
            separator if !separator.is_empty() && separator.iter().all(|&b| b == b'-') => {}
            _ => return false,
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::serde_via_str!(RepoName, "a repository name");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const SPEC_PATTERN: &str =
        r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";

    fn spec_accepts(input: &str) -> bool {
        regex::Regex::new(SPEC_PATTERN).unwrap().is_match(input) && input.len() <= MAX_NAME_LEN
    }

    #[test]
    fn accepts_valid_names() {
        let long_name = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(long_name.len(), 255);
        for input in [
            "a",
            "a__b",
            "a.b",
            "a-----b",
            "a/b/c/d/e/f/g",
            "library/ubuntu",
            "0/1",
            "a_b.c-d",
            long_name.as_str(),
        ] {
            let name: RepoName = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(name.as_str(), input);
            assert!(spec_accepts(input), "{input}");
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for input in [
            "", "../etc", "a/../b", "a/./b", "..", ".", "%2e%2e/x", "a%2Fb", "a//b", "/a", "a/",
            "A/B", "a..b", "a___b", "a.-b", "a-.b", "a_-b", "-a", "_a", "a-", "a.", "ä", "a\0b",
            "a b", "a\\b", "a:b",
        ] {
            assert_eq!(
                input.parse::<RepoName>(),
                Err(NameError::Grammar),
                "{input:?}"
            );
            assert!(!spec_accepts(input), "{input:?}");
        }
    }

    #[test]
    fn enforces_the_length_limit_exactly() {
        let ok = "a".repeat(255);
        assert!(ok.parse::<RepoName>().is_ok());
        for length in [256, 300] {
            assert_eq!(
                "a".repeat(length).parse::<RepoName>(),
                Err(NameError::TooLong { length })
            );
        }
        let too_many_components = "a/".repeat(128) + "a";
        assert_eq!(
            too_many_components.parse::<RepoName>(),
            Err(NameError::TooLong { length: 257 })
        );
        let at_limit = "a/".repeat(127) + "a";
        assert_eq!(at_limit.len(), 255);
        assert!(at_limit.parse::<RepoName>().is_ok());
    }

    proptest! {
        #[test]
        fn agrees_with_the_spec_regex(input in "[a-z0-9._/-]{0,12}|[a-zA-Z0-9._/ -]{0,6}") {
            prop_assert_eq!(input.parse::<RepoName>().is_ok(), spec_accepts(&input));
        }

        #[test]
        fn round_trips(input in "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,3}(/[a-z0-9]{1,4}((\\.|_|__|-+)[a-z0-9]{1,3}){0,2}){0,4}") {
            let name: RepoName = input.parse().unwrap();
            prop_assert_eq!(name.to_string(), input.clone());
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(serde_json::from_str::<RepoName>(&json).unwrap(), name);
        }
    }
}
