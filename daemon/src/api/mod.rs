//! The OCI Distribution API: one entry point per request ([`handle`]), the router, the OCI
//! handlers, the health probes and the error model. Handlers take typed values and call the
//! storage engine; they never touch the filesystem except to stream a committed blob file.
//! Authentication and access control are asked here, before any handler runs (auth/).
//!
//! Extensions' paths are not named here: [`handle`] asks the extension list (`Ctx::extensions`,
//! ext/mod.rs) for an operator endpoint after the probes, and [`dispatch`] asks it for a
//! `/v2/` route before the OCI router; an extension's route gets the same 405 and access
//! check as an OCI route.

mod blobs;
pub mod body;
pub mod error;
mod listing;
pub(crate) mod manifests;
pub mod ops;
pub mod router;
mod uploads;

use std::{convert::Infallible, rc::Rc, sync::Arc, time::Duration};

use berth_storage::Engine;
use hyper::{header, Method, Request, Response};

use crate::auth::{access, apikey, htpasswd};
use crate::ext::metrics::{Metrics, RepoAction};
use crate::ext::Registry;
use crate::policy::quota::Quotas;
use crate::policy::tag_policy::ImmutableTags;
use crate::runtime::live::Live;
use crate::runtime::observe::RequestInfo;
use body::{Body, RequestBody};
use error::ApiError;
use router::{Endpoint, RouteError};

