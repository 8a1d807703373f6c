//! The rules of ARCHITECTURE.md that can be checked by reading the code: every route states
//! its permission rule there, and only the server crate knows HTTP and HTML.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(METHOD, path)` of every route registered in `services/server/src/lib.rs`: the functions
/// that configure a scope, with the scope's prefix.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let src = read("services/server/src/lib.rs");
    let mut out = BTreeSet::new();
    for (function, prefix) in [
        ("fn routes(", ""),
        ("fn api_routes(", "/api/v1"),
        ("fn openai_routes(", "/v1"),
        ("fn page_routes(", ""),
    ] {
        let start = src
            .find(function)
            .unwrap_or_else(|| panic!("{function} not found"));
        let end = start + src[start..].find("\n}\n").expect("end of function");
        let body = &src[start..end];
        let mut rest = body;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let q1 = rest.find('"').unwrap();
            let q2 = q1 + 1 + rest[q1 + 1..].find('"').unwrap();
            let path = &rest[q1 + 1..q2];
            let m = rest.find("web::").unwrap() + "web::".len();
            let method = &rest[m..m + rest[m..].find('(').unwrap()];
            out.insert((method.to_uppercase(), format!("{prefix}{path}")));
        }
    }
    out
}

/// `(METHOD, path)` of every row of the route table in ARCHITECTURE.md, and its rule.
fn routes_in_architecture() -> Vec<(String, String, String)> {
    let doc = read("ARCHITECTURE.md");
    let start = doc
        .find("## Routes and their rules")
        .expect("ARCHITECTURE.md has a route table");
    let section = &doc[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
                cells[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn every_route_states_its_rule_in_the_architecture() {
    let code = routes_in_code();
    assert!(code.len() > 50, "found only {} routes", code.len());
    let table = routes_in_architecture();
    for (method, path, rule) in &table {
        assert!(!rule.is_empty(), "{method} {path} has no rule");
    }
    let documented: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let missing: Vec<_> = code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a rule in ARCHITECTURE.md: {missing:?}; rules of routes that do not \
         exist: {stale:?}"
    );
}

#[test]
fn only_the_server_knows_http_and_html() {
    let members = [
        "Cargo.toml",
        "ingest/Cargo.toml",
        "services/settings/Cargo.toml",
        "services/storage/Cargo.toml",
        "services/embed/Cargo.toml",
        "services/retrieval/Cargo.toml",
        "services/generation/Cargo.toml",
        "services/answer/Cargo.toml",
        "services/corpus/Cargo.toml",
    ];
    for m in members {
        let manifest = read(m);
        let deps = manifest
            .split("\n[")
            .filter(|section| section.starts_with("dependencies]"))
            .collect::<String>();
        for web in ["actix-web", "actix-multipart", "tera", "utoipa"] {
            assert!(
                !deps.lines().any(|l| l.trim_start().starts_with(web)),
                "{m} depends on {web}: only enclave-server knows HTTP and HTML"
            );
        }
    }
    // The command line manages people through the application layer, not the server's auth.
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("enclave_server::auth"),
            "{} reaches into the server's auth",
            path.display()
        );
    }
}
