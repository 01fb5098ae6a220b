//! How search requests travel, on the real binary: the same document by zui's GET (raw braces
//! in the URL), zli's GET (form-encoded, with a body that must be ignored) and POST JSON with
//! variables and an operation name all answer the same; zui's and zli's own queries run
//! unchanged; malformed requests get gqlgen's statuses (422 for parse and validation errors,
//! 400 for an undecodable POST, 200 with `data: null` for resolver errors); and queries that
//! are too deep, too complex or too large are refused with an error.

use berth_tests::search::{
    form_encode, gql, gql_get, gql_get_form, gql_post, refs, search_config, zui_encode,
    ImageBuilder, SEARCH,
};
use berth_tests::{http, push_image, Berth, Client, Image};
use serde_json::{json, Value};

fn start() -> (Berth, Client, Image, Image) {
    let berth = Berth::start_with(search_config());
    let client = http();
    let app = ImageBuilder::new()
        .created("2024-01-01T00:00:00Z")
        .fresh_layer(100)
        .annotation("org.opencontainers.image.description", "web app")
        .build();
    let base = ImageBuilder::new()
        .created("2023-01-01T00:00:00Z")
        .fresh_layer(100)
        .build();
    push_image(&client, &berth.url, "web/app", "v1", &app);
    push_image(&client, &berth.url, "web/app", "v2", &base);
    push_image(&client, &berth.url, "web/base", "v1", &base);
    (berth, client, app, base)
}

/// A rejected request: `status`, `data: null` and a non-empty message (async-graphql's
/// wording, not gqlparser's). Returns the message.
#[track_caller]
fn assert_rejected(what: &str, answer: (u16, Value), statuses: &[u16]) -> String {
    let (status, body) = answer;
    assert!(
        statuses.contains(&status),
        "{what}: status {status}, body {body}"
    );
    assert_eq!(body["data"], Value::Null, "{what}: {body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{what}: an error message: {body}");
    message.to_string()
}

const DOCUMENT: &str = "{ImageList(repo: \"web/app\", requestedPage: {sortBy: ALPHABETIC_DSC}) \
     {Page {TotalCount ItemCount} Results {RepoName Tag Digest Description}}}";

