//! The web UI (`extensions.ui`) in a real browser: Debian's headless Chromium driven by the
//! playwright scenarios of tests/browser/ui_*.py (one function each), against berth behind
//! htpasswd and `accessControl` with search on.
//!
//! The registry ([`Ui::start`]): the search catalogue (tests/src/search/catalog.rs: shared
//! base layers, a two-platform index, history), `public/z` pushed by skopeo and `public/base`,
//! `signed/app` with a cosign signature and an SBOM referrer, `scratch/app` (tags `keep` and
//! `gone`) and 30 `bulk/rNN` so that /explore has pages. Everyone, anonymous included, reads
//! `public/**`; alice may do anything elsewhere, bob only read; root is the admin.
//!
//! The DOM contract the scenarios read: every UI response has CSP `default-src 'none'` with
//! `'self'` script/style/font/img/connect sources, X-Frame-Options DENY, nosniff, COOP, COEP
//! and CORP. `GET /` redirects to `/home`. The header nav: `nav a[href="/home"]`,
//! `a[href="/explore"]`, `a[href="/operator"]` for admins only, `a[href^="/login"]` when
//! anonymous, else `#user` and `form#logout` (POST /logout, hidden `csrf`). `/home`: `#recent`,
//! `#popular` (`a.repo-link` to `/image/<percent-encoded repo>`), `#starred` and `#bookmarked`
//! when logged in, `form#search` (GET /explore, `search`). `/explore`: `#results li.result
//! a.repo-link`, `#total[data-total]`, `a[rel=next]`/`a[rel=prev]`, `form#filters` (checkboxes
//! os, arch, signed, starred, bookmarked; `select[name=sort]`). `/image/<repo>`: `h1`,
//! `#summary` (a dl), `table#tags tbody tr[data-tag][data-digest]`, `form.toggle` with
//! `button#star[aria-pressed]`, `#star-count`, `button#bookmark[aria-pressed]` when logged in,
//! `form.delete-tag` per row for who may delete, leading to `/image/<repo>/tag/<tag>/delete`
//! and its `form#confirm-delete`. `/image/<repo>/tag/<tag>`: `section.platform[data-platform]`
//! with `table.layers tbody tr`, `#referrers`, `#signatures`, `#built-on a`, `#used-by a`,
//! `code.pull-command` each with a `button.copy`. `/login`: `form#login` (username, password),
//! `[role=alert]` when it failed. `/operator`: admins only.

use std::process::Command;

use berth_tests::access::{start, ALL};
use berth_tests::api::get_json;
use berth_tests::browser::{require_browser, run_script, scripts_dir, Page, StaticSite};
use berth_tests::search::{
    gql, push_cosign_signature, push_referrer, search_config, seed_catalog, strings, Catalog,
    ImageBuilder,
};
use berth_tests::{
    authed, push_image, require_tool, run_ok, write_oci_layout, Berth, Client, HTPASSWD_SECRET,
};
use serde_json::{json, Value};

const PUBLIC: [&str; 2] = ["public/base", "public/z"];
const SBOM: &str = "application/spdx+json";
const BULK_REPOS: usize = 30;

struct Ui {
    berth: Berth,
    catalog: Catalog,
    root: Client,
}

