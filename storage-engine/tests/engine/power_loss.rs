//! F8 (reliability plan): the power-loss model. Stronger than SIGKILL: a power cut loses the
//! page cache, so only what was fsynced survives: a file's bytes as of its last fsync, a
//! directory's entries (creates, renames, removes) as of that directory's last fsync. A
//! missing fsync of a file or of a directory shows up here and in no other test.
//!
//! How: the engine runs with a `FaultInjector` that journals every mutation and fsync of
//! berth's own files (`IoEvent`, see io.rs for why the hook lives there). `Model` starts
//! from the store as `Engine::open` left it (open fsyncs the directories it creates) and
//! replays the journal, keeping per file its current and last-fsynced bytes and per
//! directory its current and last-fsynced entries. The model is strict POSIX: an fsync of a
//! file does not make its name durable, and a file never fsynced comes back empty. At each
//! crash point the durable half is materialised into a fresh directory, `index/` is copied
//! as is, an `Engine` is opened on the copy and the F2-F4 invariants are asserted: every
//! blob, manifest and tag whose call returned Ok is present and reads back byte-identical
//! (a blob file hashes to its digest), every acknowledged delete stays done, a persisted
//! upload session resumes between its persisted offset and the bytes sent, and fsck is clean
//! (orphan files are info).
//!
//! RocksDB is outside the model: with `commit` on every batch is written with a synced WAL,
//! and RocksDB's own durability is RocksDB's to test. Copying `index/` as is (everything
//! written so far) is therefore exact for berth's batches, and every index write is the last
//! step of its operation. Crash points: after every operation of the scripted workload
//! (index as after it), and inside every operation after each journaled event (index as
//! before it). Sessions are checked only at the former: a commit consumes its session midway.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_storage::oci::{Algorithm, Digest, Reference, RepoName, Tag, UploadId};
use berth_storage::{Engine, EngineOptions, FaultInjector, IoBackendKind, IoEvent, StorageError};
use bytes::Bytes;
use tempfile::TempDir;

use crate::{image_manifest, repo, tag};

#[derive(Clone, Copy, Debug)]
enum Entry {
    File(usize),
    Directory,
}

#[derive(Default)]
struct Directory {
    entries: BTreeMap<OsString, Entry>,
    /// The entries as of the directory's last fsync.
    durable: BTreeMap<OsString, Entry>,
}

/// A file (an inode: renames move its name, not its bytes).
struct File {
    bytes: Vec<u8>,
    /// The bytes as of the file's last fsync.
    durable: Vec<u8>,
}

/// berth's files (`blobs/`, `uploads/`) as the page cache and as the disk hold them.
struct Model {
    root: PathBuf,
    files: Vec<File>,
    /// Keyed by path relative to the root; the root itself is "".
    directories: HashMap<PathBuf, Directory>,
}

fn split(path: &Path) -> (&Path, OsString) {
    let parent = path.parent().expect("a journaled path has a parent");
    let name = path.file_name().expect("a journaled path has a name");
    (parent, name.to_os_string())
}

impl Model {
    /// The store as it is now, all of it durable: `Engine::open` fsyncs what it creates.
    fn scan(root: &Path) -> Model {
        let mut model = Model {
            root: root.to_path_buf(),
            files: Vec::new(),
            directories: HashMap::new(),
        };
        model
            .directories
            .insert(PathBuf::new(), Directory::default());
        for top in ["blobs", "uploads"] {
            model.scan_directory(Path::new(top));
        }
        for directory in model.directories.values_mut() {
            directory.durable = directory.entries.clone();
        }
        model
    }

