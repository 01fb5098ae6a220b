//! Three berth nodes serve one registry from SeaweedFS and PostgreSQL (issue 20): skopeo
//! pushes through one node and pulls through another; a tag pushed on one node is read on the
//! others at once; a chunked upload whose chunks go to three different nodes makes one blob;
//! 50 concurrent pushes of one tag from all nodes end in one winner every node agrees on;
//! kill -9 of a node mid-push loses nothing it acknowledged and its open uploads continue on
//! the others (one of them killed mid-PATCH); PostgreSQL killed and restarted: requests fail
//! cleanly meanwhile and nothing acknowledged is lost; haproxy in front of the nodes, as a
//! user deploys them; one SeaweedFS volume server down, pulls keep working.
//!
//! Without `weed`, PostgreSQL, skopeo or haproxy the tests print SKIPPED, unless
//! `BERTH_REQUIRE_TOOLS=1`.
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::gc::eventually;
use berth_tests::nodes::{
    client_with_timeout, finish, get_blob, manifest, manifest_digest, patch, push_blob,
    put_manifest, start_nodes, start_upload, upload_offset,
};
use berth_tests::postgres::Postgres;
use berth_tests::seaweedfs_shared;
use berth_tests::{http, random_image, run_ok, sha256_digest, write_oci_layout};
use berth_tests::{Berth, Image};

fn available(tools: &[&str]) -> bool {
    berth_tests::nodes::shared_backend_available(tools)
}

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

fn copy_in(addr: &str, work: &Path, name: &str, image: &Image) {
    let layout = work.join(format!("in-{}", name.replace('/', "-")));
    write_oci_layout(&layout, "v1", image);
    run_ok(
        skopeo()
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{addr}/{name}:v1")),
    );
}

/// Copies `name:v1` out through `addr` and checks every blob is byte-identical.
fn copy_out_identical(addr: &str, work: &Path, name: &str, image: &Image) {
    // No ':' in the path: skopeo's oci: transport reads one as the start of the tag.
    let out = work.join(format!(
        "out-{}-{}",
        name.replace('/', "-"),
        addr.replace(':', "-")
    ));
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{addr}/{name}:v1"))
            .arg(format!("oci:{}:v1", out.display())),
    );
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = sha256_digest(blob);
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        let copied = std::fs::read(out.join("blobs/sha256").join(hex)).expect("blob in layout");
        assert!(&copied == blob, "{digest} differs through {addr}");
    }
}

/// Deterministic bytes, different for each `seed`.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

