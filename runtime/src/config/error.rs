//! Config errors: each names the file, the field path and what was expected.

use std::fmt;
use std::path::PathBuf;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from: the file, or an environment variable.
    pub source: String,
    /// The dotted field path, e.g. `functions.validation.retry.max_attempts`.
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            // The file as a whole, e.g. TOML that does not parse.
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.message)
        }
    }
}

/// Every problem found in one configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrors {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read; these fields are wrong.
    #[error("{} error(s) in the configuration:\n{}", .0.len(), list(.0))]
    Invalid(Vec<ConfigError>),
}

fn list(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

impl ConfigErrors {
    /// The individual errors (empty for an unreadable file).
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            ConfigErrors::Invalid(errors) => errors,
            ConfigErrors::Unreadable { .. } => &[],
        }
    }
}

/// Collects errors while validating, with the file name at hand.
#[derive(Debug)]
pub(crate) struct Collector {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl Collector {
    pub fn new(file: String) -> Self {
        Self { file, errors: Vec::new() }
    }

    /// Records an error for a field of the file.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { source: self.file.clone(), field: field.into(), message: message.into() });
    }

    /// Records a figment deserialization error under `prefix`.
    pub fn figment(&mut self, prefix: &str, err: figment::Error) {
        for e in err {
            let mut path: Vec<String> = Vec::new();
            if !prefix.is_empty() {
                path.push(prefix.to_string());
            }
            path.extend(e.path.iter().cloned());
            // figment's path ends at the containing table for some kinds and at the field for others.
            let field = match &e.kind {
                figment::error::Kind::UnknownField(name, _) => Some(name.to_string()),
                figment::error::Kind::MissingField(name) => Some(name.to_string()),
                _ => None,
            };
            if let Some(field) = field {
                if path.last() != Some(&field) {
                    path.push(field);
                }
            }
            // TOML allows an empty key (`"" = 1`): said as `""`, so the path still names it.
            for segment in &mut path {
                if segment.is_empty() {
                    segment.push_str("\"\"");
                }
            }
            let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(_)) | None => self.file.clone(),
                Some(other) => {
                    format!("{} ({other})", e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default())
                }
            };
            let message = match &e.kind {
                figment::error::Kind::UnknownField(name, expected) => {
                    format!("unknown field `{name}`; expected one of: {}", expected.join(", "))
                }
                figment::error::Kind::MissingField(name) => format!("missing field `{name}`"),
                figment::error::Kind::Message(text) if text.starts_with("TOML parse error") => toml_syntax(text),
                other => format!("expected {}", describe(other)),
            };
            self.errors.push(ConfigError { source, field: path.join("."), message });
        }
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors::Invalid(self.errors))
        }
    }
}

/// The toml crate's parse error (a header line, the source line with a caret
/// under the column, the reason) as one line: where, why, and the text there.
fn toml_syntax(text: &str) -> String {
    let mut lines = text.lines();
    let at = lines.next().unwrap_or_default().trim_start_matches("TOML parse error at ").to_string();
    let rest: Vec<&str> = lines.collect();
    // The quoted source line is the one numbered `N | text`; the reason follows the gutter lines.
    let quoted = rest.iter().find_map(|l| l.split_once(" | ").filter(|(n, _)| n.trim().parse::<u32>().is_ok()));
    let reason: Vec<&str> =
        rest.iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | ")).collect();
    let mut line = format!("not valid TOML at {at}: {}", reason.join(" "));
    if let Some((_, source)) = quoted {
        line.push_str(&format!(" (there: `{}`)", source.trim()));
    }
    line
}

fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) => format!("{expected}, found {actual}"),
        Kind::InvalidValue(actual, expected) => format!("{expected}, found {actual}"),
        other => other.to_string(),
    }
}
