//! `storage.gcTimeWindow` and `storage.retention` (zot's keys): their plain-data types and
//! their parsing. `crate::policy::retention` compiles a [`RetentionConfig`] into the engine's
//! `Retention` hook.
//!
//! Rules:
//! - `gcTimeWindow` is `"HH:MM-HH:MM"` in UTC, start inclusive, end exclusive; it may wrap
//!   midnight (`"22:00-02:00"`); start equal to end is an error (an empty or a whole-day
//!   window is better said by not setting the key).
//! - `retention.delay` defaults to `storage.gcDelay` (zot PR #3447). `deleteUntagged`
//!   defaults to true, `deleteReferrers` and `dryRun` to false.
//! - Every policy needs a non-empty `repositories` list of globs (`*` within one path
//!   component, `**` across them): zot matches a policy without one against nothing, so it
//!   would be a silent no-op.
//! - Tag `patterns` are regular expressions matched as zot does (Go's `MatchString`): an
//!   unanchored search, so `v2` matches `xv2y`; write `^v2$` for an exact tag. No patterns
//!   means every tag matches.
//! - A count of 0 is no rule (zot: `mostRecently*Count != 0`); a `*Within` duration given is a
//!   rule even when zero.
//! - Globs, regexes and durations are checked here; each bad one is one error with its key
//!   path, e.g. `storage.retention.policies[0].keepTags[1].patterns[0]: ...`.

use std::time::Duration;

use serde_json::Value;

use super::walk::{list, Ctx, Section};

/// `storage.gcTimeWindow`: the UTC minutes of the day in which a GC pass may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// First minute of the window (0..1440), inclusive.
    pub start_min: u16,
    /// End of the window (0..1440), exclusive. Smaller than `start_min` when it wraps
    /// midnight.
    pub end_min: u16,
}

const MINUTES_PER_DAY: u64 = 24 * 60;

impl TimeWindow {
    /// Parses `"HH:MM-HH:MM"` (hours 00-23, minutes 00-59; one-digit hours accepted).
    pub fn parse(text: &str) -> Result<TimeWindow, String> {
        let invalid = || {
            format!("expected a UTC window \"HH:MM-HH:MM\" such as \"01:00-06:00\", got {text:?}")
        };
        let (start, end) = text.split_once('-').ok_or_else(invalid)?;
        let start_min = parse_clock(start.trim()).ok_or_else(invalid)?;
        let end_min = parse_clock(end.trim()).ok_or_else(invalid)?;
        if start_min == end_min {
            return Err(format!(
                "the window {text:?} starts and ends at the same time; leave gcTimeWindow out \
                 to let GC start at any time"
            ));
        }
        Ok(TimeWindow { start_min, end_min })
    }

    /// Whether the instant `unix_secs` (seconds since the Unix epoch, UTC) is in the window.
    pub fn contains(&self, unix_secs: u64) -> bool {
        let minute = u16::try_from((unix_secs / 60) % MINUTES_PER_DAY)
            .expect("a minute of the day fits in u16");
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }
}

/// `H:MM` or `HH:MM` to minutes of the day.
fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let digits = |part: &str, max_len: usize| {
        (!part.is_empty() && part.len() <= max_len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u16>().ok())
            .flatten()
    };
    let hours = digits(hours, 2)?;
    let minutes = (minutes.len() == 2).then(|| digits(minutes, 2)).flatten()?;
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// `storage.retention`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `dryRun` (default false): tags and manifests the policies would delete are only
    /// logged.
    pub dry_run: bool,
    /// `delay` (default `storage.gcDelay`): minimum age of an untagged manifest or an
    /// orphaned referrer before it is deleted.
    pub delay: Duration,
    /// `policies`, in order: the first one whose `repositories` match a repository applies.
    pub policies: Vec<RetentionPolicyConfig>,
}

/// One entry of `storage.retention.policies`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicyConfig {
    /// `repositories`: globs over repository names (non-empty).
    pub repositories: Vec<String>,
    /// `deleteReferrers` (default false).
    pub delete_referrers: bool,
    /// `deleteUntagged` (default true).
    pub delete_untagged: bool,
    /// `keepTags`: empty (or absent) keeps every tag.
    pub keep_tags: Vec<KeepTagsConfig>,
}

/// One entry of a policy's `keepTags`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepTagsConfig {
    /// `patterns`: regexes, unanchored search; empty = every tag.
    pub patterns: Vec<String>,
    /// `pulledWithin`.
    pub pulled_within: Option<Duration>,
    /// `pushedWithin`.
    pub pushed_within: Option<Duration>,
    /// `mostRecentlyPushedCount` (0 = no rule).
    pub most_recently_pushed_count: Option<u64>,
    /// `mostRecentlyPulledCount` (0 = no rule).
    pub most_recently_pulled_count: Option<u64>,
}

/// Compiles one tag pattern the way retention matches it (the one regex parser).
pub(crate) fn compile_tag_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|error| format!("bad regular expression: {error}"))
}

/// Checks one repository glob the way retention matches it.
pub(crate) fn check_repository_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    crate::policy::tag_policy::compile_glob(pattern)
        .map_err(|error| format!("bad repository glob {pattern:?}: {error}"))
}

