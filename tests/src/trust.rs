//! Helpers of the trust tests (tests/tests/trust_*.rs): the independent signer
//! (tests/trust/sign.py: keys, certificates, cosign and notation signatures, pushed with oras
//! and skopeo), berth with the trust extension behind htpasswd ([`start`]: `root` is the
//! admin, `alice` may write everywhere, `bob` and anonymous read), the key and certificate
//! endpoints, and the verdicts as search reports them ([`verdicts`]).
//!
//! Rules: the signer shares no code with the daemon; it runs as one `python3` process per
//! batch of operations, its work directory (keys, certificates) lives as long as the
//! [`Signer`]. A missing Python package skips the test, or fails it under
//! `BERTH_REQUIRE_TOOLS=1`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::access::ALL;
use crate::api::parts;
use crate::search::gql;
use crate::{authed, require_tool, run_cmd, Berth, Client, Image};

/// zot's trust routes.
pub const COSIGN: &str = "/v2/_zot/ext/cosign";
pub const NOTATION: &str = "/v2/_zot/ext/notation";
/// The largest key or certificate body the endpoints take.
pub const MAX_BODY: usize = 64 * 1024;
/// The admin, a writer and a reader (passwords: [`crate::HTPASSWD_SECRET`]).
pub const ADMIN: &str = "root";
pub const WRITER: &str = "alice";
pub const READER: &str = "bob";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The directory of the signer's Python modules.
pub fn signer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("trust")
}

/// True when python3 with `cryptography`, `jwcrypto`, `pycose` and `oras` is there; panics
/// instead under `BERTH_REQUIRE_TOOLS=1`.
pub fn signer_available() -> bool {
    if !require_tool("python3") || !require_tool("skopeo") {
        return false;
    }
    let (ok, _, stderr) = run_cmd(Command::new("python3").args([
        "-c",
        "import cryptography, jwcrypto, pycose, cbor2, oras.client",
    ]));
    if !ok {
        if std::env::var("BERTH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("the signer's python packages are missing (BERTH_REQUIRE_TOOLS=1): {stderr}");
        }
        eprintln!("SKIPPED: the signer's python packages are missing: {stderr}");
    }
    ok
}

/// The signer over one work directory of keys and certificates.
pub struct Signer {
    dir: tempfile::TempDir,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

impl Signer {
    pub fn new() -> Signer {
        Signer {
            dir: tempfile::Builder::new()
                .prefix("berth-signer-")
                .tempdir()
                .expect("signer work dir"),
        }
    }