impl Ui {
    fn start() -> Ui {
        let access = json!({
            "repositories": {
                "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
                "**": {"policies": [
                    {"users": ["alice"], "actions": ALL},
                    {"users": ["bob"], "actions": ["read"]},
                ]},
            },
            "adminPolicy": {"users": ["root"], "actions": ALL},
        });
        let mut patch = search_config();
        patch["extensions"]["ui"] = json!({"enable": true});
        let berth = start(access, patch);
        let root = authed("root");
        let url = berth.url.clone();
        let catalog = seed_catalog(&root, &url);

        let z = ImageBuilder::new()
            .created("2024-09-01T00:00:00Z")
            .fresh_layer(300)
            .history("COPY z /z", false)
            .build();
        if require_tool("skopeo") {
            let layout = tempfile::tempdir().expect("tempdir");
            write_oci_layout(layout.path(), "v1", &z);
            run_ok(
                Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
                    .arg(format!("--dest-creds=root:{HTPASSWD_SECRET}"))
                    .arg(format!("oci:{}:v1", layout.path().display()))
                    .arg(format!("docker://{}/public/z:v1", berth.addr)),
            );
        } else {
            push_image(&root, &url, "public/z", "v1", &z);
        }
        let base = ImageBuilder::new()
            .created("2024-08-15T00:00:00Z")
            .fresh_layer(200)
            .build();
        push_image(&root, &url, "public/base", "v1", &base);

        let signed = ImageBuilder::new()
            .created("2024-08-01T00:00:00Z")
            .fresh_layer(250)
            .build();
        push_image(&root, &url, "signed/app", "v1", &signed);
        push_cosign_signature(&root, &url, "signed/app", &signed);
        push_referrer(&root, &url, "signed/app", &signed, SBOM, json!({}));

        for tag in ["keep", "gone"] {
            let image = ImageBuilder::new().fresh_layer(120).build();
            push_image(&root, &url, "scratch/app", tag, &image);
        }
        for n in 0..BULK_REPOS {
            let image = ImageBuilder::new()
                .created(&format!(
                    "2022-{:02}-{:02}T00:00:00Z",
                    1 + n / 28,
                    1 + n % 28
                ))
                .fresh_layer(64)
                .build();
            push_image(&root, &url, &format!("bulk/r{n:02}"), "v1", &image);
        }
        Ui {
            berth,
            catalog,
            root,
        }
    }

    fn url(&self) -> &str {
        &self.berth.url
    }

    fn port(&self) -> &str {
        self.berth.addr.rsplit(':').next().expect("addr has a port")
    }
}

/// `/image/<repo>` with the repository percent-encoded (its names hold `[a-z0-9._/-]`).
fn image_path(repo: &str) -> String {
    format!("/image/{}", repo.replace('/', "%2F"))
}

fn tag_path(repo: &str, tag: &str) -> String {
    format!("{}/tag/{tag}", image_path(repo))
}

/// `PUT /v2/_zot/ext/userprefs?action=ACTION&repo=REPO` as `client`, which must succeed.
fn userprefs(client: &Client, url: &str, action: &str, repo: &str) {
    let status = client
        .put(format!(
            "{url}/v2/_zot/ext/userprefs?action={action}&repo={repo}"
        ))
        .send()
        .expect("PUT userprefs")
        .status();
    assert_eq!(status.as_u16(), 200, "{action} {repo}");
}

/// The names of `StarredRepos` or `BookmarkedRepos` of `client`.
fn pref_list(client: &Client, url: &str, field: &str) -> Vec<String> {
    let data = gql(client, url, &format!("{{{field}{{Results{{Name}}}}}}"));
    strings(&data[field]["Results"], "Name")
}

fn star_count(url: &str, repo: &str) -> Value {
    let query = format!("{{ExpandedRepoInfo(repo:\"{repo}\"){{Summary{{StarCount}}}}}}");
    gql(&authed("root"), url, &query)["ExpandedRepoInfo"]["Summary"]["StarCount"].clone()
}

#[test]
fn anonymous_sees_only_the_anonymously_readable_repositories() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let private: Vec<&str> = ["team/app", "base/os", "signed/app", "bulk/r00"].to_vec();
    run_script(
        "ui_anonymous:anonymous_sees_only_public",
        ui.url(),
        &json!({
            "public": PUBLIC,
            "private": private,
            "public_tag": ["public/z", "v1"],
            "private_tag": ["team/app", "2.0"],
        }),
    );
}

#[test]
fn login_with_a_wrong_then_the_right_password_and_logout() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    run_script(
        "ui_login:wrong_then_right_password_then_logout",
        ui.url(),
        &json!({"user": "alice", "admin": "root"}),
    );
}

