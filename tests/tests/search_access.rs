//! zot's search API behind htpasswd and `accessControl` on the real binary: every list only
//! shows, and only counts, the repositories the caller may read; `ExpandedRepoInfo` of an
//! unreadable repository is empty rather than an error; stars and bookmarks
//! (`PUT /v2/_zot/ext/userprefs`) are per user, refused with zot's codes, not stored when
//! refused, and survive a restart; `GET /v2/_zot/ext/mgmt` and the discover endpoint describe
//! the extension.
//!
//! Access: alice reads `a/**`, bob `b/**`, everyone (anonymous included) `public/**`; root is
//! the admin who pushes. Layer S is shared by a/x, b/y, public/z and public/base.

use std::collections::BTreeSet;

use berth_tests::access::{start, ALL};
use berth_tests::api::get_json;
use berth_tests::search::{gql, refs, search_config, strings, ImageBuilder, Layer};
use berth_tests::{authed, http, push_image, Berth, Client, Image};
use serde_json::{json, Value};

fn access(alice_reads_b: bool) -> Value {
    let mut b_users = vec!["bob"];
    if alice_reads_b {
        b_users.push("alice");
    }
    json!({
        "repositories": {
            "a/**": {"policies": [{"users": ["alice"], "actions": ALL}]},
            "b/**": {"policies": [{"users": b_users, "actions": ALL}]},
            "public/**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
        },
        "adminPolicy": {"users": ["root"], "actions": ALL},
    })
}

