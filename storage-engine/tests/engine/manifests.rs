//! Manifests, tags, indexes, referrers and the references that guard deletes.
use berth_storage::oci::{Algorithm, Digest, Reference};
use berth_storage::{IoBackendKind, StorageError};
use bytes::Bytes;

use crate::{assert_clean, image_manifest, index_manifest, open, push_blob, repo, sha256, tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn by_tag(name: &str) -> Reference {
    Reference::Tag(tag(name))
}

async fn put_get_tags_byte_exact(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("app");
    push_blob(&engine, &name, b"config").await;
    push_blob(&engine, &name, b"layer one").await;
    let manifest = image_manifest(b"config", &[b"layer one"], None);
    let outcome = engine
        .put_manifest(
            &name,
            &by_tag("v1"),
            Some(OCI_MANIFEST),
            manifest.clone(),
            &[tag("b"), tag("a")],
        )
        .await
        .expect("put");
    assert_eq!(outcome.digest, sha256(&manifest));
    assert_eq!(outcome.subject, None);
    for reference in [
        by_tag("v1"),
        by_tag("a"),
        Reference::Digest(outcome.digest.clone()),
    ] {
        let stored = engine
            .get_manifest(&name, &reference)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(stored.bytes, manifest, "byte exact");
        assert_eq!(stored.media_type, OCI_MANIFEST);
        assert_eq!(stored.digest, outcome.digest);
    }
    assert_eq!(
        engine.list_tags(&name, None, 10).await.expect("tags"),
        vec![tag("a"), tag("b"), tag("v1")]
    );
    assert_eq!(
        engine.list_tags(&name, Some("a"), 1).await.expect("tags"),
        vec![tag("b")]
    );
    assert_eq!(
        engine.list_tags(&name, None, 0).await.expect("tags"),
        vec![]
    );
    assert!(engine
        .tag_exists(&name, &tag("v1"))
        .await
        .expect("tag_exists"));
    assert!(engine
        .get_manifest(&repo("other"), &by_tag("v1"))
        .await
        .expect("get")
        .is_none());

    // Moving a tag.
    push_blob(&engine, &name, b"layer two").await;
    let second = image_manifest(b"config", &[b"layer two"], None);
    let moved = engine
        .put_manifest(
            &name,
            &by_tag("v1"),
            Some(OCI_MANIFEST),
            second.clone(),
            &[],
        )
        .await
        .expect("put second");
    let stored = engine
        .get_manifest(&name, &by_tag("v1"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.digest, moved.digest);
    assert_eq!(stored.bytes, second);

    // By digest with the wrong digest, and with sha512.
    let wrong = Reference::Digest(sha256(b"not it"));
    assert!(matches!(
        engine
            .put_manifest(&name, &wrong, Some(OCI_MANIFEST), second.clone(), &[])
            .await,
        Err(StorageError::DigestMismatch { .. })
    ));
    let sha512 = Digest::of(Algorithm::Sha512, &second);
    engine
        .put_manifest(
            &name,
            &Reference::Digest(sha512.clone()),
            Some(OCI_MANIFEST),
            second.clone(),
            &[],
        )
        .await
        .expect("put by sha512");
    assert!(engine
        .get_manifest(&name, &Reference::Digest(sha512))
        .await
        .expect("get")
        .is_some());
    assert_clean(&engine).await;
}

async fn rejected_manifests_change_nothing(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("strict");
    push_blob(&engine, &name, b"config").await;
    let missing_layer = image_manifest(b"config", &[b"never pushed"], None);
    match engine
        .put_manifest(&name, &by_tag("t"), Some(OCI_MANIFEST), missing_layer, &[])
        .await
    {
        Err(StorageError::ManifestBlobUnknown(digest)) => {
            assert_eq!(digest, sha256(b"never pushed"))
        }
        other => panic!("expected ManifestBlobUnknown, got {other:?}"),
    }
    // A blob linked only in another repository does not count.
    push_blob(&engine, &repo("elsewhere"), b"foreign").await;
    let other_repo_layer = image_manifest(b"config", &[b"foreign"], None);
    assert!(matches!(
        engine
            .put_manifest(
                &name,
                &by_tag("t"),
                Some(OCI_MANIFEST),
                other_repo_layer,
                &[]
            )
            .await,
        Err(StorageError::ManifestBlobUnknown(_))
    ));
    let garbage = Bytes::from_static(b"{not json");
    assert!(matches!(
        engine
            .put_manifest(&name, &by_tag("t"), Some(OCI_MANIFEST), garbage, &[])
            .await,
        Err(StorageError::ManifestInvalid(_))
    ));
    // Wrong size in a descriptor.
    let mut wrong_size: serde_json::Value =
        serde_json::from_slice(&image_manifest(b"config", &[], None)).expect("json");
    wrong_size["config"]["size"] = 99.into();
    let wrong_size = Bytes::from(serde_json::to_vec(&wrong_size).expect("json"));
    assert!(matches!(
        engine
            .put_manifest(&name, &by_tag("t"), Some(OCI_MANIFEST), wrong_size, &[])
            .await,
        Err(StorageError::ManifestInvalid(_))
    ));
    assert_eq!(
        engine.list_tags(&name, None, 10).await.expect("tags"),
        vec![]
    );
    assert!(engine
        .get_manifest(&name, &by_tag("t"))
        .await
        .expect("get")
        .is_none());
    assert_clean(&engine).await;
}

async fn index_children_and_referenced_deletes(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("multi");
    let config = push_blob(&engine, &name, b"config").await;
    push_blob(&engine, &name, b"layer").await;
    let child = image_manifest(b"config", &[b"layer"], None);
    let child_digest = sha256(&child);
    let index = index_manifest(&[(&child_digest, child.len() as u64)]);
    assert!(matches!(
        engine.put_manifest(&name, &by_tag("multi"), Some(OCI_INDEX), index.clone(), &[]).await,
        Err(StorageError::ManifestBlobUnknown(digest)) if digest == child_digest
    ));
    engine
        .put_manifest(
            &name,
            &Reference::Digest(child_digest.clone()),
            Some(OCI_MANIFEST),
            child,
            &[],
        )
        .await
        .expect("put child");
    let index_digest = engine
        .put_manifest(&name, &by_tag("multi"), Some(OCI_INDEX), index, &[])
        .await
        .expect("put index")
        .digest;

    // The blob is referenced by the child; the child by the index.
    assert!(matches!(
        engine.delete_blob(&name, &config).await,
        Err(StorageError::BlobReferenced(digest)) if digest == config
    ));
    let child_ref = Reference::Digest(child_digest.clone());
    assert!(matches!(
        engine.delete_manifest(&name, &child_ref).await,
        Err(StorageError::ManifestReferenced(digest)) if digest == child_digest
    ));
    engine
        .delete_manifest(&name, &Reference::Digest(index_digest.clone()))
        .await
        .expect("delete index");
    assert!(
        !engine
            .tag_exists(&name, &tag("multi"))
            .await
            .expect("tag_exists"),
        "tags go with it"
    );
    engine
        .delete_manifest(&name, &child_ref)
        .await
        .expect("delete child");
    assert!(matches!(
        engine.delete_manifest(&name, &child_ref).await,
        Err(StorageError::ManifestUnknown)
    ));
    engine
        .delete_blob(&name, &config)
        .await
        .expect("blob now unreferenced");
    assert_clean(&engine).await;
}

async fn delete_by_tag_keeps_manifest(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("tags");
    push_blob(&engine, &name, b"config").await;
    let manifest = image_manifest(b"config", &[], None);
    let digest = engine
        .put_manifest(
            &name,
            &by_tag("one"),
            Some(OCI_MANIFEST),
            manifest,
            &[tag("two")],
        )
        .await
        .expect("put")
        .digest;
    engine
        .delete_manifest(&name, &by_tag("one"))
        .await
        .expect("delete tag");
    assert!(matches!(
        engine.delete_manifest(&name, &by_tag("one")).await,
        Err(StorageError::ManifestUnknown)
    ));
    assert!(engine
        .get_manifest(&name, &Reference::Digest(digest))
        .await
        .expect("get")
        .is_some());
    assert_eq!(
        engine.list_tags(&name, None, 10).await.expect("tags"),
        vec![tag("two")]
    );
    assert_clean(&engine).await;
}

async fn referrers_follow_subjects(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("refs");
    push_blob(&engine, &name, b"config").await;
    // The subject need not exist.
    let subject = sha256(b"subject manifest");
    let referrer = image_manifest(b"config", &[], Some((&subject, 16)));
    let outcome = engine
        .put_manifest(
            &name,
            &Reference::Digest(sha256(&referrer)),
            Some(OCI_MANIFEST),
            referrer.clone(),
            &[],
        )
        .await
        .expect("put referrer");
    assert_eq!(outcome.subject.as_ref(), Some(&subject));
    let found = engine
        .referrers(&name, &subject, &[])
        .await
        .expect("referrers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, outcome.digest);
    assert_eq!(found[0].size, referrer.len() as u64);
    assert_eq!(found[0].media_type, OCI_MANIFEST);
    assert_eq!(
        found[0].artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
    assert_eq!(
        found[0]
            .annotations
            .as_ref()
            .and_then(|a| a.get("org.example"))
            .map(String::as_str),
        Some("yes")
    );
    let filtered = engine
        .referrers(
            &name,
            &subject,
            &["application/vnd.example.sbom".to_string()],
        )
        .await
        .expect("referrers");
    assert_eq!(filtered.len(), 1);
    assert!(engine
        .referrers(&name, &subject, &["other/type".to_string()])
        .await
        .expect("referrers")
        .is_empty());
    assert!(engine
        .referrers(&repo("elsewhere"), &subject, &[])
        .await
        .expect("referrers")
        .is_empty());
    engine
        .delete_manifest(&name, &Reference::Digest(outcome.digest))
        .await
        .expect("delete referrer");
    assert!(engine
        .referrers(&name, &subject, &[])
        .await
        .expect("referrers")
        .is_empty());
    assert_clean(&engine).await;
}

async fn manifest_put_races_blob_delete(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("race");
    for round in 0..20 {
        let layer = format!("layer {round}").into_bytes();
        let layer_digest = push_blob(&engine, &name, &layer).await;
        push_blob(&engine, &name, b"config").await;
        let manifest = image_manifest(b"config", &[&layer], None);
        let latest = by_tag("latest");
        let put = engine.put_manifest(&name, &latest, Some(OCI_MANIFEST), manifest, &[]);
        let delete = engine.delete_blob(&name, &layer_digest);
        // Alternate which one reaches the repository lock first.
        let (put, delete) = if round % 2 == 0 {
            futures_util::future::join(put, delete).await
        } else {
            let (delete, put) = futures_util::future::join(delete, put).await;
            (put, delete)
        };
        // Exactly one wins: never a stored manifest with an unlinked blob.
        match (put, delete) {
            (Ok(_), Err(StorageError::BlobReferenced(_))) => {}
            (Err(StorageError::ManifestBlobUnknown(_)), Ok(())) => {}
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
    }
    assert_clean(&engine).await;
}

async fn immutable_tags_refuse_a_move_and_store_nothing(kind: IoBackendKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), kind);
    let name = repo("immutable");
    push_blob(&engine, &name, b"config-a").await;
    push_blob(&engine, &name, b"config-b").await;
    let first = image_manifest(b"config-a", &[], None);
    let second = image_manifest(b"config-b", &[], None);
    let immutable = [tag("v1")];
    let immutable = &immutable[..];
    let put = |manifest: &Bytes, reference: Reference, extra: Vec<_>| {
        let (engine, name, manifest) = (&engine, &name, manifest.clone());
        async move {
            engine
                .put_manifest_guarded(
                    name,
                    &reference,
                    Some(OCI_MANIFEST),
                    manifest,
                    &extra,
                    immutable,
                    None,
                )
                .await
        }
    };
    let kept = put(&first, by_tag("v1"), vec![])
        .await
        .expect("first push")
        .digest;
    // The same manifest again is no move.
    put(&first, by_tag("v1"), vec![])
        .await
        .expect("same manifest again");
    let second_digest = sha256(&second);
    for (reference, extra) in [
        (by_tag("v1"), vec![]),
        (
            Reference::Digest(second_digest.clone()),
            vec![tag("v2"), tag("v1")],
        ),
    ] {
        assert!(matches!(
            put(&second, reference, extra).await,
            Err(StorageError::TagImmutable(t)) if t == tag("v1")
        ));
    }
    // Nothing of the refused pushes was stored: v1 kept, no v2, no second manifest.
    let stored = engine
        .get_manifest(&name, &by_tag("v1"))
        .await
        .expect("get");
    assert_eq!(stored.map(|m| m.digest), Some(kept));
    assert_eq!(
        engine.list_tags(&name, None, 10).await.expect("tags"),
        vec![tag("v1")]
    );
    let missing = engine
        .get_manifest(&name, &Reference::Digest(second_digest))
        .await;
    assert!(missing.expect("get").is_none());
    assert_clean(&engine).await;
}

crate::backend_tests!(
    put_get_tags_byte_exact,
    immutable_tags_refuse_a_move_and_store_nothing,
    rejected_manifests_change_nothing,
    index_children_and_referenced_deletes,
    delete_by_tag_keeps_manifest,
    referrers_follow_subjects,
    manifest_put_races_blob_delete,
);
