//! Signatures and referrers through zot's search API on the real binary: a cosign signature
//! (tag `sha256-<hex>.sig`) and a notation signature (a referrer of type
//! `application/vnd.cncf.notary.signature`) make an image `IsSigned` with the tool named and
//! not trusted (no trust store is configured), `HasToBeSigned` filters on it, and referrers
//! are listed on the image and by the `Referrers` query with and without a type filter.

use std::collections::BTreeMap;

use berth_tests::search::{
    gql, gql_error, push_cosign_signature, push_notation_signature, push_referrer, refs,
    search_config, ImageBuilder,
};
use berth_tests::{http, push_image, sha256_digest, Berth, Client, Image};
use serde_json::{json, Value};

const SBOM: &str = "application/vnd.example.sbom.v1+json";
const ATTESTATION: &str = "application/vnd.example.attestation.v1";

struct Signed {
    berth: Berth,
    client: Client,
    cosigned: Image,
    notarized: Image,
    plain: Image,
    sbom: Image,
    attestation: Image,
}

fn start() -> Signed {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let image = |day: &str| {
        ImageBuilder::new()
            .created(&format!("2024-01-{day}T00:00:00Z"))
            .fresh_layer(150)
            .build()
    };
    let (cosigned, notarized, plain) = (image("01"), image("02"), image("03"));
    push_image(&client, url, "signed/app", "cosign", &cosigned);
    push_image(&client, url, "signed/app", "notation", &notarized);
    push_image(&client, url, "signed/app", "plain", &plain);
    push_cosign_signature(&client, url, "signed/app", &cosigned);
    push_notation_signature(&client, url, "signed/app", &notarized);
    let sbom = push_referrer(
        &client,
        url,
        "signed/app",
        &plain,
        SBOM,
        json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-02-02T00:00:00Z"}),
    );
    let attestation = push_referrer(&client, url, "signed/app", &plain, ATTESTATION, json!({}));
    Signed {
        berth,
        client,
        cosigned,
        notarized,
        plain,
        sbom,
        attestation,
    }
}

fn image(signed: &Signed, tag: &str, fields: &str) -> Value {
    let query = format!("{{Image(image:\"signed/app:{tag}\"){{{fields}}}}}");
    gql(&signed.client, &signed.berth.url, &query)["Image"].clone()
}

#[test]
fn cosign_and_notation_signatures_sign_their_subject() {
    let signed = start();
    let fields = "Digest IsSigned SignatureInfo{Tool IsTrusted} Manifests{IsSigned}";
    let cosign = image(&signed, "cosign", fields);
    assert_eq!(
        cosign,
        json!({"Digest": signed.cosigned.digest, "IsSigned": true,
               "SignatureInfo": [{"Tool": "cosign", "IsTrusted": false}],
               "Manifests": [{"IsSigned": true}]})
    );
    let notation = image(&signed, "notation", fields);
    assert_eq!(
        notation,
        json!({"Digest": signed.notarized.digest, "IsSigned": true,
               "SignatureInfo": [{"Tool": "notation", "IsTrusted": false}],
               "Manifests": [{"IsSigned": true}]})
    );
    let plain = image(&signed, "plain", fields);
    assert_eq!(
        plain,
        json!({"Digest": signed.plain.digest, "IsSigned": false, "SignatureInfo": [],
               "Manifests": [{"IsSigned": false}]})
    );
    // HasToBeSigned keeps the signed images only, in image and in repository searches.
    let (client, url) = (&signed.client, &signed.berth.url);
    let data = gql(
        client,
        url,
        "{GlobalSearch(query:\"signed/app:\", filter:{HasToBeSigned:true}){Page{TotalCount} Images{RepoName Tag}}}",
    );
    assert_eq!(
        refs(&data["GlobalSearch"]["Images"]),
        ["signed/app:cosign", "signed/app:notation"]
    );
    assert_eq!(data["GlobalSearch"]["Page"]["TotalCount"], 2);
    let data = gql(
        client,
        url,
        "{GlobalSearch(query:\":otation\", filter:{HasToBeSigned:true}){Images{RepoName Tag}}}",
    );
    assert_eq!(
        refs(&data["GlobalSearch"]["Images"]),
        ["signed/app:notation"]
    );
    let data = gql(
        client,
        url,
        "{GlobalSearch(query:\":plain\", filter:{HasToBeSigned:true}){Page{TotalCount} Images{Tag}}}",
    );
    assert_eq!(data["GlobalSearch"]["Images"], json!([]));
    // A repository passes when its newest image is signed: here `plain` (newest) is not.
    let data = gql(
        client,
        url,
        "{GlobalSearch(query:\"signed\", filter:{HasToBeSigned:true}){Repos{Name}}}",
    );
    assert_eq!(data["GlobalSearch"]["Repos"], json!([]));
    let data = gql(
        client,
        url,
        "{GlobalSearch(query:\"signed\"){Repos{Name NewestImage{Tag IsSigned}}}}",
    );
    assert_eq!(
        data["GlobalSearch"]["Repos"],
        json!([{"Name": "signed/app", "NewestImage": {"Tag": "plain", "IsSigned": false}}])
    );
}

