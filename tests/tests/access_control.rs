//! `http.accessControl` on the real binary, the policies: read-only users, anonymousPolicy,
//! the longest glob, groups, adminPolicy, defaultPolicy, create vs update. skopeo runs where a
//! client is natural. (access_control_scope.rs: catalog, metrics, upload sessions, configs.)
//!
//! Every refusal asserts the status and the OCI code (401 with the Basic challenge for
//! anonymous, 403 DENIED for a user) and, where it could change something, that nothing
//! changed.

use berth_tests::access::*;
use berth_tests::api::expect_status;
use berth_tests::{
    assert_no_state_change, authed, fetch_blob, fetch_manifest, http, push_image, random_image,
    require_tool, sha256_digest, write_oci_layout, HTPASSWD_SECRET,
};
use serde_json::json;

#[test]
fn a_read_only_user_pulls_but_cannot_push_or_delete() {
    let berth = start(
        json!({"repositories": {"**": {"policies": [
            {"users": ["alice"], "actions": ALL},
            {"users": ["bob"], "actions": ["read"]},
        ]}}}),
        json!({}),
    );
    let image = random_image(1, 2000);
    push_image(&authed("alice"), &berth.url, "lib/app", "v1", &image);
    let bob = authed("bob");
    let (status, digest, _) = fetch_manifest(&bob, &berth.url, "lib/app", "v1");
    assert_eq!(
        (status, digest.as_deref()),
        (200, Some(image.digest.as_str()))
    );
    let layer = sha256_digest(&image.layers[0]);
    assert_eq!(fetch_blob(&bob, &berth.url, "lib/app", &layer).0, 200);
    let other = random_image(1, 500);
    assert_no_state_change(&berth, &known(&[&image, &other]), || {
        assert_denied(post_upload(&bob, &berth.url, "lib/app"));
        assert_denied(post_upload(&bob, &berth.url, "lib/new"));
        assert_denied(put_manifest(
            &bob,
            &berth.url,
            "lib/app",
            "v2",
            &other.manifest,
        ));
        assert_denied(delete(
            &bob,
            format!("{}/v2/lib/app/manifests/{}", berth.url, image.digest),
        ));
        assert_denied(delete(
            &bob,
            format!("{}/v2/lib/app/blobs/{layer}", berth.url),
        ));
    });
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = |reference: &str| format!("docker://{}/lib/app:{reference}", berth.addr);
    let out = dir.path().join("out");
    let creds = format!("bob:{HTPASSWD_SECRET}");
    let (ok, stderr) = skopeo_copy(
        &["--src-creds", &creds],
        remote("v1"),
        format!("oci:{}:v1", out.display()),
    );
    assert!(ok, "{stderr}");
    let hex = image.digest.strip_prefix("sha256:").expect("sha256");
    let pulled = std::fs::read(out.join("blobs/sha256").join(hex)).expect("pulled manifest");
    assert_eq!(pulled, image.manifest);
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "v3", &other);
    let (ok, stderr) = skopeo_copy(
        &["--dest-creds", &creds],
        format!("oci:{}:v3", layout.display()),
        remote("v3"),
    );
    assert!(!ok, "bob pushed with read only");
    assert!(
        stderr.contains("403") || stderr.to_lowercase().contains("denied"),
        "{stderr}"
    );
    assert_eq!(fetch_manifest(&bob, &berth.url, "lib/app", "v3").0, 404);
}

