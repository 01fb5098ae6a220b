//! Retention (`storage.retention`, zot semantics) against the real daemon: `keepTags` by
//! pattern, by push recency and by pull recency; the first matching policy wins; a repository
//! no policy matches keeps every tag; `dryRun` only logs what policies would delete while
//! unreferenced blobs still go; every GC deletion has its `component=gc` log line; and
//! `gcTimeWindow` gates when passes start.
//!
//! Existence checks use HEAD, never GET: a manifest GET counts as a pull, which
//! `pulledWithin` reads. Waits poll with a deadline ([`eventually`]); "it survives" is asserted
//! only after GC passes have run past the delay ([`await_passes`]).

use std::time::{Duration, Instant};

use berth_tests::api::expect_status;
use berth_tests::gc::{
    await_passes, deleted, eventually, gc_runs, head, on_disk, stop_and_fsck, tags,
};
use berth_tests::{
    fetch_blob, fetch_manifest, http, merge_patch, push_blob, push_image, random_bytes,
    random_image, sha256_digest, Berth, Client, Image,
};
use serde_json::{json, Value};

/// berth with GC every second, a 2 s delay, metrics on and `retention` (none if null), plus
/// `patch`.
fn gc_berth(retention: Value, patch: Value) -> Berth {
    let mut config = json!({
        "storage": {"gcDelay": "2s", "gcInterval": "1s", "retention": retention},
        "extensions": {"metrics": {}},
    });
    if retention.is_null() {
        config["storage"]
            .as_object_mut()
            .expect("storage")
            .remove("retention");
    }
    merge_patch(&mut config, &patch);
    Berth::start_with(config)
}

/// HEAD (not a pull) of a manifest.
fn head_manifest(client: &Client, berth: &Berth, repo: &str, reference: &str) -> u16 {
    head(
        client,
        format!("{}/v2/{repo}/manifests/{reference}", berth.url),
    )
}

/// True once `image`'s manifest and blobs are gone from `repo` and its blob files from disk.
fn collected(client: &Client, berth: &Berth, repo: &str, image: &Image) -> bool {
    head_manifest(client, berth, repo, &image.digest) == 404
        && image.blob_digests().iter().all(|digest| {
            head(client, format!("{}/v2/{repo}/blobs/{digest}", berth.url)) == 404
                && !on_disk(berth, digest)
        })
}

/// Asserts `repo:reference` serves `image` byte-exact (a pull), every blob digest-correct
/// and on disk.
#[track_caller]
fn assert_pulls(client: &Client, berth: &Berth, repo: &str, reference: &str, image: &Image) {
    let (status, digest, body) = fetch_manifest(client, &berth.url, repo, reference);
    assert_eq!(status, 200, "{repo}:{reference}");
    assert_eq!(digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!(body, image.manifest);
    for digest in image.blob_digests() {
        let (status, bytes) = fetch_blob(client, &berth.url, repo, &digest);
        assert_eq!(status, 200, "blob {digest} of {repo}:{reference}");
        assert_eq!(sha256_digest(&bytes), digest);
        assert!(on_disk(berth, &digest), "blob {digest} has no file");
    }
}

/// Pushes one fresh image per tag into `repo`, in order; returns them by tag.
fn push_tags(client: &Client, berth: &Berth, repo: &str, names: &[&str]) -> Vec<(String, Image)> {
    names
        .iter()
        .map(|tag| {
            let image = random_image(1, 200);
            push_image(client, &berth.url, repo, tag, &image);
            ((*tag).to_owned(), image)
        })
        .collect()
}

/// Every JSON log line of the daemon that belongs to GC (`component=gc`).
fn gc_log_lines(berth: &Berth) -> Vec<Value> {
    berth
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["component"] == "gc")
        .collect()
}

/// A `message` line of `kind` about `repo` whose `what` satisfies `what`.
fn logged(lines: &[Value], message: &str, kind: &str, what: impl Fn(&str) -> bool) -> bool {
    lines.iter().any(|line| {
        let fields = &line["fields"];
        fields["message"] == message
            && fields["kind"] == kind
            && fields["what"].as_str().is_some_and(&what)
    })
}

