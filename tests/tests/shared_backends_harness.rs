//! The shared backend's real parts on their own, without berth (issue 20; tests/src/seaweedfs.rs
//! and tests/src/postgres.rs). The SeaweedFS cluster takes signed S3 calls from `object_store`,
//! the client the engine uses: put, get, ranged get, list, delete, a three-part multipart
//! upload, another one continued by its upload id from other clients as from other nodes, a
//! create refused over an existing object, a presigned GET. It refuses a wrong signature, keeps
//! serving an object while a volume server holding one of its copies is dead, and listens on
//! its configured loopback ports only, so two clusters run side by side. PostgreSQL, driven by
//! `tokio-postgres`, keeps a committed row and loses an uncommitted one across a SIGKILL of its
//! postmaster, and comes back after a restart.
//!
//! Measured on the 2-core machine (each test alone; with the weed and PostgreSQL binaries
//! evicted from the page cache first the figures were the same): SeaweedFS starts in 0.9 s
//! (1.0-1.5 s beside the other tests), stops in 0.1-0.2 s when all its servers get SIGTERM
//! together, and holds 6 processes, RSS 710-770 MiB, PSS 335-400 MiB (the 150 MB binary's
//! pages are shared); its test takes 2.5 s. PostgreSQL starts (initdb, start, role and
//! database) in 0.8-1.0 s (2.4-2.9 s beside the SeaweedFS tests), recovers from a SIGKILL in
//! 0.6-1.2 s, shuts down fast in 0.1 s, and holds 7 processes, RSS ~67 MiB, PSS ~30 MiB; its
//! test takes 5.8 s, 2.5-3.4 s of it removing the cluster's directory (deleting the 40 MB of
//! synced files is slow on this disk). The whole file: 5-6 s.

use std::time::{Duration, Instant};

use berth_tests::postgres::{postgres_available, Postgres, DATABASE, USER};
use berth_tests::seaweedfs::{seaweedfs_available, SeaweedCluster};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer as _;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

const BUCKET: &str = "berth-selftest";
/// S3's smallest part but the last: 5 MiB.
const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An S3 client of `bucket` on the cluster's gateway, as the engine will build one.
fn s3_client(cluster: &SeaweedCluster, bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(cluster.s3_endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region(cluster.region())
        .with_access_key_id(cluster.access_key())
        .with_secret_access_key(cluster.secret_key())
        .with_bucket_name(bucket)
        .build()
        .expect("object_store S3 client builds")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).expect("below 256") ^ seed)
        .collect()
}

async fn get_bytes(store: &AmazonS3, path: &ObjectPath) -> Vec<u8> {
    store
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {path} body: {e}"))
        .to_vec()
}

