//! `kfn new`: the scaffolded project builds on its own (a crate outside this
//! workspace depending on kfn by path), its handler tests pass, `check`
//! accepts it, and its binary creates its topics and runs against the broker:
//! a POST to its HTTP trigger comes out of its topic function as a greeting.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kfn::avro::{RegistryClient, SchemaCache};
use kfn::registry::{RegistryConfig, RegistryServer};
use kfn::scaffold::{KfnSource, Project};
use kfn_tests::order_system::request;
use serde::Deserialize;

/// The scaffold's output event, as the test reads it back.
#[derive(Debug, Deserialize, PartialEq)]
struct Greeting {
    name: String,
    text: String,
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the scaffold is built: beside this workspace's own build output,
/// in a directory of its own (cargo holds the workspace's build lock while
/// tests run), so the second run reuses the first's compiled dependencies.
fn scaffold_target() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/debug/deps/it-HASH
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    target.join("scaffold")
}

/// Runs cargo in `dir` with `args`, offline (the workspace's Cargo.lock pins
/// every crate, all already downloaded), and fails with its output.
fn cargo(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("scaffold: cargo {} (in {})", args.join(" "), dir.display());
    let output = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!(
            "cargo {} failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The scaffold's functions.toml pointed at the test's broker, registry and
/// free ports, with topic names no other test uses.
fn point_at_test_broker(text: &str, registry: &str, http: u16, admin: u16) -> (String, [String; 3]) {
    let topics =
        [kfn_tests::unique("greetings-requested"), kfn_tests::unique("greetings-sent"), kfn_tests::unique("greet-dlq")];
    let text = text
        .replace("[\"127.0.0.1:9092\"]", &format!("{:?}", kfn_tests::bootstrap()))
        .replace("http://127.0.0.1:8081", registry)
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{admin}"))
        .replace("greetings.requested", &topics[0])
        .replace("greetings.sent", &topics[1])
        .replace("greet.dlq", &topics[2]);
    (text, topics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_builds_checks_and_runs_against_the_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("greeter");
    let project = Project::new("greeter").expect("a valid name");
    project.write(&root, &KfnSource::Path(kfn_tests::workspace_root())).expect("the scaffold is written");
    std::fs::copy(kfn_tests::workspace_root().join("Cargo.lock"), root.join("Cargo.lock")).expect("Cargo.lock");

    cargo(&root, &["test", "--quiet"]).expect("the scaffold's own tests pass");
    cargo(&root, &["build", "--quiet"]).expect("the scaffold builds");
    let binary = scaffold_target().join("debug").join("greeter");

    let check = Command::new(&binary).arg("check").current_dir(&root).output().expect("greeter check");
    assert!(check.status.success(), "check refused the scaffold: {}", String::from_utf8_lossy(&check.stderr));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let registry = RegistryServer::start(kfn_tests::cluster(), listener, RegistryConfig::default())
        .await
        .expect("the registry starts");
    let registry_url = format!("http://{}", registry.local_addr());
    let (http, admin) = (kfn::dev::ports::free_port().unwrap(), kfn::dev::ports::free_port().unwrap());
    let shipped = std::fs::read_to_string(root.join("functions.toml")).unwrap();
    let (text, topics) = point_at_test_broker(&shipped, &registry_url, http, admin);
    std::fs::write(root.join("functions.toml"), text).unwrap();

    let create = Command::new(&binary).args(["topics", "create", "--local"]).current_dir(&root).output().unwrap();
    assert!(create.status.success(), "topics create: {}", String::from_utf8_lossy(&create.stderr));

    let run = Command::new(&binary)
        .arg("run")
        .current_dir(&root)
        .env_remove("KFN_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("greeter run");
    let _run = Running(run);

    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(request(admin_addr, "GET", "/readyz", &[], b"").await, Ok((200, _))) {
        assert!(Instant::now() < deadline, "greeter run was not ready within 90 s");
        // /readyz has no change notification: poll it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    let json = [("content-type", "application/json")];
    let (status, body) = request(http_addr, "POST", "/greetings", &json, br#"{"name": ""}"#).await.unwrap();
    assert_eq!(status, 422, "an empty name is refused: {body}");
    let (status, body) = request(http_addr, "POST", "/greetings", &json, br#"{"name": "Ada"}"#).await.unwrap();
    assert_eq!(status, 202, "{body}");

    let mut sent = kfn_tests::app::TopicWatcher::new(kfn_tests::cluster(), &topics[1]).await.unwrap();
    let records = sent.wait_for_count(1).await.expect("a greeting comes out").to_vec();
    let schemas = SchemaCache::new(RegistryClient::new(&registry_url, None).unwrap());
    let value = records[0].1.value.clone().expect("a value");
    let greeting: Greeting = schemas.resolve(&value).await.unwrap().decode().unwrap();
    assert_eq!(greeting, Greeting { name: "Ada".into(), text: "Hello, Ada!".into() });
    assert_eq!(records[0].1.key.as_deref(), Some(&b"Ada"[..]));
}
