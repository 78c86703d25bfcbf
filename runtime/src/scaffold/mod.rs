//! `kfn new NAME`: a new project on kfn — one HTTP-triggered function and one
//! topic function, their functions.toml, schemas and a handler test — that
//! builds, checks and runs as it is.
//!
//! The files are templates under `scaffold/template/`, compiled into kfn;
//! `{{name}}`, `{{crate}}`, `{{namespace}}`, `{{kfn}}` and `{{kfn_sdk}}` are
//! filled in. The project depends on kfn by path when kfn was built from a
//! checkout that still exists (kfn is not on crates.io yet), by version
//! otherwise.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let project = kfn::scaffold::Project::new("hello-kfn").unwrap();
//! let written = project.write(&dir.path().join("hello-kfn"), &kfn::scaffold::KfnSource::Version("0.1".into())).unwrap();
//! assert!(written.iter().any(|p| p.ends_with("functions.toml")));
//! ```

use std::path::{Path, PathBuf};

/// The files of a new project: (path in the project, template).
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("template/Cargo.toml.in")),
    ("README.md", include_str!("template/README.md.in")),
    ("functions.toml", include_str!("template/functions.toml.in")),
    ("src/main.rs", include_str!("template/main.rs.in")),
    ("src/lib.rs", include_str!("template/lib.rs.in")),
    ("schemas/greeting_requested.avsc", include_str!("template/schemas/greeting_requested.avsc.in")),
    ("schemas/greeting.avsc", include_str!("template/schemas/greeting.avsc.in")),
    (".gitignore", "/target\n"),
];

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a Cargo package name.
    #[error(
        "{name:?} cannot name a project: expected letters, digits, `-` or `_`, starting with a letter (like hello-kfn)"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The target directory exists and is not empty.
    #[error("{} already exists and is not empty: choose another name or remove it", .dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the new project gets the kfn crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KfnSource {
    /// A kfn checkout: the directory holding `runtime/` and `sdk/`.
    Path(PathBuf),
    /// A published version requirement, like `0.1`.
    Version(String),
}

impl KfnSource {
    /// The checkout this kfn was built from, if it still exists; its version otherwise.
    pub fn of_this_build() -> Self {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
        match checkout {
            Some(dir) if dir.join("sdk/Cargo.toml").is_file() && dir.join("runtime/Cargo.toml").is_file() => {
                KfnSource::Path(dir)
            }
            _ => KfnSource::Version(env!("CARGO_PKG_VERSION").to_string()),
        }
    }

    /// The Cargo.toml dependency value of the crate in `folder` (`runtime` or `sdk`).
    fn dependency(&self, folder: &str) -> String {
        match self {
            // Debug formatting quotes and escapes the path as TOML's basic strings want.
            KfnSource::Path(dir) => format!("{{ path = {:?} }}", dir.join(folder).display().to_string()),
            KfnSource::Version(version) => format!("{version:?}"),
        }
    }
}

/// A project to create.
#[derive(Debug, Clone)]
pub struct Project {
    name: String,
}

impl Project {
    /// A project named `name`: its package, binary and directory name.
    pub fn new(name: &str) -> Result<Self, ScaffoldError> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name.len() <= 64;
        if !valid {
            return Err(ScaffoldError::InvalidName { name: name.to_string() });
        }
        Ok(Self { name: name.to_string() })
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes the project into `dir` (created; refused when it holds anything) and returns the files written.
    pub fn write(&self, dir: &Path, kfn: &KfnSource) -> Result<Vec<PathBuf>, ScaffoldError> {
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(ScaffoldError::NotEmpty { dir: dir.to_path_buf() });
        }
        let crate_name = self.name.replace('-', "_");
        let namespace = format!("{}.events", crate_name.to_ascii_lowercase());
        let mut written = Vec::new();
        for (file, template) in FILES {
            let text = template
                .replace("{{name}}", &self.name)
                .replace("{{crate}}", &crate_name)
                .replace("{{namespace}}", &namespace)
                .replace("{{kfn}}", &kfn.dependency("runtime"))
                .replace("{{kfn_sdk}}", &kfn.dependency("sdk"));
            let path = dir.join(file);
            let write = |path: &Path| -> std::io::Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, text)
            };
            write(&path).map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_packages_are_refused() {
        for name in ["", "1abc", "a b", "a/b", "ä"] {
            assert!(matches!(Project::new(name), Err(ScaffoldError::InvalidName { .. })), "{name:?}");
        }
        assert_eq!(Project::new("hello-kfn").unwrap().name(), "hello-kfn");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        let files = Project::new("my-app").unwrap().write(&root, &KfnSource::Path("/src/kfn".into())).unwrap();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(!text.contains("{{"), "{} keeps a placeholder", file.display());
        }
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"kfn = { path = "/src/kfn/runtime" }"#), "{manifest}");
        let main = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
        assert!(main.contains("my_app::registry()"), "{main}");
    }

    #[test]
    fn a_directory_with_files_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = Project::new("p").unwrap().write(dir.path(), &KfnSource::Version("0.1".into())).unwrap_err();
        assert!(matches!(err, ScaffoldError::NotEmpty { .. }));
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }
}
