//! Retention policies (zot's `storage.retention.policies`), compiled from the config and
//! evaluated for the engine's GC pass through `berth_storage::Retention`.
//!
//! Rules (zot's documented semantics; the engine asks, this module decides):
//! - A repository follows the FIRST policy one of whose `repositories` globs matches it
//!   (`*` within one path component, `**` across them). No policy: keep every tag, delete
//!   untagged manifests, keep referrers (`RepoRules::default()`).
//! - A policy with no `keepTags` (absent or empty) keeps every tag.
//! - A tag is kept iff some `keepTags` entry keeps it (entries are ORed). An entry keeps a tag
//!   iff the tag matches one of its `patterns` (unanchored regex search, as Go's
//!   `MatchString`; no patterns = every tag) AND (the entry has no other rule, OR it was
//!   pulled within `pulledWithin`, OR pushed within `pushedWithin`, OR it is among the
//!   `mostRecentlyPushedCount` newest pushes, OR among the `mostRecentlyPulledCount` latest
//!   pulls, both counted among the tags that match the entry's patterns).
//! - Never-pulled tags are not pulls: they satisfy no `pulledWithin` and take no place in
//!   `mostRecentlyPulledCount`. A count of 0 is no rule (zot).
//! - Ranking is deterministic: time descending, then tag name ascending.
//! - Times in the future (clock steps) count as "now": such a tag is within every window.
use std::cmp::Reverse;

use berth_storage::{RepoRules, Retention, TagInfo};
use globset::GlobMatcher;
use regex::Regex;

use crate::config::RetentionConfig;
use crate::config::{check_repository_glob, compile_tag_pattern};

/// The compiled policies, in config order.
#[derive(Debug)]
pub struct RetentionPolicies {
    policies: Vec<Policy>,
}

#[derive(Debug)]
struct Policy {
    repositories: Vec<GlobMatcher>,
    rules: RepoRules,
    keep_tags: Vec<KeepTags>,
}

/// One compiled `keepTags` entry. Durations are in ms; counts of 0 are no rule.
#[derive(Debug)]
struct KeepTags {
    patterns: Vec<Regex>,
    pulled_within_ms: Option<u64>,
    pushed_within_ms: Option<u64>,
    pushed_count: usize,
    pulled_count: usize,
}

