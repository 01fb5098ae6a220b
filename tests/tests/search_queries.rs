//! zot's search schema and the fields of its objects on the real binary: introspection lists
//! exactly what `schema.graphql` declares (zli checks arguments this way), `ExpandedRepoInfo`
//! and `Image` compute every field as zot does (sizes, platforms, vendors, history, annotations
//! with their label fallbacks, download counts and timestamps), Docker manifests are listed like
//! OCI ones (berth's decision), and the CVE queries answer that CVE search is off.

use std::collections::{BTreeMap, BTreeSet};

use berth_tests::api::{put_manifest, DOCKER_MANIFEST};
use berth_tests::search::{
    gql, gql_error, image_size, now_unix, refs, search_config, seed_catalog, unix_of, ImageBuilder,
};
use berth_tests::{
    fetch_manifest, http, push_blob, push_image, sha256_digest, Berth, Image, MANIFEST_ACCEPT,
};
use serde_json::{json, Value};

/// zot's schema as berth serves it (the file the server embeds).
fn schema_text() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../daemon/src/ext/search/schema.graphql"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every `type`/`input`/`enum` block: kind, name, and its members in order. A member is
/// (name, type, arguments as (name, type)); enum values have an empty type.
type Members = Vec<(String, String, Vec<(String, String)>)>;

fn parse_sdl(text: &str) -> BTreeMap<String, (String, Members)> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String, String)> = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some((kind, name, body)) = current.as_mut() {
            if line == "}" {
                blocks.insert(name.clone(), (kind.clone(), parse_members(body)));
                current = None;
            } else {
                body.push(' ');
                body.push_str(line);
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() == 3 && words[2] == "{" && ["type", "input", "enum"].contains(&words[0]) {
            current = Some((words[0].into(), words[1].into(), String::new()));
        }
    }
    blocks
}

fn parse_members(body: &str) -> Members {
    let spaced = body
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(':', " : ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut members = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let name = tokens[i].to_string();
        i += 1;
        let mut args = Vec::new();
        if tokens.get(i) == Some(&"(") {
            i += 1;
            while tokens[i] != ")" {
                assert_eq!(tokens[i + 1], ":", "argument of {name}");
                args.push((tokens[i].to_string(), tokens[i + 2].to_string()));
                i += 3;
            }
            i += 1;
        }
        let ty = if tokens.get(i) == Some(&":") {
            i += 2;
            tokens[i - 1].to_string()
        } else {
            String::new()
        };
        members.push((name, ty, args));
    }
    members
}

fn render(ty: &Value) -> String {
    match ty["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", render(&ty["ofType"])),
        Some("LIST") => format!("[{}]", render(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap_or("?").to_string(),
    }
}

const INTROSPECTION: &str = "query Introspect {__schema{queryType{name} \
     types{kind name fields{name args{name type{...T}} type{...T}} inputFields{name type{...T}} \
     enumValues{name}}}} \
     fragment T on __Type {kind name ofType{kind name ofType{kind name ofType{kind name}}}}";

#[test]
fn introspection_lists_the_schema_file_exactly() {
    let berth = Berth::start_with(search_config());
    let sdl = parse_sdl(&schema_text());
    assert!(sdl.len() > 20, "the schema file parsed: {sdl:?}");
    let data = gql(&http(), &berth.url, INTROSPECTION);
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    let served: BTreeMap<String, Value> = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    for (name, (kind, members)) in &sdl {
        let ty = served
            .get(name)
            .unwrap_or_else(|| panic!("type {name} is not served"));
        let got: Members = match kind.as_str() {
            "enum" => ty["enumValues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v["name"].as_str().unwrap().into(), String::new(), vec![]))
                .collect(),
            "input" => ty["inputFields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap().into(),
                        render(&f["type"]),
                        vec![],
                    )
                })
                .collect(),
            _ => ty["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let args = f["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| (a["name"].as_str().unwrap().into(), render(&a["type"])))
                        .collect();
                    (f["name"].as_str().unwrap().into(), render(&f["type"]), args)
                })
                .collect(),
        };
        assert_eq!(&got, members, "{kind} {name}");
    }
    // The root fields zli and zui call, with zot's argument names in zot's order.
    let (_, query) = &sdl["Query"];
    let image_list = query.iter().find(|m| m.0 == "GlobalSearch").unwrap();
    assert_eq!(
        image_list.2,
        [
            ("query", "String!"),
            ("filter", "Filter"),
            ("requestedPage", "PageInput")
        ]
        .map(|(n, t)| (n.to_string(), t.to_string()))
    );
    assert_eq!(query.len(), 15, "Query fields: {query:?}");
}

