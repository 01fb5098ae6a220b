//! HTTPS and mutual TLS on the real binary, with a test PKI made by Python's `cryptography`
//! (tests/tls/certs.py), and real clients that verify the server: skopeo, podman and oras
//! push and pull with the test CA and never `--tls-verify=false`; HTTP/2 by ALPN; TLS 1.2 and
//! 1.3. With `cacert`, only clients with a certificate of that CA get in, and the
//! certificate's common name is the user access control sees. The certificate and key are
//! replaced under load with no failed request, a broken file keeps the last good pair, and
//! SIGHUP reloads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::containers::{Containers, Store};
use berth_tests::{
    random_image, require_tool, run_cmd, run_ok, try_push_manifest, write_oci_layout, Berth, Image,
};
use serde_json::{json, Value};

/// The test PKI in a temp dir; `serials` of server.crt and server2.crt.
struct Pki {
    dir: tempfile::TempDir,
    serials: Value,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("berth-pki-")
            .tempdir()
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tls/certs.py");
        let out = run_ok(Command::new("python3").arg(script).arg(dir.path()));
        Pki {
            dir,
            serials: serde_json::from_str(&out).expect("serials as JSON"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).expect("PKI file")
    }

    /// A `certs.d`-style directory for skopeo and podman: the CA, and a client certificate
    /// when given (`client.cert`, `client.key`).
    fn cert_dir(&self, client: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("berth-certs.d-")
            .tempdir()
            .unwrap();
        std::fs::copy(self.path("ca.crt"), dir.path().join("ca.crt")).unwrap();
        if let Some(client) = client {
            std::fs::copy(
                self.path(&format!("{client}.crt")),
                dir.path().join("client.cert"),
            )
            .unwrap();
            std::fs::copy(
                self.path(&format!("{client}.key")),
                dir.path().join("client.key"),
            )
            .unwrap();
        }
        dir
    }

    /// A client that trusts only the test CA, with `client`'s certificate when given.
    fn client(&self, client: Option<&str>) -> reqwest::blocking::Client {
        let ca = reqwest::Certificate::from_pem(&self.read("ca.crt")).unwrap();
        let mut builder = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .no_proxy()
            .timeout(Duration::from_secs(30));
        if let Some(client) = client {
            let mut pem = self.read(&format!("{client}.crt"));
            pem.extend(self.read(&format!("{client}.key")));
            builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        builder.build().unwrap()
    }
}

fn tls_config(pki: &Pki, cacert: bool) -> Value {
    let mut tls = json!({"cert": pki.path("server.crt"), "key": pki.path("server.key")});
    if cacert {
        tls["cacert"] = json!(pki.path("ca.crt"));
    }
    json!({"http": {"tls": tls}})
}

/// Python's TLS client against `addr` with the test CA: the negotiated protocol version
/// (`TLSv1.2`, `TLSv1.3`), the server certificate's serial and the cipher suite (OpenSSL's
/// name), or the error.
fn handshake(pki: &Pki, addr: &str, max_version: &str) -> Result<(String, String, String), String> {
    let script = r#"
import socket, ssl, sys
from cryptography import x509
host, port = sys.argv[1].rsplit(":", 1)
context = ssl.create_default_context(cafile=sys.argv[2])
context.maximum_version = getattr(ssl.TLSVersion, sys.argv[3])
with socket.create_connection((host, int(port)), timeout=10) as sock:
    with context.wrap_socket(sock, server_hostname=host) as tls:
        serial = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
        print(tls.version(), serial, tls.cipher()[0])
"#;
    let ca = pki.path("ca.crt");
    let (ok, out, err) = run_cmd(
        Command::new("python3")
            .args(["-c", script, addr])
            .arg(ca)
            .arg(max_version),
    );
    let mut words = out.split_whitespace();
    match (ok, words.next(), words.next(), words.next()) {
        (true, Some(version), Some(serial), Some(cipher)) => {
            Ok((version.to_owned(), serial.to_owned(), cipher.to_owned()))
        }
        _ => Err(format!("{out}{err}")),
    }
}

fn tools_present() -> bool {
    ["python3", "skopeo", "podman"]
        .into_iter()
        .all(require_tool)
}

#[test]
fn https_serves_real_clients_that_verify_it() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let berth = Berth::start_with(tls_config(&pki, false));
    assert!(berth.url.starts_with("https://"), "{}", berth.url);
    let addr = berth.addr.clone();