#[test]
fn seaweedfs_serves_s3_and_survives_a_dead_volume_server() {
    if !seaweedfs_available() {
        return;
    }
    let started = Instant::now();
    let mut cluster = SeaweedCluster::start();
    let start_time = started.elapsed();
    cluster.create_bucket(BUCKET);

    // Authentication is on: a request signed with another secret is refused.
    let (status, body) = cluster
        .signed_with(reqwest::Method::GET, "/", Vec::new(), "not-the-secret")
        .expect("ListBuckets answers");
    assert_eq!(status, 403, "{body}");

    let store = s3_client(&cluster, BUCKET);
    let small = ObjectPath::from("blobs/sha256/ab/small");
    let large = ObjectPath::from("blobs/sha256/cd/multipart");
    let doomed = ObjectPath::from("uploads/doomed");
    let small_body = pattern(100_000, 1);
    let parts = [
        pattern(MIN_PART_BYTES, 2),
        pattern(MIN_PART_BYTES + 4096, 3),
        pattern(12_345, 4),
    ];
    let large_body = parts.concat();
    let rt = runtime();
    rt.block_on(async {
        let put = store
            .put(&small, PutPayload::from(small_body.clone()))
            .await
            .expect("PUT small");
        assert!(put.e_tag.is_some(), "{put:?}");
        assert_eq!(get_bytes(&store, &small).await, small_body);
        let meta = store.head(&small).await.expect("HEAD small");
        assert_eq!(meta.size, u64::try_from(small_body.len()).expect("fits"));

        let mut upload = store.put_multipart(&large).await.expect("create multipart");
        for part in &parts {
            upload
                .put_part(PutPayload::from(part.clone()))
                .await
                .expect("upload part");
        }
        let done = upload.complete().await.expect("complete multipart");
        assert!(done.e_tag.is_some(), "{done:?}");
        assert_eq!(get_bytes(&store, &large).await, large_body);
        // A range across the first two parts' boundary.
        let range = MIN_PART_BYTES as u64 - 10..MIN_PART_BYTES as u64 + 10;
        let slice = store
            .get_range(&large, range.clone())
            .await
            .expect("ranged GET");
        assert_eq!(
            slice.as_ref(),
            &large_body[MIN_PART_BYTES - 10..MIN_PART_BYTES + 10]
        );

        // Written once: a create over an existing object is refused (If-None-Match: *, which
        // content-addressed blobs rely on) and leaves it as it was.
        let again = store
            .put_opts(
                &small,
                PutPayload::from_static(b"overwrite"),
                PutOptions::from(PutMode::Create),
            )
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(get_bytes(&store, &small).await, small_body);

        store
            .put(&doomed, PutPayload::from_static(b"short-lived"))
            .await
            .expect("PUT doomed");
        store.delete(&doomed).await.expect("DELETE");
        let gone = store.get(&doomed).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{gone:?}"
        );

        let listed = store
            .list_with_delimiter(Some(&ObjectPath::from("blobs/sha256")))
            .await
            .expect("LIST");
        let prefixes: Vec<String> = listed
            .common_prefixes
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(prefixes, ["blobs/sha256/ab", "blobs/sha256/cd"]);
    });

    // A multipart upload moves between nodes by its upload id and the part ETags kept in the
    // index: each "node" here is its own client on its own runtime (one client per runtime:
    // a pooled connection opened on an idle current-thread runtime hangs another's request).
    let moved = ObjectPath::from("blobs/sha256/ef/moved");
    let node = || (runtime(), s3_client(&cluster, BUCKET));
    let (rt_a, client_a) = node();
    let upload_id = rt_a
        .block_on(client_a.create_multipart(&moved))
        .expect("create multipart");
    let first = rt_a
        .block_on(client_a.put_part(&moved, &upload_id, 0, parts[0].clone().into()))
        .expect("part 1 on node A");
    let (rt_b, client_b) = node();
    let rest: Vec<String> = parts[1..]
        .iter()
        .enumerate()
        .map(|(index, part)| {
            rt_b.block_on(client_b.put_part(&moved, &upload_id, index + 1, part.clone().into()))
                .expect("parts 2 and 3 on node B")
                .content_id
        })
        .collect();
    let recorded: Vec<String> = std::iter::once(first.content_id).chain(rest).collect();
    let (rt_c, client_c) = node();
    let part_ids = recorded
        .into_iter()
        .map(|content_id| PartId { content_id })
        .collect();
    rt_c.block_on(client_c.complete_multipart(&moved, &upload_id, part_ids))
        .expect("complete on node C");
    assert_eq!(rt_c.block_on(get_bytes(&client_c, &moved)), large_body);

    // A presigned GET (berth's optional redirect of blob GETs) is honoured, for its object only.
    let presigned = rt
        .block_on(store.signed_url(reqwest::Method::GET, &small, Duration::from_secs(60)))
        .expect("presign");
    let http = berth_tests::http();
    let response = http.get(presigned.clone()).send().expect("presigned GET");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().expect("body").as_ref(),
        small_body.as_slice()
    );
    let mut elsewhere = presigned;
    elsewhere.set_path(&format!("/{BUCKET}/{large}"));
    let refused = http.get(elsewhere).send().expect("GET").status();
    assert_eq!(refused, 403);

    // A volume server holding a copy of the multipart object's chunks dies: both objects stay
    // readable from the other copies (replication 001).
    let holders = cluster.volume_servers_holding(BUCKET, large.as_ref());
    assert!(
        holders.len() >= 2,
        "replication 001 keeps two copies: {holders:?}"
    );
    let victim = holders[0];
    cluster.kill_volume_server(victim);
    // A fresh client: no connection or cache from before the kill.
    let store = s3_client(&cluster, BUCKET);
    rt.block_on(async {
        assert_eq!(get_bytes(&store, &large).await, large_body);
        assert_eq!(get_bytes(&store, &small).await, small_body);
    });
    cluster.restart_volume_server(victim);
    assert!(cluster.volume_server_running(victim));
    rt.block_on(async {
        assert_eq!(get_bytes(&store, &large).await, large_body);
    });

    let memory = cluster.memory();
    let stopping = Instant::now();
    let clean = cluster.stop();
    eprintln!(
        "SeaweedFS: started in {start_time:?}, {memory}; stopped in {:?} ({})",
        stopping.elapsed(),
        if clean {
            "all exited on SIGTERM"
        } else {
            "SIGKILL after the timeout"
        }
    );
}

#[test]
fn two_seaweedfs_clusters_listen_on_their_own_loopback_ports() {
    if !seaweedfs_available() {
        return;
    }
    let first = SeaweedCluster::start();
    let started = Instant::now();
    let second = SeaweedCluster::start();
    let start_time = started.elapsed();
    for cluster in [&first, &second] {
        let listening = cluster.listening();
        assert!(
            listening
                .iter()
                .all(|address| address.ip() == std::net::Ipv4Addr::LOCALHOST),
            "{listening:?}"
        );
        let ports: Vec<u16> = listening.iter().map(std::net::SocketAddr::port).collect();
        assert_eq!(ports, cluster.configured_ports(), "{listening:?}");
        cluster.create_bucket(BUCKET);
    }
    eprintln!("SeaweedFS: second cluster started in {start_time:?} beside the first");
}