#[test]
fn expanded_repo_info_summarises_a_repository() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let catalog = seed_catalog(&client, url);
    let data = gql(
        &client,
        url,
        "{ExpandedRepoInfo(repo:\"team/app\"){Images{Tag Digest LastUpdated IsDeletable Vendor} \
         Summary{Name LastUpdated Size Platforms{Os Arch} Vendors NewestImage{Digest LastUpdated} \
         DownloadCount StarCount IsBookmarked IsStarred}}}",
    );
    let info = &data["ExpandedRepoInfo"];
    let images = info["Images"].as_array().unwrap();
    let tags: Vec<&str> = images.iter().map(|i| i["Tag"].as_str().unwrap()).collect();
    assert_eq!(tags.len(), 4, "{info}");
    // Newest first: 2.0 and latest (the same image) in either order, then 1.1, 1.0.
    assert_eq!(
        BTreeSet::from([tags[0], tags[1]]),
        BTreeSet::from(["2.0", "latest"])
    );
    assert_eq!(tags[2..], ["1.1", "1.0"]);
    let vendors: BTreeMap<&str, &str> = images
        .iter()
        .map(|i| (i["Tag"].as_str().unwrap(), i["Vendor"].as_str().unwrap()))
        .collect();
    assert_eq!(vendors["1.0"], "Old Vendor");
    assert_eq!(
        vendors["1.1"], "LabelVendor",
        "a config label when no annotation"
    );
    assert_eq!(vendors["2.0"], "ACME", "the label-schema annotation");
    assert!(images.iter().all(|i| i["IsDeletable"] == true), "{info}");
    assert_eq!(images[2]["LastUpdated"], "2024-03-01T10:00:00Z");

    let summary = &info["Summary"];
    assert_eq!(summary["Name"], "team/app");
    assert_eq!(summary["LastUpdated"], "2024-04-01T10:00:00Z");
    assert_eq!(summary["NewestImage"]["Digest"], catalog.team20.digest);
    // Every blob reachable from a tag, each once (1.0 and 1.1 share a layer).
    let mut unique = BTreeMap::new();
    for image in [&catalog.team10, &catalog.team11, &catalog.team20] {
        unique.insert(image.digest.clone(), image.manifest.len());
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            unique.insert(sha256_digest(blob), blob.len());
        }
    }
    assert_eq!(unique.len(), 10, "1.0 and 1.1 share a layer");
    assert_eq!(summary["Size"], unique.values().sum::<usize>().to_string());
    let platforms: BTreeSet<String> = summary["Platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["Os"].as_str().unwrap(),
                p["Arch"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64".into(), "linux/arm64/v8".into()])
    );
    // Vendors come from manifest annotations only (not 1.1's config label).
    let vendors: BTreeSet<&str> = summary["Vendors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(vendors, BTreeSet::from(["ACME", "Old Vendor"]));
    assert_eq!(summary["DownloadCount"], 0);
    assert_eq!(summary["StarCount"], 0);
    assert_eq!(summary["IsBookmarked"], false);
    assert_eq!(summary["IsStarred"], false);

    // Errors: zot's texts.
    let error = |query: &str, field: &str| gql_error(&client, url, query, field);
    assert_eq!(
        error(
            "{ExpandedRepoInfo(repo:\"team\"){Summary{Name}}}",
            "ExpandedRepoInfo"
        ),
        "repo metadata not found for given repo name"
    );
    assert_eq!(
        error("{Image(image:\"nope/repo:v1\"){Tag}}", "Image"),
        "repo metadata not found for given repo name"
    );
    assert_eq!(
        error("{Image(image:\"team/app\"){Tag}}", "Image"),
        "no reference provided"
    );
    assert_eq!(
        error("{Image(image:\"team/app:9.9\"){Tag}}", "Image"),
        "can't find image: team/app:9.9"
    );
}

#[test]
fn image_fields_come_from_the_config_annotations_and_labels() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let catalog = seed_catalog(&client, url);
    let image = &catalog.team20;
    let data = gql(
        &client,
        url,
        "{Image(image:\"team/app:2.0\"){RepoName Tag Digest MediaType Size DownloadCount \
         LastUpdated Description IsSigned SignatureInfo{Tool} Licenses Labels Title Source \
         Documentation Vendor Authors IsDeletable Referrers{Digest} \
         Vulnerabilities{MaxSeverity Count UnknownCount LowCount MediumCount HighCount CriticalCount} \
         Manifests{Digest ConfigDigest LastUpdated Size IsSigned Platform{Os Arch} ArtifactType \
         Vulnerabilities{Count} Referrers{Digest} Layers{Size Digest} \
         History{Layer{Size Digest} HistoryDescription{Created CreatedBy EmptyLayer}}}}}",
    );
    let summary = &data["Image"];
    let size = image_size(image).to_string();
    let layers: Vec<Value> = image
        .layers
        .iter()
        .map(|l| json!({"Size": l.len().to_string(), "Digest": sha256_digest(l)}))
        .collect();
    let created = "2024-04-01T10:00:00Z";
    let history = json!([
        {"Layer": layers[0], "HistoryDescription": {"Created": created, "CreatedBy": "ADD rootfs.tar /", "EmptyLayer": false}},
        {"Layer": null, "HistoryDescription": {"Created": created, "CreatedBy": "ENV TIER=web", "EmptyLayer": true}},
        {"Layer": layers[1], "HistoryDescription": {"Created": created, "CreatedBy": "COPY app /app", "EmptyLayer": false}},
    ]);
    let zero = json!({"MaxSeverity": "", "Count": 0, "UnknownCount": 0, "LowCount": 0,
        "MediumCount": 0, "HighCount": 0, "CriticalCount": 0});
    assert_eq!(
        summary,
        &json!({
            "RepoName": "team/app", "Tag": "2.0", "Digest": image.digest,
            "MediaType": "application/vnd.oci.image.manifest.v1+json",
            "Size": size, "DownloadCount": 0, "LastUpdated": created,
            "Description": "The app", "IsSigned": false, "SignatureInfo": [],
            "Licenses": "MIT", "Labels": "tier=web", "Title": "Team App",
            "Source": "https://src.example/app", "Documentation": "https://docs.example/app",
            "Vendor": "ACME", "Authors": "Jane Doe", "IsDeletable": null, "Referrers": [],
            "Vulnerabilities": zero,
            "Manifests": [{
                "Digest": image.digest, "ConfigDigest": sha256_digest(&image.config),
                "LastUpdated": created, "Size": size, "IsSigned": false,
                "Platform": {"Os": "linux", "Arch": "arm64/v8"},
                "ArtifactType": "application/vnd.oci.image.config.v1+json",
                "Vulnerabilities": null, "Referrers": [], "Layers": layers, "History": history,
            }],
        })
    );
    // Without history in the config: one entry per layer with an empty description.
    let data = gql(
        &client,
        url,
        "{Image(image:\"team/app:1.1\"){Title Labels Manifests{History{Layer{Digest} \
         HistoryDescription{CreatedBy}}}}}",
    );
    let history = &data["Image"]["Manifests"][0]["History"];
    assert_eq!(
        history,
        &json!([
            {"Layer": {"Digest": sha256_digest(&catalog.team11.layers[0])}, "HistoryDescription": {"CreatedBy": null}},
            {"Layer": {"Digest": sha256_digest(&catalog.team11.layers[1])}, "HistoryDescription": {"CreatedBy": null}},
        ])
    );
    assert_eq!(
        data["Image"]["Title"], "",
        "no title anywhere: an empty string"
    );
}

