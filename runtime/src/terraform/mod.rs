//! `kfn terraform`: the deployment of functions.toml as a Terraform (or
//! OpenTofu) module, generated, never written by hand.
//!
//! The module holds what `kfn topics create`, `kfn acls apply --per-function`
//! and the schema registration at start-up would do, as resources of the
//! `Mongey/kafka` provider (topics, ACLs) and of a schema-registry provider
//! (`cultureamp/schemaregistry`: subjects and their compatibility level):
//!
//! - `topics.tf`: every topic of functions.toml and every derived dead-letter
//!   topic, with partitions, replication and broker configs (retention,
//!   cleanup policy, `min.insync.replicas`, the `configs` passed through);
//! - `acls.tf`: exactly the bindings of [`crate::acls::deployment_plan`];
//! - `schemas.tf`: the value subject `<topic>-value` of each Avro topic with a schema file;
//! - `providers.tf`, `versions.tf`: where the cluster and registry are, as variables.
//!
//! Rendering is a pure function of the validated [`Config`] and the ACL plan:
//!
//! ```
//! # fn demo(config: &kfn::config::Config) -> Result<(), kfn::terraform::TerraformError> {
//! use kfn::acls::{deployment_plan, Principals};
//! use kfn::terraform::{Module, Settings};
//! let plan = deployment_plan(config, &Principals::PerFunction);
//! let module = Module::render(config, &plan, &Settings::default())?;
//! module.write(std::path::Path::new("terraform"))?;
//! # Ok(()) }
//! ```

mod hcl;
mod render;

use std::path::{Component, Path, PathBuf};

use crate::avro::compatibility::CompatibilityLevel;
use crate::avro::value_subject;
use crate::config::{Config, TopicFormat, TopicSpec};
use crate::kafka::acl::AclBinding;

pub use hcl::quote;

/// What went wrong generating or writing the module.
#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    /// A schema file lies outside the directory of functions.toml, so the
    /// module cannot name it by a path relative to itself.
    #[error("topics.\"{topic}\".schema: {path} is outside the directory of functions.toml; move it under it")]
    SchemaOutsideProject {
        /// The topic.
        topic: String,
        /// Its schema file.
        path: PathBuf,
    },
    /// A file of the module could not be read or written.
    #[error("{path}: {action}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The choices the generated module makes that functions.toml does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The directory of functions.toml as seen from the module's directory
    /// (`..` for `terraform/` beside functions.toml): schema files are read by
    /// Terraform as `${path.module}/<this>/schemas/...`.
    pub project_dir: String,
    /// The compatibility level of every subject (the registry's default, BACKWARD, unless told).
    pub compatibility: CompatibilityLevel,
}

impl Default for Settings {
    fn default() -> Self {
        Self { project_dir: "..".into(), compatibility: CompatibilityLevel::Backward }
    }
}

impl Settings {
    /// `min.insync.replicas` for a topic that does not set it: one less than
    /// its replication from 3 replicas up, so that acks=all writes survive the
    /// loss of one broker and stop rather than lose data on the loss of two.
    /// Below 3 replicas the broker's default stands (a single-node cluster
    /// could not meet more than 1).
    pub fn min_insync_replicas(&self, topic: &TopicSpec) -> Option<i16> {
        (topic.replication >= 3).then(|| topic.replication - 1)
    }
}

/// A schema subject of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `<topic>-value`.
    pub subject: String,
    /// The schema file, relative to the module's directory.
    pub file: String,
    /// Its compatibility level.
    pub compatibility: CompatibilityLevel,
}

/// The generated module: file names and their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// `(file name, text)`, in a fixed order.
    pub files: Vec<(&'static str, String)>,
}

impl Module {
    /// Renders the module for `config`, granting exactly `acls`.
    pub fn render(config: &Config, acls: &[AclBinding], settings: &Settings) -> Result<Self, TerraformError> {
        let subjects = subjects(config, settings)?;
        Ok(Self {
            files: vec![
                ("versions.tf", render::versions()),
                ("providers.tf", render::providers(config)),
                ("topics.tf", render::topics(config, settings)),
                ("acls.tf", render::acls(acls)),
                ("schemas.tf", render::schemas(&subjects)),
            ],
        })
    }

