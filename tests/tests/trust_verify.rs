//! The trust extension's verdicts on the real binary, for signatures made by an independent
//! signer (tests/trust/sign.py) and pushed with skopeo (cosign's `.sig` tag) and oras
//! (referrers): cosign legacy and sigstore-bundle signatures by ECDSA P-256, Ed25519 and RSA
//! keys, notation JWS and COSE envelopes by P-256, P-384 and RSA chains, a self-signed leaf,
//! the signing-authority scheme; each is trusted only with the right key or certificate in the
//! right store, and every tampered variant (payload changed after signing, another digest, a
//! wrong size or media type, another key, an unknown critical header, an expired or not yet
//! valid certificate, an unrelated CA) stays untrusted. Uploads and deletions re-judge what is
//! already there at once; a certificate that expires turns its signature untrusted at the next
//! pass. Search (Image, ImageList, GlobalSearch with HasToBeSigned), the UI's pages and the
//! metrics all tell the same story.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_tests::search::{gql, refs, ImageBuilder};
use berth_tests::trust::{
    self, assert_verdicts, delete, signature_info, table_rows, ui_page, upload_certs, upload_key,
    verdicts, verified_total, Signer, Verdict, COSIGN, NOTATION, READER, WRITER,
};
use berth_tests::{authed, push_image, Image};
use serde_json::{json, Value};

/// Fresh images under `tags` in `repo`, pushed by the writer.
fn push_images(url: &str, repo: &str, tags: &[&str]) -> BTreeMap<String, Image> {
    let writer = authed(WRITER);
    tags.iter()
        .map(|tag| {
            let image = ImageBuilder::new()
                .created("2024-03-01T00:00:00Z")
                .fresh_layer(120)
                .build();
            push_image(&writer, url, repo, tag, &image);
            (tag.to_string(), image)
        })
        .collect()
}

fn cosign_trusted(pem: &str) -> Verdict {
    Verdict::new("cosign", true, pem)
}

fn notation_trusted(subject: &str) -> Verdict {
    Verdict::new("notation", true, subject)
}

fn untrusted(tool: &str) -> Verdict {
    Verdict::untrusted(tool)
}

