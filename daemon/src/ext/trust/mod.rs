//! `extensions.trust`: cosign and notation signature verification with uploaded keys and
//! certificates (zot's trust extension, offline: no transparency log, no revocation checks).
//!
//! - Uploads as zot (admins only): `POST /v2/_zot/ext/cosign` (a PEM public key) and
//!   `POST /v2/_zot/ext/notation?truststoreType=ca|signingAuthority|tsa` (PEM certificates).
//!   berth adds `GET` (list) and `DELETE ?id=` (remove) on the same paths.
//! - Verdicts are made when a signature is pushed or synced (service.rs), when the store
//!   changes (every signature, committed with the change), and by this module's worker: at
//!   start (missing or stale verdicts), every `interval` (all of them) and when a trusted
//!   verdict lapses. Search and the UI read the stored verdicts.
pub mod judge;
pub mod service;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_storage::trust::{TrustChange, TrustKind, TrustMaterial};
use berth_trust::{CosignKey, StoreType, TrustedCertificate};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::api::body::{drain, empty, json_response, read_limited, Body, RequestBody};
use crate::api::error::ApiError;
use crate::api::Ctx;
use crate::ext::{Entry, Extension, Listed, Need, Reply, Route, Worker};
pub use service::Trust;

pub const COSIGN_PATH: &str = "/v2/_zot/ext/cosign";
pub const NOTATION_PATH: &str = "/v2/_zot/ext/notation";
/// Largest key or certificate upload (a PEM chain of a few certificates is kilobytes).
pub const UPLOAD_MAX_BYTES: usize = 64 * 1024;

const METHODS: &[Method] = &[Method::GET, Method::HEAD, Method::POST, Method::DELETE];
const ROUTES: &[Route] = &[
    Route {
        path: COSIGN_PATH,
        methods: METHODS,
        need: Need::Admin,
    },
    Route {
        path: NOTATION_PATH,
        methods: METHODS,
        need: Need::Admin,
    },
];

/// The trust extension in the list: present with its routes while trust verifies anything.
pub struct TrustExt {
    trust: Option<Arc<Trust>>,
}

impl TrustExt {
    pub fn new(trust: Option<Arc<Trust>>) -> TrustExt {
        TrustExt { trust }
    }
}

fn rfc3339(unix: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

fn now_unix() -> u64 {
    judge::now_unix().max(0) as u64
}

fn query(req: &Request<RequestBody>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The uploaded body, at most [`UPLOAD_MAX_BYTES`].
async fn upload_body(req: Request<RequestBody>, ctx: &Ctx) -> Result<Vec<u8>, ApiError> {
    let mut body = req.into_body();
    match read_limited(&mut body, UPLOAD_MAX_BYTES, ctx.body_idle).await? {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(limit) => {
            drain(&mut body, ctx.body_idle).await;
            Err(ApiError::BodyTooLarge(limit))
        }
    }
}

fn ok() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_LENGTH, 0)
        .body(empty())
        .expect("static headers are valid")
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("trust store change: {error}"))
}

/// The listing of cosign keys.
fn list_keys(trust: &Trust) -> Value {
    let loaded = trust.loaded();
    let keys: Vec<Value> = loaded
        .materials
        .iter()
        .filter(|material| material.kind == TrustKind::Cosign)
        .filter_map(|material| {
            let key = CosignKey::from_pem(&material.bytes).ok()?;
            Some(json!({
                "id": material.id,
                "algorithm": key.algorithm(),
                "pem": key.pem(),
                "uploaded": rfc3339(material.uploaded_unix as i64),
            }))
        })
        .collect();
    json!({ "keys": keys })
}

/// The listing of notation certificates.
fn list_certificates(trust: &Trust) -> Value {
    let loaded = trust.loaded();
    let certificates: Vec<Value> = loaded
        .materials
        .iter()
        .filter(|material| material.kind != TrustKind::Cosign)
        .filter_map(|material| {
            let certificate =
                TrustedCertificate::from_der(service::store_type(material.kind), &material.bytes)
                    .ok()?;
            Some(json!({
                "id": material.id,
                "truststoreType": material.kind.as_str(),
                "subject": certificate.subject(),
                "issuer": certificate.issuer(),
                "notBefore": rfc3339(certificate.not_before_unix()),
                "notAfter": rfc3339(certificate.not_after_unix()),
                "pem": certificate.pem(),
                "uploaded": rfc3339(material.uploaded_unix as i64),
            }))
        })
        .collect();
    json!({ "certificates": certificates })
}

async fn upload_key(trust: &Trust, bytes: &[u8]) -> Result<(), ApiError> {
    let key = CosignKey::from_pem(bytes)
        .map_err(|error| ApiError::InvalidArgument(format!("cosign public key: {error}")))?;
    let material = TrustMaterial {
        kind: TrustKind::Cosign,
        id: key.id(),
        uploaded_unix: now_unix(),
        bytes: key.pem().as_bytes().to_vec(),
    };
    tracing::info!(component = "trust", id = %material.id, algorithm = key.algorithm(), "cosign key uploaded");
    trust
        .change(TrustChange::Add(material))
        .await
        .map_err(internal)?;
    Ok(())
}

