//! zot's `GlobalSearch`, `ImageListForDigest`, `DerivedImageList` and `BaseImageList` on the
//! real binary, against the catalog of `berth_tests::search::seed_catalog`:
//!
//! ```text
//! base/os:1          [B]          2023-01-01     layers B (base), M (middle), X are shared
//! base/os:2          [B M]        2023-02-01
//! derived/one:v1     [B M d1]     2023-03-01
//! derived/two:v1     [B d2]       2023-04-01
//! multi/platform:v1  index: amd64 [B M c] 2023-05-01, arm64/v8 [X] 2023-05-02
//! derived/three:v1   [X y]        2023-06-01
//! other/thing:RC1    2023-07-01
//! app:v1 2024-01, team/app:1.0 1.1 2.0(=latest) 2024-02..04 (2.0 is arm64/v8),
//! team/myapp:v1 2024-05, app/tools:v1 2024-06, x/app/y:v1 2024-07
//! ```
//!
//! Ranks are zot's `RankRepoName`; ties are broken by name (berth's decision).

use berth_tests::search::ImageBuilder;
use berth_tests::search::{
    gql, gql_error, refs, search_config, seed_catalog, strings, Catalog, CATALOG_TAGS,
};
use berth_tests::{http, push_image, sha256_digest, Berth, Client};
use serde_json::{json, Value};

fn start() -> (Berth, Client, Catalog) {
    let berth = Berth::start_with(search_config());
    let client = http();
    let catalog = seed_catalog(&client, &berth.url);
    (berth, client, catalog)
}

const REPO_FIELDS: &str =
    "Page{TotalCount ItemCount} Repos{Name Rank} Images{RepoName Tag} Layers{Digest}";
const IMAGE_FIELDS: &str = "Page{TotalCount ItemCount} Repos{Name} \
     Images{RepoName Tag Digest Manifests{Digest Platform{Os Arch}}} Layers{Digest}";

fn search(client: &Client, url: &str, args: &str, fields: &str) -> Value {
    gql(
        client,
        url,
        &format!("{{GlobalSearch({args}){{{fields}}}}}"),
    )["GlobalSearch"]
        .clone()
}

