//! Single sign-on logins in flight: kept across a reopen, taken exactly once (also when two
//! callbacks race), never returned once expired, pruned with the sessions, refused by a
//! read-only engine.
use std::time::Duration;

use berth_storage::{Engine, EngineOptions, IoBackendKind};

use crate::{assert_clean, open};

const TEN_MINUTES: Duration = Duration::from_secs(600);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn a_login_in_flight_survives_a_reopen_and_is_taken_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    {
        let engine = open(dir.path(), IoBackendKind::Threads);
        runtime
            .block_on(engine.put_sso_login("state-1", b"payload-1", TEN_MINUTES))
            .expect("put");
    }
    let engine = open(dir.path(), IoBackendKind::Threads);
    runtime.block_on(assert_clean(&engine));
    assert_eq!(
        runtime
            .block_on(engine.take_sso_login("state-2"))
            .expect("take"),
        None,
        "another state takes nothing"
    );
    assert_eq!(
        runtime
            .block_on(engine.take_sso_login("state-1"))
            .expect("take"),
        Some(b"payload-1".to_vec())
    );
    assert_eq!(
        runtime
            .block_on(engine.take_sso_login("state-1"))
            .expect("take again"),
        None,
        "a login is completed once"
    );
}

#[test]
fn two_racing_takes_of_one_state_complete_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    for round in 0..20 {
        let state = format!("race-{round}");
        runtime()
            .block_on(engine.put_sso_login(&state, b"p", TEN_MINUTES))
            .expect("put");
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let takes: Vec<_> = (0..4)
            .map(|_| {
                let (engine, state, start) = (engine.clone(), state.clone(), start.clone());
                std::thread::spawn(move || {
                    let runtime = runtime();
                    start.wait();
                    runtime
                        .block_on(engine.take_sso_login(&state))
                        .expect("take")
                })
            })
            .collect();
        let won = takes
            .into_iter()
            .map(|take| take.join().expect("join"))
            .filter(Option::is_some)
            .count();
        assert_eq!(won, 1, "round {round}: {won} callbacks completed one login");
    }
}

#[test]
fn an_expired_login_is_never_returned_and_is_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let engine = open(dir.path(), IoBackendKind::Threads);
    runtime
        .block_on(engine.put_sso_login("old", b"p", Duration::ZERO))
        .expect("put");
    runtime
        .block_on(engine.put_sso_login("stale", b"p", Duration::ZERO))
        .expect("put");
    runtime
        .block_on(engine.put_sso_login("live", b"q", TEN_MINUTES))
        .expect("put");
    assert_eq!(
        runtime
            .block_on(engine.take_sso_login("old"))
            .expect("take"),
        None
    );
    let report = runtime.block_on(engine.fsck()).expect("fsck");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report
            .info
            .iter()
            .any(|line| line.0 == "1 expired single sign-on logins are not pruned yet"),
        "{:?}",
        report.info
    );
    assert_eq!(runtime.block_on(engine.prune_sessions()).expect("prune"), 1);
    assert_eq!(
        runtime
            .block_on(engine.take_sso_login("live"))
            .expect("take"),
        Some(b"q".to_vec())
    );
    assert!(runtime
        .block_on(engine.put_sso_login("big", &vec![0; 4097], TEN_MINUTES))
        .is_err());
}

#[test]
fn a_read_only_engine_takes_no_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let engine = open(dir.path(), IoBackendKind::Threads);
    runtime
        .block_on(engine.put_sso_login("s", b"p", TEN_MINUTES))
        .expect("put");
    let reader = Engine::open_read_only(EngineOptions {
        root: dir.path().to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir.path()),
        s3: crate::s3_blobs(dir.path()),
    })
    .expect("read-only open");
    assert!(runtime.block_on(reader.take_sso_login("s")).is_err());
    assert!(runtime
        .block_on(reader.put_sso_login("t", b"p", TEN_MINUTES))
        .is_err());
    drop(reader);
    assert_eq!(
        runtime.block_on(engine.take_sso_login("s")).expect("take"),
        Some(b"p".to_vec())
    );
}
