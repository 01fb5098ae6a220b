//! The upstream client against a real CNCF Distribution (Debian's `docker-registry`), when it
//! is installed: push an image with plain HTTP, then read it back through [`Upstream`].
use std::process::{Child, Command, Stdio};

use super::*;

/// Kills the registry process when the test ends, however it ends.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_distribution(dir: &std::path::Path) -> Option<(Registry, String)> {
    let installed = Command::new("docker-registry")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !installed.is_ok_and(|status| status.success()) {
        eprintln!("docker-registry is not installed: skipping the Distribution test");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = dir.join("config.yml");
    let storage = dir.join("data");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .expect("config");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn docker-registry");
    Some((Registry(child), format!("http://127.0.0.1:{port}")))
}

async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::of(Algorithm::Sha256, bytes);
    let started = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("POST upload");
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let mut url = reqwest::Url::parse(base)
        .expect("base")
        .join(&location)
        .expect("location url");
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let finished = http
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PUT upload");
    assert_eq!(finished.status(), 201);
    digest
}

#[test]
fn reads_an_image_from_cncf_distribution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_registry, base)) = start_distribution(dir.path()) else {
        return;
    };
    run(async move {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http
            .get(format!("{base}/v2/"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            assert!(Instant::now() < deadline, "docker-registry did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let layer: Vec<u8> = (0..(2u32 << 20)).map(|index| (index % 251) as u8).collect();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer_digest = push_blob(&http, &base, "lib/app", &layer).await;
        let config_digest = push_blob(&http, &base, "lib/app", config).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let put = http
            .put(format!("{base}/v2/lib/app/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(put.status(), 201);

        let client = upstream(options(vec![base.clone()]));
        let fetched = client
            .manifest("lib/app", "v1", false)
            .await
            .expect("manifest")
            .expect("found");
        let manifest_digest = Digest::of(Algorithm::Sha256, manifest.as_bytes());
        assert_eq!(
            (fetched.media_type.as_str(), fetched.bytes.as_ref()),
            (OCI_MANIFEST, manifest.as_bytes())
        );
        assert_eq!(fetched.digest.as_ref(), Some(&manifest_digest));
        let head = client
            .manifest("lib/app", &manifest_digest.to_string(), true)
            .await
            .expect("head")
            .expect("found");
        assert_eq!((head.size, head.bytes.len()), (manifest.len() as u64, 0));
        assert!(client
            .manifest("lib/app", "v2", false)
            .await
            .expect("answer")
            .is_none());

        let mut blob = client
            .blob("lib/app", &layer_digest)
            .await
            .expect("blob")
            .expect("found");
        assert_eq!(blob.size, Some(layer.len() as u64));
        let mut body = Vec::new();
        while let Some(chunk) = blob.chunks.recv().await {
            body.extend_from_slice(&chunk.expect("chunk"));
        }
        assert!(body == layer, "the layer comes back byte for byte");
        let missing = Digest::of(Algorithm::Sha256, b"missing");
        assert!(client
            .blob("lib/app", &missing)
            .await
            .expect("answer")
            .is_none());

        assert_eq!(client.tags("lib/app").await.expect("tags"), ["v1"]);
        assert_eq!(client.catalog().await.expect("catalog"), ["lib/app"]);
        // Distribution 2.8 has no referrers API: 404, which is "none".
        assert!(client
            .referrers("lib/app", &manifest_digest)
            .await
            .expect("answer")
            .is_none());
        assert_eq!(client.stats().in_flight_now(), 0);
    });
}
