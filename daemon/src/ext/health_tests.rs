//! Tests of the health snapshot (health.rs): namespaces, quotas per namespace, the listing's
//! bound, sync upstream states, and a gather from a running engine.
use std::sync::Arc;
use std::time::Duration;

use berth_storage::oci::{Algorithm, Digest, RepoName};

use super::*;
use crate::config::QuotaConfig;
use crate::ext::sync::registry::RunResult;

fn repo(name: &str) -> RepoName {
    name.parse().expect("valid repository name")
}

fn usage(repos: &[(&str, u64)]) -> UsageSnapshot {
    let mut repos: Vec<(RepoName, u64)> = repos
        .iter()
        .map(|(name, bytes)| (repo(name), *bytes))
        .collect();
    repos.sort();
    UsageSnapshot {
        blobs: 3,
        blob_bytes: 300,
        repos,
        dedupe_saved_bytes: 7,
    }
}

fn quotas(rules: &[(&str, Option<u64>, Option<u64>)]) -> Quotas {
    let config: Vec<QuotaConfig> = rules
        .iter()
        .map(|(pattern, max_bytes, max_repositories)| QuotaConfig {
            pattern: (*pattern).to_owned(),
            max_bytes: *max_bytes,
            max_repositories: *max_repositories,
        })
        .collect();
    Quotas::new(&config).expect("valid quotas")
}

/// (namespace, used bytes, repositories) of each listed namespace.
fn listed(storage: &StorageHealth) -> Vec<(&str, u64, usize)> {
    storage
        .namespaces
        .iter()
        .map(|namespace| {
            (
                namespace.namespace.as_str(),
                namespace.used_bytes,
                namespace.repositories,
            )
        })
        .collect()
}

#[test]
fn namespaces_are_first_components_largest_first() {
    // `a-b` sorts between `a` and `a/x`: grouping must not rely on name order.
    let snapshot = usage(&[
        ("a", 5),
        ("a-b/x", 7),
        ("a/x", 10),
        ("a/y/z", 1),
        ("b/x", 100),
        ("c/x", 7),
    ]);
    let storage = summarize(&snapshot, &[]);
    assert_eq!(
        listed(&storage),
        vec![("b", 100, 1), ("a", 16, 3), ("a-b", 7, 1), ("c", 7, 1)]
    );
    assert_eq!(storage.namespaces_total, 4);
    assert_eq!(storage.repositories, 6);
    assert_eq!(
        (
            storage.blobs,
            storage.blob_bytes,
            storage.dedupe_saved_bytes
        ),
        (3, 300, 7)
    );
    assert!(storage.quotas.is_empty());
    assert!(storage
        .namespaces
        .iter()
        .all(|namespace| namespace.quota_bytes.is_none()));
}

#[test]
fn the_listing_is_bounded() {
    let names: Vec<String> = (0..NAMESPACES_LISTED_MAX + 10)
        .map(|index| format!("n{index:03}/repo"))
        .collect();
    let repos: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(index, name)| (name.as_str(), index as u64))
        .collect();
    let storage = summarize(&usage(&repos), &[]);
    assert_eq!(storage.namespaces_total, NAMESPACES_LISTED_MAX + 10);
    assert_eq!(storage.namespaces.len(), NAMESPACES_LISTED_MAX);
    let first = &storage.namespaces[0];
    assert_eq!((first.namespace.as_str(), first.used_bytes), ("n059", 59));
    let last = &storage.namespaces[NAMESPACES_LISTED_MAX - 1];
    assert_eq!((last.namespace.as_str(), last.used_bytes), ("n010", 10));
}

#[test]
fn a_namespace_gets_the_smallest_quota_covering_all_of_it() {
    let snapshot = usage(&[
        ("team/app", 300),
        ("team/web", 200),
        ("solo", 50),
        ("other/x", 20),
        ("other/y", 1),
    ]);
    let rules = quotas(&[
        ("**", Some(5000), None),
        ("team/**", Some(1000), None),
        // Only part of `team`: not its quota.
        ("team/app", Some(10), None),
        // No byte limit: not a byte quota.
        ("solo", None, Some(1)),
        // As small as `**` would be for `other`, configured later: `**` stays first.
        ("other/*", Some(5000), Some(9)),
    ]);
    let storage = summarize(&snapshot, rules.rules());
    let quota_of = |name: &str| {
        let namespace = storage
            .namespaces
            .iter()
            .find(|namespace| namespace.namespace == name)
            .expect("listed");
        (
            namespace.quota_pattern.as_deref(),
            namespace.quota_bytes,
            namespace.quota_used_bytes,
        )
    };
    assert_eq!(quota_of("team"), (Some("team/**"), Some(1000), Some(500)));
    assert_eq!(quota_of("solo"), (Some("**"), Some(5000), Some(571)));
    assert_eq!(quota_of("other"), (Some("**"), Some(5000), Some(571)));
    let quota =
        |pattern: &str, used_bytes, quota_bytes, repositories, quota_repositories| QuotaUsage {
            pattern: pattern.to_owned(),
            used_bytes,
            quota_bytes,
            repositories,
            quota_repositories,
        };
    assert_eq!(
        storage.quotas,
        vec![
            quota("**", 571, Some(5000), 5, None),
            quota("team/**", 500, Some(1000), 2, None),
            quota("team/app", 300, Some(10), 1, None),
            quota("solo", 50, None, 1, Some(1)),
            quota("other/*", 21, Some(5000), 2, Some(9)),
        ]
    );
}

