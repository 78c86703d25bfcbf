//! Runs the Python peers (confluent-kafka, i.e. librdkafka) the interop tests use.

use std::path::PathBuf;
use std::process::Command;

/// The interpreter with confluent-kafka: `KFN_TEST_PYTHON`, else `python3`.
pub fn interpreter() -> PathBuf {
    std::env::var_os("KFN_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs `tests/python/<script>` with `args` and returns its standard output; fails on a non-zero exit.
pub fn run(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let path = crate::workspace_root().join("tests").join("python").join(script);
    let output = Command::new(interpreter()).arg(&path).args(args).output()?;
    if !output.status.success() {
        anyhow::bail!(
            "{} {args:?} failed ({}):\n{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
