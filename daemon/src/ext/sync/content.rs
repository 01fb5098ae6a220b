//! Sync content rules (`extensions.sync.registries[].content[]`): which upstream repositories a
//! registry mirrors, under which local name, and which of their tags.
//!
//! Rules (zot's `pkg/extensions/sync/content.go`, checked against its tests and docs):
//! - A rule's `prefix` is a glob over upstream repository names: `*` stays within one path
//!   component, `**` crosses them. Leading and trailing `/` are ignored (zot strips the leading
//!   one). Rules are tried in order; the first whose prefix matches decides.
//! - Local name = `destination` + the upstream name; with `stripPrefix`, the prefix's literal
//!   leading components (those before the first one holding a glob meta character `* ? [ {
//!   \`) are removed first. So prefix `/repo1/repo2/**`, destination `/local`, stripPrefix maps
//!   `repo1/repo2/x` to `local/x`, and without stripPrefix to `local/repo1/repo2/x`. A prefix
//!   with no meta character (`/repo1/repo2`) matches only that one repository; with
//!   stripPrefix it lands at `destination` itself. zot strips the literal prefix as a string
//!   (`strings.Trim(prefix, "/*")`); berth strips whole components, which gives the same
//!   result for the documented forms (a literal path, optionally ending in `*` or `**`) and
//!   never splits a component (zot maps `repo/al*` + `alpine` to `pine`).
//! - On demand, [`ContentRules::upstream_repo`] inverts the mapping rule by rule and keeps the
//!   first rule whose prefix glob matches the upstream name it computes (zot's
//!   `GetContentByLocalRepo` + `GetRepoSource`).
//! - Tags: `regex` must match (unanchored search, Go's `MatchString`), `excludeRegex` must not
//!   match (an empty one excludes nothing, as in zot), and with `semver` the tag must parse
//!   with zot's semver library (Masterminds/semver v1: optional `v`, one to three numeric
//!   parts, optional `-pre` and `+build`; `1.2`, `v3` and `v1.0.0-rc1` pass, `latest` does
//!   not).
//! - No rules (empty `content`) admits every repository under its own name and every tag.

use std::sync::LazyLock;

use globset::GlobMatcher;
use regex::Regex;

use crate::config::{compile_tag_pattern, ContentConfig};
use crate::policy::tag_policy::compile_glob;

/// Characters that make a prefix component a glob pattern rather than a literal
/// (doublestar's `SplitPattern` stops at the same ones).
const GLOB_META: &[char] = &['*', '?', '[', '{', '\\'];

/// The compiled content rules of one registry.
#[derive(Clone, Debug, Default)]
pub struct ContentRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    /// The prefix glob, over upstream names.
    glob: GlobMatcher,
    /// The prefix's literal leading components (`repo1/repo2` for `/repo1/repo2/**`).
    literal_base: String,
    /// `destination` without leading or trailing `/` (empty: the registry root).
    destination: String,
    strip_prefix: bool,
    regex: Option<Regex>,
    exclude_regex: Option<Regex>,
    semver: bool,
}

/// `prefix` without leading or trailing `/`.
pub(crate) fn normalize_prefix(prefix: &str) -> &str {
    prefix.trim_matches('/')
}

/// Compiles a content prefix (after [`normalize_prefix`]); the error says what is wrong.
pub(crate) fn compile_prefix(prefix: &str) -> Result<GlobMatcher, String> {
    let prefix = normalize_prefix(prefix);
    if prefix.is_empty() {
        return Err("must not be empty: use \"**\" for every repository".to_owned());
    }
    compile_glob(prefix).map_err(|error| format!("bad glob {prefix:?}: {error}"))
}

/// The literal leading components of a normalized prefix.
fn literal_base(prefix: &str) -> String {
    prefix
        .split('/')
        .take_while(|component| !component.contains(GLOB_META))
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a normalized prefix has no glob meta character (matches one repository only).
pub(crate) fn is_literal_prefix(prefix: &str) -> bool {
    !normalize_prefix(prefix).contains(GLOB_META)
}

/// `destination` without leading or trailing `/`; checked to be a valid repository name (or
/// empty) when not.
pub(crate) fn normalize_destination(destination: &str) -> Result<&str, String> {
    let trimmed = destination.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(trimmed);
    }
    trimmed
        .parse::<berth_storage::oci::RepoName>()
        .map(|_| trimmed)
        .map_err(|error| format!("{destination:?} is not a repository name: {error}"))
}

