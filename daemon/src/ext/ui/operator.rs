//! The operator page (admins: `adminPolicy`, or everyone without access control): the
//! registry's own health, as ext/health.rs gathers it, written for people.
use askama::Template;
use hyper::{Response, StatusCode};

use super::pages::{Chrome, Page};
use super::view::{bytes_text, When};
use crate::api::body::Body;
use crate::ext::health::{self, Health, PassHealth, UpstreamState};

struct Usage {
    name: String,
    used: String,
    limit: String,
    /// Used per thousand of the quota, when there is one.
    share: Option<u64>,
    repositories: String,
}

struct Pass {
    finished: When,
    duration: String,
    ok: bool,
    outcome: String,
    findings: Vec<String>,
}

struct Upstream {
    name: String,
    mode: String,
    state: &'static str,
    failing: bool,
    last_success: When,
    last_error: String,
    last_pass: String,
}

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    chrome: Chrome,
    version: &'static str,
    commit: &'static str,
    uptime: String,
    repositories: usize,
    blobs: u64,
    blob_bytes: String,
    dedupe_saved: String,
    uploads_open: u64,
    quotas: Vec<Usage>,
    namespaces: Vec<Usage>,
    namespaces_more: usize,
    gc_passes: String,
    gc_last: Option<Pass>,
    scrub_passes: String,
    scrub_last: Option<Pass>,
    upstreams: Vec<Upstream>,
}

pub async fn page(page: &Page<'_>) -> Response<Body> {
    if !page.visitor.admin {
        return page.error(
            StatusCode::FORBIDDEN,
            "The operator page is for the registry's administrators.",
        );
    }
    let health = match health::gather(page.ctx).await {
        Ok(health) => health,
        Err(error) => {
            tracing::error!(component = "ui", %error, "gathering the registry's health failed");
            return page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The health could not be read.",
            );
        }
    };
    page.render(&view(page, health))
}

