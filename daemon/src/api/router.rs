//! The router of the OCI API: (method, path) -> a typed [`Endpoint`]. Extensions' paths are
//! not here: the API asks the extension list (ext/mod.rs) first. Names are validated here, before any
//! handler or storage call sees them; the rest of a path segment (digest, reference, session
//! id) is handed over as text and parsed by the handler so that each gets its own OCI error.
//!
//! Repository names may contain `/` and any component (`blobs`, `manifests`, ...), so routes are
//! matched from the end of the path, never by counting components.

use berth_storage::oci::RepoName;
use hyper::Method;

/// What a request asks for, with its repository name already validated.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Discover,
    TagsList { name: RepoName },
    Manifest { name: RepoName, reference: String },
    Blob { name: RepoName, digest: String },
    UploadStart { name: RepoName },
    Upload { name: RepoName, session: String },
    Referrers { name: RepoName, digest: String },
}

impl Endpoint {
    /// The repository the endpoint names, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Discover => None,
            Endpoint::TagsList { name }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::UploadStart { name }
            | Endpoint::Upload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }
}

/// Why no endpoint matched.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this shape.
    NotFound,
    /// The route exists but its repository name breaks the grammar.
    NameInvalid(String),
    /// The route exists but not for this method.
    MethodNotAllowed,
}

/// Maps a request to an endpoint. `path` is the raw (still percent-encoded) path: an encoded
/// `/` or `.` is just an invalid character in a name, never a separator.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
    let endpoint = match_path(path)?;
    if allowed(&endpoint, method) {
        Ok(endpoint)
    } else {
        Err(RouteError::MethodNotAllowed)
    }
}

fn allowed(endpoint: &Endpoint, method: &Method) -> bool {
    let m = method;
    let read = m == Method::GET || m == Method::HEAD;
    match endpoint {
        Endpoint::Base | Endpoint::Catalog | Endpoint::Discover | Endpoint::TagsList { .. } => read,
        Endpoint::Referrers { .. } => m == Method::GET,
        Endpoint::Manifest { .. } => read || m == Method::PUT || m == Method::DELETE,
        Endpoint::Blob { .. } => read || m == Method::DELETE,
        Endpoint::UploadStart { .. } => m == Method::POST,
        Endpoint::Upload { .. } => {
            m == Method::GET || m == Method::PATCH || m == Method::PUT || m == Method::DELETE
        }
    }
}

fn match_path(path: &str) -> Result<Endpoint, RouteError> {
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Endpoint::Base),
        "/v2/_catalog" => return Ok(Endpoint::Catalog),
        "/v2/_oci/ext/discover" => return Ok(Endpoint::Discover),
        _ => path.strip_prefix("/v2/").ok_or(RouteError::NotFound)?,
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Endpoint::TagsList {
            name: name_of(name)?,
        });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Ok(Endpoint::UploadStart {
            name: name_of(name)?,
        });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Ok(Endpoint::UploadStart {
            name: name_of(name)?,
        });
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let (head, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let last = last.to_owned();
    match kind {
        "manifests" => Ok(Endpoint::Manifest {
            name: name_of(head)?,
            reference: last,
        }),
        "blobs" => Ok(Endpoint::Blob {
            name: name_of(head)?,
            digest: last,
        }),
        "referrers" => Ok(Endpoint::Referrers {
            name: name_of(head)?,
            digest: last,
        }),
        "uploads" => {
            let name = head.strip_suffix("/blobs").ok_or(RouteError::NotFound)?;
            Ok(Endpoint::Upload {
                name: name_of(name)?,
                session: last,
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

fn name_of(text: &str) -> Result<RepoName, RouteError> {
    text.parse()
        .map_err(|_| RouteError::NameInvalid(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().expect("test name is valid")
    }

    #[test]
    fn routes_table() {
        let get = Method::GET;
        let cases: Vec<(&str, Result<Endpoint, RouteError>)> = vec![
            ("/v2/", Ok(Endpoint::Base)),
            ("/v2", Ok(Endpoint::Base)),
            ("/v2/_catalog", Ok(Endpoint::Catalog)),
            ("/v2/_oci/ext/discover", Ok(Endpoint::Discover)),
            // Extensions' paths are the extension list's (ext/mod.rs), asked first.
            ("/v2/_zot/ext/scrub", Err(RouteError::NotFound)),
            ("/v2/_berth/ext/sync", Err(RouteError::NotFound)),
            (
                "/v2/a/b/tags/list",
                Ok(Endpoint::TagsList { name: name("a/b") }),
            ),
            (
                "/v2/foo/blobs/manifests/latest",
                Ok(Endpoint::Manifest {
                    name: name("foo/blobs"),
                    reference: "latest".into(),
                }),
            ),
            (
                "/v2/foo/blobs/sha256:abc",
                Ok(Endpoint::Blob {
                    name: name("foo"),
                    digest: "sha256:abc".into(),
                }),
            ),
            (
                "/v2/a/blobs/uploads/blobs/uploads/x",
                Ok(Endpoint::Upload {
                    name: name("a/blobs/uploads"),
                    session: "x".into(),
                }),
            ),
            (
                "/v2/a/referrers/sha256:1",
                Ok(Endpoint::Referrers {
                    name: name("a"),
                    digest: "sha256:1".into(),
                }),
            ),
            (
                "/v2/../etc/tags/list",
                Err(RouteError::NameInvalid("../etc".into())),
            ),
            (
                "/v2/a%2Fb/tags/list",
                Err(RouteError::NameInvalid("a%2Fb".into())),
            ),
            (
                "/v2/a//b/tags/list",
                Err(RouteError::NameInvalid("a//b".into())),
            ),
            (
                "/v2/A/manifests/x",
                Err(RouteError::NameInvalid("A".into())),
            ),
            ("/v3/a/manifests/x", Err(RouteError::NotFound)),
            ("/v2/a/things/x", Err(RouteError::NotFound)),
            ("/v2/x", Err(RouteError::NotFound)),
        ];
        for (path, want) in cases {
            assert_eq!(match_path(path), want, "{path}");
        }
        assert_eq!(
            route(&Method::POST, "/v2/a/blobs/uploads/"),
            Ok(Endpoint::UploadStart { name: name("a") })
        );
        assert_eq!(
            route(&Method::POST, "/v2/a/tags/list"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route(&get, "/v2/a/blobs/uploads/"),
            Err(RouteError::MethodNotAllowed)
        );
    }
}
