//! HTTPS: the rustls server setup built from `http.tls`, shared by every shard and swapped
//! whole when its files change.
//!
//! Rules:
//! - TLS 1.3 and 1.2 only, rustls' default (modern, forward-secret AEAD) cipher suites on
//!   `ring`; ALPN offers `h2` then `http/1.1`.
//! - With `cacert`, every client must present a certificate that chains to it (zot's mTLS);
//!   the verified leaf names the caller (`http.auth.mtls`, [`peer_identity`]).
//! - [`Tls::reload`] rebuilds from the files (on SIGHUP, and by the watcher when a file's
//!   size, time or inode changes). A broken file keeps the last good setup and logs why.
//!   Connections already open keep their session; new handshakes use the new setup.
//! - Building reads files and parses keys: never on a shard (start-up, SIGHUP thread, the
//!   watcher thread).
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{MtlsConfig, TlsConfig};

/// How often the watcher looks at the files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a file's content for change detection.
type Stamp = Option<(u64, i64, i64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        metadata.len(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ino(),
    ))
}

/// The running TLS setup.
pub struct Tls {
    config: TlsConfig,
    /// `http.auth.mtls`: who a verified client certificate names.
    identity: Arc<crate::auth::mtls::CertIdentity>,
    current: ArcSwap<ServerConfig>,
    stamps: Mutex<Vec<Stamp>>,
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("{what} {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{what} {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{what} {}: no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// Builds the rustls server setup from the files `config` names.
fn build(config: &TlsConfig) -> Result<ServerConfig, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM first, then AES-256-GCM, then ChaCha20-Poly1305, whatever the client's
    // order: what Go's servers (Distribution, zot) pick for clients with AES hardware, and
    // what Go's clients (docker, containerd, podman, skopeo) ask for first. AES-128 costs
    // both ends about a fifth less CPU per byte than AES-256 on a large pull.
    provider
        .cipher_suites
        .sort_by_key(|suite| cipher_preference(suite.suite()));
    let provider = Arc::new(provider);
    let chain = read_certificates(&config.cert, "http.tls.cert")?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|error| format!("http.tls.key {}: {error}", config.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("TLS versions: {error}"))?;
    let builder = match &config.cacert {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(path, "http.tls.cacert")? {
                roots
                    .add(certificate)
                    .map_err(|error| format!("http.tls.cacert {}: {error}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| format!("http.tls.cacert {}: {error}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("http.tls.cert and http.tls.key do not go together: {error}"))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    server.ignore_client_order = true;
    Ok(server)
}

/// The rank of a cipher suite in berth's order (lower is preferred; see [`build`]).
fn cipher_preference(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite::*;
    match suite {
        TLS13_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        TLS13_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

impl Tls {
    /// Builds the setup (blocking: reads the files); an error names the file and the problem.
    pub fn new(config: &TlsConfig, mtls: &MtlsConfig) -> Result<Arc<Tls>, String> {
        let server = build(config)?;
        let tls = Tls {
            config: config.clone(),
            identity: Arc::new(crate::auth::mtls::CertIdentity::new(mtls)?),
            current: ArcSwap::from_pointee(server),
            stamps: Mutex::new(Vec::new()),
        };
        *tls.stamps.lock().expect("stamp lock is never poisoned") = tls.stamps_now();
        Ok(Arc::new(tls))
    }

    fn stamps_now(&self) -> Vec<Stamp> {
        let mut paths = vec![self.config.cert.as_path(), self.config.key.as_path()];
        paths.extend(self.config.cacert.as_deref());
        paths.into_iter().map(stamp).collect()
    }

    /// Who a verified client certificate names.
    pub fn identity(&self) -> Arc<crate::auth::mtls::CertIdentity> {
        self.identity.clone()
    }

    /// The acceptor for a new connection (the setup current now).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Rebuilds from the files; a broken file keeps the last good setup (logged). Blocking.
    pub fn reload(&self) {
        *self.stamps.lock().expect("stamp lock is never poisoned") = self.stamps_now();
        match build(&self.config) {
            Ok(server) => {
                self.current.store(Arc::new(server));
                tracing::info!(cert = %self.config.cert.display(), "TLS certificate and key reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS reload failed; serving with the previous certificate and key");
            }
        }
    }

    /// Reloads when a file changed since the last look.
    fn reload_if_changed(&self) {
        let changed = {
            let stamps = self.stamps.lock().expect("stamp lock is never poisoned");
            *stamps != self.stamps_now()
        };
        if changed {
            self.reload();
        }
    }

    /// Starts the thread that reloads on file changes; it ends once `stop` is set.
    pub fn watch(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let tls = self.clone();
        std::thread::Builder::new()
            .name("tls-watch".into())
            .spawn(move || {
                while !stop.load(Relaxed) {
                    std::thread::sleep(WATCH_INTERVAL);
                    tls.reload_if_changed();
                }
            })
    }
}

/// The identity of a connection's verified client certificate (`http.auth.mtls`, by default
/// its subject's common name). `None` without a client certificate or a name.
pub fn peer_identity(
    identity: &crate::auth::mtls::CertIdentity,
    connection: &rustls::ServerConnection,
) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    identity.identify(leaf.as_ref())
}
