//! B1 rows R14-R17 (reliability plan): mounts and reads of blobs across repositories, and blob
//! ranges outside the blob.
//!
//! Each rejection asserts the status, the OCI error code of the body `{"errors":[{"code":..}]}`
//! and, through [`assert_no_state_change`], that the registry is exactly as before.
//!
//! Decisions these tests pin (see the brief in /work/plan): a mount the caller may not take is a
//! fresh upload (202), never a link; a blob another repository holds is 404 BLOB_UNKNOWN; a blob
//! GET range outside the blob is 416 with `Content-Range: bytes */size`. R14 runs with a
//! principal that cannot read the source (`http.accessControl`) and without auth, where "cannot
//! read" becomes "does not hold the blob"; R15 runs without auth.

use berth_tests::api::{code_of, expect_status, header, parts};
use berth_tests::{
    assert_no_state_change, authed, push_blob, random_bytes, sha256_digest, Client, Seeded,
};
use serde_json::json;

// ---- R14-R16: mounts and repo-scoped reads ---------------------------------------------------

/// POST a mount; asserts 202 with a Location (a fresh session), never 201.
fn assert_mount_falls_back(client: &Client, url: &str, repo: &str, query: &str) {
    let response = client
        .post(format!("{url}/v2/{repo}/blobs/uploads/?{query}"))
        .send()
        .expect("POST mount");
    let (headers, _) = expect_status(response, 202);
    let location = header(&headers, "location").expect("202 mount fallback has Location");
    assert!(
        location.contains(&format!("/v2/{repo}/blobs/uploads/")),
        "Location {location}"
    );
}

/// `layer` is not linked in repos `other` and `target`, the targets of the failed mounts.
#[track_caller]
fn assert_not_linked(fx: &Seeded, layer: &str) {
    for repo in ["other", "target"] {
        assert_eq!(
            fx.head_blob(repo, layer),
            404,
            "layer visible in {repo} after mount"
        );
    }
}

#[test]
fn r14_mount_from_a_repo_without_the_blob_is_a_fresh_upload() {
    let fx = Seeded::start();
    let layer = sha256_digest(&fx.image.layers[0]);
    let known = fx.known(&[]);
    assert_no_state_change(&fx.berth, &known, || {
        for target in ["other", "target"] {
            for from in ["other", "nothere", "seed/sub"] {
                if from == target {
                    continue;
                }
                assert_mount_falls_back(
                    &fx.client,
                    fx.url(),
                    target,
                    &format!("mount={layer}&from={from}"),
                );
            }
            // A `from` that is not even a name never grants anything.
            let response = fx
                .client
                .post(format!(
                    "{}/v2/{target}/blobs/uploads/?mount={layer}&from=..%2Fseed",
                    fx.url()
                ))
                .send()
                .expect("POST");
            let status = response.status().as_u16();
            assert!(
                status == 202 || status == 400,
                "mount from ../seed: {status}"
            );
        }
    });
    assert_not_linked(&fx, &layer);
}

#[test]
fn r14_mount_from_an_unreadable_repo_is_a_fresh_upload() {
    let all = json!(["read", "create", "update", "delete"]);
    let fx = Seeded::with_auth(json!({
        "**": {"policies": [{"users": ["alice"], "actions": all}], "anonymousPolicy": ["read"]},
        "target": {"policies": [{"users": ["alice", "bob"], "actions": all}]},
    }));
    let bob = authed("bob");
    let layer = sha256_digest(&fx.image.layers[0]);
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        assert_mount_falls_back(
            &bob,
            fx.url(),
            "target",
            &format!("mount={layer}&from=seed"),
        );
        assert_mount_falls_back(&bob, fx.url(), "target", &format!("mount={layer}"));
    });
    let head = bob
        .head(format!("{}/v2/target/blobs/{layer}", fx.url()))
        .send()
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 404);
    // The same mount by alice, who may read seed, links the blob: the refusal above was the
    // access rule, not a missing blob.
    let mounted = authed("alice")
        .post(format!(
            "{}/v2/target/blobs/uploads/?mount={layer}&from=seed",
            fx.url()
        ))
        .send()
        .expect("POST mount");
    assert_eq!(mounted.status().as_u16(), 201);
    let head = bob
        .head(format!("{}/v2/target/blobs/{layer}", fx.url()))
        .send()
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
}