    fn scan_directory(&mut self, relative: &Path) {
        self.link(relative, Entry::Directory);
        self.directories
            .insert(relative.to_path_buf(), Directory::default());
        for entry in std::fs::read_dir(self.root.join(relative)).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = relative.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                self.scan_directory(&path);
            } else {
                let bytes = std::fs::read(entry.path()).expect("read file");
                self.files.push(File {
                    bytes: bytes.clone(),
                    durable: bytes,
                });
                self.link(&path, Entry::File(self.files.len() - 1));
            }
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .unwrap_or_else(|_| panic!("model: {} is outside the store", path.display()))
            .to_path_buf()
    }

    fn directory(&mut self, relative: &Path) -> &mut Directory {
        self.directories
            .get_mut(relative)
            .unwrap_or_else(|| panic!("model: no directory {}", relative.display()))
    }

    fn link(&mut self, relative: &Path, entry: Entry) {
        let (parent, name) = split(relative);
        self.directory(parent).entries.insert(name, entry);
    }

    fn unlink(&mut self, relative: &Path) -> Entry {
        let (parent, name) = split(relative);
        self.directory(parent)
            .entries
            .remove(&name)
            .unwrap_or_else(|| panic!("model: no entry {}", relative.display()))
    }

    fn file(&mut self, path: &Path) -> &mut File {
        let relative = self.relative(path);
        let (parent, name) = split(&relative);
        let id = match self.directory(parent).entries.get(&name) {
            Some(Entry::File(id)) => *id,
            other => panic!("model: {} is {other:?}, not a file", relative.display()),
        };
        &mut self.files[id]
    }

    fn apply(&mut self, event: &IoEvent) {
        match event {
            IoEvent::CreateFile(path) => {
                self.files.push(File {
                    bytes: Vec::new(),
                    durable: Vec::new(),
                });
                let id = self.files.len() - 1;
                self.link(&self.relative(path), Entry::File(id));
            }
            IoEvent::Write {
                path,
                offset,
                bytes,
            } => {
                let file = self.file(path);
                let start = *offset as usize;
                let end = start + bytes.len();
                if file.bytes.len() < end {
                    file.bytes.resize(end, 0);
                }
                file.bytes[start..end].copy_from_slice(bytes);
            }
            IoEvent::Truncate { path, length } => {
                self.file(path).bytes.resize(*length as usize, 0);
            }
            IoEvent::SyncFile(path) => {
                let file = self.file(path);
                file.durable = file.bytes.clone();
            }
            IoEvent::Rename { from, to } => {
                let entry = self.unlink(&self.relative(from));
                self.link(&self.relative(to), entry);
            }
            IoEvent::RemoveFile(path) => {
                self.unlink(&self.relative(path));
            }
            IoEvent::CreateDir(path) => {
                let relative = self.relative(path);
                self.link(&relative, Entry::Directory);
                self.directories.insert(relative, Directory::default());
            }
            IoEvent::SyncDir(path) => {
                let directory = self.directory(&self.relative(path));
                directory.durable = directory.entries.clone();
            }
        }
    }

    /// Writes what a power cut would leave of `blobs/` and `uploads/` under `to`.
    fn materialise(&self, to: &Path) {
        self.materialise_directory(Path::new(""), to);
    }

    fn materialise_directory(&self, relative: &Path, to: &Path) {
        for (name, entry) in &self.directories[relative].durable {
            let path = relative.join(name);
            match entry {
                Entry::Directory => {
                    std::fs::create_dir(to.join(&path)).expect("mkdir");
                    self.materialise_directory(&path, to);
                }
                Entry::File(id) => {
                    std::fs::write(to.join(&path), &self.files[*id].durable).expect("write")
                }
            }
        }
    }
}

fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_directory(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// What the engine acknowledged (calls that returned Ok).
#[derive(Clone, Default)]
struct Acked {
    blobs: BTreeMap<(RepoName, Digest), Vec<u8>>,
    unlinked_blobs: BTreeSet<(RepoName, Digest)>,
    manifests: BTreeMap<(RepoName, Digest), Bytes>,
    deleted_manifests: BTreeSet<(RepoName, Digest)>,
    /// Every repository that ever had a tag, with its tags now.
    tags: BTreeMap<RepoName, BTreeMap<Tag, Digest>>,
    /// Open sessions: repository, persisted offset, bytes sent, persisted at least once (a
    /// session that never was may be forgotten by a power loss: its POST fsyncs nothing).
    sessions: BTreeMap<String, (RepoName, UploadId, u64, u64, bool)>,
}

struct Harness {
    kind: IoBackendKind,
    dir: TempDir,
    engine: Engine,
    faults: Arc<FaultInjector>,
    model: Model,
    acked: Acked,
    /// `acked` and a copy of `index/` from before the current operation.
    before: Option<(Acked, TempDir)>,
    crash_points: usize,
}

impl Harness {
    fn new(kind: IoBackendKind) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::new();
        let options = EngineOptions {
            root: dir.path().to_path_buf(),
            commit: true,
            io: kind,
            postgres: crate::postgres_index(dir.path()),
            s3: crate::s3_blobs(dir.path()),
        };
        let engine = Engine::open_with_faults(options, Arc::clone(&faults)).expect("engine opens");
        faults.record_io();
        let model = Model::scan(dir.path());
        Harness {
            kind,
            dir,
            engine,
            faults,
            model,
            acked: Acked::default(),
            before: None,
            crash_points: 0,
        }
    }

    /// Call before each engine operation.
    fn begin(&mut self) {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_directory(&self.dir.path().join("index"), &copy.path().join("index"));
        self.before = Some((self.acked.clone(), copy));
    }

    /// Call after each engine operation, once `acked` says what it acknowledged: a power
    /// cut after each of its file events (index as before it), then one after it.
    async fn crash(&mut self, operation: &str) {
        let (acked_before, index_before) = self.before.take().expect("begin before crash");
        let events = self.faults.take_io_journal();
        for (step, event) in events.iter().enumerate() {
            self.model.apply(event);
            let label = format!("power cut in `{operation}` after {event:?} (event {step})");
            self.check(index_before.path(), &acked_before, false, &label)
                .await;
        }
        self.crash_points += events.len() + 1;
        let label = format!("power cut after `{operation}`");
        self.check(self.dir.path(), &self.acked, true, &label).await;
    }

    /// Materialises the power-cut state with `index/` from `index_root` and checks it.
    async fn check(&self, index_root: &Path, acked: &Acked, sessions: bool, label: &str) {
        let crashed = tempfile::tempdir().expect("tempdir");
        self.model.materialise(crashed.path());
        copy_directory(&index_root.join("index"), &crashed.path().join("index"));
        let engine = Engine::open(EngineOptions {
            root: crashed.path().to_path_buf(),
            commit: true,
            io: self.kind,
            postgres: crate::postgres_index(crashed.path()),
            s3: crate::s3_blobs(crashed.path()),
        })
        .unwrap_or_else(|error| panic!("{label}: open fails: {error}"));
        for ((name, digest), bytes) in &acked.blobs {
            let size = engine.stat_blob(name, digest).await.expect("stat");
            assert_eq!(
                size,
                Some(bytes.len() as u64),
                "{label}: blob {digest} in {name}"
            );
            let path = engine.blob_path(digest);
            let stored = std::fs::read(&path).unwrap_or_else(|error| {
                panic!(
                    "{label}: blob {digest} in {name}: {}: {error}",
                    path.display()
                )
            });
            assert_eq!(
                Digest::of(digest.algorithm(), &stored),
                *digest,
                "{label}: blob file {} does not hash to its name",
                path.display()
            );
            assert!(stored == *bytes, "{label}: blob {digest} bytes differ");
        }
        for (name, digest) in &acked.unlinked_blobs {
            let size = engine.stat_blob(name, digest).await.expect("stat");
            assert_eq!(size, None, "{label}: deleted blob {digest} back in {name}");
        }
        for ((name, digest), bytes) in &acked.manifests {
            let stored = engine
                .get_manifest(name, &Reference::Digest(digest.clone()))
                .await
                .expect("get manifest")
                .unwrap_or_else(|| panic!("{label}: manifest {digest} missing in {name}"));
            assert_eq!(
                stored.bytes, *bytes,
                "{label}: manifest {digest} bytes differ"
            );
        }
        for (name, digest) in &acked.deleted_manifests {
            let stored = engine
                .get_manifest(name, &Reference::Digest(digest.clone()))
                .await
                .expect("get manifest");
            assert!(stored.is_none(), "{label}: deleted manifest {digest} back");
        }
        for (name, tags) in &acked.tags {
            let listed = engine.list_tags(name, None, 1000).await.expect("list tags");
            let expected: Vec<Tag> = tags.keys().cloned().collect();
            assert_eq!(listed, expected, "{label}: tags of {name}");
            for (tag, digest) in tags {
                let stored = engine
                    .get_manifest(name, &Reference::Tag(tag.clone()))
                    .await
                    .expect("get manifest")
                    .unwrap_or_else(|| panic!("{label}: tag {tag} of {name} names nothing"));
                assert_eq!(stored.digest, *digest, "{label}: tag {tag} of {name}");
            }
        }
        if sessions {
            for (name, id, persisted, sent, durable) in acked.sessions.values() {
                let offset = match engine.upload_status(name, id).await {
                    Ok(offset) => offset,
                    Err(StorageError::UploadUnknown) if !durable => continue,
                    Err(error) => panic!("{label}: session {id}: {error}"),
                };
                assert!(
                    (*persisted..=*sent).contains(&offset),
                    "{label}: session {id} at {offset}, persisted {persisted}, sent {sent}"
                );
            }
        }
        let report = engine.fsck().await.expect("fsck runs");
        assert!(
            report.is_clean(),
            "{label}: fsck problems: {:?}",
            report.problems
        );
    }

    /// POST with `?digest=`: one anonymous session, one write, finish.
    async fn push_monolithic(&mut self, name: &RepoName, bytes: &[u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        self.begin();
        let mut writer = self.engine.begin_monolithic(name).await.expect("begin");
        self.crash("begin_monolithic").await;
        self.begin();
        writer
            .write(Bytes::copy_from_slice(bytes))
            .await
            .expect("write");
        self.crash("monolithic write").await;
        self.begin();
        writer.finish(&digest).await.expect("finish");
        self.acked
            .blobs
            .insert((name.clone(), digest.clone()), bytes.to_vec());
        self.crash("monolithic finish").await;
        digest
    }

    /// POST, PATCH (persisted), PATCH..., PUT: one write per chunk.
    async fn push_chunked(
        &mut self,
        name: &RepoName,
        chunks: &[&[u8]],
        algorithm: Algorithm,
    ) -> Digest {
        let content = chunks.concat();
        let digest = Digest::of(algorithm, &content);
        self.begin();
        let id = self.engine.start_upload(name).await.expect("start");
        let key = id.to_string();
        self.acked
            .sessions
            .insert(key.clone(), (name.clone(), id.clone(), 0, 0, false));
        self.crash("start_upload").await;
        let mut writer = self.engine.open_upload(name, &id).await.expect("open");
        for (number, chunk) in chunks.iter().enumerate() {
            self.begin();
            writer
                .write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write");
            self.acked.sessions.get_mut(&key).expect("session").3 += chunk.len() as u64;
            self.crash("chunk write").await;
            if number == 0 {
                self.begin();
                let offset = writer.persist().await.expect("persist");
                let session = self.acked.sessions.get_mut(&key).expect("session");
                (session.2, session.4) = (offset, true);
                self.crash("persist").await;
                writer = self.engine.open_upload(name, &id).await.expect("reopen");
            }
        }
        self.begin();
        writer.finish(&digest).await.expect("finish");
        self.acked.sessions.remove(&key);
        self.acked
            .blobs
            .insert((name.clone(), digest.clone()), content);
        self.crash("chunked finish").await;
        digest
    }

    async fn put_manifest(&mut self, name: &RepoName, tags: &[Tag], bytes: Bytes) -> Digest {
        self.begin();
        let digest = self
            .engine
            .put_manifest(
                name,
                &Reference::Tag(tags[0].clone()),
                None,
                bytes.clone(),
                &tags[1..],
            )
            .await
            .expect("put manifest")
            .digest;
        self.acked
            .manifests
            .insert((name.clone(), digest.clone()), bytes);
        for tag in tags {
            let repo_tags = self.acked.tags.entry(name.clone()).or_default();
            repo_tags.insert(tag.clone(), digest.clone());
        }
        self.crash("put_manifest").await;
        digest
    }
}

/// The scripted workload: monolithic and chunked uploads (sha256 and sha512, a dedupe, an
/// abandoned one, one left open), manifests with tags, a tag move, deletes of a tag, a
/// manifest and a blob, with a power cut after every file event and every operation.
async fn acknowledged_writes_survive_power_loss(kind: IoBackendKind) {
    if crate::skip_on_s3(
        "the power-loss model replays berth's files (blobs/, uploads/) as a disk would keep \
         them; blobs in a bucket are not on that disk, and a bucket's PUT is durable when it \
         returns",
    ) {
        return;
    }
    if crate::on_postgres() {
        // The model copies the data directory at each crash point; a PostgreSQL index is not
        // in it. That server's durability is its own (tests/src/postgres.rs kills it).
        eprintln!("SKIPPED: the power-loss model covers the embedded index only");
        return;
    }
    let mut h = Harness::new(kind);
    let app = repo("app");
    let other = repo("other/sub");

    h.push_monolithic(&app, b"config").await;
    h.push_chunked(&app, &[b"layer ", b"one ", b"bytes"], Algorithm::Sha256)
        .await;
    h.push_chunked(&other, &[b"sha512 ", b"blob"], Algorithm::Sha512)
        .await;
    // Dedupe: the file exists, the staged copy is dropped, the link is new.
    h.push_monolithic(&other, b"config").await;

    h.begin();
    let mut writer = h.engine.begin_monolithic(&app).await.expect("begin");
    writer
        .write(Bytes::from_static(b"never finished"))
        .await
        .expect("write");
    writer.abandon().await.expect("abandon");
    h.crash("abandoned monolithic upload").await;

    h.begin();
    let layer_one = crate::sha256(b"layer one bytes");
    assert!(h
        .engine
        .mount_blob(Some(&app), &other, &layer_one)
        .await
        .expect("mount"));
    h.acked.blobs.insert(
        (other.clone(), layer_one.clone()),
        b"layer one bytes".to_vec(),
    );
    h.crash("mount_blob").await;

    let first = image_manifest(b"config", &[b"layer one bytes"], None);
    let first = h
        .put_manifest(&app, &[tag("v1"), tag("latest")], first)
        .await;
    h.push_chunked(&app, &[b"layer ", b"two"], Algorithm::Sha256)
        .await;
    let second = image_manifest(b"config", &[b"layer one bytes", b"layer two"], None);
    h.put_manifest(&app, &[tag("latest")], second).await;

    h.begin();
    h.engine
        .delete_manifest(&app, &Reference::Tag(tag("v1")))
        .await
        .expect("delete tag");
    h.acked.tags.get_mut(&app).expect("tags").remove(&tag("v1"));
    h.crash("delete tag").await;

    h.begin();
    h.engine
        .delete_manifest(&app, &Reference::Digest(first.clone()))
        .await
        .expect("delete manifest");
    let key = (app.clone(), first);
    h.acked.manifests.remove(&key);
    h.acked.deleted_manifests.insert(key);
    h.crash("delete manifest").await;

    let scratch = h.push_monolithic(&app, b"scratch").await;
    h.begin();
    h.engine
        .delete_blob(&app, &scratch)
        .await
        .expect("delete blob");
    let key = (app.clone(), scratch);
    h.acked.blobs.remove(&key);
    h.acked.unlinked_blobs.insert(key);
    h.crash("delete blob").await;

    // A session left open with a persisted first chunk and an unpersisted second one.
    h.begin();
    let id = h.engine.start_upload(&other).await.expect("start");
    h.acked
        .sessions
        .insert(id.to_string(), (other.clone(), id.clone(), 0, 0, false));
    h.crash("start_upload").await;
    let mut writer = h.engine.open_upload(&other, &id).await.expect("open");
    h.begin();
    writer
        .write(Bytes::from_static(b"persisted"))
        .await
        .expect("write");
    let offset = writer.persist().await.expect("persist");
    let session = h.acked.sessions.get_mut(&id.to_string()).expect("session");
    (session.2, session.3, session.4) = (offset, offset, true);
    h.crash("write + persist").await;
    let mut writer = h.engine.open_upload(&other, &id).await.expect("reopen");
    h.begin();
    writer
        .write(Bytes::from_static(b" and not"))
        .await
        .expect("write");
    h.acked
        .sessions
        .get_mut(&id.to_string())
        .expect("session")
        .3 += 8;
    h.crash("unpersisted write").await;
    writer.abandon().await.expect("abandon");

    assert!(h.crash_points > 50, "{} crash points", h.crash_points);
}

crate::backend_tests!(acknowledged_writes_survive_power_loss);
