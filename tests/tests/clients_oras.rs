//! oras (the Python `oras` package, a real OCI artifact client) against berth: push an
//! artifact, push referrers to it with `subject`, pull the artifact back, then list referrers
//! over HTTP with and without the `artifactType` filter.
//!
//! oras-py's `push()` carries an artifact's type in `config.mediaType` and has no
//! `artifactType` argument, so the signature referrer is pushed through the same client's
//! lower-level `upload_blob`/`upload_manifest` with a hand-built OCI 1.1 manifest
//! (`artifactType` + empty config). Both ways of typing an artifact are covered.

use std::process::Command;

use berth_tests::{fetch_manifest, http, require_tool, run_cmd, run_ok, sha256_digest, Berth};
use serde_json::Value;

const SBOM_TYPE: &str = "application/vnd.berth.test.sbom.v1+json";
const SIGNATURE_TYPE: &str = "application/vnd.berth.test.signature.v1";
const FILE_TYPE: &str = "application/vnd.berth.test.file.v1";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// argv: ADDR WORKDIR. Prints one JSON object: digests and OCI-Subject headers.
const ORAS_SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.client, oras.oci

addr, work = sys.argv[1], sys.argv[2]
os.chdir(work)
client = oras.client.OrasClient(hostname=addr, insecure=True)
client.logout(addr)  # no credentials from the machine

def write(name, data):
    with open(name, "wb") as f:
        f.write(data)

# 1. The subject: a file artifact typed by its config media type.
write("payload.bin", os.urandom(4096))
write("artifact-config.json", b'{"kind":"payload"}')
first = client.push(
    target=f"{addr}/art/app:v1",
    files=["payload.bin:FILE_TYPE"],
    manifest_config="artifact-config.json:application/vnd.berth.test.config.v1+json",
    disable_path_validation=True,
)
subject_digest = first.headers["Docker-Content-Digest"]
raw = client.do_request(
    f"http://{addr}/v2/art/app/manifests/{subject_digest}", "GET",
    headers={"Accept": "OCI_MANIFEST"},
)
assert raw.status_code == 200, raw.status_code
subject = oras.oci.Subject(mediaType="OCI_MANIFEST", digest=subject_digest, size=len(raw.content))

# 2. An SBOM referrer through push(subject=...): typed by config.mediaType.
write("sbom.json", b'{"packages":[]}')
write("sbom-config.json", b"{}")
sbom = client.push(
    target=f"{addr}/art/app:sbom",
    files=["sbom.json:application/json"],
    manifest_config="sbom-config.json:SBOM_TYPE",
    subject=subject,
    disable_path_validation=True,
)

# 3. A signature referrer with an explicit OCI 1.1 artifactType and the empty config.
container = client.get_container(f"{addr}/art/app:sig")
write("empty.json", b"{}")
empty = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
         "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
assert client.upload_blob("empty.json", container, empty).status_code in (200, 201)
write("sig.bin", os.urandom(256))
layer = oras.oci.NewLayer("sig.bin", media_type="application/octet-stream")
assert client.upload_blob("sig.bin", container, layer).status_code in (200, 201)
manifest = oras.oci.NewManifest()
manifest.update({"mediaType": "OCI_MANIFEST", "artifactType": "SIGNATURE_TYPE",
                 "config": empty, "layers": [layer],
                 "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
                 "annotations": {"org.example.signed-by": "berth-tests"}})
sig = client.upload_manifest(manifest, container)
assert sig.status_code == 201, (sig.status_code, sig.text)

# 4. Pull the subject artifact back.
pulled = client.pull(target=f"{addr}/art/app:v1", outdir=os.path.join(work, "pulled"))
with open("payload.bin", "rb") as a, open(pulled[0], "rb") as b:
    assert a.read() == b.read(), "pulled payload differs"