#[test]
fn r15_mount_without_from_of_a_foreign_blob_is_a_fresh_upload() {
    let fx = Seeded::start();
    let layer = sha256_digest(&fx.image.layers[0]);
    let nowhere = sha256_digest(b"stored nowhere");
    let known = fx.known(&[&nowhere]);
    assert_no_state_change(&fx.berth, &known, || {
        for target in ["other", "target"] {
            assert_mount_falls_back(&fx.client, fx.url(), target, &format!("mount={layer}"));
            assert_mount_falls_back(&fx.client, fx.url(), target, &format!("mount={nowhere}"));
        }
    });
    assert_not_linked(&fx, &layer);
}

#[test]
fn r16_blob_of_repo_a_is_unknown_in_repo_b() {
    let fx = Seeded::start();
    let layer = sha256_digest(&fx.image.layers[0]);
    assert_eq!(fx.head_blob("seed", &layer), 200);
    assert_no_state_change(&fx.berth, &fx.known(&[]), || {
        for (repo, name_unknown_ok) in [("other", false), ("seed/sub", true), ("nothere", true)] {
            let url = format!("{}/v2/{repo}/blobs/{layer}", fx.url());
            assert_eq!(fx.head_blob(repo, &layer), 404, "HEAD in {repo}");
            for request in [
                fx.client.get(&url),
                fx.client.get(&url).header("range", "bytes=0-9"),
            ] {
                let (status, _, body) = parts(request.send().expect("GET"));
                let code = code_of(&body);
                assert_eq!(status, 404, "GET in {repo}: {code:?}");
                let ok = code.as_deref() == Some("BLOB_UNKNOWN")
                    || (name_unknown_ok && code.as_deref() == Some("NAME_UNKNOWN"));
                assert!(ok, "GET {layer} in {repo}: code {code:?}");
            }
        }
    });
}

#[test]
fn r17_blob_range_outside_the_blob_is_416() {
    let fx = Seeded::start();
    let data = random_bytes(100);
    let digest = push_blob(&fx.client, fx.url(), "seed", &data);
    let url = format!("{}/v2/seed/blobs/{digest}", fx.url());
    let mut wrong = Vec::new();
    assert_no_state_change(&fx.berth, &fx.known(&[&digest]), || {
        for range in [
            "bytes=100-200",
            "bytes=200-",
            "bytes=100-",
            "bytes=50-10",
            "bytes=-0",
        ] {
            let response = fx
                .client
                .get(&url)
                .header("range", range)
                .send()
                .expect("GET");
            let (status, headers, body) = parts(response);
            let content_range = header(&headers, "content-range");
            let code = if body.is_empty() {
                None
            } else {
                code_of(&body)
            };
            let ok = status == 416
                && content_range.as_deref() == Some("bytes */100")
                && (body.is_empty() || code.as_deref() == Some("RANGE_INVALID"));
            if !ok {
                wrong.push(format!("{range}: {status} {content_range:?} {code:?}"));
            }
        }
    });
    assert!(
        wrong.is_empty(),
        "want 416 + `Content-Range: bytes */100`: {wrong:?}"
    );
    // In range still works.
    let response = fx
        .client
        .get(&url)
        .header("range", "bytes=99-")
        .send()
        .expect("GET");
    let (headers, body) = expect_status(response, 206);
    assert_eq!(body, &data[99..]);
    assert_eq!(
        header(&headers, "content-range").as_deref(),
        Some("bytes 99-99/100")
    );
}