/// `base` + `/` + `rest`, either side possibly empty.
fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}/{rest}"),
    }
}

/// `name` without the leading components `base` (whole components only).
fn strip_components<'a>(name: &'a str, base: &str) -> Option<&'a str> {
    if base.is_empty() {
        return Some(name);
    }
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// Whether `tag` is a version for zot's semver library (Masterminds/semver v1 `NewVersion`):
/// its regular expression, anchored, and each numeric part within Go's int64.
pub fn is_zot_semver(tag: &str) -> bool {
    static VERSION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?(\+([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$",
        )
        .expect("the semver pattern compiles")
    });
    let Some(captures) = VERSION.captures(tag) else {
        return false;
    };
    [1, 2, 3].into_iter().all(|group| {
        captures
            .get(group)
            .is_none_or(|part| part.as_str().trim_start_matches('.').parse::<i64>().is_ok())
    })
}

impl Rule {
    fn compile(content: &ContentConfig) -> Result<Rule, String> {
        let glob = compile_prefix(&content.prefix).map_err(|error| format!("prefix: {error}"))?;
        let destination = content
            .destination
            .as_deref()
            .map_or(Ok(""), normalize_destination)
            .map_err(|error| format!("destination: {error}"))?;
        let tags = content.tags.as_ref();
        let regex = tags
            .and_then(|tags| tags.regex.as_deref())
            .map(|pattern| compile_tag_pattern(pattern).map_err(|e| format!("tags.regex: {e}")))
            .transpose()?;
        let exclude_regex = tags
            .and_then(|tags| tags.exclude_regex.as_deref())
            .filter(|pattern| !pattern.is_empty())
            .map(|pattern| {
                compile_tag_pattern(pattern).map_err(|e| format!("tags.excludeRegex: {e}"))
            })
            .transpose()?;
        Ok(Rule {
            glob,
            literal_base: literal_base(normalize_prefix(&content.prefix)),
            destination: destination.to_owned(),
            strip_prefix: content.strip_prefix,
            regex,
            exclude_regex,
            semver: tags.is_some_and(|tags| tags.semver),
        })
    }

    /// The local name of `upstream`, which this rule's glob matched.
    fn local_name(&self, upstream: &str) -> Option<String> {
        let kept = if self.strip_prefix {
            strip_components(upstream, &self.literal_base)?
        } else {
            upstream
        };
        let local = join(&self.destination, kept);
        (!local.is_empty()).then_some(local)
    }

    /// The upstream name this rule maps to `local`, if it does.
    fn upstream_name(&self, local: &str) -> Option<String> {
        let rest = strip_components(local, &self.destination)?;
        let upstream = if self.strip_prefix {
            join(&self.literal_base, rest)
        } else {
            rest.to_owned()
        };
        (!upstream.is_empty() && self.glob.is_match(&upstream)).then_some(upstream)
    }

    fn admits_tag(&self, tag: &str) -> bool {
        self.regex.as_ref().is_none_or(|regex| regex.is_match(tag))
            && self
                .exclude_regex
                .as_ref()
                .is_none_or(|regex| !regex.is_match(tag))
            && (!self.semver || is_zot_semver(tag))
    }
}

