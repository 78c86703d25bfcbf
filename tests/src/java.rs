//! Runs the Java peers (`tests/java`: Apache Kafka's own kafka-clients 4.4).
//!
//! The Maven module is built once per test binary into the kfn cache (not the
//! checkout), and skipped when its pom and sources are unchanged since the last build.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};

/// The classpath of the built peers: their classes and every dependency jar.
pub fn classpath() -> anyhow::Result<String> {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
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

fn build() -> anyhow::Result<String> {
    let module = crate::workspace_root().join("tests").join("java");
    let cache = std::env::var_os("KFN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kfn-cache"))
        .join("java-peers");
    let (classes, lib, stamp) = (cache.join("classes"), cache.join("lib"), cache.join("sources.hash"));
    let hash = sources_hash(&module)?;
    let classpath = format!("{}:{}/*", classes.display(), lib.display());
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == hash) {
        return Ok(classpath);
    }
    eprintln!("kfn-tests: building the Java peers (tests/java) with mvn into {}", cache.display());
    let output = std::process::Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "-f"])
        .arg(module.join("pom.xml"))
        .args(["package", "dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-Dkfn.build.dir={}", cache.join("build").display()))
        .arg(format!("-DoutputDirectory={}", lib.display()))
        .output()
        .context("running mvn (install Maven and a JDK 17+)")?;
    if !output.status.success() {
        bail!(
            "mvn package of tests/java failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&classes);
    std::fs::rename(cache.join("build").join("classes"), &classes).context("moving the compiled classes")?;
    std::fs::write(&stamp, hash)?;
    Ok(classpath)
}

/// A hash of the module's pom and Java sources.
fn sources_hash(module: &std::path::Path) -> anyhow::Result<String> {
    let mut files = vec![module.join("pom.xml")];
    let mut dirs = vec![module.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.hash(&mut hasher);
        std::fs::read(&f)?.hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}
