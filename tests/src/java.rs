//! Runs the Java peers (`tests/java`: Apache Kafka's own kafka-clients 4.4).
//!
//! The Maven module is built once per test binary into the kfn cache (not the
//! checkout), and skipped when its pom and sources are unchanged since the last build.

use anyhow::{bail, Context};

/// The classpath of the built peers: their classes and every dependency jar.
pub fn classpath() -> anyhow::Result<String> {
    let module = crate::workspace_root().join("tests").join("java");
    Ok(kfn::dev::maven::built_once(&module, "java-peers")?)
}

/// A `java` command running `dev.kfn.peers.<main>`; add the program's arguments.
pub fn command(main: &str) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new("java");
    cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", &classpath()?, &format!("dev.kfn.peers.{main}")]);
    Ok(cmd)
}

/// Runs `dev.kfn.peers.<main>` with `args` and returns its standard output; fails on a non-zero exit.
pub async fn run(main: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = command(main)?.args(args).output().await.context("running java")?;
    if !output.status.success() {
        bail!("java {main} {args:?} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}
