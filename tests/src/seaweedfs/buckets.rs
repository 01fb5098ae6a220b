//! Bucket calls of a [`SeaweedCluster`]: create and delete buckets, and signed requests to
//! the gateway.
use std::time::Duration;

use super::{sigv4, SeaweedCluster, SECRET_KEY};

impl SeaweedCluster {
    /// Creates `bucket` through the gateway (a signed `PUT /BUCKET`); panics unless it answers
    /// 200.
    pub fn create_bucket(&self, bucket: &str) {
        assert!(
            !bucket.is_empty()
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "bucket names here are [a-z0-9-]+: {bucket:?}"
        );
        let (status, body) = self
            .signed(reqwest::Method::PUT, &format!("/{bucket}"), Vec::new())
            .unwrap_or_else(|e| panic!("PUT /{bucket}: {e}"));
        assert_eq!(status, 200, "PUT /{bucket}: {body}");
    }

    /// Deletes `bucket` with everything in it and gives its disk space back at once: the
    /// filer drops the bucket's directory (recursively) and with it the bucket's collection,
    /// whose volumes the volume servers delete; the master is then asked to drop the
    /// collection in case it is still there. (Deleting objects one by one only marks them;
    /// space returns at the next vacuum.) Panics unless the filer deletes the bucket.
    pub fn delete_bucket(&self, bucket: &str) {
        let timeout = Duration::from_secs(60);
        let filer = format!(
            "http://127.0.0.1:{}/buckets/{bucket}?recursive=true&ignoreRecursiveError=true",
            self.ports.filer.0
        );
        let response = self
            .client
            .delete(filer)
            .timeout(timeout)
            .send()
            .unwrap_or_else(|e| panic!("filer DELETE of bucket {bucket}: {e}"));
        let status = response.status();
        assert!(
            status.is_success(),
            "filer DELETE of bucket {bucket}: {status} {}",
            response.text().unwrap_or_default()
        );
        let collection = format!("{}/col/delete?collection={bucket}", self.master_url());
        let response = self
            .client
            .post(collection)
            .timeout(timeout)
            .send()
            .unwrap_or_else(|e| panic!("master /col/delete of {bucket}: {e}"));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert!(
            status.is_success() || body.contains("does not exist"),
            "master /col/delete of {bucket}: {status} {body}"
        );
    }

    /// Sends a SigV4-signed request to the gateway; `path` is already URI-encoded and has no
    /// query. Returns (status, body).
    pub fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String), reqwest::Error> {
        self.signed_with(method, path, body, SECRET_KEY)
    }

    /// [`SeaweedCluster::signed`] with another secret key (a refused signature).
    pub fn signed_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        secret_key: &str,
    ) -> Result<(u16, String), reqwest::Error> {
        let host = format!("127.0.0.1:{}", self.ports.s3.0);
        let headers = sigv4::sign(method.as_str(), &host, path, &body, secret_key);
        let mut request = self
            .client
            .request(method, format!("http://{host}{path}"))
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        Ok((status, response.text()?))
    }
}
