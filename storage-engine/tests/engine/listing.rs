//! The listings a store copy reads (`berth migrate`): a repository's manifests (untagged
//! ones and mirrors included), tags with their digests and linked blobs, paged; every user
//! preference; every API key, restored into another store under its hash so the key works
//! there.
use berth_storage::apikeys::NewApiKey;
use berth_storage::oci::Reference;
use berth_storage::search::Pref;
use berth_storage::IoBackendKind;

use crate::{block_on, image_manifest, open, push_blob, repo, sha256, tag};

#[test]
fn a_repository_lists_its_manifests_tags_and_blobs_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let engine = open(dir.path(), IoBackendKind::Threads);
        let app = repo("app");
        let config = b"{}".to_vec();
        push_blob(&engine, &app, &config).await;
        let mut manifests = Vec::new();
        for n in 0..3u8 {
            let layer = vec![n; 10];
            push_blob(&engine, &app, &layer).await;
            let manifest = image_manifest(&config, &[&layer], None);
            let reference = match n {
                0 => Reference::Digest(sha256(&manifest)),
                _ => Reference::Tag(tag(&format!("t{n}"))),
            };
            engine
                .put_manifest(&app, &reference, None, manifest.clone(), &[])
                .await
                .expect("put");
            manifests.push(sha256(&manifest));
        }
        let loose = push_blob(&engine, &app, b"loose").await;
        push_blob(&engine, &repo("other"), b"elsewhere").await;
        manifests.sort();

        let first = engine.repo_manifests(&app, None, 2).await.expect("list");
        let rest = engine
            .repo_manifests(&app, Some(&first[1].digest), 2)
            .await
            .expect("list");
        let listed: Vec<_> = first
            .iter()
            .chain(&rest)
            .map(|m| m.digest.clone())
            .collect();
        assert_eq!(listed, manifests);
        assert!(first
            .iter()
            .chain(&rest)
            .all(|m| !m.mirrored && m.subject.is_none()));

        let tags = engine.repo_tags(&app, None, 10).await.expect("tags");
        assert_eq!(
            tags.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["t1", "t2"]
        );
        let second = engine
            .repo_tags(&app, Some(&tags[0].0), 10)
            .await
            .expect("tags");
        assert_eq!(second, tags[1..]);

        let blobs = engine.repo_blobs(&app, None, 100).await.expect("blobs");
        assert_eq!(blobs.len(), 5, "config, three layers, the loose blob");
        assert!(blobs.contains(&(loose, 5)));
        let paged = engine
            .repo_blobs(&app, Some(&blobs[3].0), 100)
            .await
            .expect("blobs");
        assert_eq!(paged, blobs[4..]);
        assert!(engine
            .repo_blobs(&app, None, 0)
            .await
            .expect("blobs")
            .is_empty());
    });
}

#[test]
fn preferences_and_api_keys_are_listed_and_restored_elsewhere() {
    let (one, two) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    block_on(async {
        let source = open(one.path(), IoBackendKind::Threads);
        let app = repo("app");
        source
            .toggle_pref("alice", &app, Pref::Star)
            .await
            .expect("star");
        source
            .toggle_pref("bob b", &app, Pref::Bookmark)
            .await
            .expect("bookmark");
        let prefs = source.all_prefs().await.expect("prefs");
        assert_eq!(
            prefs,
            vec![
                ("alice".to_owned(), Pref::Star, app.clone()),
                ("bob b".to_owned(), Pref::Bookmark, app.clone()),
            ]
        );
        let (key, _) = source
            .create_api_key(NewApiKey {
                user: "alice".into(),
                label: "ci".into(),
                scopes: Vec::new(),
                expires_ms: None,
                creator_ua: "test".into(),
            })
            .await
            .expect("create");
        let (hash, _) = source.api_key(&key).await.expect("lookup").expect("found");
        source.record_api_key_use(hash, 42).await.expect("use");
        let keys = source.all_api_keys().await.expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.last_used_ms, Some(42));

        let target = open(two.path(), IoBackendKind::Threads);
        assert!(target
            .restore_api_key(keys[0].0, &keys[0].1)
            .await
            .expect("restore"));
        assert!(!target
            .restore_api_key(keys[0].0, &keys[0].1)
            .await
            .expect("again"));
        let (_, found) = target
            .api_key(&key)
            .await
            .expect("lookup")
            .expect("works there");
        assert_eq!(found, keys[0].1.key);
        assert_eq!(
            target.api_keys_of("alice").await.expect("list"),
            vec![keys[0].1.clone()]
        );
        crate::assert_clean(&target).await;
    });
}