    // HTTP/2 by ALPN, and HTTP/1.1 for clients that only speak it.
    let client = pki.client(None);
    let answer = client
        .get(format!("{}/v2/", berth.url))
        .send()
        .expect("GET /v2/");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.version(),
        reqwest::Version::HTTP_2,
        "h2 is chosen by ALPN"
    );
    let http1 = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.read("ca.crt")).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let answer = http1
        .get(format!("{}/v2/", berth.url))
        .send()
        .expect("GET over HTTP/1.1");
    assert_eq!(
        (answer.status().as_u16(), answer.version()),
        (200, reqwest::Version::HTTP_11)
    );
    // Plain HTTP to the HTTPS port gets nothing served.
    let plain = berth_tests::http().get(format!("http://{addr}/v2/")).send();
    assert!(
        plain.map_or(true, |answer| answer.status() != 200),
        "plain HTTP was served"
    );
    // TLS 1.3 by default, TLS 1.2 for a client that stops there.
    // OpenSSL's client asks for AES-256 first; berth picks AES-128-GCM, as Go's servers do.
    let (version, serial, cipher) = handshake(&pki, &addr, "TLSv1_3").expect("TLS 1.3 handshake");
    assert_eq!(version, "TLSv1.3");
    assert_eq!(serial, pki.serials["server"].as_str().unwrap());
    assert_eq!(cipher, "TLS_AES_128_GCM_SHA256");
    let (version, _, cipher) = handshake(&pki, &addr, "TLSv1_2").expect("TLS 1.2 handshake");
    assert_eq!(version, "TLSv1.2");
    assert_eq!(cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");

    // skopeo pushes and inspects, verifying berth against the test CA.
    let certs = pki.cert_dir(None);
    let image = random_image(2, 2048);
    let layout = tempfile::tempdir().unwrap();
    write_oci_layout(layout.path(), "v1", &image);
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-cert-dir"])
            .arg(certs.path())
            .arg(format!("oci:{}:v1", layout.path().display()))
            .arg(format!("docker://{addr}/tls/app:v1")),
    );
    let inspected = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(certs.path())
            .arg(format!("docker://{addr}/tls/app:v1")),
    );
    assert_eq!(
        berth_tests::sha256_digest(inspected.as_bytes()),
        image.digest
    );
    // Without the CA, skopeo refuses berth's certificate (it really verifies).
    let (ok, _, err) = run_cmd(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("docker://{addr}/tls/app:v1")),
    );
    assert!(!ok && err.contains("certificate"), "{err}");

    // podman pulls it with the CA (registries.conf does not mark berth insecure).
    let containers = Containers::new("unused.invalid:1");
    let conf = containers.dir().join("registries-secure.conf");
    std::fs::write(&conf, "unqualified-search-registries = []\n").unwrap();
    run_ok(
        containers
            .cmd("podman", Store::Pull)
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .args(["pull", "--quiet", "--tls-verify=true", "--cert-dir"])
            .arg(certs.path())
            .arg(format!("{addr}/tls/app:v1")),
    );

    // oras (oras-py) pushes an artifact with the CA as its trust store.
    let script = r#"
import sys, oras.client
addr, ca, path = sys.argv[1:4]
client = oras.client.OrasClient(hostname=addr, tls_verify=ca)
client.push(target=f"{addr}/tls/artifact:v1", files=[path], disable_path_validation=True)
print(client.get_manifest(f"{addr}/tls/artifact:v1")["layers"][0]["digest"])
"#;
    let file = layout.path().join("notes.txt");
    std::fs::write(&file, b"pushed over https").unwrap();
    let pushed = run_ok(
        Command::new("python3")
            .args(["-c", script, &addr])
            .arg(pki.path("ca.crt"))
            .arg(&file)
            .current_dir(layout.path()),
    );
    assert_eq!(
        pushed.trim(),
        berth_tests::sha256_digest(b"pushed over https")
    );
}

