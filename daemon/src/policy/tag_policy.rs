//! Immutable tags (`storage.immutableTags`, a berth key): once a tag that matches one of the
//! patterns names a manifest, a push cannot move it to another manifest (403 DENIED); pushing
//! the same manifest again is allowed, and deleting the tag is a delete (an action access
//! control will govern once authentication exists).
//!
//! Rules: a pattern is `REPOSITORY_GLOB:TAG_GLOB`, or `TAG_GLOB` for every repository. In a
//! repository glob `*` stays within one path component and `**` crosses them; tags have no
//! `/`. Patterns are checked at config load ([`ImmutableTags::new`] is the one parser); the
//! engine checks and commits under the repository lock, so the rule holds under races.
use berth_storage::oci::{RepoName, Tag};
use globset::{GlobBuilder, GlobMatcher};

/// The compiled patterns.
#[derive(Clone, Debug, Default)]
pub struct ImmutableTags {
    patterns: Vec<(Option<GlobMatcher>, GlobMatcher)>,
}

/// Compiles a glob over repository names or tags: `*` stays within one path component, `**`
/// crosses them (shared with quota.rs). The error is globset's description.
pub(crate) fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|error| error.kind().to_string())
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    compile_glob(pattern).map_err(|error| format!("bad glob {pattern:?}: {error}"))
}

impl ImmutableTags {
    /// Compiles `patterns`; the error names the first bad one.
    pub fn new(patterns: &[String]) -> Result<ImmutableTags, String> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            let (repo, tag) = match pattern.split_once(':') {
                Some((repo, tag)) => (Some(glob(repo)?), glob(tag)?),
                None => (None, glob(pattern)?),
            };
            compiled.push((repo, tag));
        }
        Ok(ImmutableTags { patterns: compiled })
    }

    pub fn is_immutable(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.patterns.iter().any(|(repo_glob, tag_glob)| {
            tag_glob.is_match(tag.as_str())
                && repo_glob
                    .as_ref()
                    .is_none_or(|glob| glob.is_match(repo.as_str()))
        })
    }

    /// The tags among `tags` that are immutable in `repo`.
    pub fn select<'a>(&self, repo: &RepoName, tags: impl IntoIterator<Item = &'a Tag>) -> Vec<Tag> {
        if self.patterns.is_empty() {
            return Vec::new();
        }
        tags.into_iter()
            .filter(|tag| self.is_immutable(repo, tag))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        name.parse().expect("valid name")
    }

    fn tag(name: &str) -> Tag {
        name.parse().expect("valid tag")
    }

    #[test]
    fn patterns_match_tags_and_repositories() {
        let patterns = [
            "v*".to_owned(),
            "prod/*:release-*".to_owned(),
            "base/**:stable".to_owned(),
        ];
        let immutable = ImmutableTags::new(&patterns).expect("patterns compile");
        assert!(immutable.is_immutable(&repo("any/repo"), &tag("v1.2")));
        assert!(!immutable.is_immutable(&repo("any/repo"), &tag("latest")));
        assert!(immutable.is_immutable(&repo("prod/app"), &tag("release-3")));
        // `*` stays within one component.
        assert!(!immutable.is_immutable(&repo("prod/team/app"), &tag("release-3")));
        assert!(!immutable.is_immutable(&repo("dev/app"), &tag("release-3")));
        assert!(immutable.is_immutable(&repo("base/os/debian"), &tag("stable")));
        let tags = [tag("v1"), tag("latest"), tag("v2")];
        assert_eq!(
            immutable.select(&repo("x"), &tags),
            vec![tag("v1"), tag("v2")]
        );
        assert!(ImmutableTags::new(&["a[".to_owned()]).is_err());
        assert!(ImmutableTags::default()
            .select(&repo("x"), &tags)
            .is_empty());
    }
}