struct Setup {
    berth: Berth,
    shared: Layer,
    images: Vec<(&'static str, Image)>,
}

fn setup(alice_reads_b: bool) -> Setup {
    let berth = start(access(alice_reads_b), search_config());
    let root = authed("root");
    let shared = Layer::random(1000);
    let mut images = Vec::new();
    for (repo, day, with_shared) in [
        ("a/x", "01", true),
        ("a/w", "02", false),
        ("b/y", "03", true),
        ("public/z", "04", true),
        ("public/base", "05", true),
    ] {
        let mut builder = ImageBuilder::new().created(&format!("2024-01-{day}T00:00:00Z"));
        if with_shared {
            builder = builder.layer(&shared);
        }
        if repo != "public/base" {
            builder = builder.fresh_layer(100);
        }
        let image = builder.build();
        push_image(&root, &berth.url, repo, "v1", &image);
        images.push((repo, image));
    }
    Setup {
        berth,
        shared,
        images,
    }
}

fn set(list: Vec<String>) -> BTreeSet<String> {
    list.into_iter().collect()
}

fn tagged(repos: &[&str]) -> BTreeSet<String> {
    repos.iter().map(|r| format!("{r}:v1")).collect()
}

/// Runs `query` as `client`; returns `data[field]`.
fn field(client: &Client, url: &str, query: &str, field: &str) -> Value {
    gql(client, url, query)[field].clone()
}

#[test]
fn every_list_shows_and_counts_only_readable_repositories() {
    let setup = setup(false);
    let url = &setup.berth.url;
    let s = setup.shared.digest();
    let cases: [(&str, Client, &[&str]); 4] = [
        (
            "alice",
            authed("alice"),
            &["a/w", "a/x", "public/base", "public/z"],
        ),
        ("bob", authed("bob"), &["b/y", "public/base", "public/z"]),
        ("anonymous", http(), &["public/base", "public/z"]),
        (
            "root",
            authed("root"),
            &["a/w", "a/x", "b/y", "public/base", "public/z"],
        ),
    ];
    for (who, client, readable) in cases {
        let readable_set: BTreeSet<String> = readable.iter().map(|r| r.to_string()).collect();
        let count = readable.len();
        let with_s: Vec<&str> = readable.iter().copied().filter(|r| *r != "a/w").collect();

        let list = field(
            &client,
            url,
            "{RepoListWithNewestImage{Page{TotalCount ItemCount} Results{Name}}}",
            "RepoListWithNewestImage",
        );
        assert_eq!(
            set(strings(&list["Results"], "Name")),
            readable_set,
            "{who}: {list}"
        );
        assert_eq!(
            list["Page"],
            json!({"TotalCount": count, "ItemCount": count}),
            "{who}"
        );
        let paged = field(
            &client,
            url,
            "{RepoListWithNewestImage(requestedPage:{limit:1}){Page{TotalCount ItemCount}}}",
            "RepoListWithNewestImage",
        );
        assert_eq!(
            paged["Page"],
            json!({"TotalCount": count, "ItemCount": 1}),
            "{who}"
        );

        let repos = field(
            &client,
            url,
            "{GlobalSearch(query:\"\"){Page{TotalCount} Repos{Name}}}",
            "GlobalSearch",
        );
        assert_eq!(set(strings(&repos["Repos"], "Name")), readable_set, "{who}");
        assert_eq!(repos["Page"]["TotalCount"], count, "{who}");
        let tags = field(
            &client,
            url,
            "{GlobalSearch(query:\":v1\"){Page{TotalCount} Images{RepoName Tag}}}",
            "GlobalSearch",
        );
        assert_eq!(set(refs(&tags["Images"])), tagged(readable), "{who}");
        assert_eq!(tags["Page"]["TotalCount"], count, "{who}");
        let digest = field(
            &client,
            url,
            &format!(
                "{{GlobalSearch(query:\"{s}\"){{Page{{TotalCount}} Images{{RepoName Tag}}}}}}"
            ),
            "GlobalSearch",
        );
        assert_eq!(set(refs(&digest["Images"])), tagged(&with_s), "{who}");
        assert_eq!(digest["Page"]["TotalCount"], with_s.len(), "{who}");
        // A repo:tag search of a repository the caller cannot read is just empty.
        let hidden = field(
            &client,
            url,
            "{GlobalSearch(query:\"b/y:\"){Page{TotalCount} Images{Tag}}}",
            "GlobalSearch",
        );
        let sees_b = readable.contains(&"b/y");
        assert_eq!(hidden["Page"]["TotalCount"], u64::from(sees_b), "{who}");

        let images = field(
            &client,
            url,
            "{ImageList(repo:\"\"){Page{TotalCount} Results{RepoName Tag}}}",
            "ImageList",
        );
        assert_eq!(set(refs(&images["Results"])), tagged(readable), "{who}");
        assert_eq!(images["Page"]["TotalCount"], count, "{who}");
        let one = field(
            &client,
            url,
            "{ImageList(repo:\"b/y\"){Page{TotalCount} Results{Tag}}}",
            "ImageList",
        );
        assert_eq!(one["Page"]["TotalCount"], u64::from(sees_b), "{who}");

        let holders = field(
            &client,
            url,
            &format!(
                "{{ImageListForDigest(id:\"{s}\"){{Page{{TotalCount}} Results{{RepoName Tag}}}}}}"
            ),
            "ImageListForDigest",
        );
        assert_eq!(set(refs(&holders["Results"])), tagged(&with_s), "{who}");
        assert_eq!(holders["Page"]["TotalCount"], with_s.len(), "{who}");

        let derived = field(
            &client,
            url,
            "{DerivedImageList(image:\"public/base:v1\"){Page{TotalCount} Results{RepoName Tag}}}",
            "DerivedImageList",
        );
        let expected: Vec<&str> = with_s
            .iter()
            .copied()
            .filter(|r| *r != "public/base")
            .collect();
        assert_eq!(set(refs(&derived["Results"])), tagged(&expected), "{who}");
        assert_eq!(derived["Page"]["TotalCount"], expected.len(), "{who}");

        // An unreadable repository: nothing, and no error either.
        let (status, body) = berth_tests::search::gql_get(
            &client,
            url,
            "{ExpandedRepoInfo(repo:\"b/y\"){Images{Tag} Summary{Name}}}",
        );
        assert_eq!(status, 200, "{who}");
        if sees_b {
            assert_eq!(
                body["data"]["ExpandedRepoInfo"]["Summary"]["Name"], "b/y",
                "{who}"
            );
        } else {
            assert_eq!(
                body,
                json!({"data": {"ExpandedRepoInfo": {"Images": null, "Summary": null}}}),
                "{who}"
            );
        }
    }
    // The setup pushed what it says.
    assert_eq!(setup.images.len(), 5);
}

fn userprefs(client: &Client, url: &str, query: &str) -> u16 {
    client
        .put(format!("{url}/v2/_zot/ext/userprefs{query}"))
        .send()
        .expect("PUT userprefs")
        .status()
        .as_u16()
}

const STARRED: &str =
    "{StarredRepos{Page{TotalCount ItemCount} Results{Name IsStarred IsBookmarked StarCount}}}";
const BOOKMARKED: &str =
    "{BookmarkedRepos{Page{TotalCount ItemCount} Results{Name IsStarred IsBookmarked StarCount}}}";

fn star_count(client: &Client, url: &str, repo: &str) -> Value {
    let info = field(
        client,
        url,
        &format!("{{ExpandedRepoInfo(repo:\"{repo}\"){{Summary{{StarCount IsStarred}}}}}}"),
        "ExpandedRepoInfo",
    );
    info["Summary"]["StarCount"].clone()
}

#[test]
fn stars_and_bookmarks_are_per_user_and_refused_with_zots_codes() {
    let mut setup = setup(true);
    let (alice, bob, root) = (authed("alice"), authed("bob"), authed("root"));
    let url = setup.berth.url.clone();
    let url = url.as_str();
    assert_eq!(userprefs(&alice, url, "?action=toggleStar&repo=a/x"), 200);
    let starred = field(&alice, url, STARRED, "StarredRepos");
    assert_eq!(
        starred,
        json!({"Page": {"TotalCount": 1, "ItemCount": 1},
               "Results": [{"Name": "a/x", "IsStarred": true, "IsBookmarked": false, "StarCount": 1}]})
    );
    // Others see the count, not the flag.
    assert_eq!(star_count(&root, url, "a/x"), 1);
    // berth sorts repositories by stars (zot refuses STARS): most first, then by name.
    for (query, list) in [
        (
            "GlobalSearch(query:\"\", requestedPage:{sortBy:STARS, limit:2})",
            "Repos",
        ),
        (
            "RepoListWithNewestImage(requestedPage:{sortBy:STARS, limit:2})",
            "Results",
        ),
    ] {
        let name = query.split('(').next().unwrap();
        let top = field(
            &root,
            url,
            &format!("{{{query}{{{list}{{Name StarCount}}}}}}"),
            name,
        );
        assert_eq!(
            top[list][0],
            json!({"Name": "a/x", "StarCount": 1}),
            "{top}"
        );
        assert_eq!(top[list][1]["StarCount"], 0, "{top}");
    }
    let list = field(
        &root,
        url,
        "{GlobalSearch(query:\"a/x\"){Repos{Name IsStarred StarCount}}}",
        "GlobalSearch",
    );
    assert_eq!(
        list["Repos"],
        json!([{"Name": "a/x", "IsStarred": false, "StarCount": 1}])
    );
    assert_eq!(
        field(&bob, url, STARRED, "StarredRepos")["Results"],
        json!([])
    );
    // Toggling again removes it.
    assert_eq!(userprefs(&alice, url, "?action=toggleStar&repo=a/x"), 200);
    assert_eq!(
        field(&alice, url, STARRED, "StarredRepos")["Page"]["TotalCount"],
        0
    );
    assert_eq!(star_count(&root, url, "a/x"), 0);

    // Bookmarks, and the IsBookmarked / IsStarred filters of GlobalSearch.
    assert_eq!(
        userprefs(&alice, url, "?action=toggleBookmark&repo=public/z"),
        200
    );
    assert_eq!(userprefs(&alice, url, "?repo=a/w&action=toggleStar"), 200);
    let bookmarked = field(&alice, url, BOOKMARKED, "BookmarkedRepos");
    assert_eq!(
        bookmarked,
        json!({"Page": {"TotalCount": 1, "ItemCount": 1},
               "Results": [{"Name": "public/z", "IsStarred": false, "IsBookmarked": true, "StarCount": 0}]})
    );
    let search = |filter: &str| {
        let result = field(
            &alice,
            url,
            &format!("{{GlobalSearch(query:\"\", filter:{filter}){{Repos{{Name}}}}}}"),
            "GlobalSearch",
        );
        set(strings(&result["Repos"], "Name"))
    };
    assert_eq!(search("{IsBookmarked:true}"), set(vec!["public/z".into()]));
    assert_eq!(search("{IsStarred:true}"), set(vec!["a/w".into()]));
    assert_eq!(
        search("{IsBookmarked:false}"),
        set(["a/w", "a/x", "b/y", "public/base"]
            .map(String::from)
            .to_vec())
    );
    assert_eq!(
        field(&bob, url, BOOKMARKED, "BookmarkedRepos")["Results"],
        json!([])
    );

    // Refusals: the status, and nothing stored.
    for (query, status) in [
        ("?repo=a/x", 400),
        ("?action=toggleLove&repo=a/x", 400),
        ("?action=toggleStar", 400),
        ("?action=toggleStar&repo=", 404),
        ("?action=toggleStar&repo=a/nothing", 404),
    ] {
        assert_eq!(userprefs(&alice, url, query), status, "{query}");
    }
    assert_eq!(
        userprefs(&http(), url, "?action=toggleStar&repo=public/z"),
        403
    );
    assert_eq!(
        userprefs(&http(), url, "?action=toggleBookmark&repo=public/z"),
        403
    );
    assert_eq!(userprefs(&bob, url, "?action=toggleStar&repo=a/x"), 403);
    assert_eq!(userprefs(&bob, url, "?action=toggleBookmark&repo=a/x"), 403);
    let stars = field(&alice, url, STARRED, "StarredRepos");
    assert_eq!(strings(&stars["Results"], "Name"), ["a/w"]);
    assert_eq!(
        field(&bob, url, STARRED, "StarredRepos")["Results"],
        json!([])
    );
    assert_eq!(star_count(&root, url, "a/x"), 0);
    assert_eq!(star_count(&root, url, "a/w"), 1);

    // alice stars b/y while she may read it; then her access to b/** is withdrawn.
    assert_eq!(userprefs(&alice, url, "?action=toggleStar&repo=b/y"), 200);
    assert_eq!(
        field(&alice, url, STARRED, "StarredRepos")["Page"]["TotalCount"],
        2
    );
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&setup.berth.config_path).unwrap()).unwrap();
    config["http"]["accessControl"] = access(false);
    std::fs::write(
        &setup.berth.config_path,
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    setup.berth.restart();
    let url = setup.berth.url.as_str();
    // Stars and bookmarks survived the restart; the unreadable one is neither listed nor counted.
    let stars = field(&alice, url, STARRED, "StarredRepos");
    assert_eq!(
        stars,
        json!({"Page": {"TotalCount": 1, "ItemCount": 1},
               "Results": [{"Name": "a/w", "IsStarred": true, "IsBookmarked": false, "StarCount": 1}]})
    );
    assert_eq!(
        strings(
            &field(&alice, url, BOOKMARKED, "BookmarkedRepos")["Results"],
            "Name"
        ),
        ["public/z"]
    );
    assert_eq!(star_count(&root, url, "b/y"), 1);
    assert_eq!(userprefs(&alice, url, "?action=toggleStar&repo=b/y"), 403);
    assert_eq!(star_count(&root, url, "b/y"), 1);
}