/// An image pushed over `client` to `repo`: the manifest PUT's status.
fn push(client: &reqwest::blocking::Client, url: &str, repo: &str, image: &Image) -> u16 {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = berth_tests::sha256_digest(blob);
        let answer = client
            .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .expect("push blob");
        if answer.status() != 201 {
            return answer.status().as_u16();
        }
    }
    match try_push_manifest(client, url, repo, "v1", &image.manifest) {
        Ok(_) => 201,
        Err(berth_tests::PushError::Status { status, .. }) => status,
        Err(error) => panic!("push manifest: {error}"),
    }
}

#[test]
fn mutual_tls_admits_certificates_of_its_ca_and_names_the_user() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let mut config = tls_config(&pki, true);
    config["http"]["accessControl"] = json!({
        "repositories": {"alice/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]}},
    });
    let berth = Berth::start_with(config);
    let alice = pki.client(Some("alice"));
    let answer = alice
        .get(format!("{}/v2/", berth.url))
        .send()
        .expect("GET as alice");
    assert_eq!(answer.status(), 200);
    // The certificate's common name is the user: alice may push to alice/**, nowhere else.
    let image = random_image(1, 512);
    assert_eq!(push(&alice, &berth.url, "alice/app", &image), 201);
    assert_eq!(push(&alice, &berth.url, "bob/app", &image), 403);

    // No client certificate, or one of another CA: the handshake is refused.
    for (who, client) in [
        ("none", pki.client(None)),
        ("mallory", pki.client(Some("mallory"))),
    ] {
        let refused = client.get(format!("{}/v2/", berth.url)).send();
        assert!(refused.is_err(), "{who}: {:?}", refused.map(|r| r.status()));
    }
    // skopeo with alice's certificate in its cert dir.
    let certs = pki.cert_dir(Some("alice"));
    let inspected = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(certs.path())
            .arg(format!("docker://{}/alice/app:v1", berth.addr)),
    );
    assert_eq!(
        berth_tests::sha256_digest(inspected.as_bytes()),
        image.digest
    );
    let without = pki.cert_dir(None);
    let (ok, _, _) = run_cmd(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(without.path())
            .arg(format!("docker://{}/alice/app:v1", berth.addr)),
    );
    assert!(!ok, "skopeo without a client certificate got in");
}

#[test]
fn mutual_tls_names_the_user_by_the_configured_attributes() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let mut config = tls_config(&pki, true);
    // zot's SPIFFE example: the workload ID from the URI SAN, else the common name.
    config["http"]["auth"] = json!({"mtls": {
        "identityAttributes": ["URI", "CommonName"],
        "uriSanPattern": "spiffe://example.org/workload/(.*)",
    }});
    config["http"]["accessControl"] = json!({
        "repositories": {
            "builder/**": {"policies": [{"users": ["builder"], "actions": ["read", "create"]}]},
            "alice/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]},
            "build-host-7/**": {"policies": [{"users": ["build-host-7"], "actions": ["read", "create"]}]},
        },
    });
    let berth = Berth::start_with(config);
    let image = random_image(1, 256);
    let builder = pki.client(Some("builder"));
    assert_eq!(push(&builder, &berth.url, "builder/app", &image), 201);
    assert_eq!(
        push(&builder, &berth.url, "build-host-7/app", &image),
        403,
        "the URI names the user, not the common name"
    );
    // alice's certificate has no URI: her common name names her.
    let alice = pki.client(Some("alice"));
    assert_eq!(push(&alice, &berth.url, "alice/app", &image), 201);
    assert_eq!(push(&alice, &berth.url, "builder/app", &image), 403);

    // The email SAN instead, with the whole subject as the fallback.
    let mut config = tls_config(&pki, true);
    config["http"]["auth"] = json!({"mtls": {"identityAttributes": ["Email", "Subject"]}});
    config["http"]["accessControl"] = json!({
        "repositories": {"**": {"policies": [
            {"users": ["builder@example.org"], "actions": ["read", "create"]},
            {"users": ["CN=alice,O=berth tests"], "actions": ["read"]},
        ]}},
    });
    let berth = Berth::start_with(config);
    assert_eq!(push(&builder, &berth.url, "any/app", &image), 201);
    assert_eq!(push(&alice, &berth.url, "any/app", &image), 403);
    let read = alice
        .get(format!("{}/v2/any/app/manifests/v1", berth.url))
        .header("Accept", berth_tests::api::OCI_MANIFEST)
        .send()
        .expect("GET as alice");
    assert_eq!(read.status(), 200, "alice is named by her subject");
}