#[test]
fn an_upstream_is_failing_when_its_latest_outcome_is_an_error() {
    for (success, error, want) in [
        (None, None, UpstreamState::Idle),
        (Some(5), None, UpstreamState::Ok),
        (None, Some(5), UpstreamState::Failing),
        (Some(5), Some(4), UpstreamState::Ok),
        (Some(5), Some(5), UpstreamState::Ok),
        (Some(5), Some(6), UpstreamState::Failing),
    ] {
        assert_eq!(state(success, error), want, "{success:?} {error:?}");
    }
}

#[test]
fn the_last_error_is_the_later_of_on_demand_and_periodic() {
    let run = |finished_ms, error: Option<&str>| RunResult {
        finished_ms,
        error: error.map(str::to_owned),
        ..RunResult::default()
    };
    let mut outcome = Outcome::default();
    assert_eq!(latest_error(&outcome), None);
    outcome.last_run = Some(run(20, None));
    assert_eq!(latest_error(&outcome), None, "a clean pass is no error");
    outcome.last_error = Some((10, "fetch failed".to_owned()));
    let error = |unix_ms, message: &str| {
        Some(UpstreamError {
            unix_ms,
            message: message.to_owned(),
        })
    };
    assert_eq!(latest_error(&outcome), error(10, "fetch failed"));
    outcome.last_run = Some(run(20, Some("catalog unreachable")));
    assert_eq!(latest_error(&outcome), error(20, "catalog unreachable"));
    outcome.last_error = Some((30, "blob failed".to_owned()));
    assert_eq!(latest_error(&outcome), error(30, "blob failed"));
}

fn context(root: &std::path::Path, config_text: &str) -> Ctx {
    let (config, _) = crate::config::parse_str(config_text).expect("valid config");
    let engine = crate::test_support::engine(root);
    Ctx {
        engine: Arc::new(engine),
        body_idle: Duration::from_secs(1),
        uring: false,
        live: Arc::new(crate::runtime::live::Live::new(
            crate::runtime::live::Settings::from_config(&config),
        )),
        metrics: Arc::new(crate::ext::metrics::Metrics::new(1)),
        immutable_tags: Arc::new(
            crate::policy::tag_policy::ImmutableTags::new(&[]).expect("no patterns"),
        ),
        quotas: Arc::new(Quotas::new(&config.storage.quotas).expect("valid quotas")),
        sync: None,
        auth: None,
        bearer: None,
        access: None,
        extensions: Arc::new(crate::ext::Registry::new(Vec::new())),
        trust: None,
        rate_limits: None,
        cors: None,
        redirect_blob_url: false,
    }
}

async fn push_blob(engine: &Engine, name: &str, bytes: &'static [u8]) {
    let repository = repo(name);
    let id = engine.start_upload(&repository).await.expect("start");
    let mut writer = engine.open_upload(&repository, &id).await.expect("open");
    writer
        .write(bytes::Bytes::from_static(bytes))
        .await
        .expect("write");
    let digest: Digest = Digest::of(Algorithm::Sha256, bytes);
    writer.finish(&digest).await.expect("finish");
}

#[test]
fn gather_reads_the_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"{{"storage": {{"rootDirectory": {:?},
            "quotas": {{"team/**": {{"maxBytes": 1000}}}}}}}}"#,
        dir.path().display().to_string()
    );
    let ctx = context(dir.path(), &config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let health = runtime.block_on(async {
        push_blob(&ctx.engine, "team/app", b"twelve bytes").await;
        push_blob(&ctx.engine, "team/web", b"four").await;
        push_blob(&ctx.engine, "other", b"four").await;
        ctx.engine
            .start_upload(&repo("other"))
            .await
            .expect("start");
        let maintenance = &ctx.engine.stats().maintenance;
        maintenance.gc_runs_ok.fetch_add(1, Relaxed);
        maintenance.last_gc.record(PassRecord::ended_now(
            Duration::from_millis(1500),
            Ok(GcPassSummary {
                deleted_blobs: 2,
                freed_bytes: 99,
                ..GcPassSummary::default()
            }),
        ));
        maintenance
            .last_scrub
            .record(PassRecord::ended_now(Duration::ZERO, Err("gone".into())));
        gather(&ctx).await.expect("gather")
    });
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(health.upload_sessions_open, 1);
    assert_eq!(
        listed(&health.storage),
        vec![("team", 16, 2), ("other", 4, 1)]
    );
    let team = &health.storage.namespaces[0];
    assert_eq!(
        (team.quota_bytes, team.quota_used_bytes),
        (Some(1000), Some(16))
    );
    assert_eq!((health.storage.blobs, health.storage.blob_bytes), (2, 16));
    assert_eq!(health.gc.passes_succeeded, 1);
    let gc = health.gc.last_pass.clone().expect("a GC pass");
    assert_eq!(gc.duration_ms, 1500);
    assert_eq!(gc.summary.map(|pass| pass.freed_bytes), Some(99));
    let scrub = health.scrub.last_pass.clone().expect("a scrub pass");
    assert_eq!(
        (scrub.summary, scrub.error.as_deref()),
        (None, Some("gone"))
    );
    assert!(health.sync_upstreams.is_empty());

    let document = serde_json::to_value(&health).expect("serializes");
    assert_eq!(document["storage"]["namespaces"][0]["used_bytes"], 16);
    assert_eq!(document["gc"]["last_pass"]["summary"]["deleted_blobs"], 2);
    assert!(document["uptime_seconds"].is_u64());
}