/// Largest manifest accepted on PUT (the spec asks for at least 4 MB; zot and Distribution
/// use 4 MiB). Bigger bodies get 413 and are never buffered past this size.
pub const MANIFEST_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most `?tag=` parameters on one manifest PUT (zot's limit, from an 8 KiB request target).
pub const MAX_TAG_PARAMS: usize = 46;
/// Largest page of a catalog or tags listing; a bigger `n` is clamped to it.
pub const PAGE_MAX_ENTRIES: usize = 1000;

/// The client's address, as a request extension for a site (which logs failed logins).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<std::net::SocketAddr>);

/// What every handler of a shard shares.
pub struct Ctx {
    pub engine: Arc<Engine>,
    /// Longest gap between two chunks of a request body.
    pub body_idle: Duration,
    /// Whether this shard's runtime drives io_uring (blob reads then use it).
    pub uring: bool,
    /// Reloadable settings and the lifecycle flags.
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// `storage.immutableTags`.
    pub immutable_tags: Arc<ImmutableTags>,
    /// `storage.quotas`.
    pub quotas: Arc<Quotas>,
    /// On-demand sync (`extensions.sync` with an `onDemand` registry).
    pub sync: Option<Arc<crate::ext::sync::ondemand::OnDemand>>,
    /// `http.auth.htpasswd`: every request but the health probes needs Basic credentials
    /// (with `access`, a request without credentials is anonymous instead).
    pub auth: Option<Arc<htpasswd::Authenticator>>,
    /// `http.auth.bearer`: every request but the health probes and public routes needs a
    /// token (auth/bearer.rs); then `auth` is `None`.
    pub bearer: Option<Arc<crate::auth::bearer::Bearer>>,
    /// `http.accessControl`: who may do what (auth/access.rs); `None` = everyone admitted
    /// may do everything.
    pub access: Option<Arc<access::AccessControl>>,
    /// The extensions (serve.rs builds the list).
    pub extensions: Arc<Registry>,
    /// `http.allowOrigin`: CORS headers for admitted web origins.
    pub cors: Option<Arc<crate::policy::cors::Cors>>,
    /// `http.ratelimit`: requests over the rates get 429.
    pub rate_limits: Option<Arc<crate::policy::ratelimit::RateLimits>>,
    /// `extensions.trust` when it verifies anything: pushed signatures are judged.
    pub trust: Option<Arc<crate::ext::trust::Trust>>,
    /// `storage.redirectBlobURL`: a blob GET without Range from S3 is a 307 to a presigned
    /// URL.
    pub redirect_blob_url: bool,
}

/// Serves one request, filling `info` for its metrics. Never fails at the hyper level: every
/// error becomes an OCI error body.
pub async fn handle(
    req: Request<RequestBody>,
    ctx: Rc<Ctx>,
    info: &mut RequestInfo,
) -> Result<Response<Body>, Infallible> {
    let Some(cors) = ctx.cors.clone() else {
        return serve(req, ctx, info).await;
    };
    if let Some(preflight) = cors.preflight(req.method(), req.headers()) {
        return Ok(preflight);
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = serve(req, ctx, info).await?;
    cors.decorate(origin.as_ref(), response.headers_mut());
    Ok(response)
}

/// [`handle`] without CORS.
async fn serve(
    req: Request<RequestBody>,
    ctx: Rc<Ctx>,
    info: &mut RequestInfo,
) -> Result<Response<Body>, Infallible> {
    let head_only = req.method() == Method::HEAD;
    let probe = ops::route(req.method(), req.uri().path());
    let operator = match probe {
        Some(_) => None,
        None => ctx
            .extensions
            .operator(&ctx, req.method(), req.uri().path()),
    };
    // zot's http.ratelimit; the probes and the metrics path stay open.
    if let (Some(limits), None, None) = (&ctx.rate_limits, &probe, &operator) {
        if let Err(wait) = limits.admit(req.method()) {
            return Ok(ApiError::TooManyRequests(wait).into_response(head_only));
        }
    }
    // http.auth.bearer: a token is the only way in; the probes and public routes need none.
    let route = ctx.extensions.route(req.uri().path());
    let public = route.is_some_and(|(_, route)| route.need == access::Need::Public);
    if let (Some(bearer), None, false) = (&ctx.bearer, &probe, public) {
        let (method, uri) = (req.method(), req.uri());
        match bearer.admit(
            method,
            uri,
            req.headers(),
            route.is_some(),
            info.peer,
            head_only,
        ) {
            Ok(user) => info.user = user,
            Err(refused) => return Ok(*refused),
        }
    }
    let site = match (&probe, &operator) {
        (None, None) => ctx.extensions.site(req.uri().path()),
        _ => None,
    };
    if let Some(site) = site {
        let mut req = req;
        req.extensions_mut().insert(Peer(info.peer));
        let response = match site.handle(req, &ctx, None).await {
            Ok(response) => response,
            Err(error) => error.into_response(head_only),
        };
        return Ok(match head_only {
            true => response.map(|_| body::empty()),
            false => response,
        });
    }
    // With access control, a request without credentials is anonymous (the policies decide);
    // so is one to a public extension route.
    let anonymous =
        (ctx.access.is_some() || public) && htpasswd::sends_no_credentials(req.headers());
    let certified = req
        .extensions()
        .get::<crate::runtime::connection::TlsIdentity>()
        .map(|identity| identity.0.clone());
    if ctx.bearer.is_some() {
        // The token (checked above) named the caller; nothing else may.
    } else if let Some(identity) = certified {
        // Mutual TLS: the verified client certificate names the caller (zot's mTLS).
        info.user = Some(identity);
    } else if let (Some(auth), false, false) = (&ctx.auth, probe.is_some(), anonymous) {
        match auth.admit(req.headers(), info.peer, head_only).await {
            Ok(identity) => (info.user, info.key) = (Some(identity.user), identity.key),
            Err(refused) => return Ok(refused),
        }
    }
    let user = info.user.clone();
    access::load_groups(&ctx, user.as_deref()).await;
    let response = if let Some(probe) = probe {
        ops::serve(probe, &ctx)
    } else if let Some((extension, need)) = operator {
        info.counted = false;
        if let Some(refused) = access::permit(&ctx, user.as_deref(), &need, head_only) {
            return Ok(refused);
        }
        if let Some(refused) = apikey::confine(info.key.as_deref(), &need, head_only) {
            return Ok(refused);
        }
        match extension.handle(req, &ctx, user.as_deref()).await {
            Ok(response) => response,
            Err(error) => error.into_response(head_only),
        }
    } else {
        return Ok(api(req, &ctx, info, user.as_deref(), head_only).await);
    };
    Ok(match head_only {
        true => response.map(|_| body::empty()),
        false => response,
    })
}

/// A request to `/v2/` (or to no known path): its response, errors included.
async fn api(
    req: Request<RequestBody>,
    ctx: &Ctx,
    info: &mut RequestInfo,
    user: Option<&str>,
    head_only: bool,
) -> Response<Body> {
    let method = req.method().clone();
    match dispatch(req, ctx, info, user, head_only).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%method, code = error.oci_code(), %error, "request refused");
            error.into_response(head_only)
        }
    }
}