/// keep/** keeps only tags matching `^v`: dev and latest go, then their untagged images; a
/// repository no policy matches keeps every tag.
#[test]
fn keep_tags_patterns_keep_matching_tags_and_unmatched_repos_keep_all() {
    let retention = json!({"policies": [
        {"repositories": ["keep/**"], "keepTags": [{"patterns": ["^v"]}]},
    ]});
    let mut berth = gc_berth(retention, json!({}));
    let client = http();
    let kept = push_tags(&client, &berth, "keep/app", &["v1", "dev", "v2", "latest"]);
    let other = push_tags(&client, &berth, "other/app", &["dev", "latest"]);
    eventually("keep/app down to its v tags", || {
        tags(&client, &berth, "keep/app") == ["v1", "v2"]
    });
    eventually("dev's and latest's images collected", || {
        kept.iter()
            .filter(|(tag, _)| !tag.starts_with('v'))
            .all(|(_, image)| collected(&client, &berth, "keep/app", image))
    });
    await_passes(&client, &berth, 1);
    assert_eq!(tags(&client, &berth, "other/app"), ["dev", "latest"]);
    for (tag, image) in &other {
        assert_pulls(&client, &berth, "other/app", tag, image);
    }
    for (tag, image) in kept.iter().filter(|(tag, _)| tag.starts_with('v')) {
        assert_pulls(&client, &berth, "keep/app", tag, image);
    }
    assert_eq!(deleted(&client, &berth, "tag"), 2.0);
    assert_eq!(deleted(&client, &berth, "manifest"), 2.0);
    stop_and_fsck(&mut berth);
}