/// Asserts every tag's verdicts at once, so a failure lists them all.
#[track_caller]
fn assert_all(url: &str, repo: &str, expected: &BTreeMap<&str, Vec<Verdict>>, when: &str) {
    let reader = authed(READER);
    let mut wrong = Vec::new();
    for (tag, want) in expected {
        let mut want = want.clone();
        want.sort();
        let (signed, got) = verdicts(&reader, url, repo, tag);
        if got != want || signed == want.is_empty() {
            wrong.push(format!(
                "{repo}:{tag}: IsSigned {signed}, got {got:?}\n    expected {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{when}:\n{}", wrong.join("\n"));
}

/// The verdict a cell of the UI's signature table shows: "trusted" or "not trusted" (maybe
/// followed by why), or, in a column headed "Trusted", "yes" or "no".
fn ui_verdict(cell: &str) -> Option<bool> {
    let cell = cell.trim().to_ascii_lowercase();
    let first = |word: &str| cell == word || cell.starts_with(&format!("{word} "));
    if first("not trusted") || first("untrusted") || cell == "no" {
        Some(false)
    } else if first("trusted") || cell == "yes" {
        Some(true)
    } else {
        None
    }
}

/// Collapses whitespace, as the UI's text shows a PEM.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn cosign_signatures_are_trusted_with_an_uploaded_key_and_only_then() {
    if !trust::signer_available() {
        return;
    }
    let berth = trust::start(true, true, json!({}));
    let (url, addr) = (berth.url.as_str(), berth.addr.as_str());
    let repo = "cosign/app";
    let tags = [
        "p256",
        "ed25519",
        "rsa",
        "two",
        "tampered",
        "other-digest",
        "bad-base64",
        "other-key",
        "bundle",
        "bundle-tampered",
        "bundle-other-digest",
        "plain",
        "after",
    ];
    let images = push_images(url, repo, &tags);
    let image = |tag: &str| &images[tag];
    let signer = Signer::new();
    let keys = signer.run(&[
        trust::key("p256", "p256"),
        trust::key("ed25519", "ed25519"),
        trust::key("rsa", "rsa2048"),
        trust::key("other", "p256"),
    ]);
    let pem = |i: usize| keys[i]["public_pem"].as_str().unwrap().to_string();
    let trusted_before = verified_total(url, "cosign", "trusted");
    let cosign = |tag: &str, signers: &[(&str, Option<&str>)]| {
        trust::cosign(addr, repo, image(tag), signers)
    };
    signer.run(&[
        cosign("p256", &[("p256", None)]),
        cosign("ed25519", &[("ed25519", None)]),
        cosign("rsa", &[("rsa", None)]),
        cosign("two", &[("p256", None), ("other", None)]),
        cosign("tampered", &[("p256", Some("tampered"))]),
        cosign("other-digest", &[("p256", Some("other-digest"))]),
        cosign("bad-base64", &[("p256", Some("bad-base64"))]),
        cosign("other-key", &[("other", None)]),
        trust::bundle(addr, repo, image("bundle"), "p256", None),
        trust::bundle(
            addr,
            repo,
            image("bundle-tampered"),
            "p256",
            Some("tampered"),
        ),
        trust::bundle(
            addr,
            repo,
            image("bundle-other-digest"),
            "p256",
            Some("other-digest"),
        ),
    ]);

    // No key yet: signed, nothing trusted.
    let u = || vec![untrusted("cosign")];
    let mut expected: BTreeMap<&str, Vec<Verdict>> = tags
        .iter()
        .filter(|tag| !["plain", "after"].contains(tag))
        .map(|tag| (*tag, u()))
        .collect();
    expected.insert("two", vec![untrusted("cosign"), untrusted("cosign")]);
    expected.insert("plain", vec![]);
    expected.insert("after", vec![]);
    assert_all(url, repo, &expected, "before any key");

    // The P-256 key: what it signed turns trusted without a new push.
    let (status, body) = upload_key(url, &pem(0));
    assert_eq!(status, 200, "{body}");
    expected.insert("p256", vec![cosign_trusted(&pem(0))]);
    expected.insert("two", vec![cosign_trusted(&pem(0)), untrusted("cosign")]);
    expected.insert("bundle", vec![cosign_trusted(&pem(0))]);
    assert_all(url, repo, &expected, "with the P-256 key");

    // A signature pushed after the upload is judged on arrival.
    signer.one(cosign("after", &[("p256", None)]));
    expected.insert("after", vec![cosign_trusted(&pem(0))]);
    assert_verdicts(&authed(READER), url, repo, "after", &expected["after"]);

    for i in [1, 2] {
        let (status, body) = upload_key(url, &pem(i));
        assert_eq!(status, 200, "{body}");
    }
    expected.insert("ed25519", vec![cosign_trusted(&pem(1))]);
    expected.insert("rsa", vec![cosign_trusted(&pem(2))]);
    assert_all(url, repo, &expected, "with the P-256, Ed25519 and RSA keys");
    assert!(
        verified_total(url, "cosign", "trusted") > trusted_before,
        "berth_trust_signatures_verified_total{{tool=cosign,result=trusted}} did not grow"
    );
    assert!(verified_total(url, "cosign", "untrusted") > 0.0);

    // Search's other views agree: ImageList, and GlobalSearch filtered on being signed.
    let reader = authed(READER);
    let data = gql(
        &reader,
        url,
        &format!("{{ImageList(repo:\"{repo}\"){{Results{{Tag IsSigned SignatureInfo{{Tool IsTrusted Author}}}}}}}}"),
    );
    let results = data["ImageList"]["Results"].as_array().expect("results");
    assert_eq!(
        results.len(),
        tags.len(),
        "signature tags are no images: {data}"
    );
    for result in results {
        let tag = result["Tag"].as_str().unwrap();
        assert_eq!(
            signature_info(&result["SignatureInfo"]),
            {
                let mut want = expected[tag].clone();
                want.sort();
                want
            },
            "ImageList {tag}"
        );
    }
    let data = gql(
        &reader,
        url,
        &format!("{{GlobalSearch(query:\"{repo}:\", filter:{{HasToBeSigned:true}}){{Page{{TotalCount}} Images{{RepoName Tag}}}}}}"),
    );
    let mut listed = refs(&data["GlobalSearch"]["Images"]);
    listed.sort();
    let mut signed: Vec<String> = tags
        .iter()
        .filter(|tag| **tag != "plain")
        .map(|tag| format!("{repo}:{tag}"))
        .collect();
    signed.sort();
    assert_eq!(listed, signed, "HasToBeSigned means signed, trusted or not");

    // The UI: the tag page lists each signature with its tool, verdict and author; the
    // repository page marks the signed tags.
    let page = ui_page(url, "/image/cosign%2Fapp/tag/two");
    let rows = table_rows(trust::section(&page, "signatures").expect("a signatures section"));
    let raw = rows.clone();
    let mut rows: Vec<(String, Option<bool>, String)> = rows
        .iter()
        .map(|cells| {
            let cell = |i: usize| cells.get(i).cloned().unwrap_or_default();
            (cell(0), ui_verdict(&cell(1)), cell(2))
        })
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (&rows[0].0, rows[0].1),
        (&"cosign".to_string(), Some(false)),
        "the other key's signature: {raw:?}"
    );
    assert_eq!(
        rows[1],
        ("cosign".to_string(), Some(true), one_line(&pem(0))),
        "the P-256 key's signature names the key"
    );
    let page = ui_page(url, "/image/cosign%2Fapp");
    let tag_rows: BTreeMap<String, String> = ["p256", "tampered", "plain"]
        .iter()
        .map(|tag| {
            let start = page
                .find(&format!("data-tag=\"{tag}\""))
                .unwrap_or_else(|| panic!("no row for {tag} on the repository page"));
            let row = &page[start..];
            let row = &row[..row.find("</tr>").unwrap_or(row.len())];
            (tag.to_string(), trust::html_text(&format!("<{row}")))
        })
        .collect();
    assert!(tag_rows["p256"].contains("signed"), "{tag_rows:?}");
    assert!(tag_rows["tampered"].contains("signed"), "{tag_rows:?}");
    assert!(!tag_rows["plain"].contains("signed"), "{tag_rows:?}");

    // Deleting the P-256 key turns its signatures untrusted again; the others stay.
    let id = trust::list(url, COSIGN)
        .iter()
        .find(|k| k["pem"].as_str().map(str::trim) == Some(pem(0).trim()))
        .expect("the P-256 key is listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = delete(url, COSIGN, Some(&id));
    assert_eq!(status, 200, "{body}");
    for tag in ["p256", "bundle", "after"] {
        expected.insert(tag, u());
    }
    expected.insert("two", vec![untrusted("cosign"), untrusted("cosign")]);
    assert_all(url, repo, &expected, "after deleting the P-256 key");
}

#[test]
fn notation_signatures_are_trusted_through_the_right_trust_store() {
    if !trust::signer_available() {
        return;
    }
    let berth = trust::start(true, true, json!({}));
    let (url, addr) = (berth.url.as_str(), berth.addr.as_str());
    let repo = "notation/app";
    let tags = [
        "jws",
        "cose",
        "rsa-jws",
        "rsa-cose",
        "p384-jws",
        "p384-cose",
        "selfsigned",
        "selfsigned-cose",
        "sa",
        "sa-cose",
        "sa-as-x509",
        "x509-as-sa",
        "expired",
        "not-yet-valid",
        "tampered",
        "other-digest",
        "wrong-size",
        "wrong-media-type",
        "other-key",
        "unknown-crit",
        "unknown-crit-cose",
        "unrelated",
        "both",
        "plain",
    ];
    let images = push_images(url, repo, &tags);
    let signer = Signer::new();
    let mut ops = Vec::new();
    for (prefix, alg) in [
        ("np", "p256"),
        ("nr", "rsa2048"),
        ("n384", "p384"),
        ("sa", "p256"),
        ("un", "p256"),
    ] {
        ops.extend(trust::chain(prefix, alg).0);
    }
    ops.push(trust::cert(
        "gen",
        "selfsigned-leaf",
        "rsa2048",
        "CN=test.example,O=Notary,L=Seattle,ST=WA,C=US",
        None,
    ));
    let mut expired = trust::cert(
        "expired",
        "leaf",
        "p256",
        "CN=expired,O=Example,C=US",
        Some("np-ca"),
    );
    expired["not_before"] = json!(-7200);
    expired["not_after"] = json!(-60);
    ops.push(expired);
    let mut future = trust::cert(
        "future",
        "leaf",
        "p256",
        "CN=future,O=Example,C=US",
        Some("np-ca"),
    );
    future["not_before"] = json!(3600);
    future["not_after"] = json!(7200);
    ops.push(future);
    ops.push(trust::cert(
        "tsa",
        "tsa",
        "p256",
        "CN=Example TSA,O=Example,C=US",
        Some("np-root"),
    ));
    ops.push(trust::key("ck", "p256"));
    let made = signer.run(&ops);
    let by_name: BTreeMap<&str, &Value> = made
        .iter()
        .filter_map(|m| m["name"].as_str().map(|name| (name, m)))
        .collect();
    let pem = |name: &str| by_name[name]["pem"].as_str().unwrap().to_string();

    let chain = |prefix: &str| {
        [
            format!("{prefix}-leaf"),
            format!("{prefix}-ca"),
            format!("{prefix}-root"),
        ]
    };
    let sign = |tag: &str, names: &[String], options: Value| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        trust::notation(addr, repo, &images[tag], &names, options)
    };
    let np = chain("np");
    let sa = json!({"scheme": "notary.x509.signingAuthority"});
    let cose = json!({"envelope": "cose"});
    let tamper = |t: &str| json!({"tamper": t});
    signer.run(&[
        sign("jws", &np, json!({})),
        sign("cose", &np, cose.clone()),
        sign("rsa-jws", &chain("nr"), json!({})),
        sign("rsa-cose", &chain("nr"), cose.clone()),
        sign("p384-jws", &chain("n384"), json!({})),
        sign("p384-cose", &chain("n384"), cose.clone()),
        sign("selfsigned", &["gen".to_string()], json!({})),
        sign("selfsigned-cose", &["gen".to_string()], cose.clone()),
        sign("sa", &chain("sa"), sa.clone()),
        sign(
            "sa-cose",
            &chain("sa"),
            json!({"scheme": sa["scheme"], "envelope": "cose"}),
        ),
        sign("sa-as-x509", &chain("sa"), json!({})),
        sign("x509-as-sa", &np, sa.clone()),
        sign(
            "expired",
            &["expired".into(), np[1].clone(), np[2].clone()],
            json!({}),
        ),
        sign(
            "not-yet-valid",
            &["future".into(), np[1].clone(), np[2].clone()],
            json!({}),
        ),
        sign("tampered", &np, tamper("tampered")),
        sign("other-digest", &np, tamper("other-digest")),
        sign("wrong-size", &np, tamper("wrong-size")),
        sign("wrong-media-type", &np, tamper("wrong-media-type")),
        sign("other-key", &np, tamper("other-key")),
        sign("unknown-crit", &np, tamper("unknown-crit")),
        sign(
            "unknown-crit-cose",
            &np,
            json!({"tamper": "unknown-crit", "envelope": "cose"}),
        ),
        sign("unrelated", &chain("un"), json!({})),
        sign("both", &np, json!({})),
        trust::cosign(addr, repo, &images["both"], &[("ck", None)]),
    ]);

    let mut expected: BTreeMap<&str, Vec<Verdict>> = tags
        .iter()
        .map(|tag| (*tag, vec![untrusted("notation")]))
        .collect();
    expected.insert("both", vec![untrusted("notation"), untrusted("cosign")]);
    expected.insert("plain", vec![]);
    assert_all(url, repo, &expected, "before any certificate");

    let trusted_before = verified_total(url, "notation", "trusted");
    for (name, store) in [
        ("np-root", None),
        ("nr-root", Some("ca")),
        ("n384-root", Some("ca")),
        ("gen", Some("ca")),
        ("sa-root", Some("signingAuthority")),
        ("tsa", Some("tsa")),
    ] {
        let (status, body) = upload_certs(url, store, &pem(name));
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (status, body) = upload_key(url, by_name["ck"]["public_pem"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    let subject = |name: &str| by_name[name]["subject"].as_str().unwrap().to_string();
    for (tag, leaf) in [
        ("jws", "np-leaf"),
        ("cose", "np-leaf"),
        ("rsa-jws", "nr-leaf"),
        ("rsa-cose", "nr-leaf"),
        ("p384-jws", "n384-leaf"),
        ("p384-cose", "n384-leaf"),
        ("selfsigned", "gen"),
        ("selfsigned-cose", "gen"),
        ("sa", "sa-leaf"),
        ("sa-cose", "sa-leaf"),
    ] {
        expected.insert(tag, vec![notation_trusted(&subject(leaf))]);
    }
    assert_eq!(subject("np-leaf"), "CN=np signer,O=Example,C=US");
    assert_eq!(
        subject("gen"),
        "CN=test.example,O=Notary,L=Seattle,ST=WA,C=US"
    );
    expected.insert(
        "both",
        vec![
            notation_trusted(&subject("np-leaf")),
            cosign_trusted(by_name["ck"]["public_pem"].as_str().unwrap()),
        ],
    );
    assert_all(url, repo, &expected, "with the roots in their stores");
    assert!(
        verified_total(url, "notation", "trusted") > trusted_before,
        "berth_trust_signatures_verified_total{{tool=notation,result=trusted}} did not grow"
    );
    assert!(verified_total(url, "notation", "untrusted") > 0.0);

    // The UI names the leaf's subject.
    let page = ui_page(url, "/image/notation%2Fapp/tag/jws");
    let rows = table_rows(trust::section(&page, "signatures").expect("a signatures section"));
    let rows: Vec<(String, Option<bool>, String)> = rows
        .iter()
        .map(|cells| (cells[0].clone(), ui_verdict(&cells[1]), cells[2].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![("notation".to_string(), Some(true), subject("np-leaf"))]
    );

    // Without the P-256 root its chains are untrusted again.
    let root_id = by_name["np-root"]["id"].as_str().unwrap();
    let (status, body) = delete(url, NOTATION, Some(root_id));
    assert_eq!(status, 200, "{body}");
    expected.insert("jws", vec![untrusted("notation")]);
    expected.insert("cose", vec![untrusted("notation")]);
    expected.insert(
        "both",
        vec![
            untrusted("notation"),
            cosign_trusted(by_name["ck"]["public_pem"].as_str().unwrap()),
        ],
    );
    assert_all(url, repo, &expected, "after deleting the P-256 root");

    // The same root in the signing-authority store trusts that scheme only.
    let (status, body) = upload_certs(url, Some("signingAuthority"), &pem("np-root"));
    assert_eq!(status, 200, "{body}");
    expected.insert("x509-as-sa", vec![notation_trusted(&subject("np-leaf"))]);
    assert_all(
        url,
        repo,
        &expected,
        "with the P-256 root as a signing authority",
    );
}

#[test]
fn a_signing_certificate_that_expires_turns_its_signature_untrusted() {
    if !trust::signer_available() {
        return;
    }
    let berth = trust::start(
        false,
        true,
        json!({"extensions": {"trust": {"interval": "2s"}}}),
    );
    let (url, addr) = (berth.url.as_str(), berth.addr.as_str());
    let repo = "expiring/app";
    let images = push_images(url, repo, &["short", "long"]);
    let signer = Signer::new();
    let (mut ops, long_chain) = trust::chain("long", "p256");
    // The short-lived leaf: valid from a minute ago for 10 more seconds.
    let mut short = trust::cert(
        "short",
        "leaf",
        "p256",
        "CN=short,O=Example,C=US",
        Some("long-ca"),
    );
    short["not_before"] = json!(-60);
    short["not_after"] = json!(10);
    ops.push(short);
    let long: Vec<&str> = long_chain.iter().map(String::as_str).collect();
    ops.push(trust::notation(
        addr,
        repo,
        &images["long"],
        &long,
        json!({}),
    ));
    ops.push(trust::notation(
        addr,
        repo,
        &images["short"],
        &["short", "long-ca", "long-root"],
        json!({"envelope": "cose"}),
    ));
    // Measured from before the certificate is made: an upper bound of its age.
    let issued = Instant::now();
    let made = signer.run(&ops);
    let (status, body) = upload_certs(url, Some("ca"), made[0]["pem"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    let reader = authed(READER);
    assert_verdicts(
        &reader,
        url,
        repo,
        "long",
        &[notation_trusted("CN=long signer,O=Example,C=US")],
    );
    let (_, short_verdicts) = verdicts(&reader, url, repo, "short");
    assert!(
        issued.elapsed() < Duration::from_secs(9),
        "too slow to see the short-lived certificate while valid"
    );
    assert_eq!(
        short_verdicts,
        vec![notation_trusted("CN=short,O=Example,C=US")],
        "valid for now"
    );
    // Expired within 10 s; the 2 s pass must notice within 30 s: search stops trusting it
    // and the UI shows the verifier's reason, which only a pass re-judging it stores.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (signed, got) = verdicts(&reader, url, repo, "short");
        let page = trust::ui_page(url, &format!("/image/{repo}/tag/short"));
        let rejudged = trust::section(&page, "signatures")
            .is_some_and(|section| trust::html_text(section).contains("certificate expired at"));
        if got == vec![untrusted("notation")] && rejudged {
            assert!(signed, "still signed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?} 30 s after the certificate expired"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_verdicts(
        &reader,
        url,
        repo,
        "long",
        &[notation_trusted("CN=long signer,O=Example,C=US")],
    );
}