    /// Runs `ops` (see sign.py) in one process; returns one result per operation.
    #[track_caller]
    pub fn run(&self, ops: &[Value]) -> Vec<Value> {
        let mut child = Command::new("python3")
            .arg(signer_dir().join("sign.py"))
            .arg(self.dir.path())
            .arg("batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3 sign.py");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(&serde_json::to_vec(ops).expect("ops serialize"))
            .expect("write ops");
        let output = child.wait_with_output().expect("sign.py output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "sign.py failed on {ops:#?}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let results: Vec<Value> = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("sign.py output is not a JSON list ({e}): {stdout}"));
        assert_eq!(results.len(), ops.len(), "{stdout}");
        results
    }

    /// Runs one operation.
    #[track_caller]
    pub fn one(&self, op: Value) -> Value {
        self.run(&[op]).remove(0)
    }
}

/// A new key: `{"op": "key"}`; results carry `public_pem` and `private_pem`.
pub fn key(name: &str, alg: &str) -> Value {
    json!({"op": "key", "name": name, "alg": alg})
}

/// A certificate of `kind` (root, intermediate, leaf, selfsigned-leaf, tsa) with a new key
/// of `alg` named like it, issued by `issuer` (a certificate name) when given.
pub fn cert(name: &str, kind: &str, alg: &str, subject: &str, issuer: Option<&str>) -> Value {
    let mut op = json!({"op": "cert", "name": name, "kind": kind, "alg": alg, "subject": subject});
    if let Some(issuer) = issuer {
        op["issuer"] = json!(issuer);
    }
    op
}

/// A root, an intermediate and a code-signing leaf named `PREFIX-root`, `PREFIX-ca`,
/// `PREFIX-leaf` (subjects `CN=PREFIX root|intermediate|signer,O=Example,C=US`); returns the
/// operations and the chain, leaf first.
pub fn chain(prefix: &str, alg: &str) -> (Vec<Value>, Vec<String>) {
    let names = [
        format!("{prefix}-leaf"),
        format!("{prefix}-ca"),
        format!("{prefix}-root"),
    ];
    let ops = vec![
        cert(
            &names[2],
            "root",
            alg,
            &format!("CN={prefix} root,O=Example,C=US"),
            None,
        ),
        cert(
            &names[1],
            "intermediate",
            alg,
            &format!("CN={prefix} intermediate,O=Example,C=US"),
            Some(&names[2]),
        ),
        cert(
            &names[0],
            "leaf",
            alg,
            &format!("CN={prefix} signer,O=Example,C=US"),
            Some(&names[1]),
        ),
    ];
    (ops, names.to_vec())
}

/// Where the signer pushes: `repo` on `addr` as `user` (None: anonymously), with `via`
/// (oras for referrers, skopeo for cosign's `.sig` tag).
pub fn target(addr: &str, repo: &str, user: Option<&str>, via: &str) -> Value {
    let mut target = json!({"registry": addr, "repo": repo, "via": via});
    if let Some(user) = user {
        target["user"] = json!(user);
        target["password"] = json!(crate::HTPASSWD_SECRET);
    }
    target
}

/// The OCI descriptor of an image manifest, as signatures name their subject.
pub fn descriptor(image: &Image) -> Value {
    json!({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len()})
}

/// cosign's legacy signature of `image` by each of `signers` (`(key, tamper)`), one layer
/// each, pushed with skopeo under `sha256-<hex>.sig` in `repo`.
pub fn cosign(addr: &str, repo: &str, image: &Image, signers: &[(&str, Option<&str>)]) -> Value {
    let signers: Vec<Value> = signers
        .iter()
        .map(|(key, tamper)| json!({"key": key, "tamper": tamper}))
        .collect();
    json!({
        "op": "cosign", "signers": signers, "reference": format!("{addr}/{repo}"),
        "subject": image.digest, "push": target(addr, repo, Some(WRITER), "skopeo"),
    })
}

/// cosign's sigstore bundle v0.3 referrer of `image`, pushed with oras.
pub fn bundle(addr: &str, repo: &str, image: &Image, key: &str, tamper: Option<&str>) -> Value {
    json!({
        "op": "bundle", "key": key, "name": format!("{addr}/{repo}"),
        "subject": descriptor(image), "tamper": tamper,
        "push": target(addr, repo, Some(WRITER), "oras"),
    })
}

/// notation's signature referrer of `image` by the leaf `chain[0]` (its key has the leaf's
/// name), pushed with oras. `options` merges into the operation (`envelope`, `scheme`,
/// `tamper`, `other_key`).
pub fn notation(addr: &str, repo: &str, image: &Image, chain: &[&str], options: Value) -> Value {
    let mut op = json!({
        "op": "notation", "key": chain[0], "chain": chain, "subject": descriptor(image),
        "push": target(addr, repo, Some(WRITER), "oras"),
    });
    crate::merge_patch(&mut op, &options);
    op
}

/// The trust extension's config with `cosign` and `notation` as given, search, the UI and
/// metrics on, and `patch` merged in.
pub fn config(cosign: bool, notation: bool, patch: Value) -> Value {
    let mut config = json!({"extensions": {
        "search": {"enable": true},
        "ui": {"enable": true},
        "metrics": {"enable": true},
        "trust": {"enable": true, "cosign": cosign, "notation": notation},
    }});
    crate::merge_patch(&mut config, &patch);
    config
}

/// berth behind htpasswd with the trust extension (see [`config`]): [`ADMIN`] in
/// `adminPolicy`, [`WRITER`] with every action everywhere, everyone else (anonymous too)
/// reads.
pub fn start(cosign: bool, notation: bool, patch: Value) -> Berth {
    let access = json!({
        "adminPolicy": {"users": [ADMIN], "actions": ALL},
        "repositories": {"**": {
            "policies": [{"users": [WRITER], "actions": ALL}],
            "defaultPolicy": ["read"],
            "anonymousPolicy": ["read"],
        }},
    });
    crate::access::start(access, config(cosign, notation, patch))
}

/// The admin's client.
pub fn admin() -> Client {
    authed(ADMIN)
}

/// POST a body to `path` (with `query`) as `client`.
pub fn post(
    client: &Client,
    url: &str,
    path: &str,
    query: &str,
    body: impl Into<Vec<u8>>,
) -> Response {
    client
        .post(format!("{url}{path}{query}"))
        .header("content-type", "application/x-pem-file")
        .body(body.into())
        .send()
        .expect("POST trust")
}

/// Uploads a public key as the admin; returns the status and body.
pub fn upload_key(url: &str, pem: &str) -> (u16, Value) {
    json_parts(post(&admin(), url, COSIGN, "", pem))
}

/// Uploads certificates into `store` (None: no `truststoreType`) as the admin.
pub fn upload_certs(url: &str, store: Option<&str>, pem: &str) -> (u16, Value) {
    let query = store
        .map(|s| format!("?truststoreType={s}"))
        .unwrap_or_default();
    json_parts(post(&admin(), url, NOTATION, &query, pem))
}

/// DELETE `path?id=ID` as the admin (no `id` when None).
pub fn delete(url: &str, path: &str, id: Option<&str>) -> (u16, Value) {
    let query = id.map(|id| format!("?id={id}")).unwrap_or_default();
    json_parts(
        admin()
            .delete(format!("{url}{path}{query}"))
            .send()
            .expect("DELETE trust"),
    )
}

/// GET the key list (`path` = [`COSIGN`]) or certificate list ([`NOTATION`]) as the admin;
/// asserts 200 and returns the list.
#[track_caller]
pub fn list(url: &str, path: &str) -> Vec<Value> {
    let (status, body) = json_parts(admin().get(format!("{url}{path}")).send().expect("GET"));
    assert_eq!(status, 200, "GET {path}: {body}");
    let field = if path == COSIGN {
        "keys"
    } else {
        "certificates"
    };
    body[field]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no `{field}` list in {body}"))
        .clone()
}

/// Status and body (JSON, else the text as a JSON string).
pub fn json_parts(response: Response) -> (u16, Value) {
    let (status, _, body) = parts(response);
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// One signature as search reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Verdict {
    pub tool: String,
    pub trusted: bool,
    pub author: String,
}

impl Verdict {
    pub fn new(tool: &str, trusted: bool, author: &str) -> Verdict {
        Verdict {
            tool: tool.into(),
            trusted,
            author: author.trim().into(),
        }
    }

    pub fn untrusted(tool: &str) -> Verdict {
        Verdict::new(tool, false, "")
    }
}

/// `IsSigned` and the sorted `SignatureInfo` of `repo:tag` from the `Image` query.
#[track_caller]
pub fn verdicts(client: &Client, url: &str, repo: &str, tag: &str) -> (bool, Vec<Verdict>) {
    let query = format!(
        "{{Image(image:\"{repo}:{tag}\"){{IsSigned SignatureInfo{{Tool IsTrusted Author}}}}}}"
    );
    let image = gql(client, url, &query)["Image"].clone();
    (
        image["IsSigned"]
            .as_bool()
            .unwrap_or_else(|| panic!("{repo}:{tag}: no IsSigned in {image}")),
        signature_info(&image["SignatureInfo"]),
    )
}

/// A `SignatureInfo` list as sorted [`Verdict`]s.
pub fn signature_info(list: &Value) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = list
        .as_array()
        .unwrap_or_else(|| panic!("SignatureInfo is not a list: {list}"))
        .iter()
        .map(|s| Verdict {
            tool: s["Tool"].as_str().unwrap_or("<null>").to_string(),
            trusted: s["IsTrusted"].as_bool().unwrap_or(false),
            author: s["Author"].as_str().unwrap_or("").trim().to_string(),
        })
        .collect();
    verdicts.sort();
    verdicts
}

/// Asserts the verdicts of `repo:tag` (in any order; `signed` is `IsSigned`).
#[track_caller]
pub fn assert_verdicts(client: &Client, url: &str, repo: &str, tag: &str, expected: &[Verdict]) {
    let mut expected = expected.to_vec();
    expected.sort();
    let (signed, got) = verdicts(client, url, repo, tag);
    assert_eq!(got, expected, "verdicts of {repo}:{tag}");
    assert_eq!(signed, !expected.is_empty(), "IsSigned of {repo}:{tag}");
}

/// The value of `berth_trust_signatures_verified_total{tool, result}` (0 when absent), read
/// by the admin (metrics need an authenticated user here).
pub fn verified_total(url: &str, tool: &str, result: &str) -> f64 {
    crate::scrape_metrics(&admin(), url).sum(
        "berth_trust_signatures_verified_total",
        &[("tool", tool), ("result", result)],
    )
}

/// Text of an HTML fragment: tags dropped, entities `&amp; &lt; &gt; &quot; &#39;` decoded,
/// whitespace collapsed.
pub fn html_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The rows (`<tr>`) of an HTML fragment, each as its cells' texts.
pub fn table_rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap_or("");
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = cell.split("</td>").next().unwrap_or("");
                    // Drop the rest of the opening tag.
                    let cell = cell.split_once('>').map(|(_, rest)| rest).unwrap_or("");
                    html_text(cell)
                })
                .collect()
        })
        .filter(|cells: &Vec<String>| !cells.is_empty())
        .collect()
}

/// The part of `html` from the element with `id="ID"` to the end of its `</section>`.
pub fn section<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    Some(&rest[..rest.find("</section>").unwrap_or(rest.len())])
}

/// GET a UI page anonymously (anonymous may read every repository); asserts 200.
#[track_caller]
pub fn ui_page(url: &str, path: &str) -> String {
    let response = crate::http()
        .get(format!("{url}{path}"))
        .send()
        .expect("GET UI page");
    let status = response.status().as_u16();
    let body = response.text().expect("page body");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}
