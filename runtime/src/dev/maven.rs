//! The jars of the Java programs kfn runs locally (Apache Kafka; Kafka Connect
//! and its Debezium plugins), fetched once from Maven Central: kfn writes each
//! pinned pom into its cache and runs `mvn dependency:copy-dependencies` on
//! it, with Maven's progress shown. A stamp holds the poms installed, so a
//! changed pom installs again; a lock lets one of several processes (test
//! binaries start brokers at the same time) install while the others wait.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Why a Java program's jars could not be installed, or it cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum MavenError {
    /// java or mvn is not on PATH.
    #[error("`{tool}` is not on PATH ({why}); install it, e.g. `apt-get install {package}`")]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// What it is for.
        why: &'static str,
        /// A Debian package that provides it.
        package: &'static str,
    },
    /// mvn could not be started.
    #[error("cannot run mvn: {0}")]
    Spawn(#[source] std::io::Error),
    /// mvn ran and failed.
    #[error("`mvn dependency:copy-dependencies` on {pom} failed ({status}); Maven's output is above")]
    Failed {
        /// The pom it ran on.
        pom: PathBuf,
        /// Its exit status.
        status: ExitStatus,
    },
    /// `mvn package` of a Maven module failed.
    #[error("`mvn package` of {module} failed ({status}); Maven's output is above")]
    Build {
        /// The module's folder.
        module: PathBuf,
        /// Its exit status.
        status: ExitStatus,
    },
    /// The module's build failed earlier in this process (its output went to the terminal then).
    #[error("building {module} failed earlier in this process: {reason}")]
    FailedEarlier {
        /// The module's folder.
        module: PathBuf,
        /// The first failure, as it was reported.
        reason: String,
    },
    /// Neither KFN_CACHE_DIR, XDG_CACHE_HOME nor HOME names a cache folder to build into.
    #[error("no cache folder to build into: set KFN_CACHE_DIR")]
    NoCacheDir,
    /// A file or folder of the install or build could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MavenError + '_ {
    move |source| MavenError::Io { path: path.to_path_buf(), source }
}

/// One folder of jars: the runtime dependencies of a pom.
#[derive(Debug, Clone, Copy)]
pub struct Jars<'a> {
    /// The pom's name in the install folder (`<name>.pom.xml`), and in progress messages.
    pub name: &'a str,
    /// The pom's text.
    pub pom: &'a str,
    /// Where its jars go.
    pub folder: &'a Path,
}

/// What is installed, and why each tool is needed (for the errors).
#[derive(Debug, Clone, Copy)]
pub struct Install<'a> {
    /// The program, for messages: "Apache Kafka 4.4.0".
    pub what: &'a str,
    /// The folder holding the poms, the stamp and the lock.
    pub dir: &'a Path,
    /// The folders of jars.
    pub jars: &'a [Jars<'a>],
    /// What java is for ("a Java 17 or newer runtime runs the broker").
    pub java_for: &'static str,
    /// What mvn is for ("to fetch Apache Kafka's jars from Maven Central once").
    pub mvn_for: &'static str,
}

impl Install<'_> {
    /// Installs every folder of jars unless the stamp says these poms are installed already.
    pub fn ensure(&self) -> Result<(), MavenError> {
        let stamp = self.dir.join("poms.installed");
        let poms: String = self.jars.iter().map(|j| j.pom).collect();
        let installed =
            || std::fs::read_to_string(&stamp).is_ok_and(|s| s == poms) && self.jars.iter().all(|j| j.folder.is_dir());
        if installed() {
            return Ok(());
        }
        std::fs::create_dir_all(self.dir).map_err(io(self.dir))?;
        let lock_path = self.dir.join("install.lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        if installed() {
            return Ok(());
        }
        java(self.java_for)?;
        if Command::new("mvn").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(MavenError::MissingTool { tool: "mvn", why: self.mvn_for, package: "maven" });
        }
        eprintln!("kfn: installing {} (jars from Maven Central, with mvn) into {} ...", self.what, self.dir.display());
        for jars in self.jars {
            copy_dependencies(self.dir, jars)?;
        }
        std::fs::write(&stamp, poms).map_err(io(&stamp))?;
        eprintln!("kfn: {} installed", self.what);
        Ok(())
    }
}