fn ranked(result: &Value) -> Vec<(String, i64)> {
    result["Repos"]
        .as_array()
        .unwrap_or_else(|| panic!("Repos is a list: {result}"))
        .iter()
        .map(|r| {
            (
                r["Name"].as_str().unwrap().to_string(),
                r["Rank"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(n, r)| (n.to_string(), *r)).collect()
}

#[test]
fn repository_names_are_ranked_like_zot() {
    let (berth, client, _) = start();
    let url = &berth.url;
    let expected = pairs(&[
        ("app", 0),
        ("team/app", 1),
        ("team/myapp", 3),
        ("app/tools", 10),
        ("x/app/y", 300),
    ]);
    let result = search(&client, url, "query:\"app\"", REPO_FIELDS);
    assert_eq!(ranked(&result), expected, "{result}");
    assert_eq!(result["Page"], json!({"TotalCount": 5, "ItemCount": 5}));
    // A repository search answers empty image and layer lists, not null.
    assert_eq!(result["Images"], json!([]));
    assert_eq!(result["Layers"], json!([]));
    // Trimmed, slashes stripped and lower-cased before ranking.
    let result = search(&client, url, "query:\"  /APP/ \"", REPO_FIELDS);
    assert_eq!(ranked(&result), expected, "{result}");
    // Several segments: the prefix must match segment by segment.
    let result = search(&client, url, "query:\"team/ap\"", REPO_FIELDS);
    assert_eq!(
        ranked(&result),
        pairs(&[("team/app", 1), ("team/myapp", 3)])
    );
    // Equal ranks (all 10: a match in the first segment) come by name.
    let result = search(&client, url, "query:\"derived\"", REPO_FIELDS);
    assert_eq!(
        ranked(&result),
        pairs(&[
            ("derived/one", 10),
            ("derived/three", 10),
            ("derived/two", 10)
        ])
    );
    // No match at all.
    let result = search(&client, url, "query:\"nothing-here\"", REPO_FIELDS);
    assert_eq!(result["Repos"], json!([]));
    assert_eq!(result["Page"], json!({"TotalCount": 0, "ItemCount": 0}));
    // The empty query lists every tagged repository (rank 1 each).
    let result = search(&client, url, "query:\"\"", REPO_FIELDS);
    assert_eq!(result["Page"]["TotalCount"], 11, "{result}");
    assert!(
        ranked(&result).iter().all(|(_, rank)| *rank == 1),
        "{result}"
    );
}

#[test]
fn repo_search_pages_and_filters_by_platform() {
    let (berth, client, _) = start();
    let url = &berth.url;
    let result = search(
        &client,
        url,
        "query:\"app\", requestedPage:{limit:2 offset:1 sortBy:RELEVANCE}",
        REPO_FIELDS,
    );
    assert_eq!(
        ranked(&result),
        pairs(&[("team/app", 1), ("team/myapp", 3)])
    );
    assert_eq!(result["Page"], json!({"TotalCount": 5, "ItemCount": 2}));
    // Only team/app has an arm64/v8 image (matched as "arch/variant", any case, trimmed).
    for filter in [
        "{Arch:[\"arm64/v8\"]}",
        "{Arch:\"ARM64/V8\"}",
        "{Arch:[\" Arm64/v8 \"], Os:[\"LINUX\"]}",
    ] {
        let args = format!("query:\"app\", filter:{filter}, requestedPage:{{limit:1}}");
        let result = search(&client, url, &args, REPO_FIELDS);
        assert_eq!(
            ranked(&result),
            pairs(&[("team/app", 1)]),
            "{filter}: {result}"
        );
        assert_eq!(
            result["Page"],
            json!({"TotalCount": 1, "ItemCount": 1}),
            "{filter}"
        );
    }
    // An empty filter filters nothing; an unknown OS filters everything.
    let result = search(&client, url, "query:\"app\", filter:{}", REPO_FIELDS);
    assert_eq!(result["Page"]["TotalCount"], 5);
    let result = search(
        &client,
        url,
        "query:\"app\", filter:{Os:\"windows\"}",
        REPO_FIELDS,
    );
    assert_eq!(result["Page"], json!({"TotalCount": 0, "ItemCount": 0}));
    assert_eq!(result["Repos"], json!([]));
}

#[test]
fn tag_searches_by_prefix_in_a_repository_and_by_substring_across() {
    let (berth, client, catalog) = start();
    let url = &berth.url;
    let result = search(&client, url, "query:\"team/app:1.\"", IMAGE_FIELDS);
    assert_eq!(refs(&result["Images"]), ["team/app:1.0", "team/app:1.1"]);
    assert_eq!(result["Page"], json!({"TotalCount": 2, "ItemCount": 2}));
    // An image search answers `Repos: null` and an empty layer list.
    assert_eq!(result["Repos"], Value::Null, "{result}");
    assert_eq!(result["Layers"], json!([]));
    assert_eq!(result["Images"][0]["Digest"], catalog.team10.digest);
    let result = search(&client, url, "query:\"team/app:\"", IMAGE_FIELDS);
    assert_eq!(
        refs(&result["Images"]),
        [
            "team/app:1.0",
            "team/app:1.1",
            "team/app:2.0",
            "team/app:latest"
        ]
    );
    // The repository must match exactly: no error, no result.
    let result = search(&client, url, "query:\"team/ap:1.0\"", IMAGE_FIELDS);
    assert_eq!(result["Images"], json!([]));
    assert_eq!(result["Page"]["TotalCount"], 0);
    // `:sub` is a case-insensitive substring of the tag in every repository.
    let result = search(&client, url, "query:\":1\"", IMAGE_FIELDS);
    let with_one: Vec<&str> = CATALOG_TAGS
        .into_iter()
        .filter(|r| !["base/os:2", "team/app:2.0", "team/app:latest"].contains(r))
        .collect();
    assert_eq!(refs(&result["Images"]), with_one);
    assert_eq!(result["Page"]["TotalCount"], 12);
    let result = search(&client, url, "query:\":rc\"", IMAGE_FIELDS);
    assert_eq!(refs(&result["Images"]), ["other/thing:RC1"]);
    let result = search(
        &client,
        url,
        "query:\":v1\", requestedPage:{limit:3 offset:2}",
        IMAGE_FIELDS,
    );
    assert_eq!(
        refs(&result["Images"]),
        ["derived/one:v1", "derived/three:v1", "derived/two:v1"]
    );
    assert_eq!(result["Page"], json!({"TotalCount": 8, "ItemCount": 3}));
    // Platform filters apply to images; an index keeps only its matching manifests.
    let result = search(
        &client,
        url,
        "query:\":v1\", filter:{Arch:\"arm64/v8\"}",
        IMAGE_FIELDS,
    );
    assert_eq!(refs(&result["Images"]), ["multi/platform:v1"]);
    assert_eq!(
        result["Images"][0]["Manifests"],
        json!([{"Digest": catalog.arm.digest, "Platform": {"Os": "linux", "Arch": "arm64/v8"}}])
    );
    let result = search(
        &client,
        url,
        "query:\"team/app:\", filter:{Arch:[\"AMD64\"]}",
        IMAGE_FIELDS,
    );
    assert_eq!(refs(&result["Images"]), ["team/app:1.0", "team/app:1.1"]);
}

#[test]
fn digest_searches_match_manifests_configs_and_layers() {
    let (berth, client, catalog) = start();
    let url = &berth.url;
    let digest_search = |q: &str| search(&client, url, &format!("query:\"{q}\""), IMAGE_FIELDS);
    // A manifest digest: both tags pointing at it.
    let result = digest_search(&catalog.team20.digest);
    assert_eq!(refs(&result["Images"]), ["team/app:2.0", "team/app:latest"]);
    assert_eq!(result["Repos"], Value::Null);
    // A config digest.
    let result = digest_search(&sha256_digest(&catalog.one.config));
    assert_eq!(refs(&result["Images"]), ["derived/one:v1"]);
    // The shared base layer: every tagged image holding it; the index with its amd64 child.
    let holders = [
        "base/os:1",
        "base/os:2",
        "derived/one:v1",
        "derived/two:v1",
        "multi/platform:v1",
    ];
    let result = digest_search(&catalog.b.digest());
    assert_eq!(refs(&result["Images"]), holders);
    assert_eq!(result["Page"]["TotalCount"], 5);
    assert_eq!(
        strings(&result["Images"][4]["Manifests"], "Digest"),
        [catalog.amd.digest.as_str()]
    );
    // A digest is case-insensitive in the query and may be partial.
    let result = digest_search(
        &catalog
            .b
            .digest()
            .to_uppercase()
            .replace("SHA256", "sha256"),
    );
    assert_eq!(refs(&result["Images"]), holders);
    let partial = &sha256_digest(&catalog.one.config)[..7 + 16];
    assert_eq!(refs(&digest_search(partial)["Images"]), ["derived/one:v1"]);
    // The index digest answers the whole index.
    let result = digest_search(&catalog.multi_digest);
    assert_eq!(refs(&result["Images"]), ["multi/platform:v1"]);
    assert_eq!(result["Images"][0]["Digest"], catalog.multi_digest);
    assert_eq!(
        result["Images"][0]["Manifests"].as_array().unwrap().len(),
        2
    );
    // No match.
    let result = digest_search(&sha256_digest(b"nothing pushed this"));
    assert_eq!(result["Images"], json!([]));
    assert_eq!(result["Page"], json!({"TotalCount": 0, "ItemCount": 0}));
}

#[test]
fn invalid_global_searches_are_errors_with_zots_messages() {
    let (berth, client, _) = start();
    let url = &berth.url;
    let error = |args: &str| {
        gql_error(
            &client,
            url,
            &format!("{{GlobalSearch({args}){{Page{{TotalCount}} Repos{{Name}}}}}}"),
            "GlobalSearch",
        )
    };
    assert_eq!(error("query:\"@x\""), "invalid search query");
    assert_eq!(error("query:\":\""), "invalid search query");
    let long = "a".repeat(257);
    assert_eq!(
        error(&format!("query:\"{long}\"")),
        "max string size limit exceeded for query parameter. max=256 current=257 request \
         parameter has invalid value"
    );
    assert_eq!(
        error(&format!("query:\"app\", filter:{{Arch:[\"{long}\"]}}")),
        "max string size limit exceeded for arch parameter. max=256 current=257 request \
         parameter has invalid value"
    );
    assert_eq!(
        error("query:\"app\", requestedPage:{limit:-1}"),
        "requested page limit parameter can't be negative request parameter has invalid value"
    );
    assert_eq!(
        error("query:\"app\", requestedPage:{offset:-2}"),
        "requested page offset parameter can't be negative request parameter has invalid value"
    );
    // 256 characters is still a query.
    let result = search(
        &client,
        url,
        &format!("query:\"{}\"", "a".repeat(256)),
        REPO_FIELDS,
    );
    assert_eq!(result["Repos"], json!([]));
}

#[test]
fn image_list_for_digest_counts_tagged_images_holding_a_blob() {
    let (berth, client, catalog) = start();
    let url = &berth.url;
    let for_digest = |id: &str, page: &str| {
        gql(
            &client,
            url,
            &format!(
                "{{ImageListForDigest(id:\"{id}\"{page}){{Page{{TotalCount ItemCount}} \
                 Results{{RepoName Tag Digest Manifests{{Digest}}}}}}}}"
            ),
        )["ImageListForDigest"]
            .clone()
    };
    let result = for_digest(&catalog.b.digest(), "");
    assert_eq!(
        refs(&result["Results"]),
        [
            "base/os:1",
            "base/os:2",
            "derived/one:v1",
            "derived/two:v1",
            "multi/platform:v1"
        ]
    );
    assert_eq!(result["Page"], json!({"TotalCount": 5, "ItemCount": 5}));
    let result = for_digest(&catalog.m.digest(), ", requestedPage:{limit:2 offset:1}");
    assert_eq!(
        refs(&result["Results"]),
        ["derived/one:v1", "multi/platform:v1"]
    );
    assert_eq!(result["Page"], json!({"TotalCount": 3, "ItemCount": 2}));
    let result = for_digest(&sha256_digest(&catalog.two.config), "");
    assert_eq!(refs(&result["Results"]), ["derived/two:v1"]);
    assert_eq!(result["Results"][0]["Digest"], catalog.two.digest);
    // A child manifest's digest: the index, with that manifest only.
    let result = for_digest(&catalog.arm.digest, "");
    assert_eq!(refs(&result["Results"]), ["multi/platform:v1"]);
    assert_eq!(result["Results"][0]["Digest"], catalog.multi_digest);
    assert_eq!(
        result["Results"][0]["Manifests"],
        json!([{"Digest": catalog.arm.digest}])
    );
    // Layer X: the arm64 child and derived/three.
    let result = for_digest(&catalog.x.digest(), "");
    assert_eq!(
        refs(&result["Results"]),
        ["derived/three:v1", "multi/platform:v1"]
    );
    let result = for_digest(&sha256_digest(b"unknown"), "");
    assert_eq!(
        result,
        json!({"Page": {"TotalCount": 0, "ItemCount": 0}, "Results": []})
    );
}

#[test]
fn derived_and_base_images_follow_shared_layers() {
    let (berth, client, catalog) = start();
    let url = &berth.url;
    let list = |field: &str, image: &str| {
        gql(
            &client,
            url,
            &format!(
                "{{{field}(image:\"{image}\"){{Page{{TotalCount ItemCount}} \
                 Results{{RepoName Tag Manifests{{Digest}}}}}}}}"
            ),
        )[field]
            .clone()
    };
    // Newest first (UPDATE_TIME); the index counts with its matching child only.
    let derived = list("DerivedImageList", "base/os:1");
    assert_eq!(
        refs(&derived["Results"]),
        [
            "multi/platform:v1",
            "derived/two:v1",
            "derived/one:v1",
            "base/os:2"
        ]
    );
    assert_eq!(derived["Page"], json!({"TotalCount": 4, "ItemCount": 4}));
    assert_eq!(
        derived["Results"][0]["Manifests"],
        json!([{"Digest": catalog.amd.digest}])
    );
    let derived = list("DerivedImageList", "base/os:2");
    assert_eq!(
        refs(&derived["Results"]),
        ["multi/platform:v1", "derived/one:v1"]
    );
    // From an index: derived from any of its manifests (X is the arm64 child's only layer).
    let derived = list("DerivedImageList", "multi/platform:v1");
    assert_eq!(refs(&derived["Results"]), ["derived/three:v1"]);
    assert_eq!(
        refs(&list("DerivedImageList", "derived/one:v1")["Results"]),
        Vec::<String>::new()
    );

    // An image without layers is never a base, nor derived (berth's decision; zot says
    // everything derives from it).
    let empty = ImageBuilder::new().created("2025-01-01T00:00:00Z").build();
    push_image(&client, url, "empty/img", "v1", &empty);
    assert_eq!(
        refs(&list("DerivedImageList", "empty/img:v1")["Results"]),
        Vec::<String>::new()
    );
    assert_eq!(
        refs(&list("BaseImageList", "empty/img:v1")["Results"]),
        Vec::<String>::new()
    );
    let base = list("BaseImageList", "derived/one:v1");
    assert_eq!(refs(&base["Results"]), ["base/os:2", "base/os:1"]);
    assert_eq!(base["Page"], json!({"TotalCount": 2, "ItemCount": 2}));
    let base = list("BaseImageList", "multi/platform:v1");
    assert_eq!(refs(&base["Results"]), ["base/os:2", "base/os:1"]);
    let base = list("BaseImageList", "derived/three:v1");
    assert_eq!(refs(&base["Results"]), ["multi/platform:v1"]);
    assert_eq!(
        base["Results"][0]["Manifests"],
        json!([{"Digest": catalog.arm.digest}])
    );
    assert_eq!(
        refs(&list("BaseImageList", "base/os:1")["Results"]),
        Vec::<String>::new()
    );
    // Paging and the explicit digest argument.
    let page = gql(
        &client,
        url,
        &format!(
            "{{DerivedImageList(image:\"base/os:2\", digest:\"{}\", \
             requestedPage:{{limit:2 sortBy:ALPHABETIC_ASC}}){{Page{{TotalCount ItemCount}} \
             Results{{RepoName Tag}}}}}}",
            catalog.base1.digest
        ),
    )["DerivedImageList"]
        .clone();
    // With base/os:1's digest the search is for [B]: base/os:2 itself qualifies.
    assert_eq!(refs(&page["Results"]), ["base/os:2", "derived/one:v1"]);
    assert_eq!(page["Page"], json!({"TotalCount": 4, "ItemCount": 2}));
    // Errors.
    let error = |field: &str, image: &str| {
        gql_error(
            &client,
            url,
            &format!("{{{field}(image:\"{image}\"){{Page{{TotalCount}}}}}}"),
            field,
        )
    };
    assert_eq!(
        error("DerivedImageList", "base/os"),
        "no reference provided"
    );
    assert_eq!(
        error("BaseImageList", "nope/repo:v1"),
        "repository not found"
    );
    assert_eq!(
        error("DerivedImageList", "base/os:9"),
        "can't find image: base/os:9"
    );
}
