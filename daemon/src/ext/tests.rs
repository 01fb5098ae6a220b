//! Tests of the registry (ext/mod.rs): route lookup, and discover's document byte for byte.

use std::sync::Arc;

use hyper::Method;

use super::{discover_document, Entry, Extension, Listed, Need, Registry, Route, READ};

const SCRUB: Listed = Listed {
    entry: Entry::Zot,
    endpoint: "/v2/_zot/ext/scrub",
    offers: "the scrub report",
};
const SYNC: Listed = Listed {
    entry: Entry::Berth,
    endpoint: "/v2/_berth/ext/sync",
    offers: "the state of each sync registry",
};

#[test]
fn discover_is_the_document_it_always_was() {
    let zot = r#"{"description":"zot registry extensions (berth: the scrub report)","endpoints":["/v2/_zot/ext/scrub"],"name":"_zot","url":"https://github.com/project-zot/zot/blob/main/pkg/extensions/_zot.md"}"#;
    let berth = r#"{"description":"berth extensions: the state of each sync registry","endpoints":["/v2/_berth/ext/sync"],"name":"_berth","url":"https://github.com/berth-registry/berth/blob/main/README.md#mirroring"}"#;
    let cases = [
        (vec![], "[]".to_owned()),
        (vec![SCRUB], format!("[{zot}]")),
        (vec![SYNC], format!("[{berth}]")),
        (vec![SCRUB, SYNC], format!("[{zot},{berth}]")),
        // The entries keep their order whatever the order of the list.
        (vec![SYNC, SCRUB], format!("[{zot},{berth}]")),
    ];
    for (listed, want) in cases {
        assert_eq!(discover_document(&listed).to_string(), want, "{listed:?}");
    }
}

struct Fake(&'static str, &'static [Route]);

impl Extension for Fake {
    fn name(&self) -> &'static str {
        self.0
    }

    fn routes(&self) -> &[Route] {
        self.1
    }
}

const A: &[Route] = &[Route {
    path: "/v2/_zot/ext/a",
    methods: READ,
    need: Need::Admin,
}];
const B: &[Route] = &[
    Route {
        path: "/v2/_berth/ext/b",
        methods: READ,
        need: Need::Nothing,
    },
    Route {
        path: "/v2/_berth/ext/b2",
        methods: &[Method::POST],
        need: Need::Admin,
    },
];

#[test]
fn a_path_finds_its_extension_and_route() {
    let registry = Registry::new(vec![Arc::new(Fake("a", A)), Arc::new(Fake("b", B))]);
    let found = |path: &str| {
        registry
            .route(path)
            .map(|(extension, route)| (extension.name(), route.path, route.need.clone()))
    };
    assert_eq!(
        found("/v2/_zot/ext/a"),
        Some(("a", "/v2/_zot/ext/a", Need::Admin))
    );
    assert_eq!(
        found("/v2/_berth/ext/b2"),
        Some(("b", "/v2/_berth/ext/b2", Need::Admin))
    );
    assert_eq!(found("/v2/_zot/ext/a/"), None);
    assert_eq!(found("/v2/_berth/ext"), None);
    assert_eq!(found("/v2/"), None);
}

#[test]
#[should_panic(expected = "two extensions answer the same path")]
fn two_extensions_cannot_answer_one_path() {
    Registry::new(vec![Arc::new(Fake("a", A)), Arc::new(Fake("again", A))]);
}
