//! `orders asyncapi`: the document validates against the AsyncAPI 3.0.0 JSON Schema (npm's
//! `@asyncapi/specs`, fetched by `scripts/test`; validated with Python's `jsonschema`), and
//! says what a reader needs: the topic, the group, the forward, and the order's JSON Schema
//! (the example derives `schemars::JsonSchema`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use kafka_listener_tests::*;

/// The AsyncAPI 3.0.0 schema, or `None` (skip) when `scripts/test` did not fetch it and the
/// suite does not require it.
fn asyncapi_schema() -> Option<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let schema = target.join("asyncapi-specs/package/schemas/3.0.0-without-$id.json");
    if schema.exists() {
        return Some(schema);
    }
    assert!(
        std::env::var("KAFKA_REQUIRE_BROKER").is_err(),
        "{} missing: scripts/test fetches it (npm pack @asyncapi/specs)",
        schema.display()
    );
    eprintln!("AsyncAPI schema not fetched: test skipped (run scripts/test)");
    None
}

#[test]
fn orders_asyncapi_validates_against_the_asyncapi_3_schema() {
    let Some(schema) = asyncapi_schema() else {
        return;
    };
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/application.properties");
    let out = Command::new(orders_bin())
        .arg("asyncapi")
        .arg("--config")
        .arg(&config)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("orders asyncapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["orders"]["address"], "orders");
    assert_eq!(doc["operations"]["orders"]["action"], "receive");
    assert_eq!(
        doc["operations"]["orders"]["bindings"]["kafka"]["groupId"]["enum"][0],
        "orders"
    );
    assert_eq!(doc["operations"]["orders.send_to"]["action"], "send");
    let payload = &doc["components"]["messages"]["orders"]["payload"];
    assert_eq!(payload["type"], "object");
    assert_eq!(payload["properties"]["amount_cents"]["type"], "integer");

    // Validation, by the reference schema (draft-07).
    let check = |document: &serde_json::Value| {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import json,sys,jsonschema\n\
                 schema=json.load(open(sys.argv[1]))\n\
                 doc=json.load(sys.stdin)\n\
                 errors=list(jsonschema.Draft7Validator(schema).iter_errors(doc))\n\
                 [print(list(e.path), e.message[:200]) for e in errors]\n\
                 sys.exit(1 if errors else 0)",
            ])
            .arg(&schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (with jsonschema: .ci/run installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(document.to_string().as_bytes())
            .expect("write the document");
        let out = child.wait_with_output().expect("python3");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = check(&doc);
    assert_eq!(code, Some(0), "the document does not validate:\n{text}");
    // The validator can fail: a document with an action AsyncAPI does not have.
    let mut bad = doc.clone();
    bad["operations"]["orders"]["action"] = "listen".into();
    let (code, text) = check(&bad);
    assert_eq!(code, Some(1), "an invalid document passed: {text}");
}
