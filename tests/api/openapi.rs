//! The OpenAPI document (`GET /api/openapi.json`) against the router it describes: every
//! documented operation is routed, every other method on a documented path is a 405, no
//! route is registered without its description, every reference resolves, and the whole
//! document is pinned by a snapshot (`snapshots/openapi.snap`).

use std::collections::BTreeSet;
use std::path::Path;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, rust_files, scrape};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(app: &TestApp) -> Value {
    let res = app.get("/api/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "application/json");
    res.body
}

/// A documented path with every `{param}` filled in.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("t-1");
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_other_method_is_405() {
    let app = TestApp::new();
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 23, "{} paths", paths.len());
    let mut operations = 0;
    for (template, item) in paths {
        let path = concrete(template);
        for method in METHODS {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if template == "/metrics" && method == "get" {
                assert_eq!(scrape(&app, None).await.0, StatusCode::OK);
                operations += 1;
                continue;
            }
            if template == "/ui" && method == "get" {
                // The page is HTML, not JSON (tests/api/ui.rs reads it).
                assert_eq!(crate::ui::page_status(&app).await, StatusCode::OK);
                operations += 1;
                continue;
            }
            let body = matches!(method, "post" | "put" | "patch").then(|| json!({}));
            let res = app.request(verb, &path, body).await;
            let routed = res.status != StatusCode::METHOD_NOT_ALLOWED
                && !res.body["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("No route for"));
            if item.get(method).is_some() {
                operations += 1;
                assert!(routed, "{method} {template}: {} {}", res.status, res.body);
            } else {
                assert_eq!(
                    res.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is routed but not documented: {}",
                    res.body
                );
            }
        }
    }
    assert!(operations >= 28, "{operations} operations");
}

/// Routes reach the router only through `utoipa_axum::routes!`, which takes each path and
/// method from the handler's `#[utoipa::path]`: a plain axum route would be served without
/// being described.
#[test]
fn no_route_is_registered_outside_the_described_list() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for plain in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if code.contains(plain) {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    // The baseline binary (src/bin/afw-baseline.rs) is a benchmark reference, not afw.
    offenders.retain(|o| !o.contains("afw-baseline.rs"));
    assert!(
        offenders.is_empty(),
        "undescribed routes:\n{}",
        offenders.join("\n")
    );
}

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.insert(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_says_what_it_answers_and_every_reference_resolves() {
    let app = TestApp::new();
    let doc = document(&app).await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    let mut operation_ids = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(
                operation_ids.insert(id.clone()),
                "operationId {id:?} twice ({method} {template})"
            );
            let responses = op["responses"].as_object().unwrap();
            let success = responses.keys().any(|s| s.starts_with('2') || s == "101");
            assert!(success, "{method} {template} documents no success");
            // Every operation can be refused by the edge: Host/Origin, storage down.
            for status in ["403", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {template} lacks {status}"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {template} lacks {status}"
                    );
                }
            }
            for (status, answer) in responses {
                if !matches!(status.as_str(), "101" | "204" | "304") {
                    assert!(
                        answer.get("content").is_some(),
                        "{method} {template} {status} has no body schema"
                    );
                }
            }
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {template}"
            );
        }
    }
}

#[tokio::test]
async fn snapshot_the_openapi_document() {
    let app = TestApp::new();
    let doc = document(&app).await;
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        sort_maps => true,
    }, {
        insta::assert_json_snapshot!("openapi", doc);
    });
}

#[tokio::test]
async fn what_the_fuzzer_found_stays_fixed_in_memory_mode() {
    crate::fuzz_findings::fuzz_findings_hold(&TestApp::new()).await;
}
