//! zot's `RepoListWithNewestImage` and `ImageList` on the real binary: every sort criterion
//! (UPDATE_TIME by default, ALPHABETIC_ASC/DSC, RELEVANCE, DOWNLOADS after manifest GETs;
//! STARS, which berth adds, in search_access.rs), zot's paging edges (limit 0 is everything,
//! an offset past the end is an empty page with the full count, limit 0 with an offset is
//! empty, negative values are errors), and the newest image of each repository. The catalog is
//! `berth_tests::search::seed_catalog` (drawn in search_global.rs).

use berth_tests::search::{
    gql, gql_error, refs, search_config, seed_catalog, strings, CATALOG_REPOS_BY_TIME, CATALOG_TAGS,
};
use berth_tests::{fetch_manifest, http, Berth, Client, MANIFEST_ACCEPT};
use serde_json::{json, Value};

fn repo_list(client: &Client, url: &str, page: &str) -> Value {
    let query = format!(
        "{{RepoListWithNewestImage{page}{{Page{{TotalCount ItemCount}} \
         Results{{Name LastUpdated DownloadCount Rank NewestImage{{Tag Digest}}}}}}}}"
    );
    gql(client, url, &query)["RepoListWithNewestImage"].clone()
}

fn names(result: &Value) -> Vec<String> {
    strings(&result["Results"], "Name")
}