#[test]
fn three_nodes_serve_one_registry() {
    if !available(&["skopeo"]) {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let nodes = start_nodes(3, &cluster.endpoint, "nodes-main", &postgres);
    let work = tempfile::tempdir().expect("tempdir");
    let client = http();

    // skopeo in through node 0 (9 MiB layers: parts), out through node 2; the tag pushed on
    // node 0 is read on the others at once.
    let image = random_image(2, 9 << 20);
    copy_in(&nodes[0].addr, work.path(), "multi/app", &image);
    for node in &nodes[1..] {
        assert_eq!(
            manifest_digest(&client, &node.url, "multi/app", "v1").as_deref(),
            Some(image.digest.as_str())
        );
    }
    copy_out_identical(&nodes[2].addr, work.path(), "multi/app", &image);

    // A chunked upload whose chunks go to the three nodes in turn; each node reports the
    // offset the previous one reached.
    let data = content((20 << 20) + 4321, 1);
    let session = start_upload(&client, &nodes[0].url, "multi/chunks");
    let mut offset = 0;
    for (turn, chunk) in data.chunks(3 << 20).enumerate() {
        let reached = patch(&client, &nodes[turn % 3].url, &session, offset, chunk);
        offset += chunk.len();
        assert_eq!(reached, offset as u64);
        let other = &nodes[(turn + 1) % 3];
        assert_eq!(upload_offset(&client, &other.url, &session), Some(reached));
    }
    let digest = sha256_digest(&data);
    assert_eq!(finish(&client, &nodes[1].url, &session, &digest), 201);
    assert!(get_blob(&client, &nodes[2].url, "multi/chunks", &digest) == data);

    // 50 concurrent pushes of one tag, from all nodes: one winner, the same on every node.
    let urls: Arc<Vec<String>> = Arc::new(nodes.iter().map(|node| node.url.clone()).collect());
    let pushed = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..10)
        .map(|thread| {
            let (urls, pushed) = (Arc::clone(&urls), Arc::clone(&pushed));
            std::thread::spawn(move || {
                let client = http();
                for round in 0..5 {
                    let node = urls[(thread + round) % 3].as_str();
                    let config = format!("{{\"push\":\"{thread}-{round}\"}}").into_bytes();
                    let layer = b"a layer every push shares".to_vec();
                    push_blob(&client, node, "multi/race", &config);
                    push_blob(&client, node, "multi/race", &layer);
                    let body = manifest(&config, &[&layer]);
                    assert_eq!(
                        put_manifest(&client, node, "multi/race", "latest", &body),
                        201
                    );
                    pushed.lock().expect("pushed").push(sha256_digest(&body));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("pusher");
    }
    let pushed = pushed.lock().expect("pushed").clone();
    assert_eq!(pushed.len(), 50);
    let winner = manifest_digest(&client, &nodes[0].url, "multi/race", "latest").expect("tagged");
    assert!(pushed.contains(&winner));
    for node in nodes.iter() {
        assert_eq!(
            manifest_digest(&client, &node.url, "multi/race", "latest").as_deref(),
            Some(winner.as_str())
        );
    }
    let tags = client
        .get(format!("{}/v2/multi/race/tags/list", nodes[1].url))
        .send()
        .expect("tags")
        .bytes()
        .expect("tags body");
    let tags: serde_json::Value = serde_json::from_slice(&tags).expect("tags json");
    assert_eq!(tags["tags"], serde_json::json!(["latest"]));

    // fsck and scrub on the shared backend, next to the running nodes.
    let (clean, text) = nodes[0].fsck();
    assert!(clean, "{text}");
    let scrub = Command::new(berth_tests::berth_bin())
        .arg("scrub")
        .arg(&nodes[1].config_path)
        .output()
        .expect("berth scrub");
    let report = String::from_utf8_lossy(&scrub.stdout);
    assert!(scrub.status.success(), "{report}");
    assert!(report.contains("multi/app"), "{report}");
}

/// A request body that sends `first` and then waits until its sender goes away.
struct StalledBody {
    first: std::io::Cursor<Vec<u8>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Read for StalledBody {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let sent = self.first.read(buffer)?;
        if sent > 0 {
            return Ok(sent);
        }
        let _ = self.release.recv();
        Err(std::io::Error::other("the test ended the body"))
    }
}

#[test]
fn a_node_killed_mid_push_loses_nothing_acknowledged() {
    if !available(&[]) {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let mut nodes = start_nodes(3, &cluster.endpoint, "nodes-kill", &postgres);
    let client = http();

    // A session with one acknowledged chunk on node 0.
    let first = content(3 << 20, 2);
    let idle = start_upload(&client, &nodes[0].url, "kill/app");
    patch(&client, &nodes[0].url, &idle, 0, &first[..1 << 20]);

    // A PATCH in flight on node 0: 9 MiB sent (one 8 MiB part recorded), then it stalls.
    let second = content(12 << 20, 3);
    let stalled = start_upload(&client, &nodes[0].url, "kill/app");
    let (release, wait) = std::sync::mpsc::channel();
    let body = StalledBody {
        first: std::io::Cursor::new(second[..9 << 20].to_vec()),
        release: wait,
    };
    let in_flight = {
        let url = berth_tests::nodes::on_node(&nodes[0].url, &stalled);
        std::thread::spawn(move || {
            http()
                .patch(url)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::blocking::Body::new(body))
                .send()
        })
    };
    eventually("node 0 recorded the stalled PATCH's first part", || {
        upload_offset(&client, &nodes[1].url, &stalled) == Some(8 << 20)
    });

    // Images pushed to node 0 until it dies; the acknowledged ones are remembered.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let pusher = {
        let acknowledged = Arc::clone(&acknowledged);
        let node = nodes[0].url.clone();
        std::thread::spawn(move || {
            let client = client_with_timeout(Duration::from_secs(30));
            let stored = |url: String, body: Vec<u8>, created: u16| {
                let response = client
                    .request(reqwest::Method::PUT, url)
                    .header("Content-Type", berth_tests::nodes::OCI_MANIFEST)
                    .body(body)
                    .send();
                response.is_ok_and(|response| response.status().as_u16() == created)
            };
            for round in 0u32.. {
                let config = format!("{{\"round\":{round}}}").into_bytes();
                let layer = content(64 << 10, round as u8);
                let blobs_in = [&config, &layer].iter().all(|blob| {
                    let response = client
                        .post(format!(
                            "{node}/v2/kill/app/blobs/uploads/?digest={}",
                            sha256_digest(blob)
                        ))
                        .body(blob.to_vec())
                        .send();
                    response.is_ok_and(|response| response.status().as_u16() == 201)
                });
                let body = manifest(&config, &[&layer]);
                let url = format!("{node}/v2/kill/app/manifests/r{round}");
                if !blobs_in || !stored(url, body.clone(), 201) {
                    return round;
                }
                acknowledged.lock().expect("acknowledged").push((
                    round,
                    sha256_digest(&body),
                    layer,
                    config,
                ));
            }
            unreachable!("u32 rounds")
        })
    };
    eventually("a few pushes were acknowledged", || {
        acknowledged.lock().expect("acknowledged").len() >= 5
    });
    nodes[0].kill();
    pusher.join().expect("pusher");
    // The in-flight PATCH died with its node (its result is a broken connection).
    drop(release);
    let _ = in_flight.join().expect("in-flight PATCH thread");

    // Every acknowledged image is whole on the other nodes.
    let acknowledged = acknowledged.lock().expect("acknowledged").clone();
    assert!(acknowledged.len() >= 5);
    for (round, digest, layer, config) in &acknowledged {
        for node in &nodes[1..] {
            assert_eq!(
                manifest_digest(&client, &node.url, "kill/app", &format!("r{round}")).as_deref(),
                Some(digest.as_str()),
                "r{round} on {}",
                node.url
            );
            assert!(&get_blob(&client, &node.url, "kill/app", &sha256_digest(layer)) == layer);
            assert!(&get_blob(&client, &node.url, "kill/app", &sha256_digest(config)) == config);
        }
    }

    // The dead node's sessions continue elsewhere at once, from what it acknowledged or
    // recorded: the idle one at 1 MiB, the stalled one at its recorded part.
    assert_eq!(upload_offset(&client, &nodes[1].url, &idle), Some(1 << 20));
    patch(&client, &nodes[1].url, &idle, 1 << 20, &first[1 << 20..]);
    assert_eq!(
        finish(&client, &nodes[2].url, &idle, &sha256_digest(&first)),
        201
    );
    assert!(get_blob(&client, &nodes[1].url, "kill/app", &sha256_digest(&first)) == first);

    let resumed = patch(
        &client,
        &nodes[2].url,
        &stalled,
        8 << 20,
        &second[8 << 20..],
    );
    assert_eq!(resumed, second.len() as u64);
    assert_eq!(
        finish(&client, &nodes[1].url, &stalled, &sha256_digest(&second)),
        201
    );
    assert!(get_blob(&client, &nodes[2].url, "kill/app", &sha256_digest(&second)) == second);

    let (clean, text) = nodes[1].fsck();
    assert!(clean, "{text}");
}

#[test]
fn postgres_restarted_requests_fail_cleanly_then_recover() {
    if !available(&[]) {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let mut postgres = Postgres::start();
    let nodes = start_nodes(2, &cluster.endpoint, "nodes-pg", &postgres);
    let client = client_with_timeout(Duration::from_secs(90));
    let config = b"{\"before\":true}".to_vec();
    let layer = content(1 << 20, 4);
    push_blob(&client, &nodes[0].url, "pg/app", &config);
    push_blob(&client, &nodes[0].url, "pg/app", &layer);
    let body = manifest(&config, &[&layer]);
    assert_eq!(
        put_manifest(&client, &nodes[0].url, "pg/app", "v1", &body),
        201
    );

    // Down: a tag read and a push get a server error, not a hang.
    postgres.kill();
    let started = Instant::now();
    let read = client
        .get(format!("{}/v2/pg/app/manifests/v1", nodes[1].url))
        .header("Accept", berth_tests::nodes::OCI_MANIFEST)
        .send()
        .expect("the read is answered");
    assert!(read.status().is_server_error(), "{}", read.status());
    let pushed = put_manifest(&client, &nodes[0].url, "pg/app", "v2", &body);
    assert!((500..600).contains(&pushed), "push while down: {pushed}");
    eprintln!(
        "answered while PostgreSQL was down in {:?}",
        started.elapsed()
    );

    // Back: what was acknowledged is there, and both nodes write again.
    postgres.start_again();
    eventually("node 1 reads the index again", || {
        client
            .get(format!("{}/v2/pg/app/manifests/v1", nodes[1].url))
            .header("Accept", berth_tests::nodes::OCI_MANIFEST)
            .send()
            .is_ok_and(|response| response.status().as_u16() == 200)
    });
    let digest = sha256_digest(&body);
    assert_eq!(
        manifest_digest(&client, &nodes[1].url, "pg/app", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert!(get_blob(&client, &nodes[1].url, "pg/app", &sha256_digest(&layer)) == layer);
    eventually("a push succeeds again", || {
        put_manifest(&client, &nodes[1].url, "pg/app", "v2", &body) == 201
    });
    assert_eq!(
        manifest_digest(&client, &nodes[0].url, "pg/app", "v2").as_deref(),
        Some(digest.as_str())
    );
    // Each node holds its node lock again (other nodes tell live writers from dead by it).
    for node in nodes.iter() {
        eventually("the node lock is taken again", || {
            node.log().contains("node lock taken again")
        });
    }
}

/// `zot_http_requests_total` summed over its labels (scrapes are not counted).
fn requests_served(client: &reqwest::blocking::Client, node: &Berth) -> f64 {
    let text = client
        .get(format!("{}/metrics", node.url))
        .send()
        .expect("scrape")
        .text()
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("zot_http_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn haproxy_spreads_a_push_and_a_pull_over_three_nodes() {
    if !available(&["skopeo", "haproxy"]) {
        return;
    }
    let cluster = seaweedfs_shared::shared().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let nodes = start_nodes(3, &cluster.endpoint, "nodes-haproxy", &postgres);
    let work = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| format!("  server node{i} {}\n", node.addr))
        .collect();
    let config = work.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 120s\n  \
             timeout server 120s\n  option http-server-close\n\
             frontend registry\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n{servers}"
        ),
    )
    .expect("write haproxy.cfg");
    let mut haproxy = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let address = format!("127.0.0.1:{port}");
    eventually("haproxy listens", || {
        std::net::TcpStream::connect(&address).is_ok()
    });

    let image = random_image(3, 6 << 20);
    copy_in(&address, work.path(), "lb/app", &image);
    copy_out_identical(&address, work.path(), "lb/app", &image);
    let client = http();
    for node in &nodes {
        assert!(
            requests_served(&client, node) > 0.0,
            "{} served nothing behind haproxy",
            node.url
        );
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

#[test]
fn a_volume_server_down_pulls_keep_working() {
    if !available(&["skopeo"]) {
        return;
    }
    let cluster = seaweedfs_shared::exclusive().expect("SeaweedFS is available");
    let postgres = Postgres::start();
    let nodes = start_nodes(2, &cluster.endpoint, "nodes-volume", &postgres);
    let work = tempfile::tempdir().expect("tempdir");
    let image = random_image(2, 1 << 20);
    copy_in(&nodes[0].addr, work.path(), "vol/app", &image);
    cluster.with_cluster(|cluster| cluster.kill_volume_server(0));
    copy_out_identical(&nodes[1].addr, work.path(), "vol/app", &image);
    copy_out_identical(&nodes[0].addr, work.path(), "vol/app", &image);
    cluster.with_cluster(|cluster| cluster.restart_volume_server(0));
}
