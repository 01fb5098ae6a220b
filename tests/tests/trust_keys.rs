//! The trust extension's key and certificate endpoints on the real binary: cosign public keys
//! (`/v2/_zot/ext/cosign`) and notation certificates (`/v2/_zot/ext/notation`) are uploaded,
//! listed with their facts and deleted by id by the admin only; every bad upload (garbage,
//! empty, a private key, a certificate for a key and a key for a certificate, two keys at
//! once, an unsupported curve, an unknown trust store, more than 64 KiB) is refused with an
//! OCI-style error and changes nothing; a tool turned off answers 404. The signer that makes
//! the keys checks itself first against other verifiers.

use std::process::Command;

use berth_tests::access::{assert_challenged, assert_denied};
use berth_tests::search::{now_unix, unix_of};
use berth_tests::trust::{
    self, admin, delete, list, post, signer_available, signer_dir, upload_certs, upload_key,
    Signer, COSIGN, MAX_BODY, NOTATION, READER,
};
use berth_tests::{authed, http, run_ok, Client};
use serde_json::{json, Value};

#[test]
fn the_signer_checks_out_against_other_verifiers() {
    if !signer_available() {
        return;
    }
    let stdout = run_ok(Command::new("python3").arg(signer_dir().join("sign_selftest.py")));
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

/// Asserts an OCI-style error body: `{"errors":[{"code": ..., "message": ...}]}`.
#[track_caller]
fn assert_refused(what: &str, (status, body): (u16, Value), expected: u16) {
    assert_eq!(status, expected, "{what}: {body}");
    let code = body["errors"][0]["code"].as_str();
    assert!(
        code.is_some_and(|c| !c.is_empty()),
        "{what}: not an OCI error body: {body}"
    );
}

/// A body of exactly `len` bytes that is no PEM at all.
fn garbage(len: usize) -> Vec<u8> {
    b"not a key ".iter().copied().cycle().take(len).collect()
}

fn is_sha256_id(id: &Value) -> bool {
    id.as_str().is_some_and(|id| {
        id.strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

#[track_caller]
fn assert_recent(what: &str, time: &Value) {
    let time = time
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a time: {time}"));
    let age = now_unix() - unix_of(time);
    assert!((-5..300).contains(&age), "{what}: {time} is not now");
}

/// Anonymous: 401 with a challenge; an authenticated non-admin: 403; on every method.
fn assert_admins_only(url: &str, path: &str, body: &str) {
    let anonymous = http();
    let reader = authed(READER);
    let writer = authed(trust::WRITER);
    assert_challenged(anonymous.get(format!("{url}{path}")).send().unwrap());
    assert_challenged(post(&anonymous, url, path, "", body));
    assert_challenged(
        anonymous
            .delete(format!("{url}{path}?id=sha256:{}", "0".repeat(64)))
            .send()
            .unwrap(),
    );
    for client in [&reader, &writer] {
        assert_denied(client.get(format!("{url}{path}")).send().unwrap());
        assert_denied(post(client, url, path, "", body));
        assert_denied(
            client
                .delete(format!("{url}{path}?id=sha256:{}", "0".repeat(64)))
                .send()
                .unwrap(),
        );
    }
}

fn status_of(client: &Client, method: reqwest::Method, url: String) -> u16 {
    client
        .request(method, url)
        .body("x")
        .send()
        .expect("request")
        .status()
        .as_u16()
}

#[test]
fn cosign_keys_are_uploaded_listed_and_deleted_by_the_admin_only() {
    if !signer_available() {
        return;
    }
    let berth = trust::start(true, false, json!({}));
    let url = &berth.url;
    let signer = Signer::new();
    let algorithms = ["p256", "p384", "ed25519", "rsa2048", "rsa3072"];
    let mut ops: Vec<Value> = algorithms.iter().map(|alg| trust::key(alg, alg)).collect();
    ops.push(trust::key("k256", "secp256k1"));
    ops.push(trust::key("extra", "p256"));
    ops.push(trust::cert(
        "a-cert",
        "selfsigned-leaf",
        "p256",
        "CN=a,O=Example,C=US",
        None,
    ));
    let made = signer.run(&ops);
    let pem = |i: usize| made[i]["public_pem"].as_str().unwrap().to_string();

    assert!(list(url, COSIGN).is_empty());
    for (i, alg) in algorithms.iter().enumerate() {
        let (status, body) = upload_key(url, &pem(i));
        assert_eq!(status, 200, "{alg}: {body}");
    }
    let listed = list(url, COSIGN);
    assert_eq!(listed.len(), algorithms.len(), "{listed:#?}");
    let expected_algorithm = |alg: &str| match alg {
        "p256" => "ecdsa-p256",
        "p384" => "ecdsa-p384",
        "ed25519" => "ed25519",
        _ => "rsa",
    };
    for (i, alg) in algorithms.iter().enumerate() {
        let entry = listed
            .iter()
            .find(|k| k["pem"].as_str().map(str::trim) == Some(pem(i).trim()))
            .unwrap_or_else(|| panic!("{alg} is not listed with its PEM: {listed:#?}"));
        assert_eq!(entry["algorithm"], expected_algorithm(alg), "{entry}");
        assert!(is_sha256_id(&entry["id"]), "{entry}");
        assert_recent(alg, &entry["uploaded"]);
    }
    let mut ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), algorithms.len(), "ids are unique");

    // The same key again: accepted, still listed once.
    assert_eq!(upload_key(url, &pem(0)).0, 200);
    assert_eq!(list(url, COSIGN), listed);

    // Refusals, each changing nothing.
    let private = made[0]["private_pem"].as_str().unwrap().to_string();
    let certificate = made[7]["pem"].as_str().unwrap().to_string();
    let two_keys = format!("{}{}", pem(6), pem(0));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"hello, I am a key".to_vec(), 400),
        ("empty", Vec::new(), 400),
        (
            "a PEM block with garbage inside",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
            400,
        ),
        ("a private key", private.into_bytes(), 400),
        ("a certificate", certificate.into_bytes(), 400),
        ("two keys", two_keys.into_bytes(), 400),
        ("secp256k1", pem(5).into_bytes(), 400),
        ("64 KiB of garbage", garbage(MAX_BODY), 400),
        ("64 KiB + 1", garbage(MAX_BODY + 1), 413),
        ("1 MiB", garbage(1 << 20), 413),
    ];
    for (what, body, expected) in cases {
        assert_refused(
            what,
            trust::json_parts(post(&admin(), url, COSIGN, "", body)),
            expected,
        );
        assert_eq!(list(url, COSIGN), listed, "{what} changed the key list");
    }

    // Only the admin: anonymous is challenged, others are denied; nothing changes.
    assert_admins_only(url, COSIGN, &pem(6));
    assert_eq!(list(url, COSIGN), listed);

    // Delete by id; unknown and missing ids are refused.
    let first = listed[0]["id"].as_str().unwrap().to_string();
    let unknown = format!("sha256:{}", "ab".repeat(32));
    assert_refused("unknown id", delete(url, COSIGN, Some(&unknown)), 404);
    assert_refused("missing id", delete(url, COSIGN, None), 400);
    assert_eq!(list(url, COSIGN), listed);
    let (status, body) = delete(url, COSIGN, Some(&first));
    assert_eq!(status, 200, "{body}");
    let remaining = list(url, COSIGN);
    assert_eq!(remaining.len(), algorithms.len() - 1);
    assert!(remaining.iter().all(|k| k["id"] != first.as_str()));
    assert_refused("deleted twice", delete(url, COSIGN, Some(&first)), 404);
    assert_eq!(list(url, COSIGN), remaining);

    // notation is off here: its routes are not there.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        assert_eq!(status_of(&admin(), method, format!("{url}{NOTATION}")), 404);
    }
    assert_eq!(
        status_of(
            &admin(),
            reqwest::Method::DELETE,
            format!("{url}{NOTATION}?id={first}")
        ),
        404
    );
}