impl ContentRules {
    /// Compiles `content` (in order). The error names the rule and the key, e.g.
    /// `content[1].prefix: bad glob ...`; config loading reports the same problems with their
    /// full key paths, so a loaded config always compiles.
    pub fn new(content: &[ContentConfig]) -> Result<ContentRules, String> {
        let rules = content
            .iter()
            .enumerate()
            .map(|(index, rule)| Rule::compile(rule).map_err(|e| format!("content[{index}].{e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContentRules { rules })
    }

    /// The first rule whose prefix matches the upstream name.
    fn rule_for_upstream(&self, upstream: &str) -> Option<&Rule> {
        let upstream = upstream.trim_matches('/');
        self.rules.iter().find(|rule| rule.glob.is_match(upstream))
    }

    /// On demand: the upstream repository for a local one, if a rule admits it (empty content
    /// admits all, same name).
    pub fn upstream_repo(&self, local: &str) -> Option<String> {
        let local = local.trim_matches('/');
        if self.rules.is_empty() {
            return (!local.is_empty()).then(|| local.to_owned());
        }
        self.rules.iter().find_map(|rule| rule.upstream_name(local))
    }

    /// Periodic: the local repository an upstream one lands in, if a rule admits it.
    pub fn local_repo(&self, upstream: &str) -> Option<String> {
        let upstream = upstream.trim_matches('/');
        if self.rules.is_empty() {
            return (!upstream.is_empty()).then(|| upstream.to_owned());
        }
        self.rule_for_upstream(upstream)?.local_name(upstream)
    }

    /// Whether `tag` of upstream repository `upstream` passes that rule's tag filters. A
    /// repository no rule admits admits no tag; empty content admits every tag.
    pub fn admits_tag(&self, upstream: &str, tag: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        self.rule_for_upstream(upstream)
            .is_some_and(|rule| rule.admits_tag(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TagFilter;

    fn rule(prefix: &str, destination: Option<&str>, strip_prefix: bool) -> ContentConfig {
        ContentConfig {
            prefix: prefix.to_owned(),
            tags: None,
            destination: destination.map(str::to_owned),
            strip_prefix,
        }
    }

    fn rules(content: &[ContentConfig]) -> ContentRules {
        ContentRules::new(content).expect("rules compile")
    }

    /// Checks `upstream` -> `local` both ways with one rule.
    fn assert_maps(content: ContentConfig, upstream: &str, local: &str) {
        let compiled = rules(std::slice::from_ref(&content));
        assert_eq!(
            compiled.local_repo(upstream).as_deref(),
            Some(local),
            "{content:?}: local of {upstream}"
        );
        assert_eq!(
            compiled.upstream_repo(local).as_deref(),
            Some(upstream),
            "{content:?}: upstream of {local}"
        );
    }

    #[test]
    fn destination_and_strip_prefix_map_both_ways() {
        // zot's content_internal_test.go table (upstream, rule, local).
        assert_maps(
            rule("zot-fold/alpine", Some("/alpine"), false),
            "zot-fold/alpine",
            "alpine/zot-fold/alpine",
        );
        assert_maps(
            rule("zot-fold/alpine", Some("/"), false),
            "zot-fold/alpine",
            "zot-fold/alpine",
        );
        assert_maps(
            rule("zot-fold/alpine", Some("/alpine"), true),
            "zot-fold/alpine",
            "alpine",
        );
        assert_maps(
            rule("zot-fold/*", Some("/"), true),
            "zot-fold/alpine",
            "alpine",
        );
        assert_maps(
            rule("zot-fold/**", Some("/"), true),
            "zot-fold/alpine",
            "alpine",
        );
        assert_maps(
            rule("zot-fold/**", Some("/"), false),
            "zot-fold/alpine",
            "zot-fold/alpine",
        );
        // The docs' forms: a leading "/" is ignored; stripPrefix removes the literal part.
        assert_maps(
            rule("/repo1/repo2/**", Some("/localrepo"), true),
            "repo1/repo2/x",
            "localrepo/x",
        );
        assert_maps(
            rule("/repo1/repo2/**", Some("/localrepo"), true),
            "repo1/repo2/x/y",
            "localrepo/x/y",
        );
        assert_maps(
            rule("/repo1/repo2/**", Some("/localrepo"), false),
            "repo1/repo2/x",
            "localrepo/repo1/repo2/x",
        );
        assert_maps(
            rule("/repo2/repo", Some("/repo2"), true),
            "repo2/repo",
            "repo2",
        );
        assert_maps(rule("/repo1/repo", None, false), "repo1/repo", "repo1/repo");
        assert_maps(
            rule("**", Some("/mirror/docker.io"), false),
            "library/alpine",
            "mirror/docker.io/library/alpine",
        );
        assert_maps(
            rule("**", Some("/mirror/docker.io"), true),
            "library/alpine",
            "mirror/docker.io/library/alpine",
        );
        assert_maps(rule("**", None, true), "library/alpine", "library/alpine");
        // Only whole components are stripped (zot would give "pine").
        assert_maps(
            rule("zot-fold/al*", Some("x"), true),
            "zot-fold/alpine",
            "x/alpine",
        );
        assert_maps(rule("a/*/c/**", None, true), "a/b/c/d", "b/c/d");
    }

    #[test]
    fn a_literal_prefix_names_one_repository() {
        let literal = rules(&[rule("/repo1/repo2", Some("/localrepo"), true)]);
        assert_eq!(
            literal.local_repo("repo1/repo2").as_deref(),
            Some("localrepo")
        );
        assert_eq!(literal.local_repo("repo1/repo2/x"), None);
        assert_eq!(literal.upstream_repo("localrepo/x"), None);
        assert_eq!(
            literal.upstream_repo("localrepo").as_deref(),
            Some("repo1/repo2")
        );
    }

    #[test]
    fn globs_keep_star_within_a_component() {
        let one_level = rules(&[rule("infra/*", None, false)]);
        assert!(one_level.local_repo("infra/busybox").is_some());
        assert_eq!(one_level.local_repo("infra/a/busybox"), None);
        assert_eq!(one_level.local_repo("other/busybox"), None);
        assert_eq!(one_level.upstream_repo("infra/a/busybox"), None);
        let any_depth = rules(&[rule("infra/**", None, false)]);
        assert!(any_depth.local_repo("infra/a/b/busybox").is_some());
        assert_eq!(any_depth.local_repo("infrastructure/x"), None);
        let alternatives = rules(&[rule("{alpine,debian}", Some("os"), false)]);
        assert_eq!(
            alternatives.local_repo("debian").as_deref(),
            Some("os/debian")
        );
        assert_eq!(alternatives.upstream_repo("os/fedora"), None);
    }

    #[test]
    fn on_demand_is_filtered_by_the_prefix() {
        let mirror = rules(&[
            rule("library/**", Some("/docker"), true),
            rule("project-zot/**", Some("/ghcr"), false),
        ]);
        assert_eq!(
            mirror.upstream_repo("docker/alpine").as_deref(),
            Some("library/alpine")
        );
        assert_eq!(
            mirror.upstream_repo("ghcr/project-zot/zot").as_deref(),
            Some("project-zot/zot")
        );
        // Under a destination, but outside the prefix.
        assert_eq!(mirror.upstream_repo("ghcr/other/zot"), None);
        // Outside every destination.
        assert_eq!(mirror.upstream_repo("alpine"), None);
        assert_eq!(mirror.upstream_repo("dockerx/alpine"), None);
        assert_eq!(mirror.local_repo("other/x"), None);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let ordered = rules(&[
            rule("a/**", Some("first"), false),
            rule("**", Some("second"), false),
        ]);
        assert_eq!(ordered.local_repo("a/x").as_deref(), Some("first/a/x"));
        assert_eq!(ordered.local_repo("b/x").as_deref(), Some("second/b/x"));
        assert_eq!(ordered.upstream_repo("second/a/x").as_deref(), Some("a/x"));
    }

    #[test]
    fn empty_content_admits_everything_under_its_own_name() {
        let all = ContentRules::new(&[]).unwrap();
        assert_eq!(
            all.upstream_repo("library/alpine").as_deref(),
            Some("library/alpine")
        );
        assert_eq!(
            all.local_repo("library/alpine").as_deref(),
            Some("library/alpine")
        );
        assert!(all.admits_tag("library/alpine", "latest"));
    }

    fn with_tags(
        prefix: &str,
        regex: Option<&str>,
        exclude: Option<&str>,
        semver: bool,
    ) -> ContentConfig {
        ContentConfig {
            tags: Some(TagFilter {
                regex: regex.map(str::to_owned),
                exclude_regex: exclude.map(str::to_owned),
                semver,
            }),
            ..rule(prefix, None, false)
        }
    }

    fn admitted<'a>(rules: &ContentRules, repo: &str, tags: &[&'a str]) -> Vec<&'a str> {
        tags.iter()
            .copied()
            .filter(|tag| rules.admits_tag(repo, tag))
            .collect()
    }

    #[test]
    fn tag_filters_follow_zot() {
        let tags = ["v1", "v2", "v3", "latest", "4.1.0", "4.1.0-rc1", "x4.0"];
        // Unanchored regex, as Go's MatchString.
        let regex = rules(&[with_tags("**", Some("4.*"), None, false)]);
        assert_eq!(admitted(&regex, "a", &tags), ["4.1.0", "4.1.0-rc1", "x4.0"]);
        let anchored = rules(&[with_tags("**", Some("^v[12]$"), None, false)]);
        assert_eq!(admitted(&anchored, "a", &tags), ["v1", "v2"]);
        let exclude = rules(&[with_tags("**", Some("4.*"), Some(".*-rc.*"), false)]);
        assert_eq!(admitted(&exclude, "a", &tags), ["4.1.0", "x4.0"]);
        // zot's semver library accepts a leading v and missing minor/patch parts.
        let semver = rules(&[with_tags("**", None, None, true)]);
        assert_eq!(
            admitted(&semver, "a", &tags),
            ["v1", "v2", "v3", "4.1.0", "4.1.0-rc1"]
        );
        let both = rules(&[with_tags("**", Some("4.*"), None, true)]);
        assert_eq!(admitted(&both, "a", &tags), ["4.1.0", "4.1.0-rc1"]);
        // An empty excludeRegex excludes nothing; empty tags filter everything through.
        let empty = rules(&[with_tags("**", None, Some(""), false)]);
        assert_eq!(admitted(&empty, "a", &tags), tags);
        // The filters of the rule that admits the repository apply; no rule, no tag.
        let per_repo = rules(&[
            with_tags("infra/*", None, None, true),
            with_tags("**", Some("^latest$"), None, false),
        ]);
        assert_eq!(
            admitted(&per_repo, "infra/busybox", &["latest", "v1.0.1"]),
            ["v1.0.1"]
        );
        assert_eq!(
            admitted(&per_repo, "app", &["latest", "v1.0.1"]),
            ["latest"]
        );
        let narrow = rules(&[rule("infra/*", None, false)]);
        assert!(!narrow.admits_tag("app", "latest"));
        assert!(narrow.admits_tag("infra/x", "latest"));
    }

    #[test]
    fn semver_is_masterminds_v1() {
        // zot's TestFilterTags: "1s0", "2v9", "v3.0.3" -> only "v3.0.3".
        for tag in [
            "v3.0.3",
            "1",
            "1.2",
            "v1.2.3",
            "1.2.3-rc.1",
            "1.2.3+build.5",
            "01.2.3",
            "1.2.3-x-y",
        ] {
            assert!(is_zot_semver(tag), "{tag}");
        }
        for tag in [
            "1s0",
            "2v9",
            "latest",
            "",
            "v",
            "1.2.3.4",
            "1.2.3-",
            "1.2.3+",
            "V1.2",
            "1..2",
            "9223372036854775808",
        ] {
            assert!(!is_zot_semver(tag), "{tag}");
        }
        assert!(is_zot_semver("9223372036854775807"));
    }

    #[test]
    fn bad_rules_are_refused_with_their_key() {
        let error =
            ContentRules::new(&[rule("**", None, false), rule("a[", None, false)]).unwrap_err();
        assert!(error.starts_with("content[1].prefix: bad glob"), "{error}");
        let error = ContentRules::new(&[rule("/", None, false)]).unwrap_err();
        assert!(
            error.starts_with("content[0].prefix: must not be empty"),
            "{error}"
        );
        let error = ContentRules::new(&[rule("**", Some("UPPER"), false)]).unwrap_err();
        assert!(error.starts_with("content[0].destination:"), "{error}");
        let error = ContentRules::new(&[with_tags("**", Some("(x"), None, false)]).unwrap_err();
        assert!(error.starts_with("content[0].tags.regex:"), "{error}");
        let error = ContentRules::new(&[with_tags("**", None, Some("(x"), false)]).unwrap_err();
        assert!(
            error.starts_with("content[0].tags.excludeRegex:"),
            "{error}"
        );
    }
}