async fn dispatch(
    req: Request<RequestBody>,
    ctx: &Ctx,
    info: &mut RequestInfo,
    user: Option<&str>,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    if let Some((extension, route)) = ctx.extensions.route(req.uri().path()) {
        if !route.methods.contains(req.method()) {
            return Err(method_not_allowed(req.method()));
        }
        if let Some(refused) = access::permit(ctx, user, &route.need, head_only) {
            return Ok(refused);
        }
        if let Some(refused) = apikey::confine(info.key.as_deref(), &route.need, head_only) {
            return Ok(refused);
        }
        return extension.handle(req, ctx, user).await;
    }
    let endpoint = match router::route(req.method(), req.uri().path()) {
        Ok(endpoint) => endpoint,
        Err(RouteError::NameInvalid(name)) => return Err(ApiError::NameInvalid(name)),
        Err(RouteError::MethodNotAllowed) => return Err(method_not_allowed(req.method())),
        Err(RouteError::NotFound) => return Err(ApiError::NotFound),
    };
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    info.repo = endpoint.repo().cloned();
    // A manifest GET (not HEAD) is a download and a PUT an upload, as zot counts them; the
    // observer keeps them only for 2xx answers.
    info.action = match (&endpoint, &method) {
        (Endpoint::Manifest { .. }, &Method::GET) => RepoAction::ManifestPulled,
        (Endpoint::Manifest { .. }, &Method::PUT) => RepoAction::ManifestPushed,
        _ => RepoAction::Other,
    };
    if let Some(refused) = apikey::confine_endpoint(info.key.as_deref(), &endpoint, head_only) {
        return Ok(refused);
    }
    if let Some(refused) = access::check(ctx, user, &endpoint, &method, &query, head_only).await? {
        return Ok(refused);
    }
    match endpoint {
        Endpoint::Base => Ok(listing::base()),
        Endpoint::Discover => Ok(listing::discover(ctx)),
        Endpoint::Catalog => listing::catalog(ctx, &query, user, info.key.as_deref()).await,
        Endpoint::TagsList { name } => listing::tags(ctx, &name, &query).await,
        Endpoint::Referrers { name, digest } => {
            listing::referrers(ctx, &name, &digest, &query).await
        }
        Endpoint::Manifest { name, reference } => match method {
            Method::PUT => manifests::put(ctx, &name, &reference, &query, user, req).await,
            Method::DELETE => manifests::delete(ctx, &name, &reference).await,
            _ => {
                manifests::get(
                    ctx,
                    &name,
                    &reference,
                    req.headers(),
                    method == Method::HEAD,
                )
                .await
            }
        },
        Endpoint::Blob { name, digest } => match method {
            Method::DELETE => blobs::delete(ctx, &name, &digest).await,
            _ => blobs::get(ctx, &name, &digest, req.headers(), method == Method::HEAD).await,
        },
        Endpoint::UploadStart { name } => {
            uploads::start(ctx, &name, &query, user, info.key.as_deref(), req).await
        }
        Endpoint::Upload { name, session } => {
            let session = uploads::session(ctx, &name, &session, user).await?;
            match method {
                Method::GET => uploads::status(ctx, &name, &session).await,
                Method::PATCH => uploads::patch(ctx, &name, &session, req).await,
                Method::PUT => uploads::finish(ctx, &name, &session, &query, req).await,
                _ => uploads::cancel(ctx, &name, &session).await,
            }
        }
    }
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::Unsupported(format!("method {method} not allowed"))
}

/// Decoded query parameters, in order (a key may repeat: `?tag=a&tag=b`).
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A value of a request header, if present and valid text.
fn header_str(headers: &hyper::HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