#[test]
fn the_same_document_by_zui_get_zli_get_and_post() {
    let (berth, client, app, base) = start();
    let url = &berth.url;
    let expected = json!({"ImageList": {
        "Page": {"TotalCount": 2, "ItemCount": 2},
        "Results": [
            {"RepoName": "web/app", "Tag": "v2", "Digest": base.digest, "Description": ""},
            {"RepoName": "web/app", "Tag": "v1", "Digest": app.digest, "Description": "web app"},
        ],
    }});
    let (status, body) = gql_get(&client, url, DOCUMENT);
    assert_eq!((status, &body), (200, &json!({"data": expected})));
    // zli: tabs and newlines, form-encoded, Content-Type JSON, and a body that GET ignores
    // (here a different, invalid document).
    let zli = DOCUMENT.replace(' ', "\n\t\t");
    let (status, body) = gql_get_form(&client, url, &zli, "{ImageList(repo: \"web/base\"");
    assert_eq!((status, &body), (200, &json!({"data": expected})));
    let (status, body) = gql_post(&client, url, DOCUMENT, None, None);
    assert_eq!((status, &body), (200, &json!({"data": expected})));
    // Variables and an operation name, by POST and by GET.
    let document = "query Other { ImageList(repo: \"web/base\") { Results { Tag } } } \
         query Paged($repo: String!, $page: PageInput) { ImageList(repo: $repo, requestedPage: $page) \
         { Page { TotalCount ItemCount } Results { RepoName Tag } } }";
    let variables =
        json!({"repo": "web/app", "page": {"limit": 1, "offset": 1, "sortBy": "ALPHABETIC_ASC"}});
    let (status, body) = gql_post(
        &client,
        url,
        document,
        Some(variables.clone()),
        Some("Paged"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(refs(&body["data"]["ImageList"]["Results"]), ["web/app:v2"]);
    assert_eq!(
        body["data"]["ImageList"]["Page"],
        json!({"TotalCount": 2, "ItemCount": 1})
    );
    let get_url = format!(
        "{url}{SEARCH}?query={}&variables={}&operationName=Paged",
        form_encode(document),
        form_encode(&variables.to_string())
    );
    let response = client.get(get_url).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
    assert_eq!(
        refs(&body["data"]["ImageList"]["Results"]),
        ["web/app:v2"],
        "{body}"
    );
    let (status, body) = gql_post(&client, url, document, None, Some("Other"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["ImageList"]["Results"], json!([{"Tag": "v1"}]));
    // Introspection, as zli does before every command.
    let data = gql(&client, url, "{__schema{queryType{name fields{name}}}}");
    assert_eq!(
        data["__schema"]["queryType"]["fields"]
            .as_array()
            .unwrap()
            .len(),
        15
    );
    let data = gql(
        &client,
        url,
        "{__type(name:\"PageInput\"){inputFields{name}}}",
    );
    assert_eq!(
        data["__type"]["inputFields"],
        json!([{"name": "limit"}, {"name": "offset"}, {"name": "sortBy"}])
    );
}

/// zui's queries (src/api.js), with zui's spacing and argument forms.
fn zui_queries(repo: &str, tag: &str, digest: &str) -> Vec<String> {
    vec![
        "{RepoListWithNewestImage(requestedPage: {limit:15 offset:0}){Results {Name LastUpdated Size Platforms {Os Arch}  NewestImage { Tag Vulnerabilities {MaxSeverity Count} Description  Licenses Title Source IsSigned SignatureInfo { Tool IsTrusted Author } Documentation Vendor Labels} IsStarred IsBookmarked StarCount DownloadCount}}}".into(),
        format!("{{ExpandedRepoInfo(repo:\"{repo}\"){{Images {{Manifests {{Digest Platform {{Os Arch}} Size}} Vulnerabilities {{MaxSeverity Count}} Tag LastUpdated Vendor IsDeletable }} Summary {{Name LastUpdated Size Platforms {{Os Arch}} Vendors IsStarred IsBookmarked NewestImage {{RepoName IsSigned SignatureInfo {{ Tool IsTrusted Author }} Vulnerabilities {{MaxSeverity Count}} Manifests {{Digest}} Tag Vendor Title Documentation DownloadCount Source Description Licenses}}}}}}}}"),
        format!("{{Image(image: \"{repo}:{tag}\"){{RepoName IsSigned SignatureInfo {{ Tool IsTrusted Author }} Vulnerabilities {{MaxSeverity Count}}  Referrers {{MediaType ArtifactType Size Digest Annotations{{Key Value}}}} Tag Manifests {{History {{Layer {{Size Digest}} HistoryDescription {{CreatedBy EmptyLayer}}}} Digest ConfigDigest LastUpdated Size Platform {{Os Arch}}}} Vendor Licenses }}}}"),
        format!("{{BaseImageList(image: \"{repo}:{tag}\", requestedPage: {{limit:15 offset:0}}){{Page {{TotalCount ItemCount}} Results {{ RepoName Tag Description Manifests {{Digest Platform {{Os Arch}} Size}} Vendor DownloadCount LastUpdated IsSigned SignatureInfo {{ Tool IsTrusted Author }} Vulnerabilities {{MaxSeverity Count}}}}}}}}"),
        format!("{{DerivedImageList(image: \"{repo}:{tag}\", requestedPage: {{limit:15 offset:0}}){{Page {{TotalCount ItemCount}} Results {{RepoName Tag Description Manifests {{Digest Platform {{Os Arch}} Size}} Vendor DownloadCount LastUpdated IsSigned SignatureInfo {{ Tool IsTrusted Author }} Vulnerabilities {{MaxSeverity Count}}}}}}}}"),
        "{GlobalSearch(query:\"web\", requestedPage: {limit:15 offset:0 sortBy: RELEVANCE} ,filter: { Os:[\"linux\"] Arch:[\"amd64\"] HasToBeSigned: true}) {Page {TotalCount ItemCount} Repos {Name LastUpdated Size Platforms { Os Arch } IsStarred IsBookmarked NewestImage { Tag Vulnerabilities {MaxSeverity Count} Description IsSigned SignatureInfo { Tool IsTrusted Author } Licenses Vendor Labels } StarCount DownloadCount}}}".into(),
        "{GlobalSearch(query:\"web/app:\", requestedPage: {limit:15 offset:0 sortBy:RELEVANCE}) {Images {RepoName Tag}}}".into(),
        format!("{{Referrers(repo: \"{repo}\" digest: \"{digest}\" type: \"\"){{MediaType ArtifactType Size Digest Annotations{{Key Value}}}}}}"),
    ]
}

/// zli's `ImageList` and `ImageListForDigest` documents (pkg/cli/client/service.go).
fn zli_queries(repo: &str, digest: &str) -> Vec<String> {
    vec![
        format!("\n\t{{\n\t\tImageList(repo: \"{repo}\", requestedPage: {{sortBy: ALPHABETIC_ASC}}) {{\n\t\t\tResults {{\n\t\t\t\tRepoName Tag\n\t\t\t\tDigest\n\t\t\t\tMediaType\n\t\t\t\tManifests {{\n\t\t\t\t\tDigest\n\t\t\t\t\tConfigDigest\n\t\t\t\t\tSize\n\t\t\t\t\tPlatform {{Os Arch}}\n\t\t\t\t\tIsSigned\n\t\t\t\t\tLayers {{Size Digest}}\n\t\t\t\t\tLastUpdated\n\t\t\t\t}}\n\t\t\t\tLastUpdated\n\t\t\t\tSize\n\t\t\t\tIsSigned\n\t\t\t}}\n\t\t}}\n\t}}"),
        format!("\n\t{{\n\t\tImageListForDigest(id: \"{digest}\", requestedPage: {{sortBy: RELEVANCE}}) {{\n\t\t\tResults {{\n\t\t\t\tRepoName Tag\n\t\t\t\tDigest\n\t\t\t\tMediaType\n\t\t\t\tManifests {{\n\t\t\t\t\tDigest\n\t\t\t\t\tConfigDigest\n\t\t\t\t\tSize\n\t\t\t\t\tIsSigned\n\t\t\t\t\tLayers {{Size Digest}}\n\t\t\t\t}}\n\t\t\t\tSize\n\t\t\t}}\n\t\t}}\n\t}}"),
    ]
}

#[test]
fn zui_and_zli_queries_run_unchanged() {
    let (berth, client, app, base) = start();
    let url = &berth.url;
    for query in zui_queries("web/app", "v1", &app.digest) {
        let (status, body) = gql_get(&client, url, &query);
        assert_eq!(status, 200, "{query}\n{body}");
        assert!(body.get("errors").is_none(), "{query}\n{body}");
        assert!(body["data"].is_object(), "{query}\n{body}");
    }
    let [image_list, for_digest] =
        <[String; 2]>::try_from(zli_queries("web/app", &base.digest)).unwrap();
    let (status, body) = gql_get_form(&client, url, &image_list, &image_list);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        refs(&body["data"]["ImageList"]["Results"]),
        ["web/app:v1", "web/app:v2"]
    );
    assert_eq!(
        body["data"]["ImageList"]["Results"][0]["Manifests"][0]["Platform"],
        json!({"Os": "linux", "Arch": "amd64"})
    );
    let (status, body) = gql_get_form(&client, url, &for_digest, &for_digest);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        refs(&body["data"]["ImageListForDigest"]["Results"]),
        ["web/app:v2", "web/base:v1"]
    );
    // The answer is JSON, and declared so.
    let response = client
        .get(format!(
            "{url}{SEARCH}?query={}",
            zui_encode("{ImageList(repo:\"x\"){Page{TotalCount}}}")
        ))
        .send()
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
}

#[test]
fn malformed_requests_get_gqlgen_statuses() {
    let (berth, client, _, _) = start();
    let url = &berth.url;
    for (what, document) in [
        ("unparsable", "{"),
        ("unparsable", "{ImageList(repo: \"web/app\") {Results {Tag}"),
        ("empty", ""),
        ("unknown field", "{Foo}"),
        (
            "unknown nested field",
            "{ImageList(repo:\"web/app\"){Results{Nope}}}",
        ),
        (
            "unknown argument",
            "{ImageList(repo:\"web/app\", x:1){Page{TotalCount}}}",
        ),
        ("missing argument", "{ImageList{Page{TotalCount}}}"),
        (
            "bad enum",
            "{ImageList(repo:\"a\", requestedPage:{sortBy:STARZ}){Page{TotalCount}}}",
        ),
        ("wrong type", "{ImageList(repo:5){Page{TotalCount}}}"),
        ("no selection on an object", "{ImageList(repo:\"a\")}"),
        (
            "mutation",
            "mutation {ImageList(repo:\"a\"){Page{TotalCount}}}",
        ),
    ] {
        assert_rejected(
            &format!("{what} by GET"),
            gql_get(&client, url, document),
            &[422],
        );
        assert_rejected(
            &format!("{what} by POST"),
            gql_post(&client, url, document, None, None),
            &[422],
        );
    }
    assert_rejected(
        "unknown operation name",
        gql_post(
            &client,
            url,
            "query A {ImageList(repo:\"a\"){Page{TotalCount}}}",
            None,
            Some("B"),
        ),
        &[422],
    );
    // A POST body that is not JSON, or not declared JSON: 400.
    let post = |content_type: &str, body: &str| {
        let response = client
            .post(format!("{url}{SEARCH}"))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body = serde_json::from_slice(&response.bytes().unwrap()).unwrap_or(Value::Null);
        (status, body)
    };
    assert_rejected(
        "non-JSON POST body",
        post("application/json", "{ImageList"),
        &[400],
    );
    assert_rejected(
        "POST as application/graphql",
        post(
            "application/graphql",
            "{ImageList(repo:\"a\"){Page{TotalCount}}}",
        ),
        &[400],
    );
    let (status, body) = post(
        "application/json; charset=utf-8",
        "{\"query\":\"{ImageList(repo:\\\"web/app\\\"){Page{TotalCount}}}\"}",
    );
    assert_eq!(
        (status, &body["data"]["ImageList"]["Page"]["TotalCount"]),
        (200, &json!(2))
    );
    // GET with variables that are not JSON: 400.
    let response = client
        .get(format!(
            "{url}{SEARCH}?query={}&variables=%7Bnope",
            zui_encode(DOCUMENT)
        ))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // A resolver error: 200, data null, the field's path.
    let (status, resolver_error) = gql_get(
        &client,
        url,
        "{ExpandedRepoInfo(repo:\"nope\"){Summary{Name}}}",
    );
    assert_eq!(status, 200);
    assert_eq!(resolver_error["data"], Value::Null);
    assert_eq!(
        resolver_error["errors"][0]["message"],
        "repo metadata not found for given repo name"
    );
    assert_eq!(
        resolver_error["errors"][0]["path"],
        json!(["ExpandedRepoInfo"])
    );
    // Only GET, POST (and OPTIONS) are served.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let response = client
            .request(method.clone(), format!("{url}{SEARCH}"))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method}");
    }
    let response = client
        .request(reqwest::Method::OPTIONS, format!("{url}{SEARCH}"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // gqlgen's default presenter gives resolver errors no `locations` (nor `extensions`).
    assert_eq!(
        resolver_error,
        json!({"errors": [{"message": "repo metadata not found for given repo name",
                           "path": ["ExpandedRepoInfo"]}], "data": null})
    );
}

#[test]
fn too_deep_too_complex_and_too_large_queries_are_refused() {
    let (berth, client, _, _) = start();
    let url = &berth.url;
    let mut deep = "name".to_string();
    for _ in 0..12 {
        deep = format!("ofType{{{deep}}}");
    }
    let deep = format!("{{__schema{{types{{fields{{type{{{deep}}}}}}}}}}}");
    assert!(deep.matches('{').count() >= 15);
    for answer in [
        gql_get(&client, url, &deep),
        gql_post(&client, url, &deep, None, None),
    ] {
        let message = assert_rejected("15 levels deep", answer, &[422]).to_lowercase();
        assert!(
            ["deep", "depth", "nest"]
                .iter()
                .any(|w| message.contains(w)),
            "the error says why: {message}"
        );
    }
    // 200 aliases of a 3-field selection: over the complexity budget, under the size limit.
    let wide: String = (0..200)
        .map(|i| format!("a{i}:ImageList(repo:\"web/app\"){{Page{{TotalCount}}}} "))
        .collect();
    let wide = format!("{{{wide}}}");
    assert!(wide.len() < 12 * 1024);
    let message = assert_rejected(
        "too complex",
        gql_post(&client, url, &wide, None, None),
        &[422],
    )
    .to_lowercase();
    assert!(message.contains("complex"), "the error says why: {message}");
    // 20 KB: refused however it is padded.
    let small = "{ImageList(repo:\"web/app\"){Page{TotalCount}}}";
    let padded = format!(
        "{{ImageList(repo:\"web/app\"){}{{Page{{TotalCount}}}}}}",
        " ".repeat(20 * 1024)
    );
    assert_rejected(
        "20 KB document",
        gql_post(&client, url, &padded, None, None),
        &[422],
    );
    let many_fields = format!(
        "{{ImageList(repo:\"web/app\"){{Page{{{}}}}}}}",
        "TotalCount ItemCount ".repeat(1000)
    );
    assert!(many_fields.len() > 20 * 1024);
    assert_rejected(
        "20 KB of fields",
        gql_post(&client, url, &many_fields, None, None),
        &[422],
    );
    // The same request at its natural size passes.
    let data = gql(&client, url, small);
    assert_eq!(data["ImageList"]["Page"]["TotalCount"], 2);
}