/// Replaces `dst` with `src` atomically (a rename, as certificate tooling does).
fn replace(src: &Path, dst: &Path) {
    let staged = dst.with_extension("new");
    std::fs::copy(src, &staged).unwrap();
    std::fs::rename(&staged, dst).unwrap();
}

#[test]
fn certificates_rotate_under_load_without_a_failed_request() {
    if !require_tool("python3") {
        return;
    }
    let pki = Pki::new();
    // berth reads the pair from its own paths, which the test rewrites.
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("tls.crt"), live.path().join("tls.key"));
    std::fs::copy(pki.path("server.crt"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let mut berth = Berth::start_with(json!({"http": {"tls": {"cert": cert, "key": key}}}));
    let serial = |name: &str| pki.serials[name].as_str().unwrap().to_owned();
    assert_eq!(
        handshake(&pki, &berth.addr, "TLSv1_3").unwrap().1,
        serial("server")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..3)
        .map(|worker| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            let url = berth.url.clone();
            let keep_alive = pki.client(None);
            let ca = pki.read("ca.crt");
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    // Worker 0 keeps its connection; the others handshake every time.
                    let fresh;
                    let client = if worker == 0 {
                        &keep_alive
                    } else {
                        fresh = reqwest::blocking::Client::builder()
                            .use_rustls_tls()
                            .tls_built_in_root_certs(false)
                            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                            .build()
                            .unwrap();
                        &fresh
                    };
                    match client.get(format!("{url}/v2/")).send() {
                        Ok(answer) if answer.status() == 200 => done.fetch_add(1, Relaxed),
                        _ => failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    // The key first, then the certificate: for a moment they do not go together, which a
    // reload must survive by keeping the last good pair.
    replace(&pki.path("server2.key"), &key);
    replace(&pki.path("server2.crt"), &cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    while handshake(&pki, &berth.addr, "TLSv1_3").unwrap().1 != serial("server2") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Relaxed);
    for worker in load {
        worker.join().unwrap();
    }
    assert_eq!(
        failed.load(Relaxed),
        0,
        "requests failed during the rotation"
    );
    assert!(
        done.load(Relaxed) > 20,
        "too little load: {}",
        done.load(Relaxed)
    );

    // A broken certificate keeps the last good pair, and says so.
    std::fs::write(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    berth_tests::wait_for(
        "the reload failure in the log",
        || berth.log(),
        |log| log.contains("TLS reload failed"),
    );
    assert_eq!(
        handshake(&pki, &berth.addr, "TLSv1_3").unwrap().1,
        serial("server2")
    );
    // SIGHUP reloads what the files hold now.
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    std::fs::copy(pki.path("server.crt"), &cert).unwrap();
    berth.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(15);
    while handshake(&pki, &berth.addr, "TLSv1_3").unwrap().1 != serial("server") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    berth.stop();
}

#[test]
fn unusable_certificate_files_stop_the_start() {
    if !require_tool("python3") {
        return;
    }
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let cases = [
        (
            "a missing key",
            pki.path("server.crt"),
            dir.path().join("none.key"),
            "http.tls.key",
        ),
        (
            "a key of another certificate",
            pki.path("server.crt"),
            pki.path("server2.key"),
            "do not go together",
        ),
        (
            "a certificate that is not PEM",
            pki.path("server.key"),
            pki.path("server.key"),
            "http.tls.cert",
        ),
    ];
    for (what, cert, key, expected) in cases {
        let config = dir.path().join("config.json");
        let text = json!({
            "storage": {"rootDirectory": storage},
            "http": {"address": "127.0.0.1", "port": "0", "tls": {"cert": cert, "key": key}},
        });
        std::fs::write(&config, text.to_string()).unwrap();
        let (status, stdout, stderr) = berth_tests::serve_refused(&config, what);
        assert!(!status.success(), "{what}");
        assert!(!stdout.contains("listening"), "{what}: {stdout}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
}
