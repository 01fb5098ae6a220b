//! Property test: random sequences of engine operations against a small in-memory model.
//! Every operation's outcome (success or which error) and the visible state afterwards must
//! match the model, including across restarts.
use std::collections::{BTreeMap, BTreeSet};

use berth_storage::oci::{Digest, Reference};
use berth_storage::{Engine, EngineOptions, IoBackendKind, StorageError};
use bytes::Bytes;
use proptest::prelude::*;

use crate::{image_manifest, repo, sha256, tag};

const REPOS: [&str; 2] = ["r0", "r1/sub"];
const BLOBS: [&[u8]; 3] = [b"config", b"layer a", b"layer b"];
const TAGS: [&str; 2] = ["t0", "t1"];

#[derive(Clone, Debug)]
enum Op {
    Push {
        repo: usize,
        blob: usize,
    },
    Mount {
        from: usize,
        to: usize,
        blob: usize,
    },
    DeleteBlob {
        repo: usize,
        blob: usize,
    },
    /// Manifest with config BLOBS[0] and one layer.
    PutManifest {
        repo: usize,
        tag: usize,
        layer: usize,
    },
    DeleteTag {
        repo: usize,
        tag: usize,
    },
    DeleteManifest {
        repo: usize,
        layer: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPOS.len();
    let b = 0..BLOBS.len();
    let t = 0..TAGS.len();
    let l = 1..BLOBS.len();
    prop_oneof![
        3 => (r.clone(), b.clone()).prop_map(|(repo, blob)| Op::Push { repo, blob }),
        1 => (r.clone(), r.clone(), b.clone()).prop_map(|(from, to, blob)| Op::Mount { from, to, blob }),
        2 => (r.clone(), b).prop_map(|(repo, blob)| Op::DeleteBlob { repo, blob }),
        3 => (r.clone(), t.clone(), l.clone()).prop_map(|(repo, tag, layer)| Op::PutManifest { repo, tag, layer }),
        1 => (r.clone(), t).prop_map(|(repo, tag)| Op::DeleteTag { repo, tag }),
        1 => (r, l).prop_map(|(repo, layer)| Op::DeleteManifest { repo, layer }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    links: BTreeSet<(usize, usize)>,
    /// (repo, layer) -> manifest exists (manifests reference config + layer).
    manifests: BTreeSet<(usize, usize)>,
    tags: BTreeMap<(usize, usize), usize>,
}

fn manifest_bytes(layer: usize) -> Bytes {
    image_manifest(BLOBS[0], &[BLOBS[layer]], None)
}

fn open(root: &std::path::Path) -> Engine {
    Engine::open(EngineOptions {
        root: root.to_path_buf(),
        commit: false,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(root),
        s3: crate::s3_blobs(root),
    })
    .expect("engine opens")
}

/// Outcome as a comparable string: "ok" or the error variant's name.
fn outcome<T>(result: Result<T, StorageError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => format!("{error:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or("")
            .to_string(),
    }
}

async fn apply(engine: &Engine, model: &mut Model, op: &Op) {
    let repos: Vec<_> = REPOS.iter().map(|name| repo(name)).collect();
    match *op {
        Op::Push { repo: r, blob } => {
            crate::push_blob(engine, &repos[r], BLOBS[blob]).await;
            model.links.insert((r, blob));
        }
        Op::Mount { from, to, blob } => {
            let mounted = engine
                .mount_blob(Some(&repos[from]), &repos[to], &sha256(BLOBS[blob]))
                .await
                .expect("mount");
            let expected = model.links.contains(&(from, blob)) || model.links.contains(&(to, blob));
            assert_eq!(mounted, expected, "{op:?}");
            if expected {
                model.links.insert((to, blob));
            }
        }
        Op::DeleteBlob { repo: r, blob } => {
            let got = outcome(engine.delete_blob(&repos[r], &sha256(BLOBS[blob])).await);
            let referenced = model
                .manifests
                .iter()
                .any(|&(mr, layer)| mr == r && (blob == 0 || blob == layer));
            let expected = match (model.links.contains(&(r, blob)), referenced) {
                (false, _) => "BlobUnknown",
                (true, true) => "BlobReferenced",
                (true, false) => "ok",
            };
            assert_eq!(got, expected, "{op:?}");
            if expected == "ok" {
                model.links.remove(&(r, blob));
            }
        }
        Op::PutManifest {
            repo: r,
            tag: t,
            layer,
        } => {
            let reference = Reference::Tag(tag(TAGS[t]));
            let got = outcome(
                engine
                    .put_manifest(&repos[r], &reference, None, manifest_bytes(layer), &[])
                    .await,
            );
            let complete = model.links.contains(&(r, 0)) && model.links.contains(&(r, layer));
            assert_eq!(
                got,
                if complete {
                    "ok"
                } else {
                    "ManifestBlobUnknown"
                },
                "{op:?}"
            );
            if complete {
                model.manifests.insert((r, layer));
                model.tags.insert((r, t), layer);
            }
        }
        Op::DeleteTag { repo: r, tag: t } => {
            let got = outcome(
                engine
                    .delete_manifest(&repos[r], &Reference::Tag(tag(TAGS[t])))
                    .await,
            );
            let expected = if model.tags.remove(&(r, t)).is_some() {
                "ok"
            } else {
                "ManifestUnknown"
            };
            assert_eq!(got, expected, "{op:?}");
        }
        Op::DeleteManifest { repo: r, layer } => {
            let digest = sha256(&manifest_bytes(layer));
            let got = outcome(
                engine
                    .delete_manifest(&repos[r], &Reference::Digest(digest))
                    .await,
            );
            let expected = if model.manifests.remove(&(r, layer)) {
                "ok"
            } else {
                "ManifestUnknown"
            };
            assert_eq!(got, expected, "{op:?}");
            model
                .tags
                .retain(|&(tr, _), &mut l| !(tr == r && l == layer));
        }
        Op::Restart => unreachable!("restarts are handled by the caller"),
    }
}

async fn check_state(engine: &Engine, model: &Model) {
    for (r, name) in REPOS.iter().enumerate() {
        let name = repo(name);
        for (b, blob) in BLOBS.iter().enumerate() {
            let linked = engine
                .stat_blob(&name, &sha256(blob))
                .await
                .expect("stat")
                .is_some();
            assert_eq!(linked, model.links.contains(&(r, b)), "link {r} {b}");
        }
        let expected_tags: Vec<_> = (0..TAGS.len())
            .filter(|t| model.tags.contains_key(&(r, *t)))
            .map(|t| tag(TAGS[t]))
            .collect();
        assert_eq!(
            engine.list_tags(&name, None, 100).await.expect("tags"),
            expected_tags
        );
        for (&(tr, t), &layer) in &model.tags {
            if tr == r {
                let stored = engine
                    .get_manifest(&name, &Reference::Tag(tag(TAGS[t])))
                    .await
                    .expect("get")
                    .expect("tagged manifest present");
                assert_eq!(stored.bytes, manifest_bytes(layer));
            }
        }
        for layer in 1..BLOBS.len() {
            let digest: Digest = sha256(&manifest_bytes(layer));
            let present = engine
                .get_manifest(&name, &Reference::Digest(digest))
                .await
                .expect("get")
                .is_some();
            assert_eq!(
                present,
                model.manifests.contains(&(r, layer)),
                "manifest {r} {layer}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let mut engine = open(dir.path());
            let mut model = Model::default();
            for op in &ops {
                if let Op::Restart = op {
                    drop(engine);
                    engine = open(dir.path());
                } else {
                    apply(&engine, &mut model, op).await;
                }
                check_state(&engine, &model).await;
            }
            let report = engine.fsck().await.expect("fsck");
            assert!(report.is_clean(), "{:?}", report.problems);
        });
    }
}