/// Bytes in the volume servers' directories (their `.dat` and `.idx` files).
fn volume_bytes(cluster: &SeaweedCluster) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(cluster.dir())
        .expect("cluster dir")
        .flatten()
    {
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_dir || !entry.file_name().to_string_lossy().starts_with("volume-") {
            continue;
        }
        for file in std::fs::read_dir(entry.path())
            .expect("volume dir")
            .flatten()
        {
            total += file.metadata().map_or(0, |meta| meta.len());
        }
    }
    total
}

#[test]
fn a_deleted_bucket_gives_its_space_back_and_spares_the_others() {
    if !seaweedfs_available() {
        return;
    }
    let cluster = SeaweedCluster::start();
    cluster.create_bucket("kept");
    cluster.create_bucket("doomed");
    let kept = s3_client(&cluster, "kept");
    let doomed = s3_client(&cluster, "doomed");
    let body = pattern(8 << 20, 7);
    let rt = runtime();
    rt.block_on(async {
        kept.put(&ObjectPath::from("a"), PutPayload::from(body.clone()))
            .await
            .expect("PUT kept");
        for name in ["x", "y", "z"] {
            doomed
                .put(&ObjectPath::from(name), PutPayload::from(body.clone()))
                .await
                .expect("PUT doomed");
        }
    });
    let before = volume_bytes(&cluster);
    // Three 8 MiB objects, two copies each.
    let written = 2 * 3 * body.len() as u64;
    assert!(before >= written, "{before} bytes on disk after {written}");

    cluster.delete_bucket("doomed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while volume_bytes(&cluster) > before - written && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = volume_bytes(&cluster);
    assert!(
        after <= before - written,
        "{before} bytes before the delete, {after} after: the {written} written were not freed"
    );
    let (status, listing) = cluster
        .signed(reqwest::Method::GET, "/", Vec::new())
        .expect("ListBuckets");
    assert_eq!(status, 200, "{listing}");
    assert!(
        listing.contains("<Name>kept</Name>") && !listing.contains("<Name>doomed</Name>"),
        "{listing}"
    );
    rt.block_on(async {
        let gone = doomed.get(&ObjectPath::from("x")).await;
        assert!(gone.is_err(), "an object of the deleted bucket: {gone:?}");
        assert_eq!(get_bytes(&kept, &ObjectPath::from("a")).await, body);
    });
}

#[test]
fn postgres_keeps_committed_rows_across_a_kill() {
    if !postgres_available() {
        return;
    }
    let started = Instant::now();
    let mut postgres = Postgres::start();
    let start_time = started.elapsed();
    let port = postgres.port();
    assert_eq!(
        postgres.listening(),
        [std::net::SocketAddr::from(([127, 0, 0, 1], port))]
    );
    let url = postgres.url();
    assert_eq!(
        url,
        format!(
            "postgres://{USER}:{}@127.0.0.1:{port}/{DATABASE}",
            berth_tests::postgres::PASSWORD
        )
    );

    let rt = runtime();
    rt.block_on(async {
        let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect with the password over TCP");
        let connection = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT current_user::text, current_database()::text, rolsuper, \
                 current_setting('fsync') FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .expect("who am I");
        assert_eq!(row.get::<_, String>(0), USER);
        assert_eq!(row.get::<_, String>(1), DATABASE);
        assert!(!row.get::<_, bool>(2), "berth's role is not a superuser");
        assert_eq!(row.get::<_, String>(3), "on");
        client
            .batch_execute(
                "CREATE TABLE blobs (digest text PRIMARY KEY, size_bytes bigint NOT NULL)",
            )
            .await
            .expect("create table");
        let transaction = client.transaction().await.expect("begin");
        transaction
            .execute("INSERT INTO blobs VALUES ('committed', 1)", &[])
            .await
            .expect("insert");
        transaction.commit().await.expect("commit");

        let (mut other, other_connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("second connection");
        let other_connection = tokio::spawn(other_connection);
        let open = other.transaction().await.expect("begin");
        open.execute("INSERT INTO blobs VALUES ('uncommitted', 2)", &[])
            .await
            .expect("insert");

        postgres.kill();
        let after = client.simple_query("SELECT 1").await;
        assert!(after.is_err(), "the connection died with the server");
        drop(open);
        let _ = connection.await;
        let _ = other_connection.await;
    });

    let recovering = Instant::now();
    postgres.start_again();
    let recovery_time = recovering.elapsed();
    let log = postgres.log_text();
    assert!(log.contains("automatic recovery in progress"), "{log}");

    let digests = |url: String| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("reconnect");
        let connection = tokio::spawn(connection);
        let rows = client
            .query("SELECT digest FROM blobs ORDER BY digest", &[])
            .await
            .expect("select");
        drop(client);
        let _ = connection.await;
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(rt.block_on(digests(url.clone())), ["committed"]);

    let memory = postgres.memory();
    let stopping = Instant::now();
    assert!(postgres.stop(), "fast shutdown within the timeout");
    let stop_time = stopping.elapsed();
    assert!(!postgres.running());
    postgres.start_again();
    assert_eq!(rt.block_on(digests(url)), ["committed"]);
    eprintln!(
        "PostgreSQL: started in {start_time:?}, recovered from SIGKILL in {recovery_time:?}, \
         {memory}; fast shutdown in {stop_time:?}"
    );
}
