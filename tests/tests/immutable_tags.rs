//! Immutable tags (`storage.immutableTags`) against the real daemon: a push cannot move a
//! matching tag to another manifest (403 DENIED, nothing stored, by tag or by `?tag=`), the
//! same manifest may be pushed again, other tags and repositories stay mutable, deleting the
//! tag frees it, and racing first pushes of one immutable tag have exactly one winner.

use std::sync::Arc;

use berth_tests::api::{code_of, send_manifest};
use berth_tests::{
    assert_no_state_change, fetch_manifest, http, push_image, random_image, Berth, Client, Image,
};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn start() -> Berth {
    Berth::start_with(json!({
        "storage": {"immutableTags": ["v*", "prod/*:release-*"]}
    }))
}

fn put(client: &Client, url: &str, repo: &str, reference: &str, image: &Image) -> (u16, String) {
    let response = send_manifest(
        client,
        url,
        repo,
        reference,
        OCI_MANIFEST,
        image.manifest.clone(),
    );
    let status = response.status().as_u16();
    (status, response.text().expect("body"))
}

fn tag_digest(client: &Client, url: &str, repo: &str, tag: &str) -> Option<String> {
    let (status, digest, _) = fetch_manifest(client, url, repo, tag);
    (status == 200).then(|| digest.expect("Docker-Content-Digest"))
}

#[test]
fn an_immutable_tag_cannot_move_but_can_be_pushed_again_and_deleted() {
    let berth = start();
    let client = http();
    let url = &berth.url;
    let (first, second) = (random_image(1, 300), random_image(1, 300));
    push_image(&client, url, "app", "v1", &first);
    // `second`'s blobs, so that only the tag rule can refuse it.
    push_image(&client, url, "app", "latest", &second);
    let mut known = first.blob_digests();
    known.extend(second.blob_digests());
    assert_no_state_change(&berth, &known, || {
        let (status, body) = put(&client, url, "app", "v1", &second);
        assert_eq!(status, 403, "{body}");
        assert_eq!(code_of(body.as_bytes()).as_deref(), Some("DENIED"));
        assert!(body.contains("v1") && body.contains("immutable"), "{body}");
        // The same rule through `?tag=` on a PUT by digest: nothing stored, v2 not set either.
        let reference = format!("{}?tag=v2&tag=v1", second.digest);
        assert_eq!(put(&client, url, "app", &reference, &second).0, 403);
    });
    assert_eq!(
        tag_digest(&client, url, "app", "v1"),
        Some(first.digest.clone())
    );
    assert_eq!(tag_digest(&client, url, "app", "v2"), None);
    // Pushing the same manifest again is no move: allowed.
    assert_eq!(put(&client, url, "app", "v1", &first).0, 201);
    // Mutable tags move freely.
    assert_eq!(put(&client, url, "app", "latest", &first).0, 201);
    // Deleting the tag is a delete (allowed to everyone until access control exists); then the
    // tag may name another manifest.
    let deleted = client
        .delete(format!("{url}/v2/app/manifests/v1"))
        .send()
        .expect("DELETE tag");
    assert_eq!(deleted.status().as_u16(), 202);
    assert_eq!(put(&client, url, "app", "v1", &second).0, 201);
    assert_eq!(
        tag_digest(&client, url, "app", "v1"),
        Some(second.digest.clone())
    );
}

#[test]
fn repository_globs_scope_the_rule() {
    let berth = start();
    let client = http();
    let url = &berth.url;
    let (first, second) = (random_image(1, 200), random_image(1, 200));
    for repo in ["prod/app", "prod/team/app", "dev/app"] {
        push_image(&client, url, repo, "release-1", &first);
        push_image(&client, url, repo, "scratch", &second);
    }
    // `prod/*` holds one path component: only prod/app is protected.
    assert_eq!(put(&client, url, "prod/app", "release-1", &second).0, 403);
    assert_eq!(
        put(&client, url, "prod/team/app", "release-1", &second).0,
        201
    );
    assert_eq!(put(&client, url, "dev/app", "release-1", &second).0, 201);
}

#[test]
fn racing_first_pushes_of_an_immutable_tag_have_one_winner() {
    let berth = start();
    let url = Arc::new(berth.url.clone());
    let images: Vec<Image> = (0..8).map(|_| random_image(1, 200)).collect();
    let client = http();
    for (i, image) in images.iter().enumerate() {
        push_image(&client, &url, "race", &format!("candidate{i}"), image);
    }
    let images = Arc::new(images);
    let racers: Vec<_> = (0..images.len())
        .map(|i| {
            let (url, images) = (url.clone(), images.clone());
            std::thread::spawn(move || put(&http(), &url, "race", "v1.0", &images[i]).0)
        })
        .collect();
    let statuses: Vec<u16> = racers
        .into_iter()
        .map(|racer| racer.join().expect("racer"))
        .collect();
    let winners: Vec<usize> = (0..statuses.len())
        .filter(|i| statuses[*i] == 201)
        .collect();
    assert_eq!(winners.len(), 1, "statuses: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == 201 || *status == 403),
        "{statuses:?}"
    );
    let tagged = tag_digest(&client, &url, "race", "v1.0");
    assert_eq!(tagged, Some(images[winners[0]].digest.clone()));
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}
