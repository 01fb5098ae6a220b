//! Request routing: `berth::api::router::route(&Method, &str)` for the paths a registry
//! client sends, including nested repository names (matched from the end of the path), a
//! 404 and an invalid name. Compare each figure with the cost of a whole HTTP request
//! through the daemon, about 10-50 µs: routing (which validates the repository name) should
//! stay well under 1 µs, i.e. a rounding error of the request.

use std::hint::black_box;

use berth::api::router::{route, Endpoint, RouteError};
use criterion::{criterion_group, criterion_main, Criterion};
use hyper::Method;

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

/// What the router must answer for a case.
type Check = fn(&Result<Endpoint, RouteError>) -> bool;

/// (bench name, method, path, expected outcome).
fn cases() -> Vec<(&'static str, Method, String, Check)> {
    vec![
        ("base", Method::GET, "/v2/".to_owned(), |r| {
            matches!(r, Ok(Endpoint::Base))
        }),
        (
            "blob_get_nested",
            Method::GET,
            format!("/v2/library/team/app/blobs/{DIGEST}"),
            |r| matches!(r, Ok(Endpoint::Blob { .. })),
        ),
        (
            "manifest_by_tag",
            Method::GET,
            "/v2/library/app/manifests/v1.2.3".to_owned(),
            |r| matches!(r, Ok(Endpoint::Manifest { .. })),
        ),
        (
            "upload_patch",
            Method::PATCH,
            "/v2/a/b/blobs/uploads/3f2b8c1e-9a4d-4e57-b6f0-2d8a7c91e4b5".to_owned(),
            |r| matches!(r, Ok(Endpoint::Upload { .. })),
        ),
        (
            "tags_list",
            Method::GET,
            "/v2/library/app/tags/list".to_owned(),
            |r| matches!(r, Ok(Endpoint::TagsList { .. })),
        ),
        (
            "referrers",
            Method::GET,
            format!("/v2/library/app/referrers/{DIGEST}"),
            |r| matches!(r, Ok(Endpoint::Referrers { .. })),
        ),
        (
            "not_found",
            Method::GET,
            "/v2/library/app/things/x".to_owned(),
            |r| matches!(r, Err(RouteError::NotFound)),
        ),
        (
            "invalid_name",
            Method::GET,
            "/v2/Library/App/manifests/latest".to_owned(),
            |r| matches!(r, Err(RouteError::NameInvalid(_))),
        ),
    ]
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for (name, method, path, expected) in cases() {
        // Measure the intended branch, not an error path that happens to be fast.
        let outcome = route(&method, &path);
        assert!(expected(&outcome), "{name}: {path} routed to {outcome:?}");
        group.bench_function(name, |b| {
            b.iter(|| route(black_box(&method), black_box(path.as_str())))
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