async fn upload_certificates(
    trust: &Trust,
    store: Option<&str>,
    bytes: &[u8],
) -> Result<(), ApiError> {
    let store_text = store.unwrap_or("ca");
    let store: StoreType = store_text.parse().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "truststoreType {store_text:?}: expected ca, signingAuthority or tsa"
        ))
    })?;
    let kind = match store {
        StoreType::Ca => TrustKind::Ca,
        StoreType::SigningAuthority => TrustKind::SigningAuthority,
        StoreType::Tsa => TrustKind::Tsa,
    };
    let certificates = match TrustedCertificate::from_pem(store, bytes) {
        Ok(certificates) => certificates,
        // zot also takes one DER certificate.
        Err(error) if !bytes.starts_with(b"-----") => TrustedCertificate::from_der(store, bytes)
            .map(|certificate| vec![certificate])
            .map_err(|_| {
                ApiError::InvalidArgument(format!(
                    "notation certificate: {error}, nor a DER certificate"
                ))
            })?,
        Err(error) => {
            return Err(ApiError::InvalidArgument(format!(
                "notation certificate: {error}"
            )))
        }
    };
    for certificate in certificates {
        let material = TrustMaterial {
            kind,
            id: certificate.id(),
            uploaded_unix: now_unix(),
            bytes: certificate.der().to_vec(),
        };
        tracing::info!(component = "trust", id = %material.id, store = store_text, subject = %certificate.subject(), "notation certificate uploaded");
        trust
            .change(TrustChange::Add(material))
            .await
            .map_err(internal)?;
    }
    Ok(())
}

async fn remove(trust: &Trust, cosign: bool, id: Option<&str>) -> Result<(), ApiError> {
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::InvalidArgument("the id parameter is missing".into()))?;
    let kind = trust
        .loaded()
        .materials
        .iter()
        .find(|material| material.id == id && (material.kind == TrustKind::Cosign) == cosign)
        .map(|material| material.kind)
        .ok_or_else(|| ApiError::EntryUnknown(id.to_owned()))?;
    let removed = trust
        .change(TrustChange::Remove(kind, id.to_owned()))
        .await
        .map_err(internal)?;
    if !removed {
        return Err(ApiError::EntryUnknown(id.to_owned()));
    }
    tracing::info!(
        component = "trust",
        id,
        kind = kind.as_str(),
        "trust store entry removed"
    );
    Ok(())
}

impl Extension for TrustExt {
    fn name(&self) -> &'static str {
        "trust"
    }

    fn routes(&self) -> &[Route] {
        match self.trust {
            Some(_) => ROUTES,
            None => &[],
        }
    }

    fn handle<'a>(
        &'a self,
        req: Request<RequestBody>,
        ctx: &'a Ctx,
        _user: Option<&'a str>,
    ) -> Reply<'a> {
        Box::pin(async move {
            let trust = self.trust.as_ref().ok_or(ApiError::NotFound)?;
            let cosign = req.uri().path() == COSIGN_PATH;
            let on = match cosign {
                true => trust.tools.cosign,
                false => trust.tools.notation,
            };
            if !on {
                return Err(ApiError::NotFound);
            }
            let query = query(&req);
            match (req.method().clone(), cosign) {
                (Method::GET | Method::HEAD, true) => Ok(json_response(
                    StatusCode::OK,
                    "application/json",
                    list_keys(trust),
                )),
                (Method::GET | Method::HEAD, false) => Ok(json_response(
                    StatusCode::OK,
                    "application/json",
                    list_certificates(trust),
                )),
                (Method::POST, true) => {
                    upload_key(trust, &upload_body(req, ctx).await?).await?;
                    Ok(ok())
                }
                (Method::POST, false) => {
                    let store = param(&query, "truststoreType").map(str::to_owned);
                    let bytes = upload_body(req, ctx).await?;
                    upload_certificates(trust, store.as_deref(), &bytes).await?;
                    Ok(ok())
                }
                (_, cosign) => {
                    remove(trust, cosign, param(&query, "id")).await?;
                    Ok(ok())
                }
            }
        })
    }

    fn start(&self, stop: &Arc<AtomicBool>) -> std::io::Result<Vec<Worker>> {
        let Some(trust) = self.trust.clone() else {
            return Ok(Vec::new());
        };
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("trust".into())
            .spawn(move || run_worker(&trust, &stop))?;
        Ok(vec![Worker::thread(handle)])
    }

    fn discover(&self, _ctx: &Ctx) -> Vec<Listed> {
        let Some(trust) = &self.trust else {
            return Vec::new();
        };
        let mut listed = Vec::new();
        if trust.tools.cosign {
            listed.push(Listed {
                entry: Entry::Zot,
                endpoint: COSIGN_PATH,
                offers: "cosign keys",
            });
        }
        if trust.tools.notation {
            listed.push(Listed {
                entry: Entry::Zot,
                endpoint: NOTATION_PATH,
                offers: "notation certificates",
            });
        }
        listed
    }
}

/// The re-verification worker: a pass over missing and stale verdicts at start, a full pass
/// every `interval`, a pass when a trusted verdict lapses. Checks `stop` every second.
fn run_worker(trust: &Trust, stop: &AtomicBool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(component = "trust", %error, "the trust worker did not start");
            return;
        }
    };
    let run = |full: bool| {
        let started = Instant::now();
        match runtime.block_on(trust.pass(full)) {
            Ok(judged) => tracing::info!(
                component = "trust",
                full,
                judged,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "signature verification pass"
            ),
            Err(error) => {
                tracing::warn!(component = "trust", full, %error, "signature verification pass failed")
            }
        }
    };
    run(false);
    let mut next_full = Instant::now() + trust.interval;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        if stop.load(Relaxed) {
            break;
        }
        if Instant::now() >= next_full {
            run(true);
            next_full = Instant::now() + trust.interval;
        } else if trust.next_expiry.load(Relaxed) <= judge::now_unix() {
            run(false);
        }
    }
}