#[test]
fn anonymous_policy_read_lets_anonymous_pull_and_a_push_gets_the_challenge() {
    let berth = start(
        json!({"repositories": {"**": {
            "policies": [{"users": ["alice"], "actions": ALL}],
            "anonymousPolicy": ["read"],
        }}}),
        json!({}),
    );
    let image = random_image(1, 2000);
    push_image(&authed("alice"), &berth.url, "pub/app", "v1", &image);
    let anonymous = http();
    let (status, digest, _) = fetch_manifest(&anonymous, &berth.url, "pub/app", "v1");
    assert_eq!(
        (status, digest.as_deref()),
        (200, Some(image.digest.as_str()))
    );
    // `/v2/` challenges anonymous clients so that Docker sends its credentials.
    assert_challenged(get(&anonymous, format!("{}/v2/", berth.url)));
    let other = random_image(1, 500);
    assert_no_state_change(&berth, &known(&[&image, &other]), || {
        assert_challenged(post_upload(&anonymous, &berth.url, "pub/app"));
        assert_challenged(put_manifest(
            &anonymous,
            &berth.url,
            "pub/app",
            "v2",
            &other.manifest,
        ));
        // Empty Basic credentials (what skopeo sends without a login) are anonymous too.
        let empty = anonymous
            .post(format!("{}/v2/pub/app/blobs/uploads/", berth.url))
            .basic_auth("", Some(""))
            .send()
            .expect("POST");
        assert_challenged(empty);
    });
    // A wrong password is still a failed login, not anonymous.
    let wrong = anonymous
        .get(format!("{}/v2/pub/app/manifests/v1", berth.url))
        .basic_auth("alice", Some("wrong"))
        .send()
        .expect("GET");
    assert_challenged(wrong);
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let remote = |reference: &str| format!("docker://{}/pub/app:{reference}", berth.addr);
    let (ok, stderr) = skopeo_copy(&[], remote("v1"), format!("oci:{}:v1", out.display()));
    assert!(ok, "anonymous skopeo pull: {stderr}");
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "v2", &other);
    let (ok, stderr) = skopeo_copy(&[], format!("oci:{}:v2", layout.display()), remote("v2"));
    assert!(!ok, "anonymous skopeo push succeeded");
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("unauthorized"),
        "{stderr}"
    );
}

#[test]
fn the_longest_glob_wins_over_double_star() {
    let berth = start(
        json!({"repositories": {
            "**": {"policies": [{"users": ["alice"], "actions": ALL}]},
            "team/*": {"policies": [{"users": ["bob"], "actions": ALL}]},
        }}),
        json!({}),
    );
    let (alice, bob) = (authed("alice"), authed("bob"));
    let image = random_image(1, 300);
    push_image(&bob, &berth.url, "team/app", "v1", &image);
    push_image(&alice, &berth.url, "team/app/sub", "v1", &image);
    push_image(&alice, &berth.url, "lib/app", "v1", &image);
    assert_no_state_change(&berth, &known(&[&image]), || {
        // team/app: only `team/*` applies, and it does not list alice.
        assert_denied(get(
            &alice,
            format!("{}/v2/team/app/manifests/v1", berth.url),
        ));
        assert_denied(post_upload(&alice, &berth.url, "team/app"));
        // `*` stays within one component: team/app/sub and lib/app are `**`'s.
        assert_denied(post_upload(&bob, &berth.url, "team/app/sub"));
        assert_denied(get(&bob, format!("{}/v2/lib/app/tags/list", berth.url)));
    });
    assert_eq!(fetch_manifest(&bob, &berth.url, "team/app", "v1").0, 200);
    assert_eq!(
        fetch_manifest(&alice, &berth.url, "team/app/sub", "v1").0,
        200
    );
}

