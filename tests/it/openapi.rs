//! docs/openapi.json against the running order system: kfn serves it at
//! `GET /openapi.json`, and schemathesis (PyPI; a peer we did not write)
//! generates requests from it: no answer is a 5xx, and every answer's status,
//! content type and body conform to the document.

use std::path::Path;

use kfn_tests::order_system::{request, OrderSystem};

use crate::order_system::ONE_AT_A_TIME;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_every_answer_conforms() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let system = OrderSystem::start(binary, 1).await.expect("the order system starts");
    let http = system.http[0];

    let (status, served) = request(http, "GET", "/openapi.json", &[], b"").await.expect("GET /openapi.json");
    assert_eq!(status, 200);
    let shipped = std::fs::read_to_string(kfn_tests::workspace_root().join("docs/openapi.json")).unwrap();
    let served: serde_json::Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(served, serde_json::from_str::<serde_json::Value>(&shipped).unwrap(), "the document served is the file");

    let python = kfn_tests::python::interpreter();
    let schemathesis = Path::new(&python).parent().expect("the venv's bin/").join("schemathesis");
    // The HTTP trigger's operations on its port, the admin endpoints (tag `admin`) on the admin port.
    let document = format!("http://{http}/openapi.json");
    let trigger = (format!("http://{http}"), "--exclude-tag");
    let admin = (format!("http://{}", system.admin[0]), "--include-tag");
    for (base, tag) in [trigger, admin] {
        let checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
        let output = tokio::process::Command::new(&schemathesis)
            .args(["run", &document, "--url", &base, tag, "admin", "--checks", checks])
            .args(["--max-examples", "30", "--seed", "1", "--no-color"])
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {} (scripts/test installs it): {e}", schemathesis.display()));
        let text = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "schemathesis found problems at {base}:\n{text}\n{stderr}");
        assert!(text.contains("passed"), "{text}");
    }
    system.stop().await;
}