#[test]
fn a_star_and_a_bookmark_persist_across_reload_and_restart() {
    if !require_browser() {
        return;
    }
    let mut ui = Ui::start();
    let repo = "team/myapp";
    let state_dir = tempfile::tempdir().expect("tempdir");
    let args = json!({
        "user": "alice",
        "repo": repo,
        "state_path": state_dir.path().join("browser-state.json"),
    });
    run_script("ui_prefs:star_and_bookmark", ui.url(), &args);
    // The UI and the API keep the same preferences.
    let alice = authed("alice");
    assert_eq!(pref_list(&alice, ui.url(), "StarredRepos"), [repo]);
    assert_eq!(pref_list(&alice, ui.url(), "BookmarkedRepos"), [repo]);
    assert_eq!(star_count(ui.url(), repo), 1);

    ui.berth.restart();
    assert_eq!(pref_list(&alice, ui.url(), "StarredRepos"), [repo]);
    let run = run_script("ui_prefs:after_restart", ui.url(), &args);
    eprintln!(
        "UI session survived the restart: {}",
        run.data["session_survived"]
    );
    // The scenario toggled both off again.
    assert_eq!(
        pref_list(&alice, ui.url(), "StarredRepos"),
        Vec::<String>::new()
    );
    assert_eq!(
        pref_list(&alice, ui.url(), "BookmarkedRepos"),
        Vec::<String>::new()
    );
    assert_eq!(star_count(ui.url(), repo), 0);
}

#[test]
fn deleting_a_tag_is_offered_only_with_delete_and_removes_it() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let repo = "scratch/app";
    run_script(
        "ui_delete:delete_offered_only_with_permission",
        ui.url(),
        &json!({"repo": repo, "keep": "keep", "delete": "gone", "deleter": "alice", "reader": "bob"}),
    );
    let info = gql(
        &ui.root,
        ui.url(),
        &format!("{{ExpandedRepoInfo(repo:\"{repo}\"){{Images{{Tag}}}}}}"),
    );
    assert_eq!(
        strings(&info["ExpandedRepoInfo"]["Images"], "Tag"),
        ["keep"]
    );
    let (_, tags) = get_json(&ui.root, &format!("{}/v2/{repo}/tags/list", ui.url()));
    assert_eq!(tags["tags"], json!(["keep"]), "{tags}");
}

#[test]
fn posts_from_another_site_are_refused_and_change_nothing() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let page = std::fs::read(scripts_dir().join("cross_site_post.html")).expect("attack page");
    let site = StaticSite::start(vec![
        ("/cross_site_post.html", Page::html(page)),
        (
            "/favicon.ico",
            Page {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            },
        ),
    ]);
    let repo = "team/myapp";
    let run = run_script(
        "ui_csrf:cross_site_posts_refused",
        ui.url(),
        &json!({
            "user": "alice",
            "other": "bob",
            "repo": repo,
            "attacker_origins": [site.url, format!("http://localhost:{}", site.port)],
        }),
    );
    eprintln!("cross-site attempts: {}", run.data["attempts"]);
    let alice = authed("alice");
    assert_eq!(
        pref_list(&alice, ui.url(), "StarredRepos"),
        Vec::<String>::new()
    );
    assert_eq!(
        pref_list(&alice, ui.url(), "BookmarkedRepos"),
        Vec::<String>::new()
    );
    assert_eq!(star_count(ui.url(), repo), 0);
}