fn by_digest(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|r| {
            let mut r = r.clone();
            // Annotation order is not specified: compare them sorted.
            if let Some(annotations) = r["Annotations"].as_array_mut() {
                annotations.sort_by_key(|a| a["Key"].as_str().unwrap_or("").to_string());
            }
            (r["Digest"].as_str().unwrap().to_string(), r)
        })
        .collect()
}

#[test]
fn referrers_are_listed_with_size_type_and_annotations() {
    let signed = start();
    let (client, url) = (&signed.client, &signed.berth.url);
    let expected_sbom = json!({
        "MediaType": "application/vnd.oci.image.manifest.v1+json",
        "ArtifactType": SBOM,
        "Size": signed.sbom.manifest.len(),
        "Digest": signed.sbom.digest,
        "Annotations": [
            {"Key": "org.example.kind", "Value": "sbom"},
            {"Key": "org.opencontainers.image.created", "Value": "2024-02-02T00:00:00Z"},
        ],
    });
    let expected_attestation = json!({
        "MediaType": "application/vnd.oci.image.manifest.v1+json",
        "ArtifactType": ATTESTATION,
        "Size": signed.attestation.manifest.len(),
        "Digest": signed.attestation.digest,
        "Annotations": [],
    });
    let both = BTreeMap::from([
        (signed.sbom.digest.clone(), expected_sbom.clone()),
        (
            signed.attestation.digest.clone(),
            expected_attestation.clone(),
        ),
    ]);
    let fields = "MediaType ArtifactType Size Digest Annotations{Key Value}";
    let summary = image(
        &signed,
        "plain",
        &format!("Referrers{{{fields}}} Manifests{{Referrers{{Digest}}}}"),
    );
    assert_eq!(by_digest(&summary["Referrers"]), both);
    assert_eq!(
        summary["Manifests"][0]["Referrers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let referrers = |digest: &str, filter: &str| {
        let query =
            format!("{{Referrers(repo: \"signed/app\" digest: \"{digest}\"{filter}){{{fields}}}}}");
        gql(client, url, &query)["Referrers"].clone()
    };
    let plain = &signed.plain.digest;
    assert_eq!(by_digest(&referrers(plain, "")), both);
    // zui sends `type: ""`: an empty type matches everything.
    assert_eq!(by_digest(&referrers(plain, " type: \"\"")), both);
    assert_eq!(
        by_digest(&referrers(plain, &format!(" type: [\"{SBOM}\"]"))),
        BTreeMap::from([(signed.sbom.digest.clone(), expected_sbom)])
    );
    assert_eq!(
        by_digest(&referrers(
            plain,
            &format!(" type: [\"{ATTESTATION}\", \"x/y\"]")
        )),
        BTreeMap::from([(signed.attestation.digest.clone(), expected_attestation)])
    );
    assert_eq!(
        referrers(plain, " type: [\"application/vnd.nothing\"]"),
        json!([])
    );
    // An image without referrers, and a digest nothing refers to.
    assert_eq!(referrers(&signed.cosigned.digest, ""), json!([]));
    assert_eq!(referrers(&sha256_digest(b"never pushed"), ""), json!([]));
    // Errors.
    assert_eq!(
        gql_error(
            client,
            url,
            &format!("{{Referrers(repo:\"nope/app\", digest:\"{plain}\"){{Digest}}}}"),
            "Referrers"
        ),
        "repo metadata not found for given repo name"
    );
    assert_eq!(
        gql_error(
            client,
            url,
            "{Referrers(repo:\"signed/app\", digest:\"not-a-digest\"){Digest}}",
            "Referrers"
        ),
        "bad digest string from request 'not-a-digest' invalid checksum digest format"
    );
}
