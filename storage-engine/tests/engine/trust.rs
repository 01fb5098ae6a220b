//! The trust store and signature verdicts: entries and verdicts survive a reopen, a change
//! raises the generation in the same batch as its verdicts, a change that changes nothing
//! writes nothing, signature manifests are found by tag and by referrer type, and a read-only
//! engine refuses writes.
use berth_storage::oci::{Digest, Reference};
use berth_storage::trust::{
    LayerVerdict, SignatureManifest, SignatureRecord, TrustChange, TrustKind, TrustMaterial,
};
use berth_storage::{Engine, IoBackendKind};

use crate::{assert_clean, block_on, image_manifest, open, push_blob, repo, sha256};

fn key(id: &str) -> TrustMaterial {
    TrustMaterial {
        kind: TrustKind::Cosign,
        id: id.into(),
        uploaded_unix: 1_700_000_000,
        bytes: b"-----BEGIN PUBLIC KEY-----".to_vec(),
    }
}

fn verdict(trusted: bool) -> LayerVerdict {
    LayerVerdict {
        tool: "cosign".into(),
        trusted,
        author: if trusted { "PEM".into() } else { String::new() },
        reason: if trusted {
            String::new()
        } else {
            "no key".into()
        },
        expires_unix: None,
    }
}

/// Pushes an image and a cosign signature tag and a notation referrer of it.
async fn signed_image(engine: &Engine) -> (Digest, Digest, Digest) {
    let name = repo("signed/app");
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    push_blob(engine, &name, config).await;
    push_blob(engine, &name, b"layer").await;
    let image = image_manifest(config, &[b"layer"], None);
    let image_digest = sha256(&image);
    let size = image.len() as u64;
    engine
        .put_manifest(
            &name,
            &Reference::Tag("v1".parse().unwrap()),
            None,
            image,
            &[],
        )
        .await
        .expect("image");
    let payload = b"payload";
    push_blob(engine, &name, payload).await;
    let cosign = image_manifest(config, &[payload], None);
    let cosign_digest = sha256(&cosign);
    let sig_tag = format!("sha256-{}.sig", image_digest.hex());
    engine
        .put_manifest(
            &name,
            &Reference::Tag(sig_tag.parse().unwrap()),
            None,
            cosign,
            &[],
        )
        .await
        .expect("cosign signature");
    let mut notation: serde_json::Value = serde_json::from_slice(&image_manifest(
        config,
        &[payload],
        Some((&image_digest, size)),
    ))
    .unwrap();
    notation["artifactType"] = "application/vnd.cncf.notary.signature".into();
    let notation = serde_json::to_vec(&notation).unwrap();
    let notation_digest = sha256(&notation);
    engine
        .put_manifest(
            &name,
            &Reference::Digest(notation_digest.clone()),
            None,
            notation.into(),
            &[],
        )
        .await
        .expect("notation signature");
    (image_digest, cosign_digest, notation_digest)
}

#[test]
fn the_store_and_verdicts_survive_a_reopen_and_changes_raise_the_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = repo("signed/app");
    let (image, cosign, notation) = block_on(async {
        let engine = open(dir.path(), IoBackendKind::Threads);
        assert_eq!(engine.trust_store().await.unwrap(), (0, vec![]));
        let (image, cosign, notation) = signed_image(&engine).await;
        let found = engine
            .signature_manifests()
            .await
            .expect("signature manifests");
        let mut expected = vec![
            SignatureManifest {
                repo: name.clone(),
                digest: cosign.clone(),
                subject: image.clone(),
            },
            SignatureManifest {
                repo: name.clone(),
                digest: notation.clone(),
                subject: image.clone(),
            },
        ];
        expected.sort();
        assert_eq!(found, expected);

        let record = SignatureRecord::new(0, &image, vec![verdict(true)]);
        let generation = engine
            .change_trust(
                &TrustChange::Add(key("sha256:aa")),
                vec![(expected[0].clone(), record)],
            )
            .await
            .expect("add key");
        assert_eq!(generation, Some(1));
        // The same key again changes nothing and writes nothing.
        let again = engine
            .change_trust(&TrustChange::Add(key("sha256:aa")), vec![])
            .await
            .expect("add key again");
        assert_eq!(again, None);
        let stored = engine
            .signature_verdict(&name, &expected[0].digest)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.generation, 1,
            "the verdict carries the new generation"
        );
        assert_eq!(stored.layers, vec![verdict(true)]);
        engine
            .put_signature_verdicts(
                vec![(
                    expected[1].clone(),
                    SignatureRecord::new(1, &image, vec![verdict(false)]),
                )],
                &[],
            )
            .await
            .expect("verdicts");
        assert_clean(&engine).await;
        (image, cosign, notation)
    });
    let engine = open(dir.path(), IoBackendKind::Threads);
    let (generation, materials) = block_on(engine.trust_store()).unwrap();
    assert_eq!((generation, materials), (1, vec![key("sha256:aa")]));
    let verdicts = block_on(engine.signature_verdicts()).unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(
        verdicts[&(name.clone(), cosign.clone())].subject,
        image.to_string()
    );
    assert_eq!(
        verdicts[&(name.clone(), notation.clone())].layers,
        vec![verdict(false)]
    );

    block_on(async {
        let removed = engine
            .change_trust(
                &TrustChange::Remove(TrustKind::Cosign, "sha256:aa".into()),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(removed, Some(2));
        let unknown = engine
            .change_trust(
                &TrustChange::Remove(TrustKind::Ca, "sha256:aa".into()),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unknown, None, "removing what is not there writes nothing");
        engine
            .put_signature_verdicts(vec![], &[(name.clone(), notation.clone())])
            .await
            .unwrap();
    });
    assert_eq!(block_on(engine.trust_store()).unwrap(), (2, vec![]));
    assert!(block_on(engine.signature_verdict(&name, &notation))
        .unwrap()
        .is_none());
    assert!(block_on(engine.signature_verdict(&name, &cosign))
        .unwrap()
        .is_some());
    drop(engine);

    let read_only = Engine::open_read_only(berth_storage::EngineOptions {
        root: dir.path().to_path_buf(),
        commit: true,
        io: IoBackendKind::Threads,
        postgres: crate::postgres_index(dir.path()),
        s3: crate::s3_blobs(dir.path()),
    })
    .expect("read-only open");
    let refused = block_on(read_only.change_trust(&TrustChange::Add(key("sha256:bb")), vec![]));
    assert!(refused.is_err(), "a read-only engine refuses trust changes");
    assert_eq!(block_on(read_only.trust_store()).unwrap().1, vec![]);
}

#[test]
fn a_trusted_verdict_lapses_at_its_expiry() {
    let mut layer = verdict(true);
    layer.expires_unix = Some(100);
    assert!(layer.trusted_at(99));
    assert!(!layer.trusted_at(100));
    assert!(!verdict(false).trusted_at(0));
    let record = SignatureRecord::new(0, &sha256(b"x"), vec![layer, verdict(true), verdict(false)]);
    assert_eq!(record.next_expiry(), Some(100));
}
