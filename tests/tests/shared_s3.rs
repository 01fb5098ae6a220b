//! berth with its blobs in S3 (a SeaweedFS cluster) and its index in PostgreSQL, end to end
//! (issue 20, SHARED.md D3): skopeo copies a multi-layer image in (layers over 8 MiB, so the
//! finish of an upload goes through a multipart upload) and back out byte-identical; a ranged
//! GET streams the right bytes through berth; `redirectBlobURL` answers 307 to a presigned URL
//! that serves the blob; a PUT finishing with a wrong digest leaves the bucket as it was; GC
//! of a deleted image removes its objects; an object deleted behind berth's back is reported
//! by `berth fsck`.
//!
//! One cluster for the binary (berth-tests' `seaweedfs_shared`), the bucket inspected with
//! object_store, the client the engine uses. Without `weed`, PostgreSQL or skopeo the test
//! prints SKIPPED, unless `BERTH_REQUIRE_TOOLS=1`.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_tests::gc::eventually;
use berth_tests::postgres::Postgres;
use berth_tests::seaweedfs::{ACCESS_KEY, REGION, SECRET_KEY};
use berth_tests::seaweedfs_shared::{self, BUCKET};
use berth_tests::{http, random_image, run_ok, sha256_digest, write_oci_layout};
use berth_tests::{Berth, Image};
use serde_json::json;

/// Key prefix of this test's berth in the shared bucket.
const ROOT: &str = "shared-s3";

fn available() -> bool {
    berth_tests::nodes::shared_backend_available(&["skopeo"])
}

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The bucket, to look behind berth's back.
struct Bucket {
    client: object_store::aws::AmazonS3,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    fn new(endpoint: &str) -> Bucket {
        let client = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_bucket_name(BUCKET)
            .build()
            .expect("object_store client builds");
        Bucket {
            client,
            runtime: runtime(),
        }
    }

    /// Every key under `ROOT/<prefix>`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        use futures_util::TryStreamExt as _;
        use object_store::ObjectStore as _;
        let prefix = object_store::path::Path::from(format!("{ROOT}/{prefix}"));
        let mut keys: Vec<String> = self
            .runtime
            .block_on(
                self.client
                    .list(Some(&prefix))
                    .map_ok(|meta| meta.location.to_string())
                    .try_collect(),
            )
            .expect("LIST");
        keys.sort();
        keys
    }

    fn blob_key(digest: &str) -> String {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        format!("{ROOT}/blobs/sha256/{hex}")
    }

    fn has_blob(&self, digest: &str) -> bool {
        self.keys("blobs").contains(&Bucket::blob_key(digest))
    }

    fn delete_blob(&self, digest: &str) {
        use object_store::ObjectStoreExt as _;
        let key = object_store::path::Path::from(Bucket::blob_key(digest));
        self.runtime
            .block_on(self.client.delete(&key))
            .expect("DELETE");
    }
}

