//! Valid OCI content for tests and the plain-HTTP push path.
//!
//! Owns: random tar layers, [`Image`] (config + layers + OCI image manifest, byte-exact),
//! writing an image as an OCI image layout directory (the input skopeo copies from), and the
//! POST+PUT monolithic push that every HTTP-level test uses.
//!
//! Rules: every image is a real, runnable-shaped OCI image (uncompressed tar layers whose
//! `diff_ids` match), so any client accepts it; helpers assert the status codes the OCI
//! distribution spec mandates and panic with the response body otherwise.

use std::path::Path;

use rand::RngCore as _;
use serde_json::json;

use crate::api::OCI_MANIFEST;
use crate::{sha256_digest, Client};

/// Every manifest media type berth serves, for `Accept` on manifest GETs.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OCI image: the bytes of its config, its layers and its manifest.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    /// Digest of `manifest`.
    pub digest: String,
}

impl Image {
    /// Digests of the config and every layer (the blobs the manifest references).
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .map(|blob| sha256_digest(blob))
            .collect()
    }
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// An uncompressed ustar archive holding one regular file `name` with `content`.
pub fn tar_layer(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "tar name must fit the ustar name field");
    let mut header = [0u8; 512];
    let mut field = |offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    field(0, name.as_bytes());
    field(100, b"0000644\0");
    field(108, b"0000000\0");
    field(116, b"0000000\0");
    field(124, format!("{:011o}\0", content.len()).as_bytes());
    field(136, b"00000000000\0");
    field(156, b"0");
    field(257, b"ustar\0");
    field(263, b"00");
    // Checksum: sum of all header bytes with the checksum field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let padding = (512 - content.len() % 512) % 512;
    let mut tar = Vec::with_capacity(512 + content.len() + padding + 1024);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(content);
    tar.resize(tar.len() + padding + 1024, 0);
    tar
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` as a gzip member made of stored (uncompressed) deflate blocks: valid gzip that any
/// decompressor accepts, without a compression library. Layers must be gzip because clients
/// (skopeo, podman) compress uncompressed layers on push, which would rewrite the manifest.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 65_535;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let len = u16::try_from(chunk.len()).expect("block fits u16");
        out.push(u8::from(chunks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32 by definition.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A valid OCI image with `layers` gzip tar layers, each holding one file of `layer_size`
/// random bytes (each layer blob is `layer_size` plus tar and gzip framing bytes).
pub fn random_image(layers: usize, layer_size: usize) -> Image {
    let tars: Vec<Vec<u8>> = (0..layers)
        .map(|i| tar_layer(&format!("layer{i}.bin"), &random_bytes(layer_size)))
        .collect();
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256_digest(t)).collect();
    let layer_blobs: Vec<Vec<u8>> = tars.iter().map(|t| gzip_stored(t)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("config serializes");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len() },
        "layers": layer_blobs.iter().map(|l| json!({
            "mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(l), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest serializes");
    Image {
        digest: sha256_digest(&manifest),
        config,
        layers: layer_blobs,
        manifest,
    }
}

/// Writes `image` as an OCI image layout at `dir` with `tag` as its ref name
/// (`org.opencontainers.image.ref.name`), the way skopeo's `oci:DIR:TAG` expects.
pub fn write_oci_layout(dir: &Path, tag: &str, image: &Image) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create layout blobs dir");
    for blob in std::iter::once(&image.config)
        .chain(&image.layers)
        .chain(std::iter::once(&image.manifest))
    {
        let digest = sha256_digest(blob);
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::write(blobs.join(hex), blob).expect("write layout blob");
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.digest,
            "size": image.manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("write index.json");
}

fn join_location(base_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base_url}{location}")
    }
}

/// Why a push step failed: the connection (daemon gone, reset, refused) or an unexpected
/// status (with the response body).
#[derive(Debug)]
pub enum PushError {
    Transport(String),
    Status {
        step: String,
        status: u16,
        body: String,
    },
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Transport(error) => write!(f, "transport error: {error}"),
            PushError::Status { step, status, body } => write!(f, "{step}: {status} {body}"),
        }
    }
}

fn expect_status(
    response: Result<reqwest::blocking::Response, reqwest::Error>,
    expected: u16,
    step: impl FnOnce() -> String,
) -> Result<reqwest::blocking::Response, PushError> {
    let response = response.map_err(|e| PushError::Transport(format!("{e:?}")))?;
    let status = response.status().as_u16();
    if status == expected {
        return Ok(response);
    }
    let body = response
        .text()
        .map_err(|e| PushError::Transport(format!("{e:?}")))?;
    Err(PushError::Status {
        step: step(),
        status,
        body,
    })
}

fn upload_location(response: &reqwest::blocking::Response, base_url: &str) -> String {
    let location = response
        .headers()
        .get("location")
        .expect("202 upload response has a Location")
        .to_str()
        .expect("Location is ASCII");
    join_location(base_url, location)
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Uploads `data` to `repo` and returns its digest. `chunked`: POST, one PATCH per half with
/// `Content-Range`, then an empty PUT `?digest=`; otherwise POST then PUT with the whole body.
pub fn try_push_blob(
    client: &Client,
    url: &str,
    repo: &str,
    data: &[u8],
    chunked: bool,
) -> Result<String, PushError> {
    let digest = sha256_digest(data);
    let session = expect_status(
        client
            .post(format!("{url}/v2/{repo}/blobs/uploads/"))
            .send(),
        202,
        || format!("POST /v2/{repo}/blobs/uploads/"),
    )?;
    let mut location = upload_location(&session, url);
    let body = if chunked {
        let (first, second) = data.split_at(data.len() / 2);
        let mut offset = 0;
        for chunk in [first, second].into_iter().filter(|c| !c.is_empty()) {
            let end = offset + chunk.len() - 1;
            let response = expect_status(
                client
                    .patch(&location)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{offset}-{end}"))
                    .body(chunk.to_vec())
                    .send(),
                202,
                || format!("PATCH {offset}-{end} of {digest} in {repo}"),
            )?;
            location = upload_location(&response, url);
            offset = end + 1;
        }
        Vec::new()
    } else {
        data.to_vec()
    };
    expect_status(
        client
            .put(with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
        201,
        || format!("PUT blob {digest} into {repo}"),
    )?;
    Ok(digest)
}

/// PUT `manifest` (an OCI image manifest) at `reference`, expecting 201.
pub fn try_push_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    manifest: &[u8],
) -> Result<(), PushError> {
    expect_status(
        client
            .put(format!("{url}/v2/{repo}/manifests/{reference}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.to_vec())
            .send(),
        201,
        || format!("PUT manifest {repo}:{reference}"),
    )?;
    Ok(())
}

/// Uploads `data` to `repo` (POST a session, then PUT `?digest=` with the whole body),
/// asserts 202 then 201, and returns its digest.
pub fn push_blob(client: &Client, url: &str, repo: &str, data: &[u8]) -> String {
    try_push_blob(client, url, repo, data, false).unwrap_or_else(|e| panic!("push blob: {e}"))
}

/// Pushes every blob of `image`, then its manifest under `tag`; asserts 201 throughout.
pub fn push_image(client: &Client, url: &str, repo: &str, tag: &str, image: &Image) {
    push_blob(client, url, repo, &image.config);
    for layer in &image.layers {
        push_blob(client, url, repo, layer);
    }
    try_push_manifest(client, url, repo, tag, &image.manifest)
        .unwrap_or_else(|e| panic!("push manifest: {e}"));
}

/// GET a manifest (any media type). Returns (status, `Docker-Content-Digest`, body).
pub fn fetch_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let response = client
        .get(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .expect("GET manifest");
    let status = response.status().as_u16();
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().expect("read manifest body").to_vec();
    (status, digest, body)
}

/// GET a blob. Returns (status, body).
pub fn fetch_blob(client: &Client, url: &str, repo: &str, digest: &str) -> (u16, Vec<u8>) {
    let response = client
        .get(format!("{url}/v2/{repo}/blobs/{digest}"))
        .send()
        .expect("GET blob");
    let status = response.status().as_u16();
    (status, response.bytes().expect("read blob body").to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_layer_is_block_aligned_with_a_valid_checksum() {
        let tar = tar_layer("a.bin", &[7u8; 700]);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(tar.len(), 512 + 1024 + 1024);
        let stored = std::str::from_utf8(&tar[148..154]).unwrap();
        let mut header = tar[..512].to_vec();
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn gzip_stored_decompresses_with_gzip() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        for len in [0, 1, 65_535, 65_536, 200_000] {
            let data = random_bytes(len);
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("gzip is installed");
            let mut stdin = child.stdin.take().unwrap();
            let input = gzip_stored(&data);
            let writer = std::thread::spawn(move || {
                use std::io::Write as _;
                stdin.write_all(&input).unwrap();
            });
            let output = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(output.status.success(), "gzip rejected a {len}-byte member");
            assert_eq!(output.stdout, data);
        }
    }

    #[test]
    fn random_image_manifest_references_its_blobs() {
        let image = random_image(2, 10);
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(image.digest, sha256_digest(&image.manifest));
        assert_eq!(manifest["config"]["digest"], sha256_digest(&image.config));
        assert_eq!(
            manifest["layers"][1]["digest"],
            sha256_digest(&image.layers[1])
        );
        assert_eq!(image.blob_digests().len(), 3);
    }
}