    /// Writes every file into `dir` (created if missing) and removes the .tf
    /// files there that the module no longer has.
    pub fn write(&self, dir: &Path) -> Result<(), TerraformError> {
        fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TerraformError + 'a {
            move |source| TerraformError::Io { action, path: path.to_path_buf(), source }
        }
        std::fs::create_dir_all(dir).map_err(io("creating the directory", dir))?;
        for stale in self.extra_files(dir)? {
            std::fs::remove_file(&stale).map_err(io("removing a file the module no longer has", &stale))?;
        }
        for (name, text) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io("writing", &path))?;
        }
        Ok(())
    }

    /// The files of `dir` that differ from the module: missing, changed, or
    /// .tf files the module does not have. Empty when `dir` is up to date.
    pub fn drift(&self, dir: &Path) -> Result<Vec<PathBuf>, TerraformError> {
        let mut drifted = Vec::new();
        for (name, text) in &self.files {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == *text => {}
                Ok(_) => drifted.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => drifted.push(path),
                Err(source) => return Err(TerraformError::Io { action: "reading", path, source }),
            }
        }
        drifted.extend(self.extra_files(dir)?);
        Ok(drifted)
    }

    /// The .tf files in `dir` that are not part of the module.
    fn extra_files(&self, dir: &Path) -> Result<Vec<PathBuf>, TerraformError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(TerraformError::Io { action: "listing", path: dir.to_path_buf(), source }),
        };
        let mut extra = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|source| TerraformError::Io { action: "listing", path: dir.to_path_buf(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tf") && !self.files.iter().any(|(n, _)| *n == name) {
                extra.push(entry.path());
            }
        }
        extra.sort();
        Ok(extra)
    }
}

/// The subjects kfn registers at start-up: each Avro topic's schema file (a
/// JSON topic's schema only names its event type; nothing is registered).
fn subjects(config: &Config, settings: &Settings) -> Result<Vec<Subject>, TerraformError> {
    let base = config.base_dir();
    let mut subjects = Vec::new();
    for topic in config.topics.values() {
        let Some(path) = &topic.schema else { continue };
        if topic.format == TopicFormat::Json {
            continue;
        }
        let relative = path
            .strip_prefix(base)
            .ok()
            .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
            .ok_or_else(|| TerraformError::SchemaOutsideProject { topic: topic.name.clone(), path: path.clone() })?;
        let relative: Vec<String> =
            relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        subjects.push(Subject {
            subject: value_subject(&topic.name),
            file: format!("{}/{}", settings.project_dir, relative.join("/")),
            compatibility: settings.compatibility,
        });
    }
    subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
    Ok(subjects)
}

/// The path that leads from directory `from` to directory `to`, both absolute
/// (`..` when `from` is a child of `to`), with `/` separators as HCL wants.
pub fn relative_dir(from: &Path, to: &Path) -> String {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(to[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_walk_up_then_down() {
        assert_eq!(relative_dir(Path::new("/p/terraform"), Path::new("/p")), "..");
        assert_eq!(relative_dir(Path::new("/p"), Path::new("/p")), ".");
        assert_eq!(relative_dir(Path::new("/tmp/x/tf"), Path::new("/p")), "../../../p");
        assert_eq!(relative_dir(Path::new("/p/a/b"), Path::new("/p/c")), "../../c");
    }

    #[test]
    fn min_isr_is_one_less_than_replication_from_three_replicas() {
        let topic = |replication| TopicSpec {
            name: "t".into(),
            partitions: 1,
            replication,
            retention: None,
            cleanup_policy: crate::config::CleanupPolicy::Delete,
            key: None,
            schema: None,
            event: None,
            format: TopicFormat::Avro,
            configs: Default::default(),
            doc: None,
        };
        let settings = Settings::default();
        assert_eq!(settings.min_insync_replicas(&topic(1)), None);
        assert_eq!(settings.min_insync_replicas(&topic(2)), None);
        assert_eq!(settings.min_insync_replicas(&topic(3)), Some(2));
        assert_eq!(settings.min_insync_replicas(&topic(5)), Some(4));
    }
}
