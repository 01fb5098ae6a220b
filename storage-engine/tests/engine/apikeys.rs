//! API keys: durable across a reopen, found only by their exact key, invisible once expired
//! or revoked (all three records gone), listed per user newest first, revoked only by their
//! owner, refused by a read-only engine.

use berth_storage::apikeys::NewApiKey;
use berth_storage::{Engine, EngineOptions, IoBackendKind};

use crate::{assert_clean, block_on, open};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_millis() as u64
}

fn new_key(user: &str, label: &str, expires_ms: Option<u64>) -> NewApiKey {
    NewApiKey {
        user: user.into(),
        label: label.into(),
        scopes: vec!["team/**".into()],
        expires_ms,
        creator_ua: "test".into(),
    }
}

#[test]
fn a_key_survives_a_reopen_and_is_found_only_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, created) = block_on(async {
        let engine = open(dir.path(), IoBackendKind::Threads);
        engine
            .create_api_key(new_key("alice", "ci", None))
            .await
            .expect("create")
    });
    let hex = key.strip_prefix("zak_").expect("zot's prefix");
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
    assert_eq!(created.user, "alice");
    assert_eq!(created.scopes, vec!["team/**".to_owned()]);
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (_, found) = block_on(engine.api_key(&key))
        .expect("lookup")
        .expect("found");
    assert_eq!(found, created);
    let last = key.chars().last().expect("characters");
    let flipped = format!(
        "{}{}",
        &key[..key.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for wrong in [
        flipped,
        key.to_uppercase(),
        key[..key.len() - 1].to_owned(),
        format!("{key}0"),
        format!(" {key}"),
        hex.to_owned(),
        created.uuid.clone(),
        String::new(),
    ] {
        assert!(
            block_on(engine.api_key(&wrong)).expect("lookup").is_none(),
            "{wrong:?}"
        );
    }
    block_on(assert_clean(&engine));
}

#[test]
fn revoking_removes_every_record_and_only_the_owner_may() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (key, created) =
        block_on(engine.create_api_key(new_key("bob", "one", None))).expect("create");
    // Creation times are milliseconds: let the clock move so "newest" has one answer.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (kept, kept_details) =
        block_on(engine.create_api_key(new_key("bob", "two", None))).expect("create");
    let (hash, _) = block_on(engine.api_key(&key))
        .expect("lookup")
        .expect("found");
    block_on(engine.record_api_key_use(hash, 1234)).expect("use");
    let listed = block_on(engine.api_keys_of("bob")).expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].key, kept_details, "newest first");
    assert_eq!(listed[1].last_used_ms, Some(1234));
    assert!(
        !block_on(engine.revoke_api_key("carol", &created.uuid)).expect("revoke"),
        "another user's uuid is not theirs"
    );
    assert!(block_on(engine.api_key(&key)).expect("lookup").is_some());
    assert!(block_on(engine.revoke_api_key("bob", &created.uuid)).expect("revoke"));
    assert!(block_on(engine.api_key(&key)).expect("lookup").is_none());
    assert!(!block_on(engine.revoke_api_key("bob", &created.uuid)).expect("again"));
    // A late last-use write finds no key and writes nothing.
    block_on(engine.record_api_key_use(hash, 5678)).expect("late use");
    let listed = block_on(engine.api_keys_of("bob")).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, kept_details);
    assert!(block_on(engine.api_key(&kept)).expect("lookup").is_some());
    let report = block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(
        !report.info.iter().any(|line| line.0.contains("API key")),
        "nothing stray: {:?}",
        report.info
    );
}

#[test]
fn an_expired_key_is_listed_but_never_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (key, _) = block_on(engine.create_api_key(new_key("dave", "old", Some(now_ms() - 1))))
        .expect("create");
    assert!(block_on(engine.api_key(&key)).expect("lookup").is_none());
    let listed = block_on(engine.api_keys_of("dave")).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].key.expired(now_ms()));
    let report = block_on(engine.fsck()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.info.iter().any(|line| line.0.contains("expired")));
}

#[test]
fn a_read_only_engine_reads_keys_and_writes_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (key, created) =
        block_on(engine.create_api_key(new_key("erin", "x", None))).expect("create");
    let reader = Engine::open_read_only(EngineOptions {
        root: dir.path().to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir.path()),
        s3: crate::s3_blobs(dir.path()),
    })
    .expect("read-only open");
    let (hash, found) = block_on(reader.api_key(&key))
        .expect("lookup")
        .expect("found");
    assert_eq!(found, created);
    assert!(block_on(reader.create_api_key(new_key("erin", "y", None))).is_err());
    assert!(block_on(reader.revoke_api_key("erin", &created.uuid)).is_err());
    assert!(block_on(reader.record_api_key_use(hash, 1)).is_err());
    drop(reader);
    assert!(block_on(engine.api_key(&key)).expect("lookup").is_some());
}

#[test]
fn a_store_from_before_api_keys_gets_the_family_at_open() {
    if crate::on_postgres() {
        eprintln!("SKIPPED: upgrades a RocksDB index written by an older berth");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), IoBackendKind::Threads));
    {
        let path = dir.path().join("index");
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("families");
        let mut db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &names).expect("open");
        db.drop_cf("api_keys").expect("drop the api_keys family");
    }
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
    assert!(refused.contains("has no api_keys family"), "{refused}");
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (key, _) = block_on(engine.create_api_key(new_key("gina", "g", None))).expect("create");
    assert!(block_on(engine.api_key(&key)).expect("lookup").is_some());
    block_on(assert_clean(&engine));
}