#[test]
fn repo_list_sorts_by_every_supported_criterion() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let catalog = seed_catalog(&client, url);
    // Default: newest image first.
    let result = repo_list(&client, url, "");
    assert_eq!(names(&result), CATALOG_REPOS_BY_TIME, "{result}");
    assert_eq!(result["Page"], json!({"TotalCount": 11, "ItemCount": 11}));
    assert_eq!(result["Results"][0]["LastUpdated"], "2024-07-01T10:00:00Z");
    // The newest image of team/app is 2.0 (also tagged latest); of multi/platform, the index.
    let team = &result["Results"][3];
    assert_eq!(team["Name"], "team/app");
    assert_eq!(team["NewestImage"]["Digest"], catalog.team20.digest);
    assert_eq!(team["LastUpdated"], "2024-04-01T10:00:00Z");
    let multi = &result["Results"][7];
    assert_eq!(
        multi["NewestImage"],
        json!({"Tag": "v1", "Digest": catalog.multi_digest})
    );
    assert_eq!(multi["LastUpdated"], "2023-05-02T10:00:00Z");
    assert_eq!(
        result["Results"][10]["NewestImage"]["Tag"], "2",
        "base/os: 2 is newer"
    );
    // zot ranks this list as a search for "": 1 everywhere.
    assert!(
        result["Results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["Rank"] == 1),
        "{result}"
    );
    let update_time = repo_list(&client, url, "(requestedPage:{sortBy:UPDATE_TIME})");
    assert_eq!(names(&update_time), CATALOG_REPOS_BY_TIME);

    let mut ascending: Vec<String> = CATALOG_REPOS_BY_TIME
        .iter()
        .map(|s| s.to_string())
        .collect();
    ascending.sort();
    let result = repo_list(&client, url, "(requestedPage:{sortBy:ALPHABETIC_ASC})");
    assert_eq!(names(&result), ascending);
    // Every rank is equal here: RELEVANCE falls back to the name.
    let result = repo_list(&client, url, "(requestedPage:{sortBy:RELEVANCE})");
    assert_eq!(names(&result), ascending);
    let mut descending = ascending.clone();
    descending.reverse();
    let result = repo_list(&client, url, "(requestedPage:{sortBy:ALPHABETIC_DSC})");
    assert_eq!(names(&result), descending);

    // DOWNLOADS: manifest GETs count (HEADs do not); a digest counts once per tag pointing at it.
    let get = |repo: &str, reference: &str, times: usize| {
        for _ in 0..times {
            assert_eq!(fetch_manifest(&client, url, repo, reference).0, 200);
        }
    };
    for _ in 0..5 {
        let head = client
            .head(format!("{url}/v2/other/thing/manifests/RC1"))
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .unwrap();
        assert_eq!(head.status().as_u16(), 200);
    }
    get("app", "v1", 4);
    get("base/os", "1", 3);
    get("team/app", "latest", 1);
    get("other/thing", "RC1", 1);
    // Counting may trail the GETs a little: wait for it, then hold it to the exact numbers.
    let expected = ["app", "base/os", "team/app", "other/thing", "app/tools"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let result = loop {
        let result = repo_list(&client, url, "(requestedPage:{sortBy:DOWNLOADS limit:5})");
        if names(&result) == expected || std::time::Instant::now() > deadline {
            break result;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(names(&result), expected, "{result}");
    let counts: Vec<i64> = result["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["DownloadCount"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [4, 3, 2, 1, 0], "{result}");
    assert_eq!(result["Page"], json!({"TotalCount": 11, "ItemCount": 5}));

    let message = gql_error(
        &client,
        url,
        "{ImageList(repo:\"\", requestedPage:{sortBy:SEVERITY}){Page{TotalCount}}}",
        "ImageList",
    );
    assert_eq!(
        message,
        "sorting repos by 'SEVERITY' is not supported the pagination sort criteria is not supported"
    );
}

#[test]
fn paging_edges_follow_zot() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    seed_catalog(&client, url);
    let page = |limit: i64, offset: i64| {
        repo_list(
            &client,
            url,
            &format!("(requestedPage:{{limit:{limit} offset:{offset} sortBy:ALPHABETIC_ASC}})"),
        )
    };
    let mut all: Vec<String> = CATALOG_REPOS_BY_TIME
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.sort();
    // Consecutive pages tile the whole list.
    let mut seen = Vec::new();
    for offset in [0, 4, 8] {
        let result = page(4, offset);
        assert_eq!(result["Page"]["TotalCount"], 11);
        seen.extend(names(&result));
    }
    assert_eq!(seen, all);
    assert_eq!(
        page(4, 8)["Page"],
        json!({"TotalCount": 11, "ItemCount": 3})
    );
    // limit 0 and offset 0: everything.
    let result = page(0, 0);
    assert_eq!(names(&result), all);
    assert_eq!(result["Page"], json!({"TotalCount": 11, "ItemCount": 11}));
    // At or past the end: an empty page that still counts everything.
    for offset in [11, 12, 1000] {
        let result = page(3, offset);
        assert_eq!(result["Results"], json!([]), "offset {offset}");
        assert_eq!(result["Page"], json!({"TotalCount": 11, "ItemCount": 0}));
    }
    // limit 0 with an offset: empty.
    let result = page(0, 2);
    assert_eq!(result["Results"], json!([]));
    assert_eq!(result["Page"], json!({"TotalCount": 11, "ItemCount": 0}));
    // A limit past the end: the rest.
    assert_eq!(names(&page(100, 9)), all[9..]);
    // Negative values.
    for (field, args) in [
        ("RepoListWithNewestImage", "requestedPage:{limit:-1}"),
        ("ImageList", "repo:\"\", requestedPage:{limit:-1}"),
        (
            "ImageListForDigest",
            "id:\"sha256:\", requestedPage:{limit:-1}",
        ),
        (
            "DerivedImageList",
            "image:\"base/os:1\", requestedPage:{limit:-1}",
        ),
    ] {
        let query = format!("{{{field}({args}){{Page{{TotalCount}}}}}}");
        assert_eq!(
            gql_error(&client, url, &query, field),
            "pagination limit has negative value",
            "{query}"
        );
    }
    assert_eq!(
        gql_error(
            &client,
            url,
            "{RepoListWithNewestImage(requestedPage:{offset:-1}){Page{TotalCount}}}",
            "RepoListWithNewestImage"
        ),
        "pagination offset has negative value"
    );
    assert_eq!(
        gql_error(
            &client,
            url,
            "{ImageList(repo:\"app\", requestedPage:{offset:-3}){Page{TotalCount}}}",
            "ImageList"
        ),
        "pagination offset has negative value"
    );
}

#[test]
fn image_list_of_one_repository_and_of_all() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let catalog = seed_catalog(&client, url);
    let list = |repo: &str, page: &str| {
        gql(
            &client,
            url,
            &format!(
                "{{ImageList(repo:\"{repo}\"{page}){{Page{{TotalCount ItemCount}} \
                 Results{{RepoName Tag Digest MediaType LastUpdated Manifests{{Digest Platform{{Os Arch}}}}}}}}}}"
            ),
        )["ImageList"]
            .clone()
    };
    let all = list("", "");
    assert_eq!(refs(&all["Results"]), CATALOG_TAGS);
    assert_eq!(all["Page"], json!({"TotalCount": 15, "ItemCount": 15}));
    let team = list("team/app", "");
    assert_eq!(
        refs(&team["Results"]),
        [
            "team/app:1.0",
            "team/app:1.1",
            "team/app:2.0",
            "team/app:latest"
        ]
    );
    assert_eq!(
        strings(&team["Results"], "Digest"),
        [
            catalog.team10.digest.clone(),
            catalog.team11.digest.clone(),
            catalog.team20.digest.clone(),
            catalog.team20.digest.clone()
        ]
    );
    assert_eq!(
        team["Results"][2]["Manifests"],
        json!([{"Digest": catalog.team20.digest, "Platform": {"Os": "linux", "Arch": "arm64/v8"}}])
    );
    // Newest first, then the ties (2.0 and latest) by tag.
    let by_time = list("team/app", ", requestedPage:{sortBy:UPDATE_TIME}");
    assert_eq!(
        refs(&by_time["Results"]),
        [
            "team/app:2.0",
            "team/app:latest",
            "team/app:1.1",
            "team/app:1.0"
        ]
    );
    let descending = list(
        "team/app",
        ", requestedPage:{sortBy:ALPHABETIC_DSC limit:2}",
    );
    assert_eq!(
        refs(&descending["Results"]),
        ["team/app:latest", "team/app:2.0"]
    );
    assert_eq!(descending["Page"], json!({"TotalCount": 4, "ItemCount": 2}));
    // An index lists all of its manifests, with the platforms of their configs.
    let multi = list("multi/platform", "");
    let image = &multi["Results"][0];
    assert_eq!(image["Digest"], catalog.multi_digest);
    assert_eq!(
        image["MediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(image["LastUpdated"], "2023-05-02T10:00:00Z");
    assert_eq!(
        image["Manifests"],
        json!([
            {"Digest": catalog.amd.digest, "Platform": {"Os": "linux", "Arch": "amd64"}},
            {"Digest": catalog.arm.digest, "Platform": {"Os": "linux", "Arch": "arm64/v8"}},
        ])
    );
    // A repository name must match exactly; an unknown one is empty, not an error.
    for repo in ["team", "team/ap", "nope"] {
        let result = list(repo, "");
        assert_eq!(
            result,
            json!({"Page": {"TotalCount": 0, "ItemCount": 0}, "Results": []}),
            "{repo}"
        );
    }
}

/// The digest queries page while their candidates stream in (hits.rs): under every sort, the
/// pages tile the whole list, the edges are zot's, UPDATE_TIME is newest first and
/// ALPHABETIC_DSC is ALPHABETIC_ASC reversed. Layer B is held by five tagged images (one of
/// them an index through a child); base/os:1 has one layer and base/os:2 two, so both ways
/// of finding derived images are paged.
#[test]
fn digest_lists_page_like_their_whole_list() {
    let berth = Berth::start_with(search_config());
    let client = http();
    let url = &berth.url;
    let catalog = seed_catalog(&client, url);
    // A pull makes DOWNLOADS differ from name order.
    assert_eq!(fetch_manifest(&client, url, "derived/two", "v1").0, 200);
    let b = format!("id:\"{}\"", catalog.b.digest());
    let list = |field: &str, args: &str, page: &str| {
        let query = format!(
            "{{{field}({args}, requestedPage:{{{page}}}){{Page{{TotalCount ItemCount}} \
             Results{{RepoName Tag LastUpdated}}}}}}"
        );
        gql(&client, url, &query)[field].clone()
    };
    let cases = [
        ("ImageListForDigest", b.as_str(), 5),
        ("DerivedImageList", "image:\"base/os:1\"", 4),
        ("DerivedImageList", "image:\"base/os:2\"", 2),
    ];
    for (field, args, total) in cases {
        let mut ascending = Vec::new();
        for sort in [
            "RELEVANCE",
            "ALPHABETIC_ASC",
            "ALPHABETIC_DSC",
            "UPDATE_TIME",
            "DOWNLOADS",
        ] {
            let whole = list(field, args, &format!("limit:0 offset:0 sortBy:{sort}"));
            let all = refs(&whole["Results"]);
            assert_eq!(all.len(), total, "{field} {args} {sort}");
            assert_eq!(
                whole["Page"],
                json!({"TotalCount": total, "ItemCount": total})
            );
            let mut tiled = Vec::new();
            for offset in (0..total).step_by(2) {
                let page = list(
                    field,
                    args,
                    &format!("limit:2 offset:{offset} sortBy:{sort}"),
                );
                assert_eq!(page["Page"]["TotalCount"], total, "{field} {sort} {offset}");
                tiled.extend(refs(&page["Results"]));
            }
            assert_eq!(tiled, all, "{field} {args} {sort}: pages tile the list");
            for page in ["limit:0 offset:2", "limit:3 offset:9"] {
                let empty = list(field, args, &format!("{page} sortBy:{sort}"));
                assert_eq!(empty["Results"], json!([]), "{field} {sort} {page}");
                assert_eq!(empty["Page"], json!({"TotalCount": total, "ItemCount": 0}));
            }
            match sort {
                "ALPHABETIC_ASC" => ascending = all.clone(),
                "ALPHABETIC_DSC" => {
                    let mut reversed = ascending.clone();
                    reversed.reverse();
                    assert_eq!(all, reversed, "{field} {args}");
                }
                "UPDATE_TIME" => {
                    let times = strings(&whole["Results"], "LastUpdated");
                    let mut newest_first = times.clone();
                    newest_first.sort_by(|a, b| b.cmp(a));
                    assert_eq!(times, newest_first, "{field} {args}: newest first");
                }
                _ => {}
            }
        }
    }
}