impl RetentionPolicies {
    /// Compiles `config`. The config loader already checked every glob and regex, so an
    /// error here (which names the entry, e.g. `policies[0].keepTags[1].patterns[0]`) means a
    /// config built by hand.
    pub fn new(config: &RetentionConfig) -> Result<RetentionPolicies, String> {
        let mut policies = Vec::with_capacity(config.policies.len());
        for (index, policy) in config.policies.iter().enumerate() {
            let path = format!("policies[{index}]");
            let repositories = policy
                .repositories
                .iter()
                .enumerate()
                .map(|(glob_index, glob)| {
                    check_repository_glob(glob)
                        .map_err(|error| format!("{path}.repositories[{glob_index}]: {error}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut keep_tags = Vec::with_capacity(policy.keep_tags.len());
            for (entry_index, entry) in policy.keep_tags.iter().enumerate() {
                let entry_path = format!("{path}.keepTags[{entry_index}]");
                let patterns = entry
                    .patterns
                    .iter()
                    .enumerate()
                    .map(|(pattern_index, pattern)| {
                        compile_tag_pattern(pattern).map_err(|error| {
                            format!("{entry_path}.patterns[{pattern_index}]: {error}")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let count = |count: Option<u64>| {
                    count.map_or(0, |count| usize::try_from(count).unwrap_or(usize::MAX))
                };
                let millis = |within: Option<std::time::Duration>| {
                    within.map(|within| u64::try_from(within.as_millis()).unwrap_or(u64::MAX))
                };
                keep_tags.push(KeepTags {
                    patterns,
                    pulled_within_ms: millis(entry.pulled_within),
                    pushed_within_ms: millis(entry.pushed_within),
                    pushed_count: count(entry.most_recently_pushed_count),
                    pulled_count: count(entry.most_recently_pulled_count),
                });
            }
            policies.push(Policy {
                repositories,
                rules: RepoRules {
                    delete_untagged: policy.delete_untagged,
                    delete_referrers: policy.delete_referrers,
                    filters_tags: !keep_tags.is_empty(),
                },
                keep_tags,
            });
        }
        Ok(RetentionPolicies { policies })
    }

    /// The first policy matching `repo`.
    fn policy(&self, repo: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|policy| policy.repositories.iter().any(|glob| glob.is_match(repo)))
    }
}

impl KeepTags {
    fn has_rule(&self) -> bool {
        self.pulled_within_ms.is_some()
            || self.pushed_within_ms.is_some()
            || self.pushed_count > 0
            || self.pulled_count > 0
    }

    fn matches(&self, tag: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|pattern| pattern.is_match(tag))
    }

    /// Marks in `kept` the tags this entry keeps.
    fn apply(&self, tags: &[TagInfo], now_ms: u64, kept: &mut [bool]) {
        let matching: Vec<usize> = (0..tags.len())
            .filter(|&index| self.matches(&tags[index].tag))
            .collect();
        if !self.has_rule() {
            for &index in &matching {
                kept[index] = true;
            }
            return;
        }
        let within = |time_ms: u64, window_ms: u64| now_ms.saturating_sub(time_ms) <= window_ms;
        for &index in &matching {
            let tag = &tags[index];
            // As zot's code does: a tag pushed within the pull window counts as pulled, so a
            // tag nobody has had the time to pull yet is not deleted for it.
            let pulled = self.pulled_within_ms.is_some_and(|window| {
                within(tag.pushed_ms, window)
                    || tag
                        .pulled_ms
                        .is_some_and(|pulled_ms| within(pulled_ms, window))
            });
            let pushed = self
                .pushed_within_ms
                .is_some_and(|window| within(tag.pushed_ms, window));
            if pulled || pushed {
                kept[index] = true;
            }
        }
        if self.pushed_count > 0 {
            let mut ranked: Vec<usize> = matching.clone();
            ranked.sort_by_key(|&index| (Reverse(tags[index].pushed_ms), tags[index].tag.as_str()));
            for &index in ranked.iter().take(self.pushed_count) {
                kept[index] = true;
            }
        }
        if self.pulled_count > 0 {
            let mut ranked: Vec<(u64, usize)> = matching
                .iter()
                .filter_map(|&index| tags[index].pulled_ms.map(|pulled_ms| (pulled_ms, index)))
                .collect();
            ranked
                .sort_by_key(|&(pulled_ms, index)| (Reverse(pulled_ms), tags[index].tag.as_str()));
            for &(_, index) in ranked.iter().take(self.pulled_count) {
                kept[index] = true;
            }
        }
    }
}

impl Retention for RetentionPolicies {
    fn rules(&self, repo: &str) -> RepoRules {
        self.policy(repo)
            .map_or_else(RepoRules::default, |policy| policy.rules)
    }

    fn keep_tags(&self, repo: &str, tags: &[TagInfo], now_ms: u64) -> Vec<bool> {
        let Some(policy) = self
            .policy(repo)
            .filter(|policy| !policy.keep_tags.is_empty())
        else {
            return vec![true; tags.len()];
        };
        let mut kept = vec![false; tags.len()];
        for entry in &policy.keep_tags {
            entry.apply(tags, now_ms, &mut kept);
        }
        kept
    }

    fn filters_any(&self) -> bool {
        self.policies
            .iter()
            .any(|policy| !policy.keep_tags.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{KeepTagsConfig, RetentionPolicyConfig};

    const HOUR_MS: u64 = 3_600_000;
    const NOW: u64 = 1_000 * HOUR_MS;

    fn policy(repositories: &[&str], keep_tags: Vec<KeepTagsConfig>) -> RetentionPolicyConfig {
        RetentionPolicyConfig {
            repositories: repositories.iter().map(|glob| (*glob).to_owned()).collect(),
            delete_referrers: false,
            delete_untagged: true,
            keep_tags,
        }
    }

    fn patterns(patterns: &[&str]) -> KeepTagsConfig {
        KeepTagsConfig {
            patterns: patterns
                .iter()
                .map(|pattern| (*pattern).to_owned())
                .collect(),
            ..KeepTagsConfig::default()
        }
    }

    fn compile(policies: Vec<RetentionPolicyConfig>) -> RetentionPolicies {
        RetentionPolicies::new(&RetentionConfig {
            dry_run: false,
            delay: Duration::from_secs(3600),
            policies,
        })
        .expect("policies compile")
    }

    /// A tag pushed `pushed_h` hours ago and pulled `pulled_h` hours ago (if ever).
    fn tag(name: &str, pushed_h: u64, pulled_h: Option<u64>) -> TagInfo {
        TagInfo {
            tag: name.to_owned(),
            digest: format!("sha256:{name}"),
            pushed_ms: NOW - pushed_h * HOUR_MS,
            pulled_ms: pulled_h.map(|hours| NOW - hours * HOUR_MS),
        }
    }

    /// The names of the kept tags.
    fn kept(policies: &RetentionPolicies, repo: &str, tags: &[TagInfo]) -> Vec<String> {
        let kept = policies.keep_tags(repo, tags, NOW);
        assert_eq!(kept.len(), tags.len());
        tags.iter()
            .zip(kept)
            .filter(|(_, kept)| *kept)
            .map(|(tag, _)| tag.tag.clone())
            .collect()
    }

    fn within(hours: u64) -> Option<Duration> {
        Some(Duration::from_secs(hours * 3600))
    }

    #[test]
    fn first_matching_policy_wins_and_no_policy_is_the_default() {
        let mut first = policy(&["prod/*"], vec![patterns(&["^v"])]);
        first.delete_referrers = true;
        first.delete_untagged = false;
        let second = policy(&["**"], vec![patterns(&["^latest$"])]);
        let policies = compile(vec![first, second]);
        let prod = RepoRules {
            delete_untagged: false,
            delete_referrers: true,
            filters_tags: true,
        };
        assert_eq!(policies.rules("prod/app"), prod);
        // `*` stays within one component: prod/team/app falls to the second policy.
        assert_eq!(
            policies.rules("prod/team/app"),
            RepoRules {
                filters_tags: true,
                ..RepoRules::default()
            }
        );
        let tags = [tag("v1", 1, None), tag("latest", 1, None)];
        assert_eq!(kept(&policies, "prod/app", &tags), ["v1"]);
        assert_eq!(kept(&policies, "prod/team/app", &tags), ["latest"]);

        let only_ci = compile(vec![policy(&["ci/**"], vec![patterns(&["^v"])])]);
        assert_eq!(only_ci.rules("other"), RepoRules::default());
        assert_eq!(kept(&only_ci, "other", &tags), ["v1", "latest"]);
        assert_eq!(kept(&only_ci, "ci/a/b", &tags), ["v1"]);
    }

    #[test]
    fn any_glob_of_a_policy_matches() {
        let policies = compile(vec![policy(&["a", "b/**"], vec![patterns(&["^x$"])])]);
        assert!(policies.rules("a").filters_tags);
        assert!(policies.rules("b/c/d").filters_tags);
        assert!(!policies.rules("c").filters_tags);
    }

    #[test]
    fn empty_keep_tags_keeps_everything() {
        let policies = compile(vec![policy(&["**"], Vec::new())]);
        assert!(!policies.rules("any").filters_tags);
        assert!(!policies.filters_any());
        let tags = [tag("a", 900, None), tag("b", 1, Some(1))];
        assert_eq!(kept(&policies, "any", &tags), ["a", "b"]);
        assert!(compile(vec![policy(&["x"], vec![KeepTagsConfig::default()])]).filters_any());
        assert!(!compile(Vec::new()).filters_any());
    }

    #[test]
    fn patterns_are_unanchored_regex_searches() {
        let policies = compile(vec![policy(&["**"], vec![patterns(&["v2", ".*-prod$"])])]);
        let tags = [
            tag("v2.1", 1, None),
            tag("xv2y", 1, None),
            tag("app-prod", 1, None),
            tag("app-prod-old", 1, None),
            tag("v1", 1, None),
        ];
        assert_eq!(kept(&policies, "r", &tags), ["v2.1", "xv2y", "app-prod"]);
    }

    #[test]
    fn an_entry_without_patterns_matches_every_tag() {
        let entry = KeepTagsConfig {
            pushed_within: within(24),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [tag("new", 2, None), tag("old", 48, None)];
        assert_eq!(kept(&policies, "r", &tags), ["new"]);
    }

    #[test]
    fn pulled_within_needs_a_recent_pull_or_push() {
        let entry = KeepTagsConfig {
            pulled_within: within(24),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [
            tag("recent-pull", 100, Some(2)),
            tag("edge", 100, Some(24)),
            tag("old-pull", 100, Some(25)),
            tag("fresh-never-pulled", 1, None),
            tag("stale-never-pulled", 25, None),
        ];
        assert_eq!(
            kept(&policies, "r", &tags),
            ["recent-pull", "edge", "fresh-never-pulled"]
        );
    }

    #[test]
    fn pushed_within_and_future_times() {
        let entry = KeepTagsConfig {
            pushed_within: within(24),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let mut future = tag("future", 0, None);
        future.pushed_ms = NOW + HOUR_MS;
        let tags = [tag("new", 24, None), tag("old", 25, Some(0)), future];
        assert_eq!(kept(&policies, "r", &tags), ["new", "future"]);
    }

    #[test]
    fn patterns_and_rules_combine_with_and() {
        let entry = KeepTagsConfig {
            pushed_within: within(24),
            ..patterns(&["^v"])
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [
            tag("v-new", 1, None),
            tag("v-old", 48, None),
            tag("dev-new", 1, None),
        ];
        assert_eq!(kept(&policies, "r", &tags), ["v-new"]);
    }

    #[test]
    fn rules_of_an_entry_are_ored() {
        let entry = KeepTagsConfig {
            pulled_within: within(24),
            pushed_within: within(24),
            most_recently_pushed_count: Some(1),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [
            tag("pulled", 100, Some(1)),
            tag("pushed", 10, None),
            tag("newest-old", 50, None),
            tag("none", 60, Some(30)),
        ];
        // "pushed" is also the newest push; "newest-old" is not among the top 1.
        assert_eq!(kept(&policies, "r", &tags), ["pulled", "pushed"]);
    }

    #[test]
    fn entries_are_ored() {
        let policies = compile(vec![policy(
            &["**"],
            vec![
                KeepTagsConfig {
                    pulled_within: within(24),
                    ..patterns(&[".*"])
                },
                patterns(&["^release-"]),
            ],
        )]);
        // zot's docs: a tag is kept if any entry keeps it, even when an earlier entry whose
        // patterns it matches would not.
        let tags = [
            tag("release-1", 500, None),
            tag("dev", 500, None),
            tag("hot", 500, Some(1)),
        ];
        assert_eq!(kept(&policies, "r", &tags), ["release-1", "hot"]);
    }

    #[test]
    fn most_recently_pushed_counts_only_matching_tags_and_breaks_ties_by_name() {
        let entry = KeepTagsConfig {
            most_recently_pushed_count: Some(2),
            ..patterns(&["^v"])
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [
            tag("latest", 0, None),
            tag("vb", 5, None),
            tag("va", 5, None),
            tag("vc", 5, None),
            tag("v-old", 9, None),
            tag("v-new", 1, None),
        ];
        // "latest" is newest but does not match; v-new, then the tie at 5h ordered by name.
        assert_eq!(kept(&policies, "r", &tags), ["va", "v-new"]);
        let fewer = compile(vec![policy(
            &["**"],
            vec![KeepTagsConfig {
                most_recently_pushed_count: Some(10),
                ..KeepTagsConfig::default()
            }],
        )]);
        assert_eq!(kept(&fewer, "r", &tags).len(), tags.len());
    }

    #[test]
    fn most_recently_pulled_skips_never_pulled_tags() {
        let entry = KeepTagsConfig {
            most_recently_pulled_count: Some(3),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [
            tag("never-new", 0, None),
            tag("b", 10, Some(3)),
            tag("a", 10, Some(3)),
            tag("c", 10, Some(3)),
            tag("old", 10, Some(9)),
            tag("hot", 10, Some(1)),
        ];
        // hot, then the tie a, b, c by name: only a and b fit.
        assert_eq!(kept(&policies, "r", &tags), ["b", "a", "hot"]);
        let only_never = [tag("x", 0, None), tag("y", 0, None)];
        assert!(kept(&policies, "r", &only_never).is_empty());
    }

    #[test]
    fn zero_counts_are_no_rule() {
        let entry = KeepTagsConfig {
            most_recently_pushed_count: Some(0),
            most_recently_pulled_count: Some(0),
            ..patterns(&["^v"])
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [tag("v1", 900, None), tag("x", 1, Some(1))];
        assert_eq!(kept(&policies, "r", &tags), ["v1"]);
    }

    #[test]
    fn a_zero_window_keeps_only_what_happened_now() {
        let entry = KeepTagsConfig {
            pushed_within: Some(Duration::ZERO),
            ..KeepTagsConfig::default()
        };
        let policies = compile(vec![policy(&["**"], vec![entry])]);
        let tags = [tag("now", 0, None), tag("earlier", 1, None)];
        assert_eq!(kept(&policies, "r", &tags), ["now"]);
    }

    #[test]
    fn new_names_the_bad_entry() {
        let bad_regex = RetentionConfig {
            dry_run: false,
            delay: Duration::ZERO,
            policies: vec![policy(
                &["**"],
                vec![patterns(&["ok"]), patterns(&["a", "("])],
            )],
        };
        let error = RetentionPolicies::new(&bad_regex).unwrap_err();
        assert!(
            error.starts_with("policies[0].keepTags[1].patterns[1]: "),
            "{error}"
        );
        let bad_glob = RetentionConfig {
            policies: vec![policy(&["a"], Vec::new()), policy(&["b", "c["], Vec::new())],
            ..bad_regex
        };
        let error = RetentionPolicies::new(&bad_glob).unwrap_err();
        assert!(
            error.starts_with("policies[1].repositories[1]: "),
            "{error}"
        );
    }
}