#[test]
fn groups_default_policy_and_admin_policy() {
    let berth = start(
        json!({
            "groups": {"devs": {"users": ["dave"]}, "ops": {"users": ["carol"]}},
            "repositories": {
                "**": {
                    "policies": [{"groups": ["devs"], "actions": ["read", "create"]}],
                    "defaultPolicy": ["read"],
                },
                "secret/**": {"policies": [{"users": ["alice"], "actions": ["create"]}]},
            },
            "adminPolicy": {"users": ["root"], "groups": ["ops"], "actions": ["read", "delete"]},
        }),
        json!({}),
    );
    let (dave, bob, root, carol) = (
        authed("dave"),
        authed("bob"),
        authed("root"),
        authed("carol"),
    );
    // A group's member pushes; any authenticated user reads (defaultPolicy); anonymous does
    // not (no anonymousPolicy).
    let image = random_image(1, 300);
    push_image(&dave, &berth.url, "lib/app", "v1", &image);
    assert_eq!(fetch_manifest(&bob, &berth.url, "lib/app", "v1").0, 200);
    assert_challenged(get(
        &http(),
        format!("{}/v2/lib/app/manifests/v1", berth.url),
    ));
    let secret = random_image(1, 300);
    push_image(&authed("alice"), &berth.url, "secret/x", "v1", &secret);
    assert_no_state_change(&berth, &known(&[&image, &secret]), || {
        assert_denied(post_upload(&bob, &berth.url, "lib/app"));
        // secret/** lists only alice (create): dave's group and the defaultPolicy of `**` do
        // not apply there, and alice cannot read what she pushed.
        for client in [&dave, &bob, &authed("alice")] {
            assert_denied(get(
                client,
                format!("{}/v2/secret/x/manifests/v1", berth.url),
            ));
        }
        // Admins read everywhere, but only the actions adminPolicy lists.
        assert_eq!(fetch_manifest(&root, &berth.url, "secret/x", "v1").0, 200);
        assert_eq!(fetch_manifest(&carol, &berth.url, "secret/x", "v1").0, 200);
        assert_denied(post_upload(&root, &berth.url, "secret/x"));
        // berth's extension endpoints are for admins.
        assert_denied(get(&bob, format!("{}/v2/_zot/ext/scrub", berth.url)));
    });
    let report = get(&root, format!("{}/v2/_zot/ext/scrub", berth.url));
    assert_eq!(report.status().as_u16(), 200);
    // Through a group of adminPolicy: delete.
    let deleted = delete(
        &carol,
        format!("{}/v2/secret/x/manifests/{}", berth.url, secret.digest),
    );
    assert_eq!(deleted.status().as_u16(), 202);
}

#[test]
fn create_without_update_pushes_new_tags_but_moves_none() {
    let berth = start(
        json!({"repositories": {"**": {"policies": [
            {"users": ["alice"], "actions": ALL},
            {"users": ["bob"], "actions": ["read", "create"]},
        ]}}}),
        json!({}),
    );
    let (alice, bob) = (authed("alice"), authed("bob"));
    let first = random_image(1, 300);
    let second = random_image(1, 300);
    push_image(&bob, &berth.url, "lib/app", "v1", &first);
    // The second image's blobs, then its manifest under a digest (a new reference: create).
    for blob in std::iter::once(&second.config).chain(&second.layers) {
        berth_tests::push_blob(&bob, &berth.url, "lib/app", blob);
    }
    expect_status(
        put_manifest(
            &bob,
            &berth.url,
            "lib/app",
            &second.digest,
            &second.manifest,
        ),
        201,
    );
    assert_no_state_change(&berth, &known(&[&first, &second]), || {
        // Moving v1, by tag or by `?tag=`, is update.
        assert_denied(put_manifest(
            &bob,
            &berth.url,
            "lib/app",
            "v1",
            &second.manifest,
        ));
        let by_digest = format!("{}?tag=v1", second.digest);
        assert_denied(put_manifest(
            &bob,
            &berth.url,
            "lib/app",
            &by_digest,
            &second.manifest,
        ));
        // So is pushing v1 again, even unchanged (zot's rule).
        assert_denied(put_manifest(
            &bob,
            &berth.url,
            "lib/app",
            "v1",
            &first.manifest,
        ));
    });
    let (_, digest, _) = fetch_manifest(&bob, &berth.url, "lib/app", "v1");
    assert_eq!(digest.as_deref(), Some(first.digest.as_str()));
    // A new tag is create.
    expect_status(
        put_manifest(&bob, &berth.url, "lib/app", "v2", &second.manifest),
        201,
    );
    // alice may update.
    expect_status(
        put_manifest(&alice, &berth.url, "lib/app", "v1", &second.manifest),
        201,
    );
    let (_, digest, _) = fetch_manifest(&bob, &berth.url, "lib/app", "v1");
    assert_eq!(digest.as_deref(), Some(second.digest.as_str()));
}
