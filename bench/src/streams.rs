//! The Kafka Streams peer (`bench/streams`): the same passthrough on Kafka
//! Streams 4.4 with `processing.guarantee=exactly_once_v2`, the exactly-once
//! service a Java team would write instead of a kfn exactly_once function.
//!
//! The Maven project is built with `mvn` into kfn's cache the first time (and
//! again when its pom or sources change), its jars fetched from Maven Central
//! into `~/.m2`; later runs reuse both, offline. Each process is `java`
//! itself, spawned directly, so the pid measured is the JVM's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::stack::Stack;

/// The program's main class.
const MAIN: &str = "kfn.bench.StreamsPassthrough";

/// What java is for, in the error when it is missing.
const JAVA_FOR: &str = "a Java 17 or newer runtime runs the Kafka Streams peer";

/// The heap of each JVM: a cap a deployment would set; the JVM's other defaults (G1) stay.
const HEAP: &str = "-Xmx512m";

/// The classpath of the built peer (its classes and every dependency jar), building it first if needed.
///
/// Built once per `kfn-bench` process; a failed build is reported again on every call.
pub fn classpath(root: &Path) -> anyhow::Result<String> {
    kfn::dev::maven::java(JAVA_FOR)?;
    Ok(kfn::dev::maven::built_once(&root.join("bench/streams"), "bench-streams")?)
}

/// The command of the Streams peer process `name` (the services module spawns it with the run's
/// wiring), and the file it creates once it holds its tasks (state RUNNING).
pub fn command(stack: &Stack, name: &str) -> anyhow::Result<(Command, PathBuf)> {
    let classpath = classpath(&stack.root)?;
    let java = kfn::dev::maven::java(JAVA_FOR)?;
    let state_dir = stack.run_dir.join(format!("{name}.state"));
    let ready = stack.run_dir.join(format!("{name}.ready"));
    let mut command = Command::new(&java);
    command.args([HEAP, "-cp", &classpath, MAIN]).env("BENCH_STATE_DIR", &state_dir).env("BENCH_READY_FILE", &ready);
    Ok((command, ready))
}