#[test]
fn mgmt_describes_auth_and_discover_lists_the_extension() {
    let setup = setup(false);
    let url = &setup.berth.url;
    for client in [http(), authed("alice")] {
        let response = client
            .get(format!("{url}/v2/_zot/ext/mgmt"))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
        assert_eq!(body["distSpecVersion"], "1.1.1", "{body}");
        assert_eq!(body["http"]["auth"]["htpasswd"], json!({}), "{body}");
        assert!(
            !body.to_string().contains("htpasswd\":{\"path"),
            "no file path: {body}"
        );
    }
    let (_, discover) = get_json(&authed("alice"), &format!("{url}/v2/_oci/ext/discover"));
    assert_eq!(
        discover["extensions"].as_array().unwrap().len(),
        1,
        "{discover}"
    );
    let zot = &discover["extensions"][0];
    assert_eq!(zot["name"], "_zot");
    assert_eq!(
        zot["endpoints"],
        json!([
            "/v2/_zot/ext/search",
            "/v2/_zot/ext/userprefs",
            "/v2/_zot/ext/mgmt"
        ])
    );
    // Without auth: `http: {}`. With scrub on as well, scrub's endpoint joins the list.
    let mut patch = search_config();
    patch["extensions"]["scrub"] = json!({"interval": "1h"});
    let open = Berth::start_with(patch);
    let (_, body) = get_json(&http(), &format!("{}/v2/_zot/ext/mgmt", open.url));
    assert_eq!(body["distSpecVersion"], "1.1.1", "{body}");
    assert_eq!(body["http"], json!({}), "no auth: {body}");
    let (_, discover) = get_json(&http(), &format!("{}/v2/_oci/ext/discover", open.url));
    let endpoints: Vec<String> = discover["extensions"][0]["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{discover}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let search_ones: Vec<&String> = endpoints
        .iter()
        .filter(|e| !e.ends_with("/scrub"))
        .collect();
    assert_eq!(
        search_ones,
        [
            "/v2/_zot/ext/search",
            "/v2/_zot/ext/userprefs",
            "/v2/_zot/ext/mgmt"
        ]
    );
    assert!(
        endpoints.contains(&"/v2/_zot/ext/scrub".to_string()),
        "{discover}"
    );
}

/// zui reads mgmt to draw its login page, so (as zot's) it answers without credentials even
/// when htpasswd is on and nothing is anonymous; the search itself still needs them, and
/// credentials that are sent are checked.
#[test]
fn mgmt_answers_before_login_while_search_needs_it() {
    let mut patch = search_config();
    patch["http"] = json!({"accessControl": null});
    let berth = start(json!(null), patch);
    let url = &berth.url;
    let response = http()
        .get(format!("{url}/v2/_zot/ext/mgmt"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
    assert_eq!(body["http"]["auth"]["htpasswd"], json!({}), "{body}");
    let search = http()
        .get(format!(
            "{url}/v2/_zot/ext/search?query={{ImageList(repo:%22x%22){{Page{{TotalCount}}}}}}"
        ))
        .send()
        .unwrap();
    assert_eq!(search.status().as_u16(), 401, "search needs credentials");
    let wrong = http()
        .get(format!("{url}/v2/_zot/ext/mgmt"))
        .basic_auth("alice", Some("not the password"))
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401, "sent credentials are checked");
    // get_json asserts 200.
    let (_, body) = get_json(&authed("alice"), &format!("{url}/v2/_zot/ext/mgmt"));
    assert_eq!(body["http"]["auth"]["htpasswd"], json!({}), "{body}");
}
