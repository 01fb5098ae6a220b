//! Unit tests of index.rs: key layout and the value codecs.

use super::*;
use crate::oci::Digest;
use bytes::Bytes;

#[test]
fn keys_and_prefixes() {
    assert_eq!(key(&["a", "b"]), b"a\0b");
    assert_eq!(prefix(&["a"]), b"a\0");
    assert_eq!(
        split_key(b"a/b\0latest").expect("utf8"),
        vec!["a/b", "latest"]
    );
    assert!(!key(&["a/b", "x"]).starts_with(&prefix(&["a"])));
}

#[test]
fn records_round_trip_and_reject_garbage() {
    let digest = Digest::of(crate::oci::Algorithm::Sha256, b"x");
    let blob = BlobRecord {
        size: 7,
        created_ms: 9,
    };
    assert_eq!(BlobRecord::decode(&blob.encode()).expect("decode"), blob);
    assert!(BlobRecord::decode(b"short").is_err());
    let manifest = ManifestRecord {
        pushed_ms: 3,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        subject: Some(digest.clone()),
        mirrored: false,
        bytes: Bytes::from_static(b"{\"schemaVersion\":2}"),
    };
    assert_eq!(
        ManifestRecord::decode(&manifest.encode()).expect("decode"),
        manifest
    );
    let no_subject = ManifestRecord {
        subject: None,
        ..manifest
    };
    assert_eq!(
        ManifestRecord::decode(&no_subject.encode()).expect("decode"),
        no_subject
    );
    let mirrored = ManifestRecord {
        mirrored: true,
        ..no_subject.clone()
    };
    assert_eq!(mirrored.encode()[..2], [2, 1], "version 2 with the flag");
    assert_eq!(
        no_subject.encode()[0],
        1,
        "unflagged records stay version 1"
    );
    assert_eq!(
        ManifestRecord::decode(&mirrored.encode()).expect("decode"),
        mirrored
    );
    assert!(ManifestRecord::decode(&[1, 0, 0]).is_err());
    assert!(ManifestRecord::decode(&[2]).is_err());
    assert!(ManifestRecord::decode(&[3, 0, 0]).is_err());
    let tag = TagRecord {
        pushed_ms: 5,
        digest,
    };
    assert_eq!(TagRecord::decode(&tag.encode()).expect("decode"), tag);
    assert!(TagRecord::decode(b"12345678sha256:zz").is_err());
    let mut upload = UploadRecord {
        started_ms: 1,
        repo: "a/b".parse().expect("name"),
        owner: None,
    };
    assert_eq!(
        UploadRecord::decode(&upload.encode()).expect("decode"),
        upload
    );
    // A record without an owner is what berth wrote before sessions had owners.
    let mut old = 1u64.to_be_bytes().to_vec();
    old.extend_from_slice(b"a/b");
    assert_eq!(UploadRecord::decode(&old).expect("decode"), upload);
    upload.owner = Some("alice".into());
    assert_eq!(
        UploadRecord::decode(&upload.encode()).expect("decode"),
        upload
    );
    assert_eq!(
        RefKind::decode(&RefKind::Manifest.encode()).expect("decode"),
        RefKind::Manifest
    );
    assert!(RefKind::decode(b"x").is_err());
}