/// mostRecentlyPushedCount 2 keeps the two tags pushed last.
#[test]
fn most_recently_pushed_count_keeps_the_newest_tags() {
    let retention = json!({"policies": [
        {"repositories": ["**"], "keepTags": [{"mostRecentlyPushedCount": 2}]},
    ]});
    let mut berth = gc_berth(retention, json!({}));
    let client = http();
    let mut pushed = Vec::new();
    for tag in ["t1", "t2", "t3", "t4"] {
        pushed.extend(push_tags(&client, &berth, "recent/app", &[tag]));
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually("the two newest tags left", || {
        tags(&client, &berth, "recent/app") == ["t3", "t4"]
    });
    eventually("t1's and t2's images collected", || {
        pushed[..2]
            .iter()
            .all(|(_, image)| collected(&client, &berth, "recent/app", image))
    });
    for (tag, image) in &pushed[2..] {
        assert_pulls(&client, &berth, "recent/app", tag, image);
    }
    stop_and_fsck(&mut berth);
}

/// keepTags pulledWithin 3s. As in zot, a tag pushed within the window counts as pulled, so
/// only once the three tags are older than 3 s does pulling decide: the tag pulled by GET
/// every 500 ms survives, the two others go (a HEAD is not a pull).
#[test]
fn pulled_within_keeps_only_the_pulled_tag() {
    let retention = json!({"policies": [
        {"repositories": ["**"], "keepTags": [{"pulledWithin": "3s"}]},
    ]});
    let mut berth = gc_berth(retention, json!({}));
    let client = http();
    let mut pushed = push_tags(&client, &berth, "pull/app", &["a", "b"]);
    let before_c = Instant::now();
    pushed.extend(push_tags(&client, &berth, "pull/app", &["c"]));
    let pull_b_head_c = || {
        let (status, _, _) = fetch_manifest(&client, &berth.url, "pull/app", "b");
        assert_eq!(status, 200, "the pulled tag was deleted");
        head_manifest(&client, &berth, "pull/app", "c");
        std::thread::sleep(Duration::from_millis(400));
    };
    eventually("only the pulled tag left", || {
        pull_b_head_c();
        tags(&client, &berth, "pull/app") == ["b"]
    });
    // c was pushed after `before_c`; berth keeps push times in whole milliseconds.
    assert!(
        before_c.elapsed() >= Duration::from_millis(2990),
        "c deleted inside its push window"
    );
    eventually("a's and c's images collected", || {
        pull_b_head_c();
        [&pushed[0].1, &pushed[2].1]
            .iter()
            .all(|image| collected(&client, &berth, "pull/app", image))
    });
    assert_pulls(&client, &berth, "pull/app", "b", &pushed[1].1);
    stop_and_fsck(&mut berth);
}

/// retention.dryRun: the tag and the untagged image a policy would delete are only logged
/// ("gc would delete", dry_run true) and stay; an unreferenced blob is still collected.
#[test]
fn retention_dry_run_only_logs() {
    let retention = json!({"dryRun": true, "policies": [
        {"repositories": ["dry/**"], "keepTags": [{"patterns": ["^v"]}]},
    ]});
    let mut berth = gc_berth(retention, json!({"log": {"format": "json"}}));
    let client = http();
    let pushed = push_tags(&client, &berth, "dry/app", &["v1", "dev", "v2", "v2"]);
    let untagged = &pushed[2].1;
    let stray = push_blob(&client, &berth.url, "dry/app", &random_bytes(500));
    eventually("the unreferenced blob collected", || {
        head(&client, format!("{}/v2/dry/app/blobs/{stray}", berth.url)) == 404
            && !on_disk(&berth, &stray)
    });
    let mut lines = Vec::new();
    eventually(
        "`gc would delete` for the dev tag and the untagged image",
        || {
            lines = gc_log_lines(&berth);
            logged(&lines, "gc would delete", "tag", |w| {
                w == "dev" || w.ends_with(":dev")
            }) && logged(&lines, "gc would delete", "manifest", |w| {
                w == untagged.digest
            })
        },
    );
    for line in lines
        .iter()
        .filter(|l| l["fields"]["message"] == "gc would delete")
    {
        let fields = &line["fields"];
        assert_eq!(fields["repository"], "dry/app", "{line}");
        assert!(
            fields["dry_run"] == json!(true) || fields["dry_run"] == "true",
            "{line}"
        );
    }
    await_passes(&client, &berth, 1);
    let lines = gc_log_lines(&berth);
    for kind in ["tag", "manifest"] {
        assert!(
            !logged(&lines, "gc deleted", kind, |_| true),
            "{kind} deleted"
        );
        assert_eq!(deleted(&client, &berth, kind), 0.0);
    }
    assert_eq!(tags(&client, &berth, "dry/app"), ["dev", "v1", "v2"]);
    for (reference, image) in [("v1", &pushed[0].1), ("dev", &pushed[1].1)] {
        assert_pulls(&client, &berth, "dry/app", reference, image);
    }
    assert_pulls(&client, &berth, "dry/app", &untagged.digest, untagged);
    assert_pulls(&client, &berth, "dry/app", "v2", &pushed[3].1);
    stop_and_fsck(&mut berth);
}

/// Two policies match first/app: the first one's keepTags apply there; the second still
/// applies to the repositories only it matches.
#[test]
fn first_matching_policy_wins() {
    let retention = json!({"policies": [
        {"repositories": ["first/**"], "keepTags": [{"patterns": ["^v"]}]},
        {"repositories": ["**"], "keepTags": [{"patterns": ["^dev$"]}]},
    ]});
    let mut berth = gc_berth(retention, json!({}));
    let client = http();
    let first = push_tags(&client, &berth, "first/app", &["v1", "dev", "latest"]);
    let second = push_tags(&client, &berth, "second/app", &["v1", "dev", "latest"]);
    eventually("first/app keeps v1, second/app keeps dev", || {
        tags(&client, &berth, "first/app") == ["v1"]
            && tags(&client, &berth, "second/app") == ["dev"]
    });
    assert_pulls(&client, &berth, "first/app", "v1", &first[0].1);
    assert_pulls(&client, &berth, "second/app", "dev", &second[1].1);
    stop_and_fsck(&mut berth);
}

/// One `gc deleted` line per deletion, with component, kind, repository, what, reason and
/// dry_run; and a `gc pass finished` summary line.
#[test]
fn each_deletion_is_logged() {
    let mut berth = gc_berth(json!({}), json!({"log": {"format": "json"}}));
    let client = http();
    let image = random_image(1, 200);
    push_image(&client, &berth.url, "logs/app", "v1", &image);
    let url = format!("{}/v2/logs/app/manifests/{}", berth.url, image.digest);
    expect_status(client.delete(url).send().expect("DELETE"), 202);
    let config = sha256_digest(&image.config);
    let mut lines = Vec::new();
    eventually("`gc deleted` lines for the config's link and blob", || {
        lines = gc_log_lines(&berth);
        ["link", "blob"]
            .iter()
            .all(|kind| logged(&lines, "gc deleted", kind, |w| w == config))
    });
    let link = lines
        .iter()
        .find(|l| l["fields"]["kind"] == "link" && l["fields"]["what"] == config.as_str())
        .expect("link line");
    let fields = &link["fields"];
    assert_eq!(fields["message"], "gc deleted", "{link}");
    assert_eq!(fields["repository"], "logs/app", "{link}");
    assert!(
        fields["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{link}"
    );
    assert!(
        fields["dry_run"] == json!(false) || fields["dry_run"] == "false",
        "{link}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "gc pass finished"),
        "no summary line"
    );
    assert!(!lines
        .iter()
        .any(|l| l["fields"]["message"] == "gc would delete"));
    stop_and_fsck(&mut berth);
}

/// `storage.gcTimeWindow` (UTC): passes start only inside the window, so a berth whose window
/// excludes the present runs none while one whose window includes it runs them.
#[test]
fn gc_time_window_gates_the_passes() {
    let minutes_now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 60)
        % (24 * 60);
    let at = |offset: u64| {
        let minutes = (minutes_now + offset) % (24 * 60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    };
    // Ends two hours ahead (may wrap midnight), starts two hours ahead of the other.
    let open = format!("{}-{}", at(24 * 60 - 120), at(120));
    let closed = format!("{}-{}", at(120), at(240));
    let client = http();
    let inside = gc_berth(json!(null), json!({"storage": {"gcTimeWindow": open}}));
    let outside = gc_berth(json!(null), json!({"storage": {"gcTimeWindow": closed}}));
    await_passes(&client, &inside, 3);
    assert_eq!(
        gc_runs(&client, &outside),
        0.0,
        "no pass outside {closed} while three ran inside {open}"
    );
}