/// What GraphQL `GlobalSearch` answers (every page at once) for an /explore query string:
/// (names in order, total).
fn global_search(client: &Client, url: &str, params: &Value) -> (Vec<String>, u64) {
    let param = |name: &str| params.get(name).and_then(Value::as_str);
    let mut filter = Vec::new();
    if let Some(os) = param("os") {
        filter.push(format!("Os:[\"{os}\"]"));
    }
    if let Some(arch) = param("arch") {
        filter.push(format!("Arch:[\"{arch}\"]"));
    }
    for (name, field) in [
        ("signed", "HasToBeSigned"),
        ("starred", "IsStarred"),
        ("bookmarked", "IsBookmarked"),
    ] {
        if param(name) == Some("on") {
            filter.push(format!("{field}:true"));
        }
    }
    let sort = match param("sort").expect("every case names its sort") {
        "relevance" => "RELEVANCE",
        "updated" => "UPDATE_TIME",
        "name" => "ALPHABETIC_ASC",
        "downloads" => "DOWNLOADS",
        // GlobalSearch does not sort repositories by stars (zot answers an error): the UI's
        // order is taken to be most stars first, then by name.
        "stars" => "ALPHABETIC_ASC",
        other => panic!("no sort {other}"),
    };
    let query = format!(
        "{{GlobalSearch(query:\"{}\", filter:{{{}}}, requestedPage:{{limit:0, offset:0, sortBy:{sort}}})\
         {{Page{{TotalCount}} Repos{{Name StarCount}}}}}}",
        param("search").unwrap_or(""),
        filter.join(", ")
    );
    let data = gql(client, url, &query);
    let mut repos = data["GlobalSearch"]["Repos"]
        .as_array()
        .unwrap_or_else(|| panic!("{data}"))
        .clone();
    if param("sort") == Some("stars") {
        // Stable: equal counts keep the name order.
        repos.sort_by_key(|repo| std::cmp::Reverse(repo["StarCount"].as_u64()));
    }
    let names = strings(&Value::Array(repos), "Name");
    let total = data["GlobalSearch"]["Page"]["TotalCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("{data}"));
    (names, total)
}

#[test]
fn explore_answers_what_global_search_answers() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let url = ui.url();
    let (alice, bob) = (authed("alice"), authed("bob"));
    for (client, action, repo) in [
        (&alice, "toggleStar", "public/z"),
        (&alice, "toggleStar", "team/app"),
        (&bob, "toggleStar", "team/app"),
        (&bob, "toggleStar", "app"),
        (&alice, "toggleBookmark", "derived/one"),
        (&alice, "toggleBookmark", "team/app"),
    ] {
        userprefs(client, url, action, repo);
    }
    // Downloads: team/app's newest three times, app's once.
    for (repo, tag, times) in [("team/app", "latest", 3), ("app", "v1", 1)] {
        for _ in 0..times {
            let (status, _, _) = berth_tests::fetch_manifest(&ui.root, url, repo, tag);
            assert_eq!(status, 200, "{repo}:{tag}");
        }
    }
    let cases: Vec<Value> = [
        json!({"search": "", "sort": "name"}),
        json!({"search": "", "sort": "name", "page": "2"}),
        json!({"search": "app", "sort": "relevance"}),
        json!({"search": "", "sort": "updated"}),
        json!({"search": "", "sort": "downloads"}),
        json!({"search": "", "sort": "stars"}),
        json!({"search": "app", "os": "linux", "arch": "amd64", "sort": "name"}),
        // zot's Arch carries the variant (`arm64/v8`): a bare `arm64` finds nothing.
        json!({"search": "", "os": "linux", "arch": "arm64", "sort": "name"}),
        json!({"search": "", "signed": "on", "sort": "updated"}),
        json!({"search": "", "starred": "on", "sort": "stars"}),
        json!({"search": "", "bookmarked": "on", "sort": "name"}),
        json!({"search": "bulk", "sort": "name"}),
    ]
    .into_iter()
    .map(|params| {
        let (names, total) = global_search(&alice, url, &params);
        json!({"params": params, "names": names, "total": total})
    })
    .collect();
    assert!(
        cases[0]["total"].as_u64() > Some(40),
        "the fixture has pages: {}",
        cases[0]
    );
    let checked = json!({"os": "linux", "arch": "amd64", "bookmarked": "on"});
    let mut round_trip_params = checked.clone();
    round_trip_params["search"] = json!("app");
    round_trip_params["sort"] = json!("name");
    let (names, _) = global_search(&alice, url, &round_trip_params);
    assert_eq!(names, ["team/app"], "the fixture's round trip finds one");
    let args = json!({
        "user": "alice",
        "cases": cases,
        "round_trip": {"search": "app", "checked": checked, "sort": "name", "names": names},
    });
    run_script("ui_explore:explore_matches_global_search", url, &args);
    run_script("ui_explore:filters_round_trip", url, &args);
}

/// GraphQL's `field` (BaseImageList, DerivedImageList) of `image` as `[repo, tag]` pairs.
fn related(client: &Client, url: &str, field: &str, image: &str) -> Vec<Value> {
    let data = gql(
        client,
        url,
        &format!("{{{field}(image:\"{image}\"){{Results{{RepoName Tag}}}}}}"),
    );
    let pairs: Vec<Value> = data[field]["Results"]
        .as_array()
        .unwrap_or_else(|| panic!("{data}"))
        .iter()
        .map(|r| json!([r["RepoName"], r["Tag"]]))
        .collect();
    assert!(!pairs.is_empty(), "{field} of {image} is empty: {data}");
    pairs
}

