//! [`seed_catalog`]: the registry most search tests query, drawn in
//! tests/tests/search_global.rs: images sharing base layers, a two-platform index, repository
//! names chosen for zot's ranking, and one repository whose images carry annotations, labels,
//! an author and history.

use serde_json::json;

use super::images::{build_index, push_index, ImageBuilder, Layer};
use crate::api::{put_manifest, OCI_MANIFEST};
use crate::{push_image, Client, Image};

/// The registry most search tests query (see the table in tests/tests/search_global.rs).
/// Layers `b` (base), `m` (middle) and `x` are shared as drawn there.
pub struct Catalog {
    pub base1: Image,
    pub base2: Image,
    pub one: Image,
    pub two: Image,
    pub three: Image,
    pub amd: Image,
    pub arm: Image,
    pub multi: Vec<u8>,
    pub multi_digest: String,
    pub other: Image,
    pub app: Image,
    pub team10: Image,
    pub team11: Image,
    pub team20: Image,
    pub myapp: Image,
    pub tools: Image,
    pub xy: Image,
    pub b: Layer,
    pub m: Layer,
    pub x: Layer,
}

/// Every tagged image of [`seed_catalog`], by (repository, tag) ascending.
pub const CATALOG_TAGS: [&str; 15] = [
    "app:v1",
    "app/tools:v1",
    "base/os:1",
    "base/os:2",
    "derived/one:v1",
    "derived/three:v1",
    "derived/two:v1",
    "multi/platform:v1",
    "other/thing:RC1",
    "team/app:1.0",
    "team/app:1.1",
    "team/app:2.0",
    "team/app:latest",
    "team/myapp:v1",
    "x/app/y:v1",
];

/// Every repository of [`seed_catalog`], newest image first (UPDATE_TIME order).
pub const CATALOG_REPOS_BY_TIME: [&str; 11] = [
    "x/app/y",
    "app/tools",
    "team/myapp",
    "team/app",
    "app",
    "other/thing",
    "derived/three",
    "multi/platform",
    "derived/two",
    "derived/one",
    "base/os",
];

fn at(day: &str) -> String {
    format!("{day}T10:00:00Z")
}

fn simple(created: &str) -> Image {
    ImageBuilder::new()
        .created(&at(created))
        .fresh_layer(200)
        .build()
}

/// Pushes the catalog (all anonymous `client` writes) and returns what it pushed.
pub fn seed_catalog(client: &Client, url: &str) -> Catalog {
    let (b, m, x) = (Layer::random(3000), Layer::random(700), Layer::random(900));
    let with = |created: &str, layers: &[&Layer]| {
        layers.iter().fold(
            ImageBuilder::new().created(&at(created)),
            |builder, layer| builder.layer(layer),
        )
    };
    let base1 = with("2023-01-01", &[&b]).build();
    let base2 = with("2023-02-01", &[&b, &m]).build();
    let one = with("2023-03-01", &[&b, &m]).fresh_layer(100).build();
    let two = with("2023-04-01", &[&b]).fresh_layer(100).build();
    let amd = with("2023-05-01", &[&b, &m]).fresh_layer(100).build();
    let arm = with("2023-05-02", &[&x])
        .platform("linux", "arm64", Some("v8"))
        .build();
    let three = with("2023-06-01", &[&x]).fresh_layer(100).build();
    let other = simple("2023-07-01");
    let (multi, multi_digest) = build_index(&[&amd, &arm], json!({}));
    push_image(client, url, "base/os", "1", &base1);
    push_image(client, url, "base/os", "2", &base2);
    push_image(client, url, "derived/one", "v1", &one);
    push_image(client, url, "derived/two", "v1", &two);
    push_index(client, url, "multi/platform", "v1", &[&amd, &arm], &multi);
    push_image(client, url, "derived/three", "v1", &three);
    push_image(client, url, "other/thing", "RC1", &other);

    let app = simple("2024-01-01");
    let t1 = Layer::random(400);
    let team10 = ImageBuilder::new()
        .created(&at("2024-02-01"))
        .layer(&t1)
        .annotation("org.opencontainers.image.vendor", "Old Vendor")
        .build();
    let team11 = ImageBuilder::new()
        .created(&at("2024-03-01"))
        .layer(&t1)
        .fresh_layer(500)
        .label("org.opencontainers.image.vendor", "LabelVendor")
        .build();
    let team20 = ImageBuilder::new()
        .platform("linux", "arm64", Some("v8"))
        .created(&at("2024-04-01"))
        .author("Jane Doe")
        .fresh_layer(600)
        .fresh_layer(800)
        .history("ADD rootfs.tar /", false)
        .history("ENV TIER=web", true)
        .history("COPY app /app", false)
        .annotation("org.opencontainers.image.description", "The app")
        .annotation("org.label-schema.vendor", "ACME")
        .annotation("org.opencontainers.image.licenses", "MIT")
        .annotation("org.label-schema.vcs-url", "https://src.example/app")
        .label(
            "org.opencontainers.image.description",
            "a label loses to the annotation",
        )
        .label("org.label-schema.name", "Team App")
        .label(
            "org.opencontainers.image.documentation",
            "https://docs.example/app",
        )
        .label("org.label-schema.labels", "tier=web")
        .build();
    let myapp = simple("2024-05-01");
    let tools = simple("2024-06-01");
    let xy = simple("2024-07-01");
    push_image(client, url, "app", "v1", &app);
    push_image(client, url, "team/app", "1.0", &team10);
    push_image(client, url, "team/app", "1.1", &team11);
    push_image(client, url, "team/app", "2.0", &team20);
    put_manifest(
        client,
        url,
        "team/app",
        "latest",
        OCI_MANIFEST,
        &team20.manifest,
    );
    push_image(client, url, "team/myapp", "v1", &myapp);
    push_image(client, url, "app/tools", "v1", &tools);
    push_image(client, url, "x/app/y", "v1", &xy);
    Catalog {
        base1,
        base2,
        one,
        two,
        three,
        amd,
        arm,
        multi,
        multi_digest,
        other,
        app,
        team10,
        team11,
        team20,
        myapp,
        tools,
        xy,
        b,
        m,
        x,
    }
}
