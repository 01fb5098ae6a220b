//! The seeded registry the bad-input tests start from ([`Seeded`]): berth with image `seed:v1`
//! and one blob linked in repo `other` only, optionally behind htpasswd auth with users alice and
//! bob ([`Seeded::with_auth`], [`authed`]).
//!
//! Rules: every fixture is a fresh daemon with fresh directories; [`Seeded::known`] lists every
//! digest the seeding wrote, so `assert_no_state_change` can see a blob appear or vanish.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::api::{expect_status, location, patch_chunk, send_manifest, start_upload, OCI_MANIFEST};
use crate::{http, push_blob, push_image, random_bytes, random_image, sha256_digest, Berth, Image};

/// The password of every htpasswd user of [`Seeded::with_auth`].
pub const HTPASSWD_SECRET: &str = "secret";
/// bcrypt (cost 4) of [`HTPASSWD_SECRET`].
const BCRYPT_SECRET: &str = "$2b$04$LPyfSGt4aZ8h3Yd5iJdA3ublJNFaNH5XQFSaR1oDB/obZy1D.uWFC";

/// berth seeded with image `seed:v1` (one 1000-byte layer) and [`Seeded::foreign_blob`] in repo
/// `other`.
pub struct Seeded {
    pub berth: Berth,
    pub client: Client,
    pub image: Image,
    /// A blob linked in repo `other` only.
    pub foreign_blob: Vec<u8>,
}

impl Seeded {
    /// The default configuration.
    pub fn start() -> Seeded {
        Seeded::with(json!({}))
    }

    /// The default configuration merged with `patch`.
    pub fn with(patch: Value) -> Seeded {
        let berth = Berth::start_with(patch);
        let client = http();
        Seeded::seed(berth, client.clone(), &client)
    }

    /// zot-style auth config: users alice and bob; `repositories` holds the policies per
    /// repository pattern. The seeding runs as alice, who must be allowed to write everywhere;
    /// [`Seeded::client`] is anonymous.
    pub fn with_auth(repositories: Value) -> Seeded {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let htpasswd = dir.join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("alice:{BCRYPT_SECRET}\nbob:{BCRYPT_SECRET}\n"),
        )
        .expect("write");
        let berth = Berth::start_with(json!({"http": {
            "auth": {"htpasswd": {"path": htpasswd}},
            "accessControl": {"repositories": repositories},
        }}));
        Seeded::seed(berth, http(), &authed("alice"))
    }

    fn seed(berth: Berth, client: Client, seeding: &Client) -> Seeded {
        let image = random_image(1, 1000);
        push_image(seeding, &berth.url, "seed", "v1", &image);
        let foreign_blob = random_bytes(321);
        push_blob(seeding, &berth.url, "other", &foreign_blob);
        Seeded {
            berth,
            client,
            image,
            foreign_blob,
        }
    }

    pub fn url(&self) -> &str {
        &self.berth.url
    }

    /// The seeded digests plus `extra`.
    pub fn known(&self, extra: &[&str]) -> Vec<String> {
        let mut known = self.image.blob_digests();
        known.push(self.image.digest.clone());
        known.push(sha256_digest(&self.foreign_blob));
        known.extend(extra.iter().map(|d| d.to_string()));
        known
    }

    /// A session in `repo` holding `data` (sent as one chunk); returns its absolute URL.
    pub fn session_with(&self, repo: &str, data: &[u8]) -> String {
        let session = start_upload(&self.client, self.url(), repo);
        let (headers, _) = expect_status(patch_chunk(&self.client, &session, 0, data), 202);
        location(self.url(), &headers)
    }

    /// The status of a blob HEAD in `repo`.
    pub fn head_blob(&self, repo: &str, digest: &str) -> u16 {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.url());
        self.client
            .head(url)
            .send()
            .expect("HEAD blob")
            .status()
            .as_u16()
    }

    /// The seeded image manifest as JSON, to be varied by a test.
    pub fn manifest(&self) -> Value {
        serde_json::from_slice(&self.image.manifest).expect("image manifest is JSON")
    }

    /// The descriptor of the seeded image manifest.
    pub fn descriptor_of_image(&self) -> Value {
        json!({"mediaType": OCI_MANIFEST, "digest": self.image.digest, "size": self.image.manifest.len()})
    }

    /// PUT a manifest; returns the response, whatever it is.
    pub fn put(&self, repo: &str, reference: &str, content_type: &str, body: Vec<u8>) -> Response {
        send_manifest(
            &self.client,
            self.url(),
            repo,
            reference,
            content_type,
            body,
        )
    }
}

/// A client that sends HTTP basic auth for `user` (password [`HTPASSWD_SECRET`]) on every
/// request.
pub fn authed(user: &str) -> Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        basic(user, HTPASSWD_SECRET).parse().expect("header value"),
    );
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client builds")
}

/// Basic-auth header value, without a base64 dependency.
pub fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[cfg(test)]
mod tests {
    use super::basic;

    #[test]
    fn encodes_rfc4648_vectors() {
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