#[test]
fn image_and_tag_pages_show_what_was_pushed() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let (url, catalog) = (ui.url(), &ui.catalog);
    let alice = authed("alice");
    let team20 = &catalog.team20.digest;
    let args = json!({
        "user": "alice",
        "host": ui.berth.addr,
        "other_base_url": format!("http://localhost:{}", ui.port()),
        "tags": {"repo": "team/app", "digests": {
            "1.0": catalog.team10.digest, "1.1": catalog.team11.digest,
            "2.0": team20, "latest": team20,
        }},
        "index": {"repo": "multi/platform", "tag": "v1",
                  "layers": {"linux/amd64": catalog.amd.layers.len(), "linux/arm64": catalog.arm.layers.len()}},
        "history": {"repo": "team/app", "tag": "2.0", "layers": catalog.team20.layers.len(),
                    "lines": ["ADD rootfs.tar /", "COPY app /app"]},
        "signed": {"repo": "signed/app", "tag": "v1", "tool": "cosign"},
        "referrer": {"repo": "signed/app", "tag": "v1", "artifact_type": SBOM},
        "built_on": {"repo": "derived/one", "tag": "v1",
                     "images": related(&alice, url, "BaseImageList", "derived/one:v1")},
        "used_by": {"repo": "base/os", "tag": "1",
                    "images": related(&alice, url, "DerivedImageList", "base/os:1")},
        "pull": {"repo": "team/app", "tag": "2.0"},
        "public_tag": ["public/z", "v1"],
    });
    let run = run_script("ui_image:image_and_tag_pages", url, &args);
    // The docker command's reference, pulled by skopeo, is the image.
    let commands: Vec<&str> = run.data["pull_commands"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.data))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let reference = commands
        .iter()
        .find_map(|c| c.strip_prefix("docker pull "))
        .unwrap_or_else(|| panic!("no `docker pull` command: {commands:?}"))
        .trim();
    if require_tool("skopeo") {
        let manifest = run_ok(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                ])
                .arg(format!("--creds=alice:{HTPASSWD_SECRET}"))
                .arg(format!("docker://{reference}")),
        );
        assert_eq!(manifest.as_bytes(), catalog.team20.manifest, "{reference}");
    }
}

#[test]
fn every_page_is_clean_and_fits_a_phone_in_both_color_schemes() {
    if !require_browser() {
        return;
    }
    let ui = Ui::start();
    let visit = |user: Option<&str>, admin: bool, pages: Vec<String>, refused: Value| json!({"user": user, "admin": admin, "pages": pages, "refused": refused});
    let args = json!({"visits": [
        visit(None, false, vec![
            "/home".into(), "/explore".into(), "/explore?search=app&sort=name".into(),
            image_path("public/z"), tag_path("public/z", "v1"), "/login".into(),
        ], json!([[image_path("team/app"), [401, 403, 404]]])),
        visit(Some("alice"), false, vec![
            "/home".into(), "/explore?search=&sort=name".into(),
            "/explore?search=&sort=name&page=2".into(), image_path("team/app"),
            tag_path("team/app", "2.0"), tag_path("multi/platform", "v1"),
            tag_path("signed/app", "v1"), format!("{}/delete", tag_path("scratch/app", "gone")),
        ], json!([["/operator", [403]], [image_path("nothing/here"), [404]]])),
        visit(Some("root"), true, vec!["/home".into(), "/operator".into()], json!([])),
    ]});
    run_script("ui_tour:every_page", ui.url(), &args);
}

/// The API keys page (`http.auth.apikey`): create, copy once, use, list, revoke in the page;
/// the key then fails at once (a light registry of its own: no catalogue needed).
#[test]
fn an_api_key_is_created_used_and_revoked_in_the_page() {
    if !require_browser() {
        return;
    }
    let mut patch = search_config();
    patch["extensions"]["ui"] = json!({"enable": true});
    patch["http"] = json!({"auth": {"apikey": true}});
    let access =
        json!({"repositories": {"**": {"policies": [{"users": ["alice"], "actions": ALL}]}}});
    let berth = start(access, patch);
    run_script(
        "ui_apikeys:create_use_list_and_revoke",
        &berth.url,
        &json!({"user": "alice"}),
    );
    let alice = authed("alice");
    let (_, keys) = get_json(&alice, &format!("{}/zot/auth/apikey", berth.url));
    assert_eq!(keys, json!({"apiKeys": []}), "revoked in the page");
}