fn view(page: &Page<'_>, health: Health) -> OperatorPage {
    let now = page.now;
    let share = |used: u64, quota: Option<u64>| {
        quota
            .filter(|quota| *quota > 0)
            .map(|quota| (u128::from(used) * 1000 / u128::from(quota)).min(1000) as u64)
    };
    let storage = &health.storage;
    let quotas = storage
        .quotas
        .iter()
        .map(|quota| Usage {
            name: quota.pattern.clone(),
            used: bytes_text(quota.used_bytes),
            limit: quota.quota_bytes.map_or_else(|| "—".to_owned(), bytes_text),
            share: share(quota.used_bytes, quota.quota_bytes),
            repositories: match quota.quota_repositories {
                Some(limit) => format!("{} of {limit}", quota.repositories),
                None => quota.repositories.to_string(),
            },
        })
        .collect();
    let namespaces: Vec<Usage> = storage
        .namespaces
        .iter()
        .map(|namespace| Usage {
            name: namespace.namespace.clone(),
            used: bytes_text(namespace.used_bytes),
            limit: match (&namespace.quota_pattern, namespace.quota_bytes) {
                (Some(pattern), Some(quota)) => format!(
                    "{} of {} ({pattern})",
                    bytes_text(namespace.quota_used_bytes.unwrap_or(namespace.used_bytes)),
                    bytes_text(quota)
                ),
                _ => "—".to_owned(),
            },
            share: share(
                namespace.quota_used_bytes.unwrap_or(namespace.used_bytes),
                namespace.quota_bytes,
            ),
            repositories: namespace.repositories.to_string(),
        })
        .collect();
    let gc = &health.gc;
    let gc_last = gc.last_pass.as_ref().map(|pass| {
        written(pass, now, |summary| {
            let mut findings = vec![format!(
                "{} pass over {} repositories, {} blobs examined",
                if summary.full { "full" } else { "incremental" },
                summary.repositories_visited,
                summary.blobs_examined
            )];
            findings.push(format!(
                "removed {} blobs ({}), {} manifests, {} tags, {} repositories, {} uploads",
                summary.deleted_blobs,
                bytes_text(summary.freed_bytes),
                summary.deleted_manifests,
                summary.deleted_tags,
                summary.deleted_repositories,
                summary.deleted_uploads
            ));
            if summary.left_alone > 0 {
                findings.push(format!("left {} alone (fail closed)", summary.left_alone));
            }
            findings
        })
    });
    let scrub = &health.scrub;
    let scrub_last = scrub.last_pass.as_ref().map(|pass| {
        written(pass, now, |summary| {
            vec![
                format!(
                    "checked {} blobs ({}) and {} manifests",
                    summary.blobs_checked,
                    bytes_text(summary.bytes_checked),
                    summary.manifests_checked
                ),
                match summary.damaged {
                    0 => "nothing damaged".to_owned(),
                    damaged => format!(
                        "{damaged} damaged, affecting {} tagged images",
                        summary.images_affected
                    ),
                },
            ]
        })
    });
    let at = |ms: Option<u64>| When::at_unix_ms(ms, now);
    let upstreams = health
        .sync_upstreams
        .iter()
        .map(|upstream| Upstream {
            name: upstream.upstream.clone(),
            mode: match (upstream.on_demand, upstream.poll_interval_seconds) {
                (true, Some(seconds)) => format!("on demand, every {}", duration(seconds * 1000)),
                (true, None) => "on demand".to_owned(),
                (false, Some(seconds)) => format!("every {}", duration(seconds * 1000)),
                (false, None) => "—".to_owned(),
            },
            state: match upstream.state {
                UpstreamState::Idle => "idle",
                UpstreamState::Ok => "ok",
                UpstreamState::Failing => "failing",
            },
            failing: upstream.state == UpstreamState::Failing,
            last_success: at(upstream.last_success_unix_ms),
            last_error: upstream.last_error.as_ref().map_or_else(
                || "—".to_owned(),
                |error| format!("{}: {}", at(Some(error.unix_ms)).ago, error.message),
            ),
            last_pass: upstream.last_periodic_pass.as_ref().map_or_else(
                || "—".to_owned(),
                |pass| {
                    format!(
                        "{}: {} copied, {} skipped, {} failed{}",
                        at(Some(pass.finished_unix_ms)).ago,
                        pass.images_copied,
                        pass.images_skipped,
                        pass.images_failed,
                        pass.error
                            .as_ref()
                            .map_or_else(String::new, |error| format!(" ({error})"))
                    )
                },
            ),
        })
        .collect();
    OperatorPage {
        chrome: page.chrome("operator"),
        version: health.version,
        commit: health.git_commit,
        uptime: duration(health.uptime_seconds * 1000),
        repositories: storage.repositories,
        blobs: storage.blobs,
        blob_bytes: bytes_text(storage.blob_bytes),
        dedupe_saved: bytes_text(storage.dedupe_saved_bytes),
        uploads_open: health.upload_sessions_open,
        quotas,
        namespaces_more: storage.namespaces_total.saturating_sub(namespaces.len()),
        namespaces,
        gc_passes: format!(
            "{} passes succeeded, {} failed since start.",
            gc.passes_succeeded, gc.passes_failed
        ),
        gc_last,
        scrub_passes: format!("{} passes completed since start.", scrub.passes_completed),
        scrub_last,
        upstreams,
    }
}

/// A finished pass: when, how long, and its findings (or why it failed).
fn written<T>(
    pass: &PassHealth<T>,
    now: time::OffsetDateTime,
    findings: impl Fn(&T) -> Vec<String>,
) -> Pass {
    Pass {
        finished: When::at_unix_ms(Some(pass.finished_unix_ms), now),
        duration: duration(pass.duration_ms),
        ok: pass.error.is_none(),
        outcome: pass.error.clone().unwrap_or_default(),
        findings: pass.summary.as_ref().map(findings).unwrap_or_default(),
    }
}

/// `1 d 2 h`, `3 h 4 min`, `5 min 6 s`, `7.8 s`, `90 ms`.
pub fn duration(milliseconds: u64) -> String {
    let seconds = milliseconds / 1000;
    match seconds {
        0 => format!("{milliseconds} ms"),
        1..60 => format!("{:.1} s", milliseconds as f64 / 1000.0),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::duration(90), "90 ms");
        assert_eq!(super::duration(7_800), "7.8 s");
        assert_eq!(super::duration(306_000), "5 min 6 s");
        assert_eq!(super::duration(11_040_000), "3 h 4 min");
        assert_eq!(super::duration(93_600_000), "1 d 2 h");
    }
}
