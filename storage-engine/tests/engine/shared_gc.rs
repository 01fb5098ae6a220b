//! GC, usage and pull records across two nodes on one PostgreSQL index (SHARED.md D5 and
//! "Still per node"): one pass at a time in the registry (the GC lease), a lease nobody
//! renews expires and its pass stops, quotas and usage count the other node's pushes, pull
//! counts from both nodes add up. On RocksDB these tests say SKIPPED.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_storage::oci::{Digest, RepoName};
use berth_storage::{Engine, GcOptions, GcRun, RepoRules, Retention, TagInfo};

use crate::block_on;
use crate::repo;
use crate::shared::{push_image, two_nodes};

/// A retention policy that keeps everything and holds its pass inside repository `at` until
/// released: a pass in the middle of a step, holding the lease.
struct Gate {
    at: String,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// The gate, the receiver told when a pass is inside it, and the sender that lets it go.
fn gate(at: &RepoName) -> (Arc<Gate>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered, inside) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let gate = Gate {
        at: at.as_str().to_owned(),
        entered: Mutex::new(entered),
        release: Mutex::new(released),
    };
    (Arc::new(gate), inside, release)
}

impl Retention for Gate {
    fn rules(&self, repo: &str) -> RepoRules {
        if repo == self.at {
            self.entered
                .lock()
                .expect("gate")
                .send(())
                .expect("test waits");
            self.release
                .lock()
                .expect("gate")
                .recv()
                .expect("test releases");
        }
        RepoRules::default()
    }

    fn keep_tags(&self, _: &str, tags: &[TagInfo], _: u64) -> Vec<bool> {
        vec![true; tags.len()]
    }

    fn filters_any(&self) -> bool {
        false
    }
}

/// A pass on its own thread with `gate` as its policy; joins to its report.
fn gated_pass(
    engine: &Engine,
    gate: Arc<Gate>,
    lease: Duration,
) -> std::thread::JoinHandle<berth_storage::GcReport> {
    let engine = engine.clone();
    std::thread::spawn(move || {
        let mut options = GcOptions::new(Duration::ZERO);
        options.retention = Some(gate);
        options.lease = lease;
        block_on(engine.gc(&options)).expect("gated pass")
    })
}

fn pass(engine: &Engine) -> berth_storage::GcReport {
    block_on(engine.gc(&GcOptions::new(Duration::ZERO))).expect("pass")
}

#[test]
fn one_pass_at_a_time_in_the_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    let r = repo("lease/one");
    block_on(push_image(&a, &r, "v1", b"lease layer")).expect("push");
    let (gate, inside, release) = gate(&r);
    let running = gated_pass(&a, gate, GcOptions::new(Duration::ZERO).lease);
    inside.recv().expect("a's pass reaches the repository");
    // A's pass holds the lease: b's does nothing at all.
    let skipped = pass(&b);
    assert!(
        matches!(skipped.run, GcRun::Skipped { .. }),
        "{:?}",
        skipped.run
    );
    assert_eq!(skipped.repos_visited, 0);
    assert!(skipped.actions.is_empty() && skipped.errors.is_empty());
    release.send(()).expect("release a");
    let done = running.join().expect("a's pass");
    assert_eq!(done.run, GcRun::Ran);
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    // A gave the lease up at the end: b's next pass runs (its first: full).
    let ran = pass(&b);
    assert_eq!(ran.run, GcRun::Ran);
    assert!(ran.full && ran.repos_visited >= 1);
    let mut dry = GcOptions::new(Duration::ZERO);
    dry.dry_run = true;
    assert_eq!(block_on(b.gc(&dry)).expect("dry run").run, GcRun::Ran);
    assert_eq!(pass(&a).run, GcRun::Ran);
    block_on(crate::assert_clean(&a));
}

