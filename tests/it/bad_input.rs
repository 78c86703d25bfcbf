//! Bad input everywhere: a subcommand given missing, malformed or
//! contradictory arguments exits non-zero with one line naming the problem; a
//! truncated functions.toml, a schema file that is not Avro, a schema registry
//! that answers garbage and a broker that closes connections mid-request get
//! clear errors, not a panic or a hang. (A broker that closes connections
//! while a function runs loses nothing: exactly_once.rs.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs the test binary (the order system's handlers and every kfn subcommand) with `args`;
/// returns its exit code and stderr. Stdin is closed: nothing may wait for input.
fn kfn(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"))
        .args(args)
        .env_remove("KFN_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the kfn binary");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Asserts a non-zero exit and a stderr of exactly one line that contains each of `names`.
fn assert_one_line(args: &[&str], names: &[&str]) {
    let (code, stderr) = kfn(args);
    assert!(matches!(code, Some(c) if c != 0), "kfn {args:?} exited {code:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "kfn {args:?} wrote {} lines, not one:\n{stderr}", lines.len());
    for name in names {
        assert!(lines[0].contains(name), "kfn {args:?}: {name:?} is not named in: {}", lines[0]);
    }
}

fn shipped() -> String {
    kfn_tests::workspace_root().join("functions.toml").display().to_string()
}

#[test]
fn missing_arguments_are_named_on_one_line() {
    assert_one_line(&[], &["`kfn` needs a command", "check", "dev", "dlq"]);
    assert_one_line(&["offsets", "reset", "--to", "earliest"], &["--function"]);
    assert_one_line(&["topics", "describe"], &["<TOPIC>"]);
    assert_one_line(&["dlq", "replay", "--function", "payment"], &["AT"]);
    assert_one_line(&["connect"], &["`kfn connect` needs a command", "apply", "status"]);
    assert_one_line(&["new"], &["<NAME>"]);
    assert_one_line(&["dev", "--config"], &["--config", "a value is required"]);
}

#[test]
fn malformed_arguments_are_named_on_one_line() {
    assert_one_line(&["frobnicate"], &["unrecognized subcommand", "frobnicate"]);
    assert_one_line(&["run", "--replicas", "2"], &["--replicas"]);
    assert_one_line(&["offsets", "reset", "--function", "payment", "--to", "yesterday"], &["yesterday", "--to"]);
    assert_one_line(&["dev", "--nodes", "9"], &["9", "--nodes", "1..=5"]);
    assert_one_line(&["dev", "--http-port", "eighty"], &["eighty", "--http-port"]);
    assert_one_line(&["dev", "--broker", "redpanda"], &["redpanda", "kafka", "tansu"]);
    assert_one_line(&["dlq", "show", "--function", "payment", "three"], &["three"]);
    assert_one_line(&["terraform", "--compatibility", "SIDEWAYS"], &["SIDEWAYS", "--compatibility"]);
    assert_one_line(&["registry", "--port", "99999"], &["99999", "--port"]);
    assert_one_line(&["new", "Not A Name!"], &["Not A Name!"]);
}

#[test]
fn contradictory_arguments_are_named_on_one_line() {
    assert_one_line(&["dlq", "replay", "--function", "payment", "--all", "0/5"], &["--all", "AT"]);
    assert_one_line(&["dev", "--broker", "tansu", "--secure"], &["--secure", "tansu"]);
    assert_one_line(&["dev", "--broker", "tansu", "--nodes", "3"], &["--nodes 3", "tansu"]);
    assert_one_line(&["registry", "--registry-tls-cert", "c.pem"], &["--registry-tls-key"]);
    // Two servers on one port: named before anything starts (no broker is started by this test).
    let shipped = shipped();
    assert_one_line(
        &["dev", "--config", &shipped, "--http-port", "18080", "--admin-port", "18080"],
        &["18080", "--http-port", "--admin-port"],
    );
}

fn config_of(dir: &Path) -> PathBuf {
    dir.join("functions.toml")
}

#[test]
fn a_truncated_functions_toml_names_the_file_and_line_for_every_command() {
    let dir = kfn_tests::shipped_project();
    let path = config_of(dir.path());
    let text = std::fs::read_to_string(&path).expect("read");
    // Cut mid-way through a table header, as a partial write or a bad merge leaves it.
    let cut = text.find("[functions.").expect("a function table") + "[functions.".len() + 3;
    std::fs::write(&path, &text[..cut]).expect("truncate");
    let config = path.display().to_string();
    for command in [&["check"][..], &["run"], &["topics", "create"], &["lag"], &["terraform", "--check"]] {
        let mut args = command.to_vec();
        args.extend(["--config", &config]);
        let (code, stderr) = kfn(&args);
        assert!(matches!(code, Some(c) if c != 0), "kfn {args:?} exited {code:?}: {stderr}");
        assert!(stderr.contains(&config), "kfn {args:?} does not name the file: {stderr}");
        assert!(stderr.contains("line "), "kfn {args:?} does not name the line: {stderr}");
        assert!(!stderr.contains("panicked"), "kfn {args:?} panicked: {stderr}");
    }
}

#[test]
fn a_schema_file_that_is_not_avro_is_named() {
    let dir = kfn_tests::shipped_project();
    let schema = dir.path().join("schemas/order_created.avsc");
    for (text, why) in [
        ("this is not JSON", "JSON"),
        (r#"{"type": "record", "name": "OrderCreated"}"#, "fields"),
        (r#"{"type": "recrod", "name": "OrderCreated", "fields": []}"#, "recrod"),
    ] {
        std::fs::write(&schema, text).expect("write schema");
        let (code, stderr) = kfn(&["check", "--config", &config_of(dir.path()).display().to_string()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("order_created.avsc"), "the schema file is not named: {stderr}");
        assert!(stderr.to_lowercase().contains(&why.to_lowercase()), "{why:?} is not said: {stderr}");
    }
}

/// A server on 127.0.0.1 that answers every connection with `answer` (after reading what the
/// client sent first), for as long as the test runs.
fn answering(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer);
            // Dropped: the connection closes, whatever the client still expects.
        }
    });
    port
}

#[test]
fn a_registry_that_answers_garbage_is_a_clear_error() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"id\": [}"[..],
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ] {
        let port = answering(answer);
        let url = format!("http://127.0.0.1:{port}");
        let (code, stderr) = kfn(&["check", "--config", &shipped(), "--registry", &url]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(&url), "the registry is not named: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_broker_that_closes_connections_mid_request_is_a_clear_error() {
    // Half a response frame (a length of 100, then 6 bytes), then the connection closes.
    let half = answering(b"\x00\x00\x00\x64\x00\x00\x00\x01\x00\x00");
    // Not Kafka at all: an HTTP server's answer, whose first 4 bytes read as a 1.2 GB frame.
    let http = answering(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
    for port in [half, http] {
        let dir = kfn_tests::shipped_project();
        let path = config_of(dir.path());
        let text = std::fs::read_to_string(&path).expect("read");
        let start = text.find("brokers = ").expect("brokers");
        let end = start + text[start..].find('\n').expect("end of line");
        let text = format!("{}brokers = [\"127.0.0.1:{port}\"]{}", &text[..start], &text[end..]);
        std::fs::write(&path, text).expect("write");
        let started = std::time::Instant::now();
        let (code, stderr) = kfn(&["topics", "describe", "--config", &path.display().to_string(), "orders"]);
        assert!(matches!(code, Some(c) if c != 0), "exited {code:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("kfn: error")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(&format!("127.0.0.1:{port}")), "the broker is not named: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        eprintln!("broker on {port}: gave up after {:?}: {}", started.elapsed(), lines[0]);
    }
}