#[test]
fn notation_certificates_are_uploaded_listed_and_deleted_by_the_admin_only() {
    if !signer_available() {
        return;
    }
    let berth = trust::start(false, true, json!({}));
    let url = &berth.url;
    let signer = Signer::new();
    let (mut ops, _) = trust::chain("n", "p256");
    ops.push(trust::cert(
        "tsa",
        "tsa",
        "p256",
        "CN=Example TSA,O=Example,C=US",
        Some("n-root"),
    ));
    ops.push(trust::cert(
        "other-root",
        "root",
        "rsa2048",
        "CN=Other root,OU=Trust,O=Other,C=DE",
        None,
    ));
    ops.push(trust::key("a-key", "p256"));
    let made = signer.run(&ops);
    let (root, inter, leaf, tsa, other, key) =
        (&made[0], &made[1], &made[2], &made[3], &made[4], &made[5]);
    let pem = |v: &Value| v["pem"].as_str().unwrap().to_string();

    assert!(list(url, NOTATION).is_empty());
    // No truststoreType: `ca`.
    let (status, body) = upload_certs(url, None, &pem(root));
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload_certs(url, Some("signingAuthority"), &pem(inter));
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload_certs(url, Some("tsa"), &pem(tsa));
    assert_eq!(status, 200, "{body}");
    // Two certificates in one body.
    let (status, body) = upload_certs(url, Some("ca"), &format!("{}{}", pem(other), pem(leaf)));
    assert_eq!(status, 200, "{body}");
    // The same certificate again into the same store: listed once.
    assert_eq!(upload_certs(url, Some("ca"), &pem(root)).0, 200);

    let listed = list(url, NOTATION);
    assert_eq!(listed.len(), 5, "{listed:#?}");
    for (made, store) in [
        (root, "ca"),
        (inter, "signingAuthority"),
        (tsa, "tsa"),
        (other, "ca"),
        (leaf, "ca"),
    ] {
        let entry = listed
            .iter()
            .find(|c| c["id"] == made["id"])
            .unwrap_or_else(|| {
                panic!(
                    "{} is not listed by the sha256 of its DER: {listed:#?}",
                    made["name"]
                )
            });
        assert_eq!(entry["truststoreType"], store, "{entry}");
        assert_eq!(entry["subject"], made["subject"], "{entry}");
        assert_eq!(entry["issuer"], made["issuer"], "{entry}");
        for field in ["notBefore", "notAfter"] {
            let theirs = entry[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field}: {entry}"));
            let ours = made[if field == "notBefore" {
                "not_before"
            } else {
                "not_after"
            }]
            .as_str()
            .unwrap();
            assert_eq!(unix_of(theirs), unix_of(ours), "{field}: {entry}");
        }
        assert_eq!(entry["pem"].as_str().map(str::trim), Some(pem(made).trim()));
        assert_recent("uploaded", &entry["uploaded"]);
    }
    assert_eq!(
        listed.iter().find(|c| c["id"] == other["id"]).unwrap()["subject"],
        "CN=Other root,OU=Trust,O=Other,C=DE",
        "Go's pkix.Name order"
    );

    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "an unknown store",
            "?truststoreType=root",
            pem(root).into_bytes(),
            400,
        ),
        (
            "an empty store",
            "?truststoreType=",
            pem(root).into_bytes(),
            400,
        ),
        ("garbage", "", b"certainly not".to_vec(), 400),
        ("empty", "?truststoreType=ca", Vec::new(), 400),
        (
            "a public key",
            "?truststoreType=ca",
            key["public_pem"].as_str().unwrap().as_bytes().to_vec(),
            400,
        ),
        (
            "a private key",
            "",
            key["private_pem"].as_str().unwrap().as_bytes().to_vec(),
            400,
        ),
        (
            "a certificate block with garbage inside",
            "",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            400,
        ),
        (
            "64 KiB + 1",
            "?truststoreType=ca",
            garbage(MAX_BODY + 1),
            413,
        ),
    ];
    for (what, query, body, expected) in cases {
        assert_refused(
            what,
            trust::json_parts(post(&admin(), url, NOTATION, query, body)),
            expected,
        );
        assert_eq!(
            list(url, NOTATION),
            listed,
            "{what} changed the certificates"
        );
    }

    assert_admins_only(url, NOTATION, &pem(other));
    assert_eq!(list(url, NOTATION), listed);

    let id = root["id"].as_str().unwrap();
    assert_refused(
        "unknown id",
        delete(url, NOTATION, Some(&format!("sha256:{}", "cd".repeat(32)))),
        404,
    );
    assert_refused("missing id", delete(url, NOTATION, None), 400);
    assert_eq!(list(url, NOTATION), listed);
    let (status, body) = delete(url, NOTATION, Some(id));
    assert_eq!(status, 200, "{body}");
    let remaining = list(url, NOTATION);
    assert_eq!(remaining.len(), 4);
    assert!(remaining.iter().all(|c| c["id"] != id));
    assert_refused("deleted twice", delete(url, NOTATION, Some(id)), 404);

    // One DER certificate, as zot also takes: stored and listed as its PEM would be.
    let der = pem_to_der(&pem(inter));
    let (status, body) =
        trust::json_parts(post(&admin(), url, NOTATION, "?truststoreType=ca", der));
    assert_eq!(status, 200, "{body}");
    let listed = list(url, NOTATION);
    assert_eq!(listed.len(), 5, "{listed:#?}");
    assert!(
        listed
            .iter()
            .any(|c| c["id"] == inter["id"] && c["truststoreType"] == "ca"),
        "{listed:#?}"
    );

    // cosign is off here: its routes are not there.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        assert_eq!(status_of(&admin(), method, format!("{url}{COSIGN}")), 404);
    }
}

/// The DER bytes of a PEM certificate (Python's standard library does the decoding).
fn pem_to_der(pem: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import ssl, sys; sys.stdout.buffer.write(ssl.PEM_cert_to_DER_cert(sys.stdin.read()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write PEM");
    let output = child.wait_with_output().expect("python3 ends");
    assert!(output.status.success() && !output.stdout.is_empty());
    output.stdout
}
