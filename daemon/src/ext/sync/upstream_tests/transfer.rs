//! Upstream transfer tests: retries and 429s, fallback URLs, timeouts and stalls, size
//! limits, Link pagination, blob streaming and cancellation, the rate limit.
use super::*;

#[test]
fn throttled_request_honours_retry_after_and_counts_the_retry() {
    run(async {
        let registry = serve(|_, index| match index {
            0 => respond(429, &[("retry-after", "1")], ""),
            _ => manifest_reply(),
        });
        let mut options = options(vec![registry.url()]);
        options.max_retries = 2;
        options.max_retry_delay = Duration::from_secs(5);
        let client = upstream(options);
        let started = Instant::now();
        client
            .manifest("a", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
        let stats = client.stats();
        assert_eq!((stats.retries(), stats.throttled()), (1, 1));
        assert_eq!(
            stats.requests_by_status().into_iter().collect::<Vec<_>>(),
            [(200, 1), (429, 1)]
        );
        assert_eq!(stats.latency().count, 2);
        assert_eq!(stats.in_flight_now(), 0);
    });
}

#[test]
fn retry_after_is_capped_by_max_retry_delay() {
    run(async {
        let registry = serve(|_, index| match index {
            0 => respond(429, &[("retry-after", "3600")], ""),
            _ => manifest_reply(),
        });
        let mut options = options(vec![registry.url()]);
        options.max_retries = 1;
        options.max_retry_delay = Duration::from_millis(200);
        let started = Instant::now();
        upstream(options)
            .manifest("a", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn server_errors_are_retried_then_the_next_url_is_tried() {
    run(async {
        let flaky = serve(|_, index| {
            if index < 2 {
                respond(500, &[], "")
            } else {
                manifest_reply()
            }
        });
        let mut retrying = options(vec![flaky.url()]);
        retrying.max_retries = 2;
        let client = upstream(retrying);
        client
            .manifest("a", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        assert_eq!((client.stats().retries(), flaky.seen().len()), (2, 3));

        let broken = serve(|_, _| respond(503, &[], ""));
        let healthy = serve(|_, _| manifest_reply());
        let client = upstream(options(vec![broken.url(), healthy.url()]));
        client
            .manifest("a", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        assert_eq!((broken.seen().len(), healthy.seen().len()), (1, 1));

        let only_broken = upstream(options(vec![broken.url()]));
        let error = only_broken
            .manifest("a", "latest", false)
            .await
            .err()
            .expect("503");
        assert!(
            matches!(error, UpstreamError::Status { status: 503, .. }),
            "{error}"
        );
    });
}

#[test]
fn not_found_is_none_and_other_client_errors_are_not_retried() {
    run(async {
        let registry = serve(|seen, _| {
            if seen.target.contains("/referrers/") {
                respond(
                    200,
                    &[("content-type", "application/vnd.oci.image.index.v1+json")],
                    "{\"manifests\":[]}",
                )
            } else if seen.target.contains("/blobs/") {
                respond(404, &[], r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#)
            } else if seen.target.contains("forbidden") {
                respond(403, &[], "")
            } else {
                respond(404, &[], r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
            }
        });
        let mut options = options(vec![registry.url()]);
        options.max_retries = 3;
        let client = upstream(options);
        let digest = Digest::of(Algorithm::Sha256, b"x");
        assert!(client
            .manifest("a", "missing", false)
            .await
            .expect("answer")
            .is_none());
        assert!(client.blob("a", &digest).await.expect("answer").is_none());
        let referrers = client
            .referrers("a", &digest)
            .await
            .expect("answer")
            .expect("found");
        assert_eq!(referrers, "{\"manifests\":[]}".as_bytes());
        let error = client
            .manifest("forbidden", "x", false)
            .await
            .err()
            .expect("403");
        assert!(
            matches!(error, UpstreamError::Unauthorized { status: 403, .. }),
            "{error}"
        );
        assert_eq!(registry.seen().len(), 4);
        assert_eq!(client.stats().retries(), 0);
        let error = client
            .manifest("../x", "latest", false)
            .await
            .err()
            .expect("bad name");
        assert!(matches!(error, UpstreamError::Protocol(_)), "{error}");
        assert_eq!(
            registry.seen().len(),
            4,
            "a bad name never reaches upstream"
        );
    });
}

#[test]
fn stalled_response_headers_time_out() {
    run(async {
        let registry = serve(|_, _| Reply::Stall);
        let mut options = options(vec![registry.url()]);
        options.response_header_timeout = Duration::from_millis(300);
        let client = upstream(options);
        let started = Instant::now();
        let error = client
            .manifest("a", "latest", false)
            .await
            .err()
            .expect("timeout");
        assert!(matches!(error, UpstreamError::Timeout { .. }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.stats().failures(), 1);
        assert_eq!(client.stats().in_flight_now(), 0);
    });
}

#[test]
fn stalled_blob_body_is_aborted() {
    run(async {
        let registry = serve(|_, _| {
            let frames = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(
                Bytes::from_static(b"abc"),
            ))])
            .chain(futures_util::stream::pending());
            Reply::Respond(
                Response::builder()
                    .header("content-length", "100")
                    .body(BodyExt::boxed(StreamBody::new(frames)))
                    .expect("response"),
            )
        });
        let mut client = upstream(options(vec![registry.url()]));
        client.set_body_stall_timeout(Duration::from_millis(300));
        let mut blob = client
            .blob("a", &Digest::of(Algorithm::Sha256, b"x"))
            .await
            .expect("blob")
            .expect("found");
        assert_eq!(blob.size, Some(100));
        assert_eq!(
            blob.chunks.recv().await.expect("chunk").expect("bytes"),
            "abc".as_bytes()
        );
        let error = blob
            .chunks
            .recv()
            .await
            .expect("error")
            .expect_err("stalled");
        assert!(matches!(error, UpstreamError::Stalled { .. }), "{error}");
        assert!(
            blob.chunks.recv().await.is_none(),
            "nothing after the error"
        );
    });
}

#[test]
fn manifests_over_the_limit_are_refused() {
    run(async {
        let registry = serve(|seen, _| {
            let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
            if seen.target.contains("chunked") {
                let body = streamed(Some(MAX_MANIFEST_BYTES as usize + 1), b' ');
                Reply::Respond(
                    Response::builder()
                        .header("content-type", OCI_MANIFEST)
                        .body(body)
                        .expect("response"),
                )
            } else {
                respond(200, &[("content-type", OCI_MANIFEST)], big)
            }
        });
        let client = upstream(options(vec![registry.url()]));
        for reference in ["declared", "chunked"] {
            let error = client
                .manifest("a", reference, false)
                .await
                .err()
                .expect("too large");
            assert!(
                matches!(
                    error,
                    UpstreamError::TooLarge {
                        limit: MAX_MANIFEST_BYTES,
                        ..
                    }
                ),
                "{error}"
            );
        }
        let error = client
            .manifest("a", "declared", true)
            .await
            .err()
            .expect("too large");
        assert!(
            matches!(error, UpstreamError::TooLarge { .. }),
            "HEAD too: {error}"
        );
    });
}

#[test]
fn tags_follow_link_pages_on_the_same_host_only() {
    run(async {
        let registry = serve(|seen, _| {
            let page = |tags: &str, link: Option<String>| {
                let body = format!(r#"{{"name":"r","tags":{tags}}}"#);
                match link {
                    Some(link) => respond(200, &[("link", &link)], body),
                    None => respond(200, &[], body),
                }
            };
            match seen.target.as_str() {
                "/v2/r/tags/list" => page(
                    r#"["a","b"]"#,
                    Some(r#"</v2/r/tags/list?n=2&last=b>; rel="next""#.to_owned()),
                ),
                "/v2/r/tags/list?n=2&last=b" => page(
                    r#"["c","d"]"#,
                    Some("<list?n=2&last=d>; rel=next".to_owned()),
                ),
                "/v2/r/tags/list?n=2&last=d" => page(r#"["e"]"#, None),
                "/v2/gone/tags/list" => page(
                    r#"["a"]"#,
                    Some(r#"</v2/gone/tags/list?last=a>; rel="next""#.to_owned()),
                ),
                "/v2/_catalog" => respond(
                    200,
                    &[(
                        "link",
                        r#"<http://198.51.100.1/v2/_catalog?last=x>; rel="next""#,
                    )],
                    r#"{"repositories":["r"]}"#,
                ),
                _ => respond(404, &[], ""),
            }
        });
        let client = upstream(options(vec![registry.url()]));
        assert_eq!(
            client.tags("r").await.expect("tags"),
            ["a", "b", "c", "d", "e"]
        );
        assert!(client
            .tags("missing")
            .await
            .expect("404 is empty")
            .is_empty());
        let error = client.tags("gone").await.expect_err("a later page is 404");
        assert!(matches!(error, UpstreamError::Protocol(_)), "{error}");
        let error = client.catalog().await.expect_err("off-host link");
        assert!(matches!(error, UpstreamError::Protocol(_)), "{error}");
    });
}

#[test]
fn blobs_stream_in_chunks_across_runtimes() {
    run(async {
        const SIZE: usize = 3 << 20;
        let registry = serve(|_, _| {
            let response = Response::builder().header("content-length", SIZE.to_string());
            Reply::Respond(response.body(streamed(Some(SIZE), 0x5a)).expect("response"))
        });
        let client = upstream(options(vec![registry.url()]));
        let mut blob = client
            .blob("a", &Digest::of(Algorithm::Sha256, b"x"))
            .await
            .expect("blob")
            .expect("found");
        assert_eq!(blob.size, Some(SIZE as u64));
        let (mut chunks, mut total) = (0, 0);
        while let Some(chunk) = blob.chunks.recv().await {
            let chunk = chunk.expect("chunk");
            assert!(chunk.iter().all(|byte| *byte == 0x5a));
            total += chunk.len();
            chunks += 1;
        }
        assert_eq!(total, SIZE);
        assert!(chunks > 1, "streamed, not buffered: {chunks} chunk(s)");
        assert_eq!(client.stats().bytes_received(), SIZE as u64);
        assert_eq!(client.stats().in_flight_now(), 0);
    });
}

#[test]
fn dropping_the_blob_receiver_stops_the_download() {
    run(async {
        let registry = serve(|_, _| {
            let response = Response::builder().header("content-length", (1u64 << 40).to_string());
            Reply::Respond(response.body(streamed(None, 1)).expect("response"))
        });
        let mut options = options(vec![registry.url()]);
        options.req_concurrent = 1;
        let client = upstream(options);
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let mut blob = client
            .blob("a", &digest)
            .await
            .expect("blob")
            .expect("found");
        let mut received = 0;
        while received < 1 << 20 {
            received += blob
                .chunks
                .recv()
                .await
                .expect("chunk")
                .expect("bytes")
                .len();
        }
        assert_eq!(client.stats().in_flight_now(), 1);
        drop(blob);
        let deadline = Instant::now() + Duration::from_secs(10);
        while registry.closed.load(SeqCst) == 0 || client.stats().in_flight_now() != 0 {
            assert!(
                Instant::now() < deadline,
                "the server never saw the connection close"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The permit came back: with reqConcurrent 1 another request goes through.
        let next = tokio::time::timeout(Duration::from_secs(5), client.blob("a", &digest)).await;
        drop(
            next.expect("permit released")
                .expect("blob")
                .expect("found"),
        );
    });
}

#[test]
fn requests_per_second_are_limited() {
    run(async {
        let registry = serve(|_, _| manifest_reply());
        let mut options = options(vec![registry.url()]);
        options.req_per_sec = Some(4.0);
        let client = upstream(options);
        let started = Instant::now();
        for _ in 0..8 {
            client
                .manifest("a", "latest", true)
                .await
                .expect("head")
                .expect("found");
        }
        // A burst of 4, then 4 more at 4/s: about one second.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    });
}
