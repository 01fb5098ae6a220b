//! A store written by the previous release of berth (before search existed) gets its search
//! records on first start, in the background, while berth serves; then search answers exactly
//! what the API serves and fsck is clean.
//!
//! The fixture `tests/fixtures/store-before-search.tar.gz` is a data directory written by
//! berth at commit 1041b57 (no search records): `old/app0..2:v1` (images sharing a base layer,
//! `old/app0` also with a cosign `sha256-<hex>.sig` signature tag) and `old/multi:latest`
//! (an index of an amd64 and an arm64 image over the same base layer).

use std::path::Path;
use std::process::Command;

use berth_tests::api::get_json;
use berth_tests::gc::eventually;
use berth_tests::search::{gql, search_config};
use berth_tests::{http, merge_patch, run_ok, Berth};
use serde_json::json;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/store-before-search.tar.gz"
);

/// The fixture unpacked into a fresh directory.
fn unpack(into: &Path) {
    std::fs::create_dir_all(into).expect("data dir");
    run_ok(
        Command::new("tar")
            .arg("xzf")
            .arg(FIXTURE)
            .arg("-C")
            .arg(into),
    );
}

#[test]
fn an_older_store_is_filled_on_first_start_and_agrees_with_the_api() {
    let old = tempfile::tempdir().expect("tempdir");
    let data = old.path().join("data");
    unpack(&data);
    let mut config = search_config();
    merge_patch(&mut config, &json!({"storage": {"rootDirectory": data}}));
    let mut berth = Berth::start_with(config);
    let client = http();
    let url = berth.url.clone();
    let repos_at = |url: &str| {
        gql(
            &client,
            url,
            "{RepoListWithNewestImage{Page{TotalCount} Results{Name NewestImage{Tag}}}}",
        )["RepoListWithNewestImage"]
            .clone()
    };
    let repos = || repos_at(&url);
    eventually("the backfill lists the old repositories", || {
        repos()["Page"]["TotalCount"] == 4
    });
    eventually("the backfill says it is done", || {
        berth.log().contains("search backfill done")
    });
    let listed = repos();
    let mut names: Vec<&str> = listed["Results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["Name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["old/app0", "old/app1", "old/app2", "old/multi"]);

    // The signature tag is a signature of app0:v1, not an image.
    let app0 = gql(
        &client,
        &url,
        "{ImageList(repo:\"old/app0\"){Page{TotalCount} Results{Tag IsSigned Description Vendor \
         Manifests{Platform{Os Arch} History{HistoryDescription{CreatedBy}}}}}}",
    )["ImageList"]
        .clone();
    assert_eq!(app0["Page"]["TotalCount"], 1, "{app0}");
    let image = &app0["Results"][0];
    assert_eq!(image["Tag"], "v1");
    assert_eq!(image["IsSigned"], true, "{image}");
    assert_eq!(image["Description"], "old app 0");
    assert_eq!(image["Vendor"], "Old Inc");
    assert_eq!(
        image["Manifests"][0]["History"][0]["HistoryDescription"]["CreatedBy"], "RUN build amd64",
        "the config was read by the backfill"
    );

    // The index: both platforms, from the children's configs.
    let multi = gql(
        &client,
        &url,
        "{Image(image:\"old/multi:latest\"){MediaType Manifests{Platform{Os Arch}} LastUpdated}}",
    )["Image"]
        .clone();
    let arches: Vec<&str> = multi["Manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["Platform"]["Arch"].as_str().expect("arch"))
        .collect();
    assert_eq!(arches, ["amd64", "arm64"], "{multi}");
    assert_eq!(multi["LastUpdated"], "2023-06-01T00:00:00Z");

    // Every tag the API lists is the image search lists, digest for digest.
    for repo in ["old/app0", "old/app1", "old/app2", "old/multi"] {
        let (_, tags) = get_json(&client, &format!("{url}/v2/{repo}/tags/list"));
        let searched = gql(
            &client,
            &url,
            &format!("{{ImageList(repo:\"{repo}\"){{Results{{Tag Digest}}}}}}"),
        );
        for tag in tags["tags"].as_array().expect("tags") {
            let tag = tag.as_str().expect("tag");
            if tag.ends_with(".sig") {
                continue;
            }
            let digest = client
                .head(format!("{url}/v2/{repo}/manifests/{tag}"))
                .header("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
                .send()
                .expect("HEAD")
                .headers()["docker-content-digest"]
                .to_str()
                .expect("digest")
                .to_owned();
            let found = searched["ImageList"]["Results"]
                .as_array()
                .expect("results")
                .iter()
                .any(|r| r["Tag"] == tag && r["Digest"] == digest.as_str());
            assert!(found, "{repo}:{tag} ({digest}) in {searched}");
        }
    }
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after the backfill:\n{report}");

    // The next start has nothing to fill.
    berth.restart();
    assert_eq!(repos_at(&berth.url)["Page"]["TotalCount"], 4);
    berth.stop();
    assert_eq!(berth.log().matches("search backfill done").count(), 1);
}