/// Runs `mvn dependency:copy-dependencies` on the pom into a staging folder,
/// renamed into place at the end: an interrupted install is redone.
fn copy_dependencies(dir: &Path, jars: &Jars<'_>) -> Result<(), MavenError> {
    let pom = dir.join(format!("{}.pom.xml", jars.name));
    std::fs::write(&pom, jars.pom).map_err(io(&pom))?;
    let staging = dir.join(format!("{}.partial", jars.name));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new("mvn")
        // Debian's mvn colours its output even in batch mode unless told not to.
        .args(["--batch-mode", "-Dstyle.color=never", "--file"])
        .arg(&pom)
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", staging.display()))
        .stdin(Stdio::null())
        .status()
        .map_err(MavenError::Spawn)?;
    if !status.success() {
        return Err(MavenError::Failed { pom, status });
    }
    if let Some(parent) = jars.folder.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let _ = std::fs::remove_dir_all(jars.folder);
    std::fs::rename(&staging, jars.folder).map_err(io(jars.folder))
}

/// Builds the Maven module in `module` (a `pom.xml` and `src/`: the Java
/// peers of the tests, the Kafka Streams peer of the benchmark) into `cache`
/// unless its pom and sources are unchanged since the last build there;
/// returns the classpath of its classes and runtime dependency jars. The
/// pom takes `kfn.build.dir` as its build directory, so the checkout stays
/// clean; `mvn` fetches the jars from Maven Central the first time.
pub fn build_module(module: &Path, cache: &Path) -> Result<String, MavenError> {
    let (classes, lib, stamp) = (cache.join("classes"), cache.join("lib"), cache.join("sources.hash"));
    let hash = sources_hash(module)?;
    let classpath = format!("{}:{}/*", classes.display(), lib.display());
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == hash) && classes.is_dir() {
        return Ok(classpath);
    }
    eprintln!("kfn: building {} with mvn into {}", module.display(), cache.display());
    let _ = std::fs::remove_dir_all(&lib);
    let status = Command::new("mvn")
        // Debian's mvn colours its output even in batch mode unless told not to.
        .args(["-q", "-B", "-Dstyle.color=never", "-f"])
        .arg(module.join("pom.xml"))
        .args(["package", "dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-Dkfn.build.dir={}", cache.join("build").display()))
        .arg(format!("-DoutputDirectory={}", lib.display()))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MavenError::MissingTool {
                tool: "mvn",
                why: "to build a Java program from its Maven module",
                package: "maven",
            },
            _ => MavenError::Spawn(e),
        })?;
    if !status.success() {
        return Err(MavenError::Build { module: module.to_path_buf(), status });
    }
    let _ = std::fs::remove_dir_all(&classes);
    std::fs::rename(cache.join("build").join("classes"), &classes).map_err(io(&classes))?;
    std::fs::write(&stamp, hash).map_err(io(&stamp))?;
    Ok(classpath)
}

/// [`build_module`] of `module` into `<kfn cache>/<name>` once per process: the callers after the
/// first get the classpath it returned, or its failure again (the test binaries and the benchmark
/// ask for their Java peers from many places).
pub fn built_once(module: &Path, name: &str) -> Result<String, MavenError> {
    static BUILT: std::sync::Mutex<std::collections::BTreeMap<PathBuf, Result<String, String>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    // Held while building: a second caller waits for the first build instead of running mvn beside it.
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = match built.get(module) {
        Some(outcome) => outcome.clone(),
        None => {
            let cache = super::tansu::cache_dir().map_err(|_| MavenError::NoCacheDir)?.join(name);
            let outcome = build_module(module, &cache).map_err(|e| e.to_string());
            built.insert(module.to_path_buf(), outcome.clone());
            outcome
        }
    };
    outcome.map_err(|reason| MavenError::FailedEarlier { module: module.to_path_buf(), reason })
}

/// A hash of a module's pom and sources.
fn sources_hash(module: &Path) -> Result<String, MavenError> {
    use std::hash::{Hash, Hasher};
    let mut files = vec![module.join("pom.xml")];
    let mut dirs = vec![module.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
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
        f.strip_prefix(module).unwrap_or(&f).hash(&mut hasher);
        std::fs::read(&f).map_err(io(&f))?.hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// The java binary: `$JAVA_HOME/bin/java`, else `java` on PATH; `why` says what it runs.
pub fn java(why: &'static str) -> Result<PathBuf, MavenError> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"));
    match Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => Ok(java),
        Err(_) => Err(MavenError::MissingTool { tool: "java", why, package: "openjdk-17-jre-headless" }),
    }
}