fn blob_in_layout(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let path = dir.join("blobs/sha256").join(hex);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn copy_in(berth: &Berth, work: &Path, name: &str, image: &Image) {
    let layout = work.join(format!("in-{name}"));
    write_oci_layout(&layout, "v1", image);
    run_ok(
        skopeo()
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/{name}:v1", berth.addr)),
    );
}

#[test]
fn an_image_round_trips_through_s3_and_postgres() {
    if !available() {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let bucket = Bucket::new(&cluster.endpoint);
    let mut berth = Berth::start_with(json!({
        "storage": {
            "storageDriver": {
                "name": "s3",
                "region": REGION,
                "bucket": BUCKET,
                "regionendpoint": cluster.endpoint,
                "accesskey": ACCESS_KEY,
                "secretkey": SECRET_KEY,
                "rootdirectory": ROOT,
            },
            "index": {"postgres": {"url": postgres.url()}},
            "redirectBlobURL": true,
            "gcDelay": "2s",
            "gcInterval": "1s",
        },
    }));
    let work = tempfile::tempdir().expect("tempdir");
    let client = http();

    // In: a config (one PUT) and two 9 MiB layers (multipart: 8 MiB + 1 MiB parts).
    let image = random_image(2, 9 << 20);
    copy_in(&berth, work.path(), "s3/app", &image);
    for digest in image.blob_digests() {
        assert!(bucket.has_blob(&digest), "{digest} is not in the bucket");
    }
    assert!(
        std::fs::read_dir(berth.data_dir.join("uploads"))
            .map(|entries| entries.count())
            .unwrap_or(0)
            == 0,
        "staged files stay behind"
    );
    assert!(
        !berth.data_dir.join("blobs/sha256").exists()
            || std::fs::read_dir(berth.data_dir.join("blobs/sha256"))
                .expect("read blobs/sha256")
                .next()
                .is_none(),
        "blobs went to the local disk"
    );

    // Out, byte-identical (skopeo follows the 307s to the bucket).
    let out = work.path().join("out");
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/s3/app:v1", berth.addr))
            .arg(format!("oci:{}:v1", out.display())),
    );
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = sha256_digest(blob);
        assert_eq!(&blob_in_layout(&out, &digest), blob, "{digest} differs");
    }

    // A ranged GET streams through berth (no redirect for ranges).
    let layer = &image.layers[0];
    let layer_digest = sha256_digest(layer);
    let blob_url = format!("{}/v2/s3/app/blobs/{layer_digest}", berth.url);
    let first = (8 << 20) - 100;
    let ranged = client
        .get(&blob_url)
        .header("Range", format!("bytes={first}-{}", first + 299))
        .send()
        .expect("ranged GET");
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(
        ranged.headers()["content-range"].to_str().expect("ascii"),
        format!("bytes {first}-{}/{}", first + 299, layer.len())
    );
    assert_eq!(
        ranged.bytes().expect("body").as_ref(),
        &layer[first..first + 300]
    );
    let outside = client
        .get(&blob_url)
        .header("Range", format!("bytes={}-", layer.len()))
        .send()
        .expect("GET");
    assert_eq!(outside.status().as_u16(), 416);
    let head = client.head(&blob_url).send().expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().expect("ascii"),
        layer.len().to_string()
    );

    // redirectBlobURL: 307 to a presigned URL that serves the blob.
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirected = no_redirects.get(&blob_url).send().expect("GET");
    assert_eq!(redirected.status().as_u16(), 307);
    let location = redirected.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(location.starts_with(&cluster.endpoint), "{location}");
    let fetched = no_redirects.get(&location).send().expect("GET presigned");
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().expect("body").as_ref(), &layer[..]);

    // A PUT finishing with a wrong digest stores nothing in the bucket.
    let before = bucket.keys("");
    let content = b"these bytes do not hash to the digest given".to_vec();
    let wrong = sha256_digest(b"something else");
    let started = client
        .post(format!("{}/v2/s3/app/blobs/uploads/", berth.url))
        .send()
        .expect("POST");
    assert_eq!(started.status().as_u16(), 202);
    let location = started.headers()["location"].to_str().expect("ascii");
    let location = match location.starts_with('/') {
        true => format!("{}{location}", berth.url),
        false => location.to_owned(),
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{separator}digest={wrong}"))
        .header("Content-Type", "application/octet-stream")
        .body(content.clone())
        .send()
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 400);
    assert_eq!(bucket.keys(""), before, "the bucket changed");
    assert!(!bucket.has_blob(&sha256_digest(&content)));

    // GC: a second image, deleted, loses its objects; the first keeps its own.
    let doomed = random_image(1, 64 << 10);
    copy_in(&berth, work.path(), "s3/doomed", &doomed);
    assert!(doomed.blob_digests().iter().all(|d| bucket.has_blob(d)));
    let deleted = client
        .delete(format!(
            "{}/v2/s3/doomed/manifests/{}",
            berth.url, doomed.digest
        ))
        .send()
        .expect("DELETE manifest");
    assert_eq!(deleted.status().as_u16(), 202);
    eventually("GC removed the deleted image's objects", || {
        doomed.blob_digests().iter().all(|d| !bucket.has_blob(d))
    });
    assert!(image.blob_digests().iter().all(|d| bucket.has_blob(d)));

    // fsck: clean, then an object deleted behind berth's back is a problem.
    let (clean, text) = berth.fsck();
    assert!(clean, "{text}");
    let config_digest = sha256_digest(&image.config);
    bucket.delete_blob(&config_digest);
    let (clean, text) = berth.fsck();
    assert!(!clean, "{text}");
    assert!(text.contains(&config_digest), "{text}");
    assert!(text.contains("missing"), "{text}");

    berth.stop();
    std::thread::sleep(Duration::from_millis(10));
    drop(cluster);
}
