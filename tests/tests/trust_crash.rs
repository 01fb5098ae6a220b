//! The trust store survives a crash: a cosign key upload answered 200 and a removal answered
//! 200 are each still in effect after a SIGKILL and restart (the key listed or gone, the
//! signature it verifies trusted or not, with no re-push), and `berth fsck` is clean.
//! The signature is made by Python's `cryptography`, not by berth's code.

use std::process::Command;

use berth_tests::search::{gql, search_config};
use berth_tests::{http, push_image, sha256_digest, Berth, Client, Image};
use serde_json::{json, Value};

const SIGN: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
payload = json.dumps({"critical": {"identity": {"docker-reference": "127.0.0.1/crash/app"},
    "image": {"docker-manifest-digest": sys.argv[1]},
    "type": "cosign container image signature"}, "optional": None}).encode()
print(json.dumps({
    "payload": payload.decode(),
    "signature": base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode(),
    "pem": key.public_key().public_bytes(serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
}))
"#;

/// (payload, signature annotation, public key PEM) of a cosign signature of `digest`.
fn sign(digest: &str) -> (Vec<u8>, String, String) {
    let output = Command::new("python3")
        .args(["-c", SIGN, digest])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signed: Value = serde_json::from_slice(&output.stdout).expect("signer answers JSON");
    let payload = signed["payload"].as_str().unwrap().as_bytes().to_vec();
    (
        payload,
        signed["signature"].as_str().unwrap().to_owned(),
        signed["pem"].as_str().unwrap().to_owned(),
    )
}

fn signature_image(payload: Vec<u8>, signature: &str) -> Image {
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": sha256_digest(&payload), "size": payload.len(),
                    "annotations": {"dev.cosignproject.cosign/signature": signature}}],
    }))
    .unwrap();
    Image {
        digest: sha256_digest(&manifest),
        config,
        layers: vec![payload],
        manifest,
    }
}

fn trusted(client: &Client, url: &str) -> Vec<bool> {
    let data = gql(
        client,
        url,
        r#"{Image(image:"crash/app:v1"){SignatureInfo{IsTrusted}}}"#,
    );
    data["Image"]["SignatureInfo"]
        .as_array()
        .expect("signature list")
        .iter()
        .map(|info| info["IsTrusted"].as_bool().expect("IsTrusted"))
        .collect()
}

fn keys(client: &Client, url: &str) -> Vec<String> {
    let text = client
        .get(format!("{url}/v2/_zot/ext/cosign"))
        .send()
        .expect("list keys")
        .text()
        .expect("list body");
    let listed: Value = serde_json::from_str(&text).expect("JSON list");
    listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn uploads_and_removals_survive_a_sigkill() {
    let mut config = search_config();
    config["extensions"]["trust"] = json!({"enable": true, "cosign": true});
    let mut berth = Berth::start_with(config);
    let client = http();
    let image = berth_tests::random_image(2, 64);
    push_image(&client, &berth.url, "crash/app", "v1", &image);
    let (payload, signature, pem) = sign(&image.digest);
    let tag = format!("sha256-{}.sig", image.digest.trim_start_matches("sha256:"));
    push_image(
        &client,
        &berth.url,
        "crash/app",
        &tag,
        &signature_image(payload, &signature),
    );
    assert_eq!(trusted(&client, &berth.url), [false], "no key yet");

    let uploaded = client
        .post(format!("{}/v2/_zot/ext/cosign", berth.url))
        .body(pem.clone())
        .send()
        .expect("upload");
    assert_eq!(uploaded.status(), 200);
    berth.kill();
    berth.restart();
    let listed = keys(&client, &berth.url);
    assert_eq!(listed.len(), 1, "the acknowledged upload survived");
    assert_eq!(
        trusted(&client, &berth.url),
        [true],
        "and so did the verdict it made"
    );

    let removed = client
        .delete(format!("{}/v2/_zot/ext/cosign?id={}", berth.url, listed[0]))
        .send()
        .expect("remove");
    assert_eq!(removed.status(), 200);
    berth.kill();
    berth.restart();
    assert!(
        keys(&client, &berth.url).is_empty(),
        "the acknowledged removal survived"
    );
    assert_eq!(trusted(&client, &berth.url), [false]);
    berth.kill();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}