#[test]
fn a_lease_not_renewed_expires_and_its_pass_stops_at_the_next_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    let (first, second, on_b) = (repo("lease/1"), repo("lease/2"), repo("lease/3"));
    block_on(push_image(&a, &first, "v1", b"layer one")).expect("push one");
    block_on(push_image(&a, &second, "v1", b"layer two")).expect("push two");
    // B's first (full) pass now, so that its next one visits only what b changes.
    assert_eq!(pass(&b).run, GcRun::Ran);

    // A's pass stalls inside its first repository with a lease of 1 s it cannot renew.
    let (gate_a, inside_a, release_a) = gate(&first);
    let stalled = gated_pass(&a, gate_a, Duration::from_secs(1));
    inside_a
        .recv()
        .expect("a's pass reaches the first repository");
    assert!(matches!(pass(&b).run, GcRun::Skipped { .. }));

    // Once it expired, b takes the lease (a still runs: only the expiry frees it) and
    // holds it in a repository of its own.
    block_on(push_image(&b, &on_b, "v1", b"layer three")).expect("push on b");
    std::thread::sleep(Duration::from_millis(1200));
    let (gate_b, inside_b, release_b) = gate(&on_b);
    let taking_over = gated_pass(&b, gate_b, GcOptions::new(Duration::ZERO).lease);
    inside_b
        .recv()
        .expect("b's pass runs and reaches its repository");

    // A's pass goes on, finds the lease taken before its next repository and stops there.
    release_a.send(()).expect("release a");
    let stopped = stalled.join().expect("a's pass");
    assert!(
        matches!(stopped.run, GcRun::Stopped { .. }),
        "{:?}",
        stopped.run
    );
    assert_eq!(stopped.repos_visited, 1);
    assert!(stopped.errors.is_empty(), "{:?}", stopped.errors);

    release_b.send(()).expect("release b");
    assert_eq!(taking_over.join().expect("b's pass").run, GcRun::Ran);
    // The lease is free again: a's next pass runs, full (its first did not finish).
    let after = pass(&a);
    assert_eq!(after.run, GcRun::Ran);
    assert!(after.full && after.repos_visited >= 3, "{after:?}");
    block_on(crate::assert_clean(&a));
}

#[test]
fn usage_and_quotas_on_one_node_count_the_other_nodes_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    let r = repo("usage/app");
    let everything = |_: &RepoName| true;
    block_on(async {
        // B has counted before (so it has figures to keep up to date).
        assert_eq!(b.namespace_usage(&everything).await.expect("b"), (0, 0));
        push_image(&a, &r, "v1", b"usage layer")
            .await
            .expect("push on a");
        let on_a = a.namespace_usage(&everything).await.expect("a");
        assert_eq!(on_a.1, 1);
        assert!(on_a.0 > 0);
        assert_eq!(b.namespace_usage(&everything).await.expect("b"), on_a);
        // A blob linked on b without a manifest counts on a as well.
        crate::push_blob(&b, &r, b"a loose blob").await;
        let on_b = b.namespace_usage(&everything).await.expect("b");
        assert_eq!(on_b.0, on_a.0 + 12);
        assert_eq!(a.namespace_usage(&everything).await.expect("a"), on_b);
        // Store totals agree too (b counts them for the first time here).
        let (snapshot_a, snapshot_b) = (a.usage().await.expect("a"), b.usage().await.expect("b"));
        assert_eq!(snapshot_a, snapshot_b);
        assert_eq!(snapshot_b.blobs, 3);
        // The repository emptied and collected on a is gone from b's figures.
        a.delete_manifest(&r, &berth_storage::oci::Reference::Tag(crate::tag("v1")))
            .await
            .expect("delete");
        for digest in [crate::sha256(b"a loose blob")] {
            a.delete_blob(&r, &digest).await.expect("unlink");
        }
    });
    let report = pass(&a);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.performed(berth_storage::GcKind::Repository),
        1,
        "{report:?}"
    );
    block_on(async {
        assert_eq!(b.namespace_usage(&everything).await.expect("b"), (0, 0));
        assert!(b.usage().await.expect("b").repos.is_empty());
    });
}

#[test]
fn pull_counts_from_two_nodes_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((a, b)) = two_nodes(dir.path()) else {
        return;
    };
    let r = repo("pulls/app");
    let digest: Digest = block_on(push_image(&a, &r, "v1", b"pulled layer"))
        .expect("push")
        .parse()
        .expect("digest");
    for round in 0..20 {
        for _ in 0..3 {
            a.record_pull(&r, &digest);
        }
        for _ in 0..2 {
            b.record_pull(&r, &digest);
        }
        // Both nodes flush at once, each on its own thread.
        let flushes = [a.clone(), b.clone()].map(|engine| {
            std::thread::spawn(move || block_on(engine.flush_pulls()).expect("flush"))
        });
        for flush in flushes {
            flush.join().expect("flush thread");
        }
        let stats = block_on(b.pull_stats(&r, &digest)).expect("stats");
        assert_eq!(stats.count, 5 * (round + 1), "round {round}");
    }
}
