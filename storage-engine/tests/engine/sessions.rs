//! Login sessions (the web UI's): durable across a reopen, invisible once expired or ended,
//! found only by their exact token, refused by a read-only engine, and created on a store
//! written before their family existed.
use std::time::Duration;

use berth_storage::{Engine, EngineOptions, IoBackendKind};

use crate::{assert_clean, block_on, open};

const HOUR: Duration = Duration::from_secs(3600);

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs()
}

fn is_lowercase_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[test]
fn a_session_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = now_unix();
    let (token, created) = block_on(async {
        let engine = open(dir.path(), IoBackendKind::Threads);
        engine
            .create_session("alice", HOUR)
            .await
            .expect("create session")
    });
    assert!(is_lowercase_hex(&token), "{token}");
    assert!(is_lowercase_hex(&created.csrf), "{:?}", created.csrf);
    assert_ne!(token, created.csrf);
    assert_eq!(created.user, "alice");
    assert!((before + 3600..=now_unix() + 3600).contains(&created.expires_unix));

    let engine = open(dir.path(), IoBackendKind::Threads);
    assert_eq!(
        block_on(engine.session(&token)).expect("lookup"),
        Some(created)
    );
    block_on(assert_clean(&engine));
    let report = block_on(engine.fsck()).expect("fsck");
    assert!(
        !report.info.iter().any(|line| line.0.contains("login")),
        "{:?}",
        report.info
    );
}

#[test]
fn tokens_are_distinct_and_found_only_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (first, first_session) =
        block_on(engine.create_session("alice", HOUR)).expect("create session");
    let (second, second_session) =
        block_on(engine.create_session("alice", HOUR)).expect("create session");
    assert_ne!(first, second);
    assert_ne!(first_session.csrf, second_session.csrf);
    assert_eq!(
        block_on(engine.session(&second)).expect("lookup"),
        Some(second_session)
    );

    let last = first.chars().last().expect("a token has characters");
    let flipped = format!("{}{}", &first[..63], if last == '0' { '1' } else { '0' });
    for wrong in [
        flipped,
        first.to_uppercase(),
        first[..63].to_owned(),
        format!("{first}0"),
        format!(" {first}"),
        first_session.csrf.clone(),
        String::new(),
        "not a token".to_owned(),
    ] {
        assert_eq!(
            block_on(engine.session(&wrong)).expect("lookup"),
            None,
            "{wrong:?}"
        );
        assert!(
            !block_on(engine.end_session(&wrong)).expect("end"),
            "{wrong:?}"
        );
    }
    assert_eq!(
        block_on(engine.session(&first)).expect("lookup"),
        Some(first_session),
        "wrong tokens ended nothing"
    );
}

#[test]
fn an_ended_session_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (token, _) = block_on(engine.create_session("bob", HOUR)).expect("create session");
    let (kept, kept_session) =
        block_on(engine.create_session("bob", HOUR)).expect("create session");
    assert!(block_on(engine.end_session(&token)).expect("end"));
    assert_eq!(block_on(engine.session(&token)).expect("lookup"), None);
    assert!(!block_on(engine.end_session(&token)).expect("end again"));
    assert_eq!(
        block_on(engine.session(&kept)).expect("lookup"),
        Some(kept_session.clone())
    );
    drop(engine);
    let engine = open(dir.path(), IoBackendKind::Threads);
    assert_eq!(
        block_on(engine.session(&token)).expect("lookup"),
        None,
        "durable"
    );
    assert_eq!(
        block_on(engine.session(&kept)).expect("lookup"),
        Some(kept_session)
    );
}

#[test]
fn expired_sessions_are_not_returned_and_are_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let mut expired = Vec::new();
    for user in ["carol", "dave", "erin"] {
        let (token, session) =
            block_on(engine.create_session(user, Duration::ZERO)).expect("create session");
        assert!(session.expires_unix <= now_unix());
        expired.push(token);
    }
    let (live, live_session) =
        block_on(engine.create_session("carol", HOUR)).expect("create session");
    for token in &expired {
        assert_eq!(block_on(engine.session(token)).expect("lookup"), None);
    }
    let report = block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(
        report
            .info
            .iter()
            .any(|line| line.0 == "3 expired login sessions are not pruned yet"),
        "{:?}",
        report.info
    );

    assert_eq!(block_on(engine.prune_sessions()).expect("prune"), 3);
    assert_eq!(block_on(engine.prune_sessions()).expect("prune again"), 0);
    for token in &expired {
        assert!(!block_on(engine.end_session(token)).expect("end"), "pruned");
    }
    assert_eq!(
        block_on(engine.session(&live)).expect("lookup"),
        Some(live_session)
    );
    let report = block_on(engine.fsck()).expect("fsck");
    assert!(
        !report.info.iter().any(|line| line.0.contains("login")),
        "{:?}",
        report.info
    );
}

#[test]
fn a_read_only_engine_reads_sessions_and_writes_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (token, session) = block_on(engine.create_session("frank", HOUR)).expect("create");
    let (expired, _) = block_on(engine.create_session("frank", Duration::ZERO)).expect("create");
    let reader = Engine::open_read_only(EngineOptions {
        root: dir.path().to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir.path()),
        s3: crate::s3_blobs(dir.path()),
    })
    .expect("read-only open");
    assert_eq!(
        block_on(reader.session(&token)).expect("lookup"),
        Some(session.clone())
    );
    assert!(block_on(reader.create_session("frank", HOUR)).is_err());
    assert!(block_on(reader.end_session(&token)).is_err());
    assert!(block_on(reader.prune_sessions()).is_err());
    drop(reader);
    assert_eq!(
        block_on(engine.session(&token)).expect("lookup"),
        Some(session)
    );
    assert!(
        block_on(engine.end_session(&expired)).expect("end"),
        "not pruned"
    );
}

/// Turns the index back into what a berth before login sessions left: no `sessions` family.
fn drop_sessions_family(root: &std::path::Path) {
    let path = root.join("index");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("families");
    let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &names).expect("open");
    db.drop_cf("sessions").expect("drop the sessions family");
}

#[test]
fn a_store_from_before_sessions_gets_the_family_at_open() {
    if crate::on_postgres() {
        eprintln!("SKIPPED: upgrades a RocksDB index written by an older berth");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), IoBackendKind::Threads));
    drop_sessions_family(dir.path());
    let options = EngineOptions {
        root: dir.path().to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir.path()),
        s3: crate::s3_blobs(dir.path()),
    };
    let refused = Engine::open_read_only(options.clone())
        .expect_err("a read-only open cannot create the family")
        .to_string();
    assert!(
        refused.contains("has no sessions family") && refused.contains("start the daemon"),
        "{refused}"
    );
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (token, session) = block_on(engine.create_session("grace", HOUR)).expect("create");
    assert_eq!(
        block_on(engine.session(&token)).expect("lookup"),
        Some(session)
    );
    block_on(assert_clean(&engine));
    drop(engine);
    let reader = Engine::open_read_only(options).expect("read-only open after the daemon's");
    assert!(block_on(reader.fsck()).expect("fsck").is_clean());
}