print(json.dumps({
    "subject": subject_digest,
    "sbom": sbom.headers["Docker-Content-Digest"],
    "sbom_oci_subject": sbom.headers.get("OCI-Subject"),
    "signature": sig.headers["Docker-Content-Digest"],
    "signature_oci_subject": sig.headers.get("OCI-Subject"),
}))
"#;

fn oras_available() -> bool {
    if !require_tool("python3") {
        return false;
    }
    let (ok, _, stderr) = run_cmd(Command::new("python3").args(["-c", "import oras.client"]));
    if !ok {
        if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("python package `oras` is missing (BERTH_REQUIRE_TOOLS=1): {stderr}");
        }
        eprintln!("SKIPPED: python package `oras` is missing");
    }
    ok
}

fn referrers(berth: &Berth, subject: &str, filter: Option<&str>) -> (Option<String>, Value) {
    let mut url = format!("{}/v2/art/app/referrers/{subject}", berth.url);
    if let Some(artifact_type) = filter {
        url.push_str(&format!("?artifactType={artifact_type}"));
    }
    let response = http().get(url).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/vnd.oci.image.index.v1+json"),
        "{content_type}"
    );
    let filters = response
        .headers()
        .get("oci-filters-applied")
        .map(|v| v.to_str().unwrap().to_string());
    let index: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    (filters, index)
}

#[test]
fn oras_artifacts_with_subject_and_referrers() {
    if !oras_available() {
        return;
    }
    let berth = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let script = ORAS_SCRIPT
        .replace("FILE_TYPE", FILE_TYPE)
        .replace("SBOM_TYPE", SBOM_TYPE)
        .replace("SIGNATURE_TYPE", SIGNATURE_TYPE)
        .replace("OCI_MANIFEST", OCI_MANIFEST);
    let script_path = work.path().join("oras_push.py");
    std::fs::write(&script_path, script).unwrap();
    let stdout = run_ok(
        Command::new("python3")
            .arg(&script_path)
            .arg(&berth.addr)
            .arg(work.path()),
    );
    let pushed: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("oras script output is not JSON ({e}): {stdout}"));
    let subject = pushed["subject"].as_str().unwrap();
    let sbom = pushed["sbom"].as_str().unwrap();
    let signature = pushed["signature"].as_str().unwrap();
    // A registry that processes `subject` says so on the manifest PUT.
    assert_eq!(pushed["sbom_oci_subject"], subject);
    assert_eq!(pushed["signature_oci_subject"], subject);

    // Every manifest is stored byte-exact under the digest the client was given.
    let client = http();
    for digest in [subject, sbom, signature] {
        let (status, served, body) = fetch_manifest(&client, &berth.url, "art/app", digest);
        assert_eq!(status, 200, "{digest}");
        assert_eq!(served.as_deref(), Some(digest));
        assert_eq!(sha256_digest(&body), digest);
    }

    // Unfiltered: both referrers, typed by artifactType or else config.mediaType.
    let (filters, index) = referrers(&berth, subject, None);
    assert_eq!(filters, None, "no filter requested");
    let mut listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("referrers index has manifests")
        .iter()
        .map(|d| {
            assert_eq!(d["mediaType"], OCI_MANIFEST);
            (
                d["digest"].as_str().unwrap().to_string(),
                d["artifactType"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        (sbom.to_string(), SBOM_TYPE.to_string()),
        (signature.to_string(), SIGNATURE_TYPE.to_string()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{index}");
    let signature_entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == signature)
        .unwrap();
    assert_eq!(
        signature_entry["annotations"]["org.example.signed-by"],
        "berth-tests"
    );

    // Filtered by artifactType: only the signature, and the filter is reported as applied.
    let (filters, index) = referrers(&berth, subject, Some(SIGNATURE_TYPE));
    assert_eq!(filters.as_deref(), Some("artifactType"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], signature);
    assert_eq!(manifests[0]["artifactType"], SIGNATURE_TYPE);

    // A subject with no referrers: an empty list, not an error.
    let (_, index) = referrers(&berth, sbom, None);
    assert_eq!(index["manifests"], serde_json::json!([]));
}
