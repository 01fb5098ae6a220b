//! Search over images that real clients pushed, and search staying true to the store: skopeo
//! (an OCI layout with labels), buildah (built from scratch: labels and history) and oras (an
//! artifact and a referrer) are found with the fields zot derives; a deleted manifest leaves
//! every list; GC's removal of an untagged image leaves none behind; and after a SIGKILL in
//! the middle of pushes, `berth fsck` is clean and `ImageList` agrees with `tags/list` tag for
//! tag, digest for digest.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_tests::api::{get_json, OCI_MANIFEST};
use berth_tests::containers::{Containers, Store};
use berth_tests::gc::{eventually, head};
use berth_tests::search::{gql, refs, search_config, strings, ImageBuilder, Layer};
use berth_tests::{
    fetch_manifest, http, push_image, require_tool, run_cmd, run_ok, try_push_blob,
    try_push_manifest, write_oci_layout, Berth, Client, Image,
};
use serde_json::{json, Value};

fn image_list(client: &Client, url: &str, repo: &str) -> Value {
    gql(
        client,
        url,
        &format!(
            "{{ImageList(repo:\"{repo}\"){{Page{{TotalCount}} Results{{RepoName Tag Digest \
             MediaType Description Vendor Title Manifests{{Platform{{Os Arch}} \
             History{{HistoryDescription{{CreatedBy EmptyLayer}}}}}}}}}}}}"
        ),
    )["ImageList"]
        .clone()
}

#[test]
fn skopeo_copied_layout_is_found_with_its_labels_and_platform() {
    if !require_tool("skopeo") {
        return;
    }
    let berth = Berth::start_with(search_config());
    let image = ImageBuilder::new()
        .platform("linux", "arm64", Some("v8"))
        .created("2024-03-03T03:03:03Z")
        .label("org.opencontainers.image.description", "copied by skopeo")
        .label("org.label-schema.vendor", "Skopeo Inc")
        .fresh_layer(4096)
        .build();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    write_oci_layout(&layout, "v1", &image);
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/sk/app:v1", berth.addr)),
    );
    let client = http();
    let list = image_list(&client, &berth.url, "sk/app");
    let found = &list["Results"][0];
    assert_eq!(list["Page"]["TotalCount"], 1, "{list}");
    assert_eq!(found["Digest"], image.digest);
    assert_eq!(found["MediaType"], OCI_MANIFEST);
    assert_eq!(found["Description"], "copied by skopeo");
    assert_eq!(found["Vendor"], "Skopeo Inc");
    assert_eq!(
        found["Manifests"][0]["Platform"],
        json!({"Os": "linux", "Arch": "arm64/v8"})
    );
    let data = gql(
        &client,
        &berth.url,
        "{GlobalSearch(query:\"sk\"){Repos{Name LastUpdated}}}",
    );
    assert_eq!(
        data["GlobalSearch"]["Repos"],
        json!([{"Name": "sk/app", "LastUpdated": "2024-03-03T03:03:03Z"}])
    );
}