/// `storage.gcTimeWindow`: `Some(None)` when absent, `None` after an error.
pub(super) fn time_window(ctx: &mut Ctx, storage: &Section<'_>) -> Option<Option<TimeWindow>> {
    let key = "gcTimeWindow";
    if !storage.has(key) {
        return Some(None);
    }
    let text = storage.string(ctx, key)?;
    match TimeWindow::parse(&text) {
        Ok(window) => Some(Some(window)),
        Err(message) => {
            ctx.error(&storage.path_of(key), message);
            None
        }
    }
}

/// `storage.retention`: `Some(None)` when absent, `None` after an error.
pub(super) fn retention(
    ctx: &mut Ctx,
    storage: &Section<'_>,
    gc_delay: Duration,
) -> Option<Option<RetentionConfig>> {
    let Some(value) = storage.raw("retention") else {
        return Some(None);
    };
    let section = Section::read(
        ctx,
        &storage.path_of("retention"),
        value,
        &["dryRun", "delay", "policies"],
        &[],
    )?;
    let dry_run = section.boolean(ctx, "dryRun");
    let delay = section.duration(ctx, "delay");
    let policies = list(ctx, &section, "policies", policy);
    let parsed = |key: &str, ok: bool| !section.has(key) || ok;
    if !(parsed("dryRun", dry_run.is_some()) && parsed("delay", delay.is_some())) {
        return None;
    }
    Some(Some(RetentionConfig {
        dry_run: dry_run.unwrap_or(false),
        delay: delay.unwrap_or(gc_delay),
        policies: policies?,
    }))
}

fn policy(ctx: &mut Ctx, path: &str, value: &Value) -> Option<RetentionPolicyConfig> {
    let section = Section::read(
        ctx,
        path,
        value,
        &[
            "repositories",
            "deleteReferrers",
            "deleteUntagged",
            "keepTags",
        ],
        &[(
            "keepUntagged",
            "zot setting not implemented yet in this build; ignored: untagged manifests \
             follow deleteUntagged and retention.delay",
        )],
    )?;
    let repositories = repositories(ctx, &section);
    let delete_referrers = section.boolean(ctx, "deleteReferrers");
    let delete_untagged = section.boolean(ctx, "deleteUntagged");
    let keep_tags = list(ctx, &section, "keepTags", keep_tags);
    let parsed = |key: &str, ok: bool| !section.has(key) || ok;
    if !(parsed("deleteReferrers", delete_referrers.is_some())
        && parsed("deleteUntagged", delete_untagged.is_some()))
    {
        return None;
    }
    Some(RetentionPolicyConfig {
        repositories: repositories?,
        delete_referrers: delete_referrers.unwrap_or(false),
        delete_untagged: delete_untagged.unwrap_or(true),
        keep_tags: keep_tags?,
    })
}

fn repositories(ctx: &mut Ctx, policy: &Section<'_>) -> Option<Vec<String>> {
    let key = "repositories";
    if !policy.has(key) {
        let message = "required: globs of the repositories this policy applies to, e.g. \
                       [\"**\"] (a policy without them matches no repository)";
        ctx.error(&policy.path_of(key), message);
        return None;
    }
    let globs = policy.strings(ctx, key)?;
    if globs.is_empty() {
        let message = "must not be empty (a policy without repositories matches none)";
        ctx.error(&policy.path_of(key), message);
        return None;
    }
    let mut ok = true;
    for (index, glob) in globs.iter().enumerate() {
        if let Err(message) = check_repository_glob(glob) {
            ctx.error(&format!("{}[{index}]", policy.path_of(key)), message);
            ok = false;
        }
    }
    ok.then_some(globs)
}

fn keep_tags(ctx: &mut Ctx, path: &str, value: &Value) -> Option<KeepTagsConfig> {
    let section = Section::read(
        ctx,
        path,
        value,
        &[
            "patterns",
            "pulledWithin",
            "pushedWithin",
            "mostRecentlyPushedCount",
            "mostRecentlyPulledCount",
        ],
        &[],
    )?;
    let patterns = section.strings(ctx, "patterns");
    let mut patterns_ok = patterns.is_some() || !section.has("patterns");
    for (index, pattern) in patterns.iter().flatten().enumerate() {
        if let Err(message) = compile_tag_pattern(pattern) {
            ctx.error(
                &format!("{}[{index}]", section.path_of("patterns")),
                message,
            );
            patterns_ok = false;
        }
    }
    let pulled_within = section.duration(ctx, "pulledWithin");
    let pushed_within = section.duration(ctx, "pushedWithin");
    let max_count = u64::from(u32::MAX);
    let pushed_count = section.integer(ctx, "mostRecentlyPushedCount", 0, max_count);
    let pulled_count = section.integer(ctx, "mostRecentlyPulledCount", 0, max_count);
    let parsed = |key: &str, ok: bool| !section.has(key) || ok;
    let all_parsed = patterns_ok
        && parsed("pulledWithin", pulled_within.is_some())
        && parsed("pushedWithin", pushed_within.is_some())
        && parsed("mostRecentlyPushedCount", pushed_count.is_some())
        && parsed("mostRecentlyPulledCount", pulled_count.is_some());
    all_parsed.then(|| KeepTagsConfig {
        patterns: patterns.unwrap_or_default(),
        pulled_within,
        pushed_within,
        most_recently_pushed_count: pushed_count,
        most_recently_pulled_count: pulled_count,
    })
}
