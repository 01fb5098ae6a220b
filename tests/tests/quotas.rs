//! Per-namespace quotas (`storage.quotas`) against the real daemon: a push that would pass a
//! namespace's byte limit (blob upload, monolithic or chunked; mount; manifest) gets 403
//! DENIED with a clear message and nothing is stored; deleting frees room; a full namespace
//! refuses new repositories but not pushes to existing ones; other namespaces are untouched.

use berth_tests::api::{code_of, location, patch_chunk, start_upload, upload_state, with_query};
use berth_tests::{
    assert_no_state_change, http, push_blob, push_image, random_bytes, random_image, try_push_blob,
    Berth, PushError,
};
use serde_json::json;

fn refused_as_quota(result: Result<String, PushError>) {
    let error = result.expect_err("the push must be refused");
    let text = format!("{error:?}");
    assert!(text.contains("403"), "{text}");
    assert!(text.contains("DENIED") && text.contains("quota"), "{text}");
}

#[test]
fn byte_limits_refuse_blobs_and_mounts_and_deletes_free_room() {
    let berth = Berth::start_with(json!({
        "storage": {"quotas": {"team/**": {"maxBytes": 300_000}}}
    }));
    let client = http();
    let url = &berth.url;
    let image = random_image(1, 150_000);
    push_image(&client, url, "team/app", "v1", &image);
    let big = random_bytes(200_000);
    let other = push_blob(&client, url, "other/app", &big);
    let mut known = image.blob_digests();
    known.push(other.clone());
    assert_no_state_change(&berth, &known, || {
        // POST then PUT, then chunked: both refused at the commit.
        refused_as_quota(try_push_blob(&client, url, "team/app", &big, false));
        refused_as_quota(try_push_blob(&client, url, "team/lib", &big, true));
        // Single-request monolithic (POST ?digest=): refused, its staged bytes dropped.
        let digest = berth_tests::sha256_digest(&big);
        let staged = || {
            std::fs::read_dir(berth.data_dir.join("uploads"))
                .expect("uploads")
                .count()
        };
        let staged_before = staged();
        let monolithic = client
            .post(format!("{url}/v2/team/app/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(big.clone())
            .send()
            .expect("POST ?digest=");
        assert_eq!(monolithic.status().as_u16(), 403);
        let body = monolithic.bytes().expect("body");
        assert_eq!(code_of(&body).as_deref(), Some("DENIED"));
        assert_eq!(
            staged(),
            staged_before,
            "the refused monolithic upload left bytes"
        );
        // A mount of a blob stored elsewhere adds its bytes to the namespace too.
        let mount = client
            .post(format!(
                "{url}/v2/team/app/blobs/uploads/?mount={other}&from=other/app"
            ))
            .send()
            .expect("mount");
        assert_eq!(mount.status().as_u16(), 403);
        let body = mount.bytes().expect("body");
        assert_eq!(code_of(&body).as_deref(), Some("DENIED"));
    });
    let head = client
        .head(format!("{url}/v2/team/app/blobs/{other}"))
        .send()
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 404, "nothing linked");
    // Outside the namespace nothing is limited.
    push_blob(&client, url, "other/app", &random_bytes(400_000));
    // A blob the repository already links adds nothing.
    push_blob(&client, url, "team/app", &image.layers[0]);

    // Deleting the image frees its bytes: the big blob now fits.
    let deleted = client
        .delete(format!("{url}/v2/team/app/manifests/{}", image.digest))
        .send()
        .expect("DELETE manifest");
    assert_eq!(deleted.status().as_u16(), 202);
    for digest in image.blob_digests() {
        let deleted = client
            .delete(format!("{url}/v2/team/app/blobs/{digest}"))
            .send()
            .expect("DELETE blob");
        assert_eq!(deleted.status().as_u16(), 202);
    }
    push_blob(&client, url, "team/app", &big);
}

#[test]
fn a_refused_chunked_upload_keeps_its_session() {
    let berth = Berth::start_with(json!({
        "storage": {"quotas": {"small": {"maxBytes": 1000}}}
    }));
    let client = http();
    let blob = random_bytes(5000);
    let digest = berth_tests::sha256_digest(&blob);
    let session = start_upload(&client, &berth.url, "small");
    let patched = patch_chunk(&client, &session, 0, &blob);
    assert_eq!(patched.status().as_u16(), 202);
    let location = location(&berth.url, patched.headers());
    let put = client
        .put(with_query(&location, &format!("digest={digest}")))
        .send()
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 403);
    // The bytes are still the client's to cancel (or finish once there is room).
    assert_eq!(
        upload_state(&client, &location),
        (204, Some("0-4999".into()))
    );
}

#[test]
fn repository_limits_refuse_new_repositories_only() {
    let berth = Berth::start_with(json!({
        "storage": {"quotas": {"team/*": {"maxRepositories": 2}}}
    }));
    let client = http();
    let url = &berth.url;
    push_blob(&client, url, "team/a", b"first");
    push_blob(&client, url, "team/b", b"second");
    let refused = client
        .post(format!("{url}/v2/team/c/blobs/uploads/"))
        .send()
        .expect("POST");
    assert_eq!(refused.status().as_u16(), 403);
    let body = refused.text().expect("body");
    assert!(body.contains("at most 2 repositories"), "{body}");
    // Existing repositories keep working; `team/*` does not match deeper names.
    push_blob(&client, url, "team/a", b"third");
    push_blob(&client, url, "team/x/deep", b"fourth");
    let catalog = client
        .get(format!("{url}/v2/_catalog"))
        .send()
        .expect("catalog");
    let catalog: serde_json::Value =
        serde_json::from_slice(&catalog.bytes().expect("body")).expect("json");
    assert_eq!(
        catalog["repositories"],
        json!(["team/a", "team/b", "team/x/deep"])
    );
}

#[test]
fn a_manifest_that_would_pass_the_limit_is_refused_and_not_stored() {
    let berth = Berth::start_with(json!({
        "storage": {"quotas": {"tiny": {"maxBytes": 900}}}
    }));
    let client = http();
    let url = &berth.url;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "comment": "x".repeat(600),
    }))
    .expect("config");
    let config_digest = push_blob(&client, url, "tiny", &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [],
    }))
    .expect("manifest");
    assert!(config.len() <= 900 && config.len() + manifest.len() > 900);
    assert_no_state_change(&berth, &[config_digest], || {
        let refused = berth_tests::try_push_manifest(&client, url, "tiny", "v1", &manifest);
        let text = format!("{:?}", refused.expect_err("over quota"));
        assert!(text.contains("403") && text.contains("quota"), "{text}");
    });
}