#[test]
fn download_count_and_timestamps() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let before = now_unix();
    let first = ImageBuilder::new()
        .created("2022-01-01T00:00:00Z")
        .fresh_layer(100)
        .build();
    push_image(&client, url, "stats/app", "v1", &first);
    let query = "{Image(image:\"stats/app:v1\"){Digest DownloadCount LastPullTimestamp \
                 PushTimestamp TaggedTimestamp Manifests{DownloadCount}}}";
    let image = gql(&client, url, query)["Image"].clone();
    assert_eq!(image["DownloadCount"], 0);
    // Never pulled: zot says the epoch; null is accepted too.
    assert!(
        image["LastPullTimestamp"].is_null()
            || image["LastPullTimestamp"] == "1970-01-01T00:00:00Z",
        "{image}"
    );
    let pushed = unix_of(
        image["PushTimestamp"]
            .as_str()
            .expect("PushTimestamp is set"),
    );
    let tagged = unix_of(
        image["TaggedTimestamp"]
            .as_str()
            .expect("TaggedTimestamp is set"),
    );
    let after = now_unix();
    for time in [pushed, tagged] {
        assert!((before - 1..=after + 1).contains(&time), "{image}");
    }
    // HEADs do not count, GETs by tag and by digest do.
    for _ in 0..2 {
        let head = client
            .head(format!("{url}/v2/stats/app/manifests/v1"))
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .unwrap();
        assert_eq!(head.status().as_u16(), 200);
    }
    let pulled_from = now_unix();
    assert_eq!(fetch_manifest(&client, url, "stats/app", "v1").0, 200);
    assert_eq!(fetch_manifest(&client, url, "stats/app", "v1").0, 200);
    assert_eq!(
        fetch_manifest(&client, url, "stats/app", &first.digest).0,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let image = loop {
        let image = gql(&client, url, query)["Image"].clone();
        if image["DownloadCount"] == 3 || std::time::Instant::now() > deadline {
            break image;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(image["DownloadCount"], 3, "{image}");
    assert_eq!(image["Manifests"][0]["DownloadCount"], 3, "{image}");
    let pulled = unix_of(image["LastPullTimestamp"].as_str().expect("pulled: a time"));
    assert!((pulled_from..=now_unix() + 1).contains(&pulled), "{image}");

    // Moving the tag moves TaggedTimestamp; the manifest's own push time stays its own.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let second = ImageBuilder::new()
        .created("2022-02-01T00:00:00Z")
        .fresh_layer(100)
        .build();
    push_image(&client, url, "stats/app", "v2", &second);
    let second_pushed = unix_of(
        gql(
            &client,
            url,
            "{Image(image:\"stats/app:v2\"){PushTimestamp}}",
        )["Image"]["PushTimestamp"]
            .as_str()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let moved_at = now_unix();
    put_manifest(
        &client,
        url,
        "stats/app",
        "v1",
        berth_tests::api::OCI_MANIFEST,
        &second.manifest,
    );
    let image = gql(&client, url, query)["Image"].clone();
    assert_eq!(image["Digest"], second.digest);
    let tagged = unix_of(image["TaggedTimestamp"].as_str().unwrap());
    assert!(tagged >= moved_at && tagged <= now_unix() + 1, "{image}");
    let pushed = unix_of(image["PushTimestamp"].as_str().unwrap());
    assert!(pushed >= second_pushed, "{image}");
}

#[test]
fn docker_manifests_are_listed_like_oci_ones() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let oci = ImageBuilder::new()
        .created("2021-06-01T00:00:00Z")
        .fresh_layer(300)
        .build();
    let config: Value = serde_json::from_slice(&oci.config).unwrap();
    let config = serde_json::to_vec(&config).unwrap();
    push_blob(&client, url, "docker/app", &config);
    push_blob(&client, url, "docker/app", &oci.layers[0]);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": sha256_digest(&oci.layers[0]), "size": oci.layers[0].len()}],
    }))
    .unwrap();
    put_manifest(&client, url, "docker/app", "v1", DOCKER_MANIFEST, &manifest);
    let docker = Image {
        config,
        layers: oci.layers.clone(),
        digest: sha256_digest(&manifest),
        manifest,
    };
    let data = gql(
        &client,
        url,
        "{ImageList(repo:\"docker/app\"){Results{RepoName Tag Digest MediaType Size LastUpdated \
         Manifests{Platform{Os Arch}}}}}",
    );
    assert_eq!(
        data["ImageList"]["Results"],
        json!([{
            "RepoName": "docker/app", "Tag": "v1", "Digest": docker.digest,
            "MediaType": DOCKER_MANIFEST, "Size": image_size(&docker).to_string(),
            "LastUpdated": "2021-06-01T00:00:00Z",
            "Manifests": [{"Platform": {"Os": "linux", "Arch": "amd64"}}],
        }])
    );
    let data = gql(
        &client,
        url,
        "{GlobalSearch(query:\"docker\"){Repos{Name}}}",
    );
    assert_eq!(
        data["GlobalSearch"]["Repos"],
        json!([{"Name": "docker/app"}])
    );
    let data = gql(
        &client,
        url,
        "{GlobalSearch(query:\"docker/app:\"){Images{RepoName Tag}}}",
    );
    assert_eq!(refs(&data["GlobalSearch"]["Images"]), ["docker/app:v1"]);
}

#[test]
fn cve_queries_answer_that_cve_search_is_disabled() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    push_image(
        &client,
        url,
        "cve/app",
        "v1",
        &ImageBuilder::new().fresh_layer(10).build(),
    );
    for (field, query) in [
        (
            "CVEListForImage",
            "{CVEListForImage(image:\"cve/app:v1\"){Tag CVEList{Id}}}",
        ),
        (
            "ImageListForCVE",
            "{ImageListForCVE(id:\"CVE-2021-44228\"){Results{Tag}}}",
        ),
        (
            "ImageListWithCVEFixed",
            "{ImageListWithCVEFixed(id:\"CVE-2021-44228\", image:\"cve/app\"){Results{Tag}}}",
        ),
        (
            "CVEDiffListForImages",
            "{CVEDiffListForImages(minuend:{Repo:\"cve/app\" Tag:\"v1\"}, \
             subtrahend:{Repo:\"\" Tag:\"\"}){CVEList{Id}}}",
        ),
    ] {
        assert_eq!(
            gql_error(&client, url, query, field),
            "cve search is disabled",
            "{query}"
        );
    }
}