#[test]
fn buildah_built_image_is_found_with_its_labels_and_history() {
    if !require_tool("buildah") {
        return;
    }
    let berth = Berth::start_with(search_config());
    let containers = Containers::new(&berth.addr);
    let buildah = || containers.cmd("buildah", Store::Build);
    let file = containers.dir().join("payload.bin");
    std::fs::write(&file, berth_tests::random_bytes(2048)).unwrap();
    let container = run_ok(buildah().args(["from", "scratch"]))
        .trim()
        .to_string();
    run_ok(buildah().args([
        "config",
        "--arch",
        "arm64",
        "--variant",
        "v8",
        "--os",
        "linux",
        "--label",
        "org.opencontainers.image.description=built by buildah",
        "--label",
        "org.opencontainers.image.vendor=Berth Tests",
        "--label",
        "org.opencontainers.image.title=hello",
        "--created-by",
        "berth-test: add payload",
        &container,
    ]));
    run_ok(
        buildah()
            .args(["copy", &container])
            .arg(&file)
            .arg("/payload.bin"),
    );
    run_ok(buildah().args(["commit", "-q", &container, "localhost/hello:v1"]));
    let digest_file = containers.dir().join("digest");
    run_ok(
        buildah()
            .args(["push", "--tls-verify=false", "--digestfile"])
            .arg(&digest_file)
            .arg("localhost/hello:v1")
            .arg(format!("docker://{}/bb/hello:v1", berth.addr)),
    );
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();
    let list = image_list(&http(), &berth.url, "bb/hello");
    let found = &list["Results"][0];
    assert_eq!(refs(&list["Results"]), ["bb/hello:v1"]);
    assert_eq!(found["Digest"], pushed.as_str());
    assert_eq!(found["Description"], "built by buildah");
    assert_eq!(found["Vendor"], "Berth Tests");
    assert_eq!(found["Title"], "hello");
    assert_eq!(
        found["Manifests"][0]["Platform"],
        json!({"Os": "linux", "Arch": "arm64/v8"})
    );
    let created_by: Vec<String> = found["Manifests"][0]["History"]
        .as_array()
        .unwrap_or_else(|| panic!("history: {found}"))
        .iter()
        .filter_map(|h| {
            h["HistoryDescription"]["CreatedBy"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        created_by
            .iter()
            .any(|c| c.contains("berth-test: add payload")),
        "buildah's history is shown: {created_by:?}"
    );
}

/// argv: ADDR WORKDIR. Pushes art/app:v1 (a file artifact) and an SBOM referrer; prints the
/// two digests as JSON.
const ORAS_SCRIPT: &str = r#"
import json, os, sys
import oras.client, oras.oci
addr, work = sys.argv[1], sys.argv[2]
os.chdir(work)
client = oras.client.OrasClient(hostname=addr, insecure=True)
client.logout(addr)
def write(name, data):
    with open(name, "wb") as f:
        f.write(data)
write("payload.bin", os.urandom(2048))
write("config.json", b'{"kind":"payload"}')
first = client.push(target=f"{addr}/art/app:v1", files=["payload.bin:application/vnd.berth.file"],
    manifest_config="config.json:application/vnd.berth.artifact.config.v1+json",
    disable_path_validation=True)
subject_digest = first.headers["Docker-Content-Digest"]
raw = client.do_request(f"http://{addr}/v2/art/app/manifests/{subject_digest}", "GET",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
    digest=subject_digest, size=len(raw.content))
write("sbom.json", b'{"packages":[]}')
write("sbom-config.json", b"{}")
sbom = client.push(target=f"{addr}/art/app:sbom", files=["sbom.json:application/json"],
    manifest_config="sbom-config.json:application/vnd.berth.sbom.v1+json", subject=subject,
    disable_path_validation=True)
print(json.dumps({"subject": subject_digest, "sbom": sbom.headers["Docker-Content-Digest"]}))
"#;

#[test]
fn oras_artifact_and_its_referrer_are_found() {
    if !require_tool("python3") {
        return;
    }
    let (ok, _, stderr) = run_cmd(Command::new("python3").args(["-c", "import oras.client"]));
    if !ok {
        assert_ne!(
            std::env::var("BERTH_REQUIRE_TOOLS").as_deref(),
            Ok("1"),
            "oras: {stderr}"
        );
        eprintln!("SKIPPED: python package `oras` is missing");
        return;
    }
    let berth = Berth::start_with(search_config());
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("push.py");
    std::fs::write(&script, ORAS_SCRIPT).unwrap();
    let stdout = run_ok(
        Command::new("python3")
            .arg(&script)
            .arg(&berth.addr)
            .arg(work.path()),
    );
    let pushed: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("oras output is not JSON ({e}): {stdout}"));
    let (subject, sbom) = (
        pushed["subject"].as_str().unwrap(),
        pushed["sbom"].as_str().unwrap(),
    );
    let client = http();
    let (_, _, sbom_manifest) = fetch_manifest(&client, &berth.url, "art/app", sbom);
    let data = gql(
        &client,
        &berth.url,
        "{Image(image:\"art/app:v1\"){Digest Manifests{ArtifactType} \
         Referrers{Digest ArtifactType Size MediaType}}}",
    );
    assert_eq!(
        data["Image"],
        json!({"Digest": subject,
               "Manifests": [{"ArtifactType": "application/vnd.berth.artifact.config.v1+json"}],
               "Referrers": [{"Digest": sbom, "ArtifactType": "application/vnd.berth.sbom.v1+json",
                              "Size": sbom_manifest.len(), "MediaType": OCI_MANIFEST}]})
    );
    let data = gql(
        &client,
        &berth.url,
        &format!(
            "{{Referrers(repo:\"art/app\", digest:\"{subject}\", \
             type:[\"application/vnd.berth.sbom.v1+json\"]){{Digest}}}}"
        ),
    );
    assert_eq!(data["Referrers"], json!([{"Digest": sbom}]));
}

fn delete(client: &Client, url: String) -> u16 {
    client.delete(url).send().expect("DELETE").status().as_u16()
}

#[test]
fn a_deleted_manifest_leaves_every_list() {
    let berth = Berth::start_with(search_config());
    let (client, url) = (http(), berth.url.as_str());
    let shared = Layer::random(500);
    let old = ImageBuilder::new()
        .created("2024-01-01T00:00:00Z")
        .layer(&shared)
        .fresh_layer(50)
        .build();
    let new = ImageBuilder::new()
        .created("2024-02-01T00:00:00Z")
        .layer(&shared)
        .build();
    push_image(&client, url, "del/app", "old", &old);
    push_image(&client, url, "del/app", "new", &new);
    push_image(&client, url, "del/gone", "v1", &old);
    assert_eq!(
        delete(
            &client,
            format!("{url}/v2/del/app/manifests/{}", new.digest)
        ),
        202
    );
    assert_eq!(
        refs(&image_list(&client, url, "del/app")["Results"]),
        ["del/app:old"]
    );
    let search = |q: &str| {
        gql(&client, url, &format!("{{GlobalSearch(query:\"{q}\"){{Images{{RepoName Tag}} Repos{{Name NewestImage{{Tag}}}}}}}}"))["GlobalSearch"].clone()
    };
    assert_eq!(search(&new.digest)["Images"], json!([]));
    assert_eq!(
        refs(&search(&shared.digest())["Images"]),
        ["del/app:old", "del/gone:v1"]
    );
    assert_eq!(refs(&search(":new")["Images"]), Vec::<String>::new());
    assert_eq!(
        search("del/app")["Repos"],
        json!([{"Name": "del/app", "NewestImage": {"Tag": "old"}}])
    );
    // The last image of a repository: the repository leaves the lists too.
    assert_eq!(
        delete(
            &client,
            format!("{url}/v2/del/gone/manifests/{}", old.digest)
        ),
        202
    );
    assert_eq!(strings(&search("del")["Repos"], "Name"), ["del/app"]);
    let repos = gql(&client, url, "{RepoListWithNewestImage{Results{Name}}}");
    assert_eq!(
        strings(&repos["RepoListWithNewestImage"]["Results"], "Name"),
        ["del/app"]
    );
    assert_eq!(
        image_list(&client, url, "del/gone")["Page"]["TotalCount"],
        0
    );
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

#[test]
fn gc_of_an_untagged_image_leaves_search_consistent() {
    let mut berth = Berth::start_with(json!({
        "storage": {"gcDelay": "1s", "gcInterval": "1s"},
        "extensions": {"search": {"enable": true}},
    }));
    let (client, url) = (http(), berth.url.clone());
    let url = url.as_str();
    let shared = Layer::random(500);
    let keep = ImageBuilder::new()
        .created("2024-01-01T00:00:00Z")
        .layer(&shared)
        .build();
    let drop = ImageBuilder::new()
        .created("2024-02-01T00:00:00Z")
        .layer(&shared)
        .fresh_layer(70)
        .build();
    let alone = ImageBuilder::new()
        .created("2024-03-01T00:00:00Z")
        .fresh_layer(70)
        .build();
    push_image(&client, url, "gc/app", "keep", &keep);
    push_image(&client, url, "gc/app", "drop", &drop);
    push_image(&client, url, "gc/alone", "v1", &alone);
    // Untag: search drops the tag at once; GC later removes the manifest itself.
    assert_eq!(
        delete(&client, format!("{url}/v2/gc/app/manifests/drop")),
        202
    );
    assert_eq!(
        delete(&client, format!("{url}/v2/gc/alone/manifests/v1")),
        202
    );
    assert_eq!(
        refs(&image_list(&client, url, "gc/app")["Results"]),
        ["gc/app:keep"]
    );
    eventually("GC removes the untagged manifests", || {
        head(
            &client,
            format!("{url}/v2/gc/app/manifests/{}", drop.digest),
        ) == 404
            && head(
                &client,
                format!("{url}/v2/gc/alone/manifests/{}", alone.digest),
            ) == 404
    });
    assert_eq!(
        refs(&image_list(&client, url, "gc/app")["Results"]),
        ["gc/app:keep"]
    );
    assert_eq!(image_list(&client, url, "")["Page"]["TotalCount"], 1);
    for digest in [&drop.digest, &alone.digest] {
        let data = gql(
            &client,
            url,
            &format!("{{GlobalSearch(query:\"{digest}\"){{Page{{TotalCount}}}}}}"),
        );
        assert_eq!(data["GlobalSearch"]["Page"]["TotalCount"], 0, "{digest}");
    }
    let holders = gql(
        &client,
        url,
        &format!(
            "{{ImageListForDigest(id:\"{}\"){{Results{{RepoName Tag}}}}}}",
            shared.digest()
        ),
    );
    assert_eq!(
        refs(&holders["ImageListForDigest"]["Results"]),
        ["gc/app:keep"]
    );
    let repos = gql(
        &client,
        url,
        "{RepoListWithNewestImage{Results{Name Size NewestImage{Tag}}}}",
    );
    let size = keep.config.len() + keep.manifest.len() + keep.layers[0].len();
    assert_eq!(
        repos["RepoListWithNewestImage"]["Results"],
        json!([{"Name": "gc/app", "Size": size.to_string(), "NewestImage": {"Tag": "keep"}}])
    );
    berth.stop();
    let (clean, report) = berth.fsck();
    assert!(clean, "{report}");
}

/// Every tag of `tags/list` with the digest a manifest GET serves, per repository.
fn stored_tags(client: &Client, url: &str, repo: &str) -> BTreeMap<String, String> {
    let (_, body) = get_json(client, &format!("{url}/v2/{repo}/tags/list"));
    let tags: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap_or_default();
    tags.into_iter()
        .map(|tag| {
            let (status, digest, _) = fetch_manifest(client, url, repo, &tag);
            assert_eq!(status, 200, "{repo}:{tag} is listed");
            (tag, digest.expect("Docker-Content-Digest"))
        })
        .collect()
}

#[test]
fn after_a_kill_during_pushes_search_agrees_with_the_store() {
    let mut berth = Berth::start_with(search_config());
    let url = berth.url.clone();
    let acknowledged: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let pusher = {
        let (url, acknowledged) = (url.clone(), Arc::clone(&acknowledged));
        std::thread::spawn(move || {
            let client = http();
            for i in 0..400 {
                let repo = if i % 2 == 0 { "crash/a" } else { "crash/b" };
                let image: Image = ImageBuilder::new().fresh_layer(2000 + i).build();
                let tag = format!("t{i}");
                let pushed = std::iter::once(&image.config)
                    .chain(&image.layers)
                    .try_for_each(|blob| {
                        try_push_blob(&client, &url, repo, blob, i % 3 == 0).map(drop)
                    })
                    .and_then(|()| try_push_manifest(&client, &url, repo, &tag, &image.manifest));
                if pushed.is_err() {
                    return;
                }
                acknowledged
                    .lock()
                    .unwrap()
                    .push((repo.into(), tag, image.digest));
            }
        })
    };
    eventually("some pushes acknowledged", || {
        acknowledged.lock().unwrap().len() >= 25
    });
    berth.kill();
    pusher.join().unwrap();
    berth.restart();
    let (clean, report) = berth.fsck();
    assert!(clean, "fsck after SIGKILL:\n{report}");
    let client = http();
    let url = berth.url.as_str();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() < 400,
        "the kill came before the pushes ended"
    );
    for repo in ["crash/a", "crash/b"] {
        let stored = stored_tags(&client, url, repo);
        for (_, tag, digest) in acknowledged.iter().filter(|(r, _, _)| r == repo) {
            assert_eq!(
                stored.get(tag),
                Some(digest),
                "acknowledged {repo}:{tag} survived"
            );
        }
        let listed = image_list(&client, url, repo);
        let searched: BTreeMap<String, String> = listed["Results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["Tag"].as_str().unwrap().into(),
                    r["Digest"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(searched, stored, "{repo}: ImageList agrees with tags/list");
        assert_eq!(listed["Page"]["TotalCount"], stored.len());
    }
}
